"""Harbor's own code as the client of what ttgen writes (tests: tests/test_harbor_compat.py).

Harbor (PyPI ``harbor``, pinned to HARBOR_VERSION) needs Python >= 3.12; ttgen runs on 3.11. So
Harbor runs in a small image: a Debian trixie base (Python 3.13) made with debootstrap like
``ttgen/base:bookworm`` (`bootstrap_base_image`), then Harbor and what its traces exporter needs
(the ``huggingface`` extra: ``datasets``) installed with pip into a venv at /opt/harbor. The build
goes through the build-context machinery of task environments, so the extra CA bundle (where TLS
to PyPI is intercepted) is trusted by pip. A label holds the content digest (Dockerfile + CA +
the base image's id): an image of the same content is reused, never rebuilt.

`run_probe` runs ``harbor_probe.py`` (stdlib + Harbor only; never imported by ttgen) in a
throw-away container of that image, with host folders mounted at the same absolute paths (so the
paths recorded in result files resolve), without network, as the calling user, and returns the
JSON it prints.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttgen.errors import TtgenError
from ttgen.sandbox.docker_sandbox import force_remove
from ttgen.sandbox.engine_client import EngineClient
from ttgen.settings import Settings, host_ca_bundle, load_settings

HARBOR_VERSION = "0.24.0"
HARBOR_IMAGE = f"ttgen/harbor:{HARBOR_VERSION}"
BASE_SUITE = "trixie"  # Debian 13: Python 3.13
BASE_TAG = f"ttgen/base:{BASE_SUITE}"
VENV = "/opt/harbor"
PROBE_PATH = Path(__file__).with_name("harbor_probe.py")
PROBE_IN_CONTAINER = "/opt/ttgen/harbor_probe.py"
LABEL_HARBOR = "ttgen.harbor.version"
LABEL_CONTENT = "ttgen.content"
BUILD_TIMEOUT_SEC = 1800.0
# What is installed: Harbor with the extra its traces exporter imports (`datasets`).
PIP_REQUIREMENTS = (f"harbor[huggingface]=={HARBOR_VERSION}",)

DOCKERFILE = f"""\
FROM {BASE_TAG}
RUN python3 -m venv {VENV} \\
 && {VENV}/bin/pip install --no-cache-dir --disable-pip-version-check --progress-bar off \\
      {" ".join(f'"{r}"' for r in PIP_REQUIREMENTS)} \\
 && {VENV}/bin/python -c "import harbor.models.job.result, harbor.utils.traces_utils, datasets" \\
 && {VENV}/bin/pip freeze > {VENV}/freeze.txt
ENV PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /
"""


class HarborImageError(TtgenError):
    """The Harbor image could not be made (no debootstrap/root for the base, no PyPI, ...)."""


class ProbeError(TtgenError):
    """harbor_probe.py failed or printed no JSON."""


@dataclass
class HarborImage:
    tag: str
    source: str  # "cached" | "built"
    seconds: float  # time this call spent making it (0 when cached)
    size_bytes: int
    base_seconds: float = 0.0  # of which bootstrapping the trixie base


def _settings() -> Settings:
    """ttgen's settings, with the host's CA bundle trusted when none is configured (builds reach
    PyPI through an intercepting proxy on our machines; the host store holds its CA)."""
    settings = load_settings()
    if settings.extra_ca_cert is None:
        settings.extra_ca_cert = host_ca_bundle()
    return settings


async def ensure_harbor_image(
    *,
    settings: Settings | None = None,
    force: bool = False,
    on_line: Callable[[str], None] | None = None,
) -> HarborImage:
    """Make sure HARBOR_IMAGE exists and matches the recipe; build it (and the base) if not."""
    from ttgen.sandbox import open_backend
    from ttgen.sandbox.bootstrap import bootstrap_base_image
    from ttgen.sandbox.context import make_build_context

    settings = settings or _settings()
    t0 = time.monotonic()
    base_seconds = 0.0
    # The probe runs in Docker's engine (run_probe: bind mounts of the job folders), whatever
    # backend the trials it reads ran on.
    async with open_backend("docker", settings) as backend:
        base = await backend.image_exists(BASE_TAG)
        if base is None:
            try:
                res = await bootstrap_base_image(
                    backend, tag=BASE_TAG, suite=BASE_SUITE, on_line=on_line
                )
            except TtgenError as exc:
                raise HarborImageError(
                    f"cannot bootstrap the base image {BASE_TAG} of the Harbor image: {exc}"
                ) from exc
            base_seconds = res.seconds
            base = await backend.image_exists(BASE_TAG)
            assert base is not None
        with tempfile.TemporaryDirectory(prefix="ttgen-harbor-") as tmp:
            Path(tmp, "Dockerfile").write_text(DOCKERFILE, encoding="utf-8")
            ctx = make_build_context(Path(tmp), settings)
        digest = hashlib.sha256(f"{ctx.digest}\0{base['Id']}".encode()).hexdigest()
        async with backend.build_lock(HARBOR_IMAGE):
            info = await backend.image_exists(HARBOR_IMAGE)
            labels = ((info or {}).get("Config") or {}).get("Labels") or {}
            if (
                info is not None
                and not force
                and labels.get(LABEL_CONTENT) == digest
                and labels.get(LABEL_HARBOR) == HARBOR_VERSION
            ):
                return HarborImage(HARBOR_IMAGE, "cached", 0.0, int(info.get("Size") or 0))
            try:
                await backend.build_context(
                    ctx,
                    HARBOR_IMAGE,
                    name=f"Harbor image {HARBOR_IMAGE}",
                    timeout=BUILD_TIMEOUT_SEC,
                    labels={LABEL_CONTENT: digest, LABEL_HARBOR: HARBOR_VERSION},
                    nocache=force,
                )
            except TtgenError as exc:
                raise HarborImageError(f"cannot build {HARBOR_IMAGE}: {exc}") from exc
            info = await backend.image_exists(HARBOR_IMAGE)
            assert info is not None
    return HarborImage(
        HARBOR_IMAGE, "built", time.monotonic() - t0, int(info.get("Size") or 0), base_seconds
    )


def _mount_roots(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Absolute, resolved folders to bind (a file's folder), none inside another."""
    roots: list[Path] = []
    for p in paths:
        path = Path(p).resolve()
        folder = path if path.is_dir() else path.parent
        roots.append(folder)
    roots.sort(key=lambda r: len(r.parts))
    kept: list[Path] = []
    for r in roots:
        if not any(r == k or r.is_relative_to(k) for k in kept):
            kept.append(r)
    return [str(k) for k in kept]


async def run_probe(
    args: list[str],
    *,
    mounts: Iterable[str | os.PathLike[str]] = (),
    writable: Iterable[str | os.PathLike[str]] = (),
    image: str = HARBOR_IMAGE,
    timeout: float = 300.0,
) -> Any:
    """Run ``harbor_probe.py ARGS`` in a fresh container; return the JSON it printed last
    (ProbeError, with its error and stderr, when it failed as a whole).

    `mounts` are bound read-only and `writable` read-write, each at its own absolute path
    (files: their folder). The container has no network and runs as this process's user."""
    ro = _mount_roots(mounts)
    rw = _mount_roots(writable)
    for w in rw:
        Path(w).mkdir(parents=True, exist_ok=True)
    binds = [f"{PROBE_PATH.resolve()}:{PROBE_IN_CONTAINER}:ro"]
    binds += [f"{r}:{r}:ro" for r in ro if not any(Path(r).is_relative_to(w) for w in rw)]
    binds += [f"{w}:{w}:rw" for w in rw]
    config = {
        "Image": image,
        "Cmd": ["python", PROBE_IN_CONTAINER, *args],
        "User": f"{os.getuid()}:{os.getgid()}",
        "Env": [
            "HOME=/tmp",
            "HF_HOME=/tmp/hf",
            "HF_HUB_OFFLINE=1",
            "HF_DATASETS_OFFLINE=1",
            "PYTHONUNBUFFERED=1",
            "NO_COLOR=1",
            # litellm (imported by Harbor's agents) would fetch its model cost map at import.
            "LITELLM_LOCAL_MODEL_COST_MAP=True",
        ],
        "WorkingDir": "/tmp",
        "HostConfig": {"Binds": binds, "NetworkMode": "none", "AutoRemove": False},
        # Not ttgen.managed: a backend's gc removes managed containers without a live owner.
        "Labels": {"ttgen.role": "harbor-probe"},
    }
    name = f"ttgen-harbor-probe-{uuid.uuid4().hex[:10]}"
    async with EngineClient() as docker:
        container = await docker.containers.create(config, name=name)
        try:
            await container.start()
            try:
                status = await asyncio.wait_for(container.wait(), timeout)
            except TimeoutError:
                raise ProbeError(f"harbor_probe {args[0]} ran over {timeout:g}s") from None
            stdout = await container.log(stdout=True, stderr=False)
            stderr = await container.log(stdout=False, stderr=True)
        finally:
            await force_remove(container)
    code = status.get("StatusCode")
    try:
        doc = _last_json(stdout)
    except ValueError:
        raise ProbeError(
            f"harbor_probe {' '.join(args)} exited {code} without JSON output.\n"
            f"stdout (tail):\n{stdout[-3000:]}\nstderr (tail):\n{stderr[-3000:]}"
        ) from None
    if code != 0:
        error = doc.get("error") if isinstance(doc, dict) else doc
        raise ProbeError(
            f"harbor_probe {' '.join(args)} failed (exit {code}): {error}\n"
            f"stderr (tail):\n{stderr[-3000:]}"
        )
    return doc


def _last_json(text: str) -> Any:
    """The probe prints exactly one JSON document as its last line (Harbor may print before)."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith(("{", "[")):
            return json.loads(line)
    raise ValueError("no JSON line")


def run_probe_sync(args: list[str], **kwargs: Any) -> Any:
    """`run_probe` from synchronous code; from inside a running event loop (an async test) it
    runs on a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run_probe(args, **kwargs))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run_probe(args, **kwargs)).result()


@dataclass
class HarborRunner:
    """What the tests' `harbor` fixture gives: the image and a way to run the probe in it."""

    image: HarborImage

    def run(
        self,
        *args: str | os.PathLike[str],
        mounts: Iterable[str | os.PathLike[str]] = (),
        writable: Iterable[str | os.PathLike[str]] = (),
        timeout: float = 300.0,
    ) -> Any:
        """``harbor_probe.py ARGS`` (paths as given); returns its JSON."""
        return run_probe_sync(
            [os.fspath(a) for a in args],
            mounts=mounts,
            writable=writable,
            image=self.image.tag,
            timeout=timeout,
        )


def main() -> None:  # pragma: no cover - manual use: python -m ttgen.testing.harbor
    img = asyncio.run(ensure_harbor_image(on_line=print))
    print(json.dumps(img.__dict__))


if __name__ == "__main__":  # pragma: no cover
    main()
