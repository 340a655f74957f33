"""`ttgen images bootstrap`: a base image from Debian's archive, for machines without a registry.

debootstrap writes a minimal Debian root file system into a temporary folder; it is streamed as a
tar straight into the engine's image import (no intermediate file). The image has what terminal
tasks and agents expect: bash, python3 with pip and venv, tmux, curl, git, procps and CA
certificates, with WORKDIR /app like the Terminal-Bench base images.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ttgen.errors import SandboxError, TtgenError
from ttgen.sandbox.base import ImageStore
from ttgen.sandbox.engine_client import EngineClient
from ttgen.settings import Settings

DEFAULT_TAG = "ttgen/base:bookworm"
DEFAULT_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = (
    "bash",
    "ca-certificates",
    "python3",
    "python3-pip",
    "python3-venv",
    "python-is-python3",
    "tmux",
    "curl",
    "git",
    "procps",
    "less",
    "xz-utils",
)
IMAGE_CHANGES = (
    "ENV LANG=C.UTF-8",
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV DEBIAN_FRONTEND=noninteractive",
    # Debian's pip refuses to install into the system Python without this (PEP 668); task images
    # written for Docker Hub's images expect `pip install` to work.
    "ENV PIP_BREAK_SYSTEM_PACKAGES=1",
    "WORKDIR /app",
    'CMD ["bash"]',
)


@dataclass
class BootstrapResult:
    tag: str
    image_id: str
    seconds: float
    packages: tuple[str, ...]


async def bootstrap_base_image(
    engine: ImageStore | EngineClient,
    *,
    tag: str = DEFAULT_TAG,
    suite: str = DEFAULT_SUITE,
    mirror: str = DEFAULT_MIRROR,
    extra_packages: tuple[str, ...] = (),
    workdir: Path | None = None,
    on_line: Callable[[str], None] | None = None,
) -> BootstrapResult:
    if shutil.which("debootstrap") is None:
        raise TtgenError(
            "debootstrap is not installed (on Debian/Ubuntu: apt-get install debootstrap)"
        )
    if os.geteuid() != 0:
        raise TtgenError(
            "debootstrap needs root: run `ttgen images bootstrap` as root (e.g. with sudo)"
        )
    packages = tuple(dict.fromkeys(BASE_PACKAGES + tuple(extra_packages)))
    t0 = time.monotonic()
    root_parent = Path(tempfile.mkdtemp(prefix="ttgen-rootfs-", dir=workdir))
    rootfs = root_parent / "rootfs"
    try:
        await _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(packages)}",
                suite,
                str(rootfs),
                mirror,
            ],
            on_line,
            what="debootstrap",
        )
        _finish_rootfs(rootfs, suite, mirror)
        image_id = await _import_rootfs(engine, rootfs, tag)
    finally:
        await asyncio.to_thread(shutil.rmtree, root_parent, True)
    return BootstrapResult(tag, image_id, time.monotonic() - t0, packages)


def _finish_rootfs(rootfs: Path, suite: str, mirror: str) -> None:
    (rootfs / "app").mkdir(exist_ok=True)
    sources = rootfs / "etc/apt/sources.list"
    lines = [f"deb {mirror} {suite} main"]
    if suite not in ("sid", "unstable"):
        lines.append(f"deb {mirror} {suite}-updates main")
    sources.write_text("\n".join(lines) + "\n")
    # Keep the image small: package lists and caches are fetched again by `apt-get update`.
    for sub in ("var/lib/apt/lists", "var/cache/apt/archives"):
        d = rootfs / sub
        if d.is_dir():
            for entry in d.iterdir():
                if entry.is_file() and entry.name not in ("lock",):
                    entry.unlink()


async def _run(argv: list[str], on_line: Callable[[str], None] | None, what: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    tail: list[str] = []
    assert proc.stdout is not None
    async for raw in proc.stdout:
        line = raw.decode(errors="replace").rstrip()
        tail = [*tail[-30:], line]
        if on_line:
            on_line(line)
    rc = await proc.wait()
    if rc != 0:
        raise TtgenError(f"{what} failed with exit code {rc}:\n" + "\n".join(tail))


async def _import_rootfs(engine: ImageStore | EngineClient, rootfs: Path, tag: str) -> str:
    """Stream `tar -C rootfs -c .` into the engine's image import (POST /images/create?fromSrc=-)."""
    if isinstance(engine, EngineClient):  # a bare client (callers of 0.x): Docker's API
        from ttgen.sandbox.docker import DockerBackend

        store: ImageStore = DockerBackend(Settings(pull=False))
        store._docker = engine  # type: ignore[attr-defined]
    else:
        store = engine
    proc = await asyncio.create_subprocess_exec(
        "tar", "--numeric-owner", "-C", str(rootfs), "-c", ".",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None

    async def body():
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(1 << 20):
            yield chunk

    try:
        image_id = await store.import_rootfs(body(), tag, IMAGE_CHANGES)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        rc = await proc.wait()
    if rc != 0:
        err = (await proc.stderr.read()).decode(errors="replace") if proc.stderr else ""
        raise SandboxError(f"tar of the root file system failed ({rc}): {err}")
    return image_id
