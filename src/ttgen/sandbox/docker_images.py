"""The image half of the Docker-API backends: task images built once per content, pulls, imports.

`DockerImages` is mixed into `DockerBackend` (and so `PodmanBackend`): it needs `self.docker`
(an engine_client.EngineClient), `self.settings`, the build locks and slots the backend sets up.

The tag `ttgen/env:<hash>` hashes the exact context sent (files after .dockerignore, modes, the
rewritten Dockerfile, the CA bundle) plus the base image ids, so an unchanged task is never
rebuilt and identical environments share one image; a per-tag lock makes concurrent requests
build once; builds run in a bounded number of slots.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from collections.abc import AsyncIterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from ttgen.errors import (
    BuildInfraError,
    ImageBuildError,
    ImageNotFoundError,
    SandboxError,
    TaskError,
)
from ttgen.sandbox.base import LABEL_CA, LABEL_CA_OF, LABEL_MANAGED, LABEL_TASK, ImageRef
from ttgen.sandbox.context import (
    BuildContext,
    ca_bundle_bytes,
    ca_layer_context,
    make_build_context,
)
from ttgen.sandbox.diagnose import TLS_HINT, infrastructure_sign, tls_intercepted
from ttgen.sandbox.engine_client import DockerError, EngineClient
from ttgen.settings import Settings
from ttgen.task import Task

log = logging.getLogger(__name__)

BUILD_LOG_TAIL_LINES = 40


def build_failure(
    name: str, what: str, detail: str, log_tail: str, log: str, *, timed_out: bool = False
) -> ImageBuildError:
    """The error for a failed build, by what its log shows, said before the engine's detail
    (which repeats the failing command and can be long): TLS interception (names the setting
    that fixes it; not retried: every try fails the same way until it is set), a sign of
    infrastructure (BuildInfraError, retried; the sign is named) or the task's own failure
    (ImageBuildError, deterministic, not retried)."""
    tail = f": {detail}" if detail else ""
    if tls_intercepted(log):
        return ImageBuildError(f"{name}: {what}. {TLS_HINT} Build error{tail}", log_tail,
                               timed_out=timed_out)  # fmt: skip
    sign = infrastructure_sign(log)
    if sign is not None:
        return BuildInfraError(
            f"{name}: {what} (looks like infrastructure, will be retried: {sign}){tail}",
            log_tail,
            timed_out=timed_out,
        )
    return ImageBuildError(
        f"{name}: {what} (the task's own environment failed to build: not retried){tail}",
        log_tail,
        timed_out=timed_out,
    )


class DockerImages:
    """Images on an engine that speaks the Docker Engine API."""

    settings: Settings
    builds: int
    _build_locks: dict[str, asyncio.Lock]
    _build_slots: asyncio.Semaphore
    _workdirs: dict[str, tuple[str, str | None]]
    _contexts: dict[Path, tuple[tuple, BuildContext]]
    _ca_bytes: bytes | None  # the extra CA bundle's bytes, read once
    docker: EngineClient  # the backend's client (a property there)

    def _ca(self) -> bytes | None:
        """The extra CA bundle (the host's trust store plus the extra file), or None."""
        if self.settings.extra_ca_cert is None:
            return None
        if self._ca_bytes is None:
            self._ca_bytes = ca_bundle_bytes(self.settings.extra_ca_cert)
        return self._ca_bytes

    async def image_exists(self, ref: str) -> dict[str, Any] | None:
        """The image's inspection, or None; its WORKDIR and USER are remembered for the
        containers made from it (one engine call fewer per trial)."""
        try:
            info = await self.docker.images.inspect(ref)
        except DockerError as exc:
            if exc.status == 404:
                return None
            raise SandboxError(f"cannot inspect image {ref}: {exc.message}") from exc
        config = info.get("Config") or {}
        self._workdirs[ref] = (config.get("WorkingDir") or "/", config.get("User") or None)
        return info

    async def pull(self, ref: str) -> bool:
        """Pull `ref` when the settings allow it; True when it worked."""
        if not self.settings.pull:
            return False
        try:
            await self.docker.images.pull(ref)
            return True
        except DockerError as exc:
            log.debug("pull of %s failed: %s", ref, exc)
            return False

    async def ensure_image(
        self, task: Task, *, force_build: bool = False, build_timeout: float | None = None
    ) -> ImageRef:
        """Make sure the task's image exists locally; build it at most once per content.

        A task with ``docker_image`` uses that image (after aliases) when it is present or
        pullable (a missing ttgen domain image, ``ttgen/domain:<id>``, is built), and falls back
        to building environment/Dockerfile when it is not.
        `force_build` rebuilds from the Dockerfile without the engine's layer cache.
        """
        env = task.config.environment
        dockerfile = task.dockerfile
        if env.docker_image and (not force_build or dockerfile is None):
            ref = self.settings.resolve_image(env.docker_image)
            info = await self.image_exists(ref)
            if info is None and (
                await self._build_domain_bases(task, [ref]) or await self.pull(ref)
            ):
                info = await self.image_exists(ref)
            if info is not None:
                if self.settings.extra_ca_cert is None:
                    return ImageRef(ref, "prebuilt")
                return await self._with_ca_layer(task, ref, info, build_timeout)
            if dockerfile is None:
                hint = (
                    ""
                    if ref != env.docker_image
                    else " (map it to a local image with TTGEN_IMAGE_ALIASES)"
                )
                raise ImageNotFoundError(
                    f"{task.name}: image {ref!r} is not present locally and cannot be pulled, "
                    f"and the task has no environment/Dockerfile to build{hint}"
                )
        if dockerfile is None:
            raise TaskError(
                task.path or task.name, "environment/Dockerfile missing and no docker_image set"
            )
        return await self.build(task, force=force_build, timeout=build_timeout)

    async def _with_ca_layer(
        self, task: Task, ref: str, info: Mapping[str, Any], timeout: float | None
    ) -> ImageRef:
        """Prebuilt `ref` with the extra CA bundle as one more layer, built once per image id
        and bundle, so no container needs the bundle copied in at its start. Should that build
        fail, each container gets the bundle copied in at its start, as before."""
        ca = self._ca()
        assert ca is not None
        ctx = ca_layer_context(ref, ca)
        digest = hashlib.sha256(f"{ctx.digest}\0{info['Id']}".encode()).hexdigest()
        tag = f"{ctx.tag.split(':')[0]}:{digest[:20]}"
        async with self.build_lock(tag):
            if await self.image_exists(tag):
                return ImageRef(ref, "prebuilt", has_ca=True, runs_from=tag)
            if timeout is None:
                timeout = task.config.environment.build_timeout_sec
            try:
                seconds = await self.build_context(
                    ctx, tag, name=task.name, timeout=timeout, labels={LABEL_CA_OF: ref}
                )
            except ImageBuildError as exc:
                log.warning(
                    "%s: cannot add the CA bundle to image %s as a layer (%s); each container "
                    "gets it copied in at its start instead", task.name, ref, exc,
                )  # fmt: skip
                return ImageRef(ref, "prebuilt")
            return ImageRef(ref, "prebuilt", seconds, has_ca=True, runs_from=tag)

    async def _context_for(self, task: Task) -> tuple[BuildContext, str]:
        env_dir = task.environment_dir
        assert env_dir is not None
        try:
            # Re-reading and hashing the context is skipped while no file in it changed.
            signature = await asyncio.to_thread(tree_signature, env_dir)
            cached = self._contexts.get(env_dir)
            if cached is not None and cached[0] == signature:
                ctx = cached[1]
            else:
                ctx = await asyncio.to_thread(make_build_context, env_dir, self.settings)
                self._contexts[env_dir] = (signature, ctx)
        except (OSError, UnicodeDecodeError) as exc:
            raise TaskError(env_dir, f"cannot read the build context: {exc}") from exc
        # The base images are part of the content: a re-bootstrapped base means a new image.
        ids = []
        for base in ctx.base_images:
            info = await self.image_exists(base)
            ids.append(info["Id"] if info else f"missing:{base}")
        digest = hashlib.sha256((ctx.digest + "\0" + "\0".join(ids)).encode()).hexdigest()
        return ctx, f"{ctx.tag.split(':')[0]}:{digest[:20]}"

    async def build(
        self, task: Task, *, force: bool = False, timeout: float | None = None
    ) -> ImageRef:
        """Build the task's environment/ (once per content); `timeout` overrides build_timeout_sec.

        A missing base image that is a ttgen domain image (``FROM ttgen/domain:<id>``) is built
        first, once however many tasks need it."""
        ctx, tag = await self._context_for(task)
        if await self._build_domain_bases(task, ctx.base_images):
            ctx, tag = await self._context_for(task)  # the tag hashes the base image ids
        async with self.build_lock(tag):
            if not force and await self.image_exists(tag):
                return ImageRef(tag, "cached", has_ca=self.settings.extra_ca_cert is not None)
            missing = [b for b in ctx.base_images if not await self.image_exists(b)]
            for base in missing:
                if not await self.pull(base):
                    raise ImageBuildError(
                        f"{task.name}: base image {base!r} (FROM in environment/Dockerfile) is not "
                        "present locally and cannot be pulled. Build it, or map it to a local image "
                        "with an alias, e.g. TTGEN_IMAGE_ALIASES='ubuntu:*=ttgen/base:bookworm' "
                        "(see `ttgen images bootstrap`)."
                    )
            if timeout is None:
                timeout = task.config.environment.build_timeout_sec
            seconds = await self.build_context(
                ctx,
                tag,
                name=task.name,
                timeout=timeout,
                labels={LABEL_TASK: task.name},
                nocache=force,
            )
            return ImageRef(tag, "built", seconds, self.settings.extra_ca_cert is not None)

    async def _build_domain_bases(self, task: Task, images: Sequence[str]) -> bool:
        """Build the missing ttgen domain images among `images` (a task's FROM images or its
        docker_image); True when one was missing and now exists."""
        from ttgen.sandbox.domains import ensure_domain_bases  # only when a task needs one

        return bool(await ensure_domain_bases(self, images, who=task.name))

    def build_lock(self, tag: str) -> asyncio.Lock:
        """The lock under which `tag` is checked and built, so concurrent requests build once."""
        return self._build_locks.setdefault(tag, asyncio.Lock())

    async def build_context(
        self,
        ctx: BuildContext,
        tag: str,
        *,
        name: str,
        timeout: float,
        labels: Mapping[str, str] | None = None,
        nocache: bool = False,
    ) -> float:
        """Build an assembled context as `tag` in one of the build slots; returns the seconds.

        `name` (a task, or a domain image) starts error messages; `labels` are added to the
        image's. Callers hold `build_lock(tag)`."""
        async with self._build_slots:
            t0 = time.monotonic()
            await self._run_build(name, ctx, tag, timeout, nocache=nocache, labels=labels)
            seconds = time.monotonic() - t0
        self._workdirs.pop(tag, None)
        self.builds += 1
        return seconds

    async def _run_build(
        self,
        name: str,
        ctx: BuildContext,
        tag: str,
        timeout: float,
        *,
        nocache: bool,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        lines: list[str] = []
        labels = {LABEL_MANAGED: "true", **(labels or {})}
        if self.settings.extra_ca_cert is not None:
            labels[LABEL_CA] = "true"

        async def consume() -> None:
            stream = self.docker.images.build(ctx.tar, tag=tag, nocache=nocache, labels=labels)
            async for chunk in stream:
                if "stream" in chunk:
                    lines.extend(chunk["stream"].splitlines())
                elif "status" in chunk:
                    lines.append(str(chunk["status"]))
                if "error" in chunk or "errorDetail" in chunk:
                    detail = chunk.get("errorDetail", {}).get("message") or chunk.get("error")
                    lines.append(str(detail))
                    raise build_failure(
                        name,
                        "image build failed",
                        str(detail),
                        "\n".join(lines[-BUILD_LOG_TAIL_LINES:]),
                        "\n".join(lines),
                    )
                del lines[:-200]

        try:
            await asyncio.wait_for(consume(), timeout)
        except TimeoutError:
            raise build_failure(
                name,
                f"image build exceeded build_timeout_sec={timeout:g}",
                "",
                "\n".join(lines[-BUILD_LOG_TAIL_LINES:]),
                "\n".join(lines),
                timed_out=True,
            ) from None
        except DockerError as exc:
            raise build_failure(
                name,
                "image build failed",
                str(exc.message),
                "\n".join(lines[-BUILD_LOG_TAIL_LINES:]),
                "\n".join([*lines, str(exc.message)]),
            ) from exc
        if not await self.image_exists(tag):
            raise ImageBuildError(
                f"{name}: the engine reported no error but image {tag} does not exist",
                "\n".join(lines[-BUILD_LOG_TAIL_LINES:]),
            )

    _pull = pull  # the older name (domains.py, callers of 0.x)

    async def import_rootfs(
        self, chunks: AsyncIterable[bytes], tag: str, changes: Sequence[str] = ()
    ) -> str:
        """POST /images/create?fromSrc=- (`docker import`) of a tar stream, as `tag`, with
        Dockerfile `changes`; the image id. An engine that ignores the tag in an import (Podman
        4 names it `:latest`) gets the tag set afterwards."""
        ref = tag.rsplit("@", 1)[0]
        repo, _, version = (
            ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "latest")
        )
        # `changes` repeats, which a dict of parameters cannot express: build the query here.
        query = urlencode(
            [("fromSrc", "-"), ("repo", repo), ("tag", version)] + [("changes", c) for c in changes]
        )
        try:
            resp = await self.docker.request(
                "POST",
                f"images/create?{query}",
                data=chunks,
                headers={"Content-Type": "application/x-tar"},
            )
            try:
                text = await resp.text()
            finally:
                resp.release()
        except DockerError as exc:
            raise SandboxError(f"image import failed: {exc.message}") from exc
        if '"error"' in text:
            raise SandboxError(f"image import failed: {text[-500:]}")
        info = await self.image_exists(tag)
        if info is None:
            imported = _imported_id(text)
            if imported is None:
                raise SandboxError(f"image import gave no image {tag}: {text[-500:]}")
            try:
                await self.docker.images.tag(imported, repo, tag=version)
            except DockerError as exc:
                raise SandboxError(
                    f"cannot tag the imported image as {tag}: {exc.message}"
                ) from exc
            info = await self.image_exists(tag)
            if info is None:
                raise SandboxError(f"image import gave no image {tag}")
        self._workdirs.pop(tag, None)
        return info["Id"]


def _imported_id(text: str) -> str | None:
    """The image id in an import's progress stream (`{"status": "sha256:..."}` lines)."""
    found = None
    for line in text.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        for value in (msg.get("status"), msg.get("id")) if isinstance(msg, dict) else ():
            if isinstance(value, str) and value.startswith("sha256:"):
                found = value
    return found


def tree_signature(root: Path) -> tuple:
    """Names, sizes, modes and mtimes of every file under `root`: changes when any file does."""
    sig = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            st = os.lstat(os.path.join(dirpath, name))
            sig.append((dirpath, name, st.st_size, st.st_mtime_ns, st.st_mode))
    return tuple(sig)
