"""The Docker sandbox, driven through the Docker Engine API (aiodocker; no CLI on the hot path).

`DockerBackend` owns one API client per process and does the once-per-process work: building
images (one build per distinct content, concurrent requests share it), the isolated network,
garbage collection. `DockerSandbox` is one running container: exec, files, stop.

Containers run untrusted agent commands, so every one gets: the task's cpus and memory (or the
configured defaults), a pids limit, no privileges and no-new-privileges, no network at all when
the task says ``network_mode = "no-network"`` (or the legacy ``allow_internet = false``; otherwise
a bridge where containers cannot reach each other), an init process so that stopping is immediate, and labels naming the job and the process
that started it, so leftovers of a crashed run can be found and removed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import json
import logging
import os
import re
import shlex
import signal
import socket
import stat
import tarfile
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import aiodocker
import aiohttp

from ttgen.errors import (
    BuildInfraError,
    DockerUnavailableError,
    ImageBuildError,
    ImageNotFoundError,
    SandboxError,
    TaskError,
    TooLargeError,
)
from ttgen.sandbox.base import DEFAULT_MAX_OUTPUT_BYTES, ExecResult
from ttgen.sandbox.context import (
    CA_CONTAINER_PATH,
    BuildContext,
    ca_bundle_bytes,
    ca_env,
    make_build_context,
)
from ttgen.sandbox.diagnose import TLS_HINT, infrastructure_sign, tls_intercepted
from ttgen.sandbox.execd import HELPER, ExecChannel, UserSwitchError
from ttgen.settings import Settings, load_settings
from ttgen.task import Task

log = logging.getLogger(__name__)

LABEL_MANAGED = "ttgen.managed"
LABEL_JOB = "ttgen.job"
LABEL_OWNER = "ttgen.owner"  # "<hostname>:<pid>" of the process that started the container
LABEL_TASK = "ttgen.task"
LABEL_CA = "ttgen.ca"
LABEL_SNAPSHOT = "ttgen.snapshot"  # on a snapshot image (verifier containers): its job
LABEL_ROLE = "ttgen.role"  # "verifier" on a container started from a snapshot
_SLUG = re.compile(r"[^a-z0-9_.-]+")  # what an image repository name may hold
NETWORK_NAME = "ttgen-isolated"
EXEC_MARKER = "TTGEN_EXEC_ID"
BUILD_LOG_TAIL_LINES = 40
KEEPALIVE_CMD = ["sh", "-c", "sleep infinity"]
FAST_COPY_MAX_BYTES = 8 * 1024 * 1024  # file copies through the exec helper up to this size

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_NAME_BAD = re.compile(r"[^a-zA-Z0-9_.-]+")


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def resolve_env(env: Mapping[str, str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Resolve ``${VAR}`` and ``${VAR:-default}`` in task env values from the host, as Harbor does."""
    host = os.environ if environ is None else environ
    return {
        k: _ENV_REF.sub(lambda m: host.get(m.group(1)) or (m.group(2) or ""), str(v))
        for k, v in env.items()
    }


def container_name(job: str, task: str) -> str:
    base = _NAME_BAD.sub("-", f"ttgen-{job}-{task}")[:80].strip("-.")
    return f"{base}-{uuid.uuid4().hex[:8]}"


@dataclass
class ImageRef:
    """The image a task runs in, and how it was obtained."""

    tag: str
    source: str  # "built" | "cached" | "prebuilt"
    seconds: float = 0.0
    has_ca: bool = False


@dataclass
class _ExecRequest:
    """One command on its way through either exec transport."""

    cmd: list[str]
    marker: str  # TTGEN_EXEC_ID of everything the command starts
    env: dict[str, str]
    timeout: float | None
    cwd: str | None
    user: str | None
    stdin: bytes | None
    out: _OutputBuffer
    err: _OutputBuffer


class _OutputBuffer:
    """Keeps the first and last `limit/2` bytes of a stream and counts what was dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 0)
        self.head = bytearray()
        self.tail = bytearray()
        self.omitted = 0

    def feed(self, data: bytes) -> None:
        half = self.limit // 2
        room = half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if not data:
            return
        self.tail += data
        keep = self.limit - half
        if len(self.tail) > keep:
            cut = len(self.tail) - keep
            del self.tail[:cut]
            self.omitted += cut

    def text(self) -> str:
        if not self.omitted:
            return (self.head + self.tail).decode("utf-8", errors="replace")
        marker = f"\n[... {self.omitted} bytes omitted by ttgen ...]\n"
        return (
            self.head.decode("utf-8", errors="replace")
            + marker
            + self.tail.decode("utf-8", errors="replace")
        )


# A POSIX sh script that kills every process carrying one exec's marker in its environment,
# repeated until none is left (a fork bomb keeps forking while we kill).
_KILL_TREE = r"""
id="$1"; n=0
while [ $n -lt 20 ]; do
  found=0
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [ "$pid" = "$$" ] && continue
    if tr '\000' '\n' < "$p/environ" 2>/dev/null | grep -qx "TTGEN_EXEC_ID=$id"; then
      kill -9 "$pid" 2>/dev/null && found=1
    fi
  done
  [ $found -eq 0 ] && exit 0
  n=$((n+1))
done
"""


class _NetworkGoneError(SandboxError):
    """The container's network was removed by another process before the container started."""


def _network_gone(exc: aiodocker.DockerError) -> bool:
    message = str(exc.message).lower()
    return "network" in message and "not found" in message



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


class DockerBackend:
    """One Docker Engine API client and the state shared by all sandboxes of a process."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        docker_url: str | None = None,
        exec_channel: bool | Literal["eager"] = True,
        build_concurrency: int | None = None,
    ) -> None:
        self.settings = settings if settings is not None else load_settings()
        # Run commands through a persistent helper in the container where it can (see execd.py):
        # True starts it in the background at the second exec (until then `docker exec`),
        # "eager" starts it with the container, False never.
        self.exec_channel = exec_channel
        self._url = docker_url
        self._docker: aiodocker.Docker | None = None
        self._build_locks: dict[str, asyncio.Lock] = {}
        self._network_lock = asyncio.Lock()
        self._network_ready: str | None = None
        self._ca_bytes: bytes | None = None
        self._workdirs: dict[str, tuple[str, str | None]] = {}
        self._contexts: dict[Path, tuple[tuple, BuildContext]] = {}
        self.builds = 0  # images actually built by this backend (for tests and reports)
        # Builds are CPU- and disk-heavy: however many trials wait for images, only this many
        # builds run at once (cache hits never wait).
        n = build_concurrency or max(1, (os.cpu_count() or 2) // 2)
        self._build_slots = asyncio.Semaphore(n)

    # -- client ---------------------------------------------------------------------------

    @property
    def docker(self) -> aiodocker.Docker:
        if self._docker is None:
            try:
                self._docker = aiodocker.Docker(url=self._url)
            except Exception as exc:
                raise DockerUnavailableError(f"cannot create a Docker client: {exc}") from exc
        return self._docker

    async def ping(self) -> dict[str, Any]:
        try:
            return await self.docker.version()
        except (aiohttp.ClientError, OSError, aiodocker.DockerError) as exc:
            raise DockerUnavailableError(
                f"no Docker engine answers ({exc}). Start one (e.g. `dockerd &`), or set DOCKER_HOST."
            ) from exc

    async def close(self) -> None:
        if self._docker is not None:
            await self._docker.close()
            self._docker = None

    async def __aenter__(self) -> DockerBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- images ---------------------------------------------------------------------------

    async def image_exists(self, ref: str) -> dict[str, Any] | None:
        try:
            return await self.docker.images.inspect(ref)
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return None
            raise SandboxError(f"cannot inspect image {ref}: {exc.message}") from exc

    async def _pull(self, ref: str) -> bool:
        if not self.settings.pull:
            return False
        try:
            await self.docker.images.pull(ref)
            return True
        except aiodocker.DockerError as exc:
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
            if (
                await self.image_exists(ref)
                or await self._build_domain_bases(task, [ref])
                or await self._pull(ref)
            ):
                return ImageRef(ref, "prebuilt")
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

    async def _context_for(self, task: Task) -> tuple[BuildContext, str]:
        env_dir = task.environment_dir
        assert env_dir is not None
        try:
            # Re-reading and hashing the context is skipped while no file in it changed.
            signature = await asyncio.to_thread(_tree_signature, env_dir)
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
                if not await self._pull(base):
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
        from ttgen.sandbox.domains import ensure_domain_bases  # domains.py imports this module

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
            stream = self.docker.images.build(
                fileobj=io.BytesIO(ctx.tar),
                encoding="identity",
                tag=tag,
                rm=True,
                forcerm=True,
                nocache=nocache,
                labels=labels,
                stream=True,
            )
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
        except aiodocker.DockerError as exc:
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

    # -- containers -----------------------------------------------------------------------

    async def _isolated_network(self) -> str:
        """A bridge network on which containers cannot talk to each other (ICC off); its id.

        Processes that start at the same moment can both create it (the engine does not refuse
        a second network of the same name), after which the name is ambiguous to the engine:
        every process settles on the oldest one, by id, and removes the others while empty."""
        if self._network_ready:
            return self._network_ready
        async with self._network_lock:
            if self._network_ready:
                return self._network_ready
            nets = await self._networks_named(NETWORK_NAME)
            if not nets:
                try:
                    await self.docker.networks.create(
                        {
                            "Name": NETWORK_NAME,
                            "Driver": "bridge",
                            "CheckDuplicate": True,
                            "Labels": {LABEL_MANAGED: "true"},
                            "Options": {"com.docker.network.bridge.enable_icc": "false"},
                        }
                    )
                except aiodocker.DockerError as exc:
                    if exc.status != 409:  # created meanwhile by another process
                        raise SandboxError(
                            f"cannot create network {NETWORK_NAME}: {exc.message}"
                        ) from exc
                nets = await self._networks_named(NETWORK_NAME)
                if not nets:
                    raise SandboxError(f"network {NETWORK_NAME} vanished right after creation")
            keep, *extra = sorted(nets, key=lambda n: (str(n.get("Created", "")), n["Id"]))
            for dup in extra:
                with contextlib.suppress(aiodocker.DockerError):
                    await (await self.docker.networks.get(dup["Id"])).delete()
            self._network_ready = keep["Id"]
            return keep["Id"]

    async def _networks_named(self, name: str) -> list[dict[str, Any]]:
        try:
            nets = await self.docker.networks.list(filters={"name": [name]})
        except aiodocker.DockerError as exc:
            raise SandboxError(f"cannot list networks: {exc.message}") from exc
        return [n for n in nets if n.get("Name") == name]  # the filter matches substrings

    async def _image_defaults(self, tag: str) -> tuple[str, str | None]:
        """The image's WORKDIR and USER (cached)."""
        if tag not in self._workdirs:
            config = ((await self.image_exists(tag)) or {}).get("Config") or {}
            self._workdirs[tag] = (config.get("WorkingDir") or "/", config.get("User") or None)
        return self._workdirs[tag]

    def _ca(self) -> bytes | None:
        if self.settings.extra_ca_cert is None:
            return None
        if self._ca_bytes is None:
            self._ca_bytes = ca_bundle_bytes(self.settings.extra_ca_cert)
        return self._ca_bytes

    async def start(self, task: Task, **kwargs: Any) -> DockerSandbox:
        """Start a fresh container for `task` (building its image first if needed); see
        `_start_once` for the options. Retried once when the shared network vanished."""
        try:
            return await self._start_once(task, **kwargs)
        except _NetworkGoneError:
            self._network_ready = None
            try:
                return await self._start_once(task, **kwargs)
            except _NetworkGoneError as exc:
                raise SandboxError(f"{task.name}: cannot start container: {exc}") from exc

    async def _start_once(
        self,
        task: Task,
        *,
        job: str = "adhoc",
        image: ImageRef | None = None,
        force_build: bool = False,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        cpus: float | None = None,
        memory_mb: int | None = None,
        build_timeout: float | None = None,
        exec_channel: bool | Literal["eager"] | None = None,
    ) -> DockerSandbox:
        """Start a fresh container for `task` (building its image first if needed).

        `exec_channel` overrides the backend's setting for this container ("eager" suits
        callers that will run several commands, like a trial)."""
        if image is None:
            image = await self.ensure_image(
                task, force_build=force_build, build_timeout=build_timeout
            )
        envcfg = task.config.environment
        cpus = cpus or envcfg.cpus or self.settings.default_cpus
        memory_mb = memory_mb or envcfg.memory_mb or self.settings.default_memory_mb
        env = resolve_env(envcfg.env)
        ca = self._ca()
        inject_ca = ca is not None and not image.has_ca
        if ca is not None:
            env = {**ca_env(), **env}
        network = await self._isolated_network() if envcfg.allow_internet else "none"
        all_labels = {
            LABEL_MANAGED: "true",
            LABEL_JOB: job,
            LABEL_OWNER: owner_id(),
            LABEL_TASK: task.name,
            **(labels or {}),
        }
        name = name or container_name(job, task.name)
        host_config: dict[str, Any] = {
            "Init": True,
            "NanoCpus": int(float(cpus) * 1e9),
            "Memory": int(memory_mb) * 1024 * 1024,
            "MemorySwap": int(memory_mb) * 1024 * 1024,  # no swap beyond the limit
            "PidsLimit": self.settings.pids_limit,
            "Privileged": False,
            "SecurityOpt": ["no-new-privileges:true"],
            "NetworkMode": network,
            "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "1"}},
        }
        config: dict[str, Any] = {
            "Image": image.tag,
            "Cmd": KEEPALIVE_CMD,
            "Env": [f"{k}={v}" for k, v in env.items()],
            "Labels": all_labels,
            "HostConfig": host_config,
            "Tty": False,
            "OpenStdin": False,
        }
        if envcfg.workdir:
            config["WorkingDir"] = envcfg.workdir
        # Cancelled while the engine creates the container, we would never learn its id: let
        # the create finish, then remove what it made.
        create = asyncio.ensure_future(self.docker.containers.create(config, name=name))
        try:
            container = await asyncio.shield(create)
        except aiodocker.DockerError as exc:
            if _network_gone(exc) and network != "none":
                raise _NetworkGoneError(str(exc.message)) from exc
            raise SandboxError(
                f"{task.name}: cannot create container from {image.tag}: {exc.message}"
            ) from exc
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                made = await create
                await asyncio.shield(made.delete(force=True, v=True))
            raise
        sandbox = DockerSandbox(self, container, name, image.tag, task.name)
        sandbox._create_config = config
        try:
            image_workdir, image_user = await self._image_defaults(image.tag)
            sandbox.workdir = envcfg.workdir or image_workdir
            sandbox._default_user = image_user
            if inject_ca:
                assert ca is not None
                await sandbox._put_files("/", {CA_CONTAINER_PATH.lstrip("/"): (ca, 0o644)})
            await container.start()
            mode = self.exec_channel if exec_channel is None else exec_channel
            sandbox._channel_mode = mode
            if mode == "eager":
                await sandbox._start_channel()
        except BaseException as exc:
            await sandbox.stop()
            if isinstance(exc, aiodocker.DockerError):
                if _network_gone(exc) and network != "none":
                    # Another process removed the shared network between our check and the
                    # start (its gc saw it unused): make it again, once.
                    raise _NetworkGoneError(str(exc.message)) from exc
                raise SandboxError(
                    f"{task.name}: cannot start container {name}: {exc.message}"
                ) from exc
            raise
        return sandbox

    # -- garbage collection -----------------------------------------------------------------

    async def start_snapshot(self, source: DockerSandbox, role: str = "verifier") -> DockerSandbox:
        """A new container of `source`'s files as they are now, for a verifier no process of
        `source` can reach.

        The files are committed to an image (the engine pauses `source` while it takes them);
        the new container runs from it with `source`'s limits, environment, user and working
        directory, in `source`'s network namespace (services `source` left running answer on
        localhost) but in mount and process namespaces of its own: nothing still running in
        `source` can read or write its files, its /tests or its reward. Its stop() removes it
        and the image; `gc` removes both after a crash (labels `ttgen.snapshot`, `ttgen.role`)."""
        cfg = source._create_config
        if cfg is None:
            raise SandboxError(f"{source.name}: only containers ttgen started can be snapshotted")
        labels = dict(cfg.get("Labels") or {})
        repo = f"ttgen-snapshot/{_SLUG.sub('-', source.name.lower()).strip('-.')[:100] or 'c'}"
        tag = uuid.uuid4().hex[:12]
        image = f"{repo}:{tag}"
        try:
            await source.container.commit(
                repository=repo,
                tag=tag,
                changes=[
                    f"LABEL {LABEL_SNAPSHOT}={labels.get(LABEL_JOB, 'adhoc')}",
                    f"LABEL {LABEL_OWNER}={owner_id()}",
                ],
                pause=True,
            )
        except aiodocker.DockerError as exc:
            raise SandboxError(f"{source.name}: cannot snapshot the container: {exc.message}") from exc
        config = {
            **cfg,
            "Image": image,
            "Labels": {**labels, LABEL_ROLE: role, LABEL_OWNER: owner_id()},
            "HostConfig": {**cfg["HostConfig"], "NetworkMode": f"container:{source.id}"},
        }
        name = f"{source.name}-{role}"[:200]
        create = asyncio.ensure_future(self.docker.containers.create(config, name=name))
        try:
            container = await asyncio.shield(create)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                if isinstance(exc, asyncio.CancelledError):
                    made = await create
                    await asyncio.shield(made.delete(force=True, v=True))
                await asyncio.shield(self.docker.images.delete(image, force=True))
            if isinstance(exc, aiodocker.DockerError):
                raise SandboxError(
                    f"{source.name}: cannot create the {role} container: {exc.message}"
                ) from exc
            raise
        sandbox = DockerSandbox(self, container, name, image, source.task)
        sandbox.workdir = source.workdir
        sandbox._default_user = source._default_user
        sandbox._owned_image = image
        try:
            await container.start()
        except BaseException as exc:
            await asyncio.shield(sandbox.stop())
            if isinstance(exc, aiodocker.DockerError):
                raise SandboxError(
                    f"{source.name}: cannot start the {role} container: {exc.message}"
                ) from exc
            raise
        return sandbox

    async def gc(
        self, *, job: str | None = None, everything: bool = False, keep_network: bool = False
    ) -> dict[str, list[str]]:
        """Remove ttgen containers left behind, and the isolated network when unused.

        By default only containers whose owning process is gone (same host) are removed; `job`
        restricts to one job (whatever its owner); `everything` removes all ttgen containers.
        `keep_network` leaves the shared network alone (other jobs may be about to use it).
        """
        filters: dict[str, list[str]] = {"label": [f"{LABEL_MANAGED}=true"]}
        if job is not None:
            filters["label"].append(f"{LABEL_JOB}={job}")
        containers = await self.docker.containers.list(all=True, filters=json.dumps(filters))
        removed: list[str] = []
        host = socket.gethostname()
        for c in containers:
            labels = c._container.get("Labels") or {}
            if not everything and job is None and _owner_alive(labels, host):
                continue  # its process runs, or another machine's container on a shared engine
            try:
                await c.delete(force=True, v=True)
                names = c._container.get("Names") or [c.id]
                removed.append(names[0].lstrip("/"))
            except aiodocker.DockerError as exc:
                if exc.status not in (404, 409):  # 409: someone else is removing it already
                    raise SandboxError(
                        f"cannot remove container {c.id[:12]}: {exc.message}"
                    ) from exc
        await self._gc_snapshots(job, everything, host)
        networks: list[str] = []
        if keep_network:
            return {"containers": removed, "networks": networks}
        try:
            for found in await self._networks_named(NETWORK_NAME):
                net = await self.docker.networks.get(found["Id"])
                info = await net.show()
                if not info.get("Containers"):
                    await net.delete()
                    networks.append(NETWORK_NAME)
                    self._network_ready = None
        except (aiodocker.DockerError, SandboxError):
            pass
        return {"containers": removed, "networks": networks}

    async def _gc_snapshots(self, job: str | None, everything: bool, host: str) -> None:
        """Remove the snapshot images (verifier containers) that crashed runs left: those of
        `job`, or whose process is gone. An image still in use is left."""
        label = LABEL_SNAPSHOT if job is None else f"{LABEL_SNAPSHOT}={job}"
        try:
            images = await self.docker.images.list(filters={"label": [label]})
        except aiodocker.DockerError:
            return
        for img in images:
            labels = img.get("Labels") or {}
            if not everything and job is None and _owner_alive(labels, host):
                continue
            for ref in img.get("RepoTags") or [img["Id"]]:
                with contextlib.suppress(aiodocker.DockerError):
                    await self.docker.images.delete(ref, force=False)


def _owner_alive(labels: Mapping[str, str], host: str) -> bool:
    """Whether the process that made a container or image may still use it (another machine's
    are never judged here)."""
    owner_host, _, pid = labels.get(LABEL_OWNER, "").rpartition(":")
    if owner_host == host and pid.isdigit() and pid_alive(int(pid)):
        return True
    return bool(owner_host and owner_host != host)


def _tree_signature(root: Path) -> tuple:
    """Names, sizes, modes and mtimes of every file under `root`: changes when any file does."""
    sig = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            st = os.lstat(os.path.join(dirpath, name))
            sig.append((dirpath, name, st.st_size, st.st_mtime_ns, st.st_mode))
    return tuple(sig)


def _environ_has(pid: str | int, needle: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return needle in f.read().split(b"\0")
    except OSError:
        return False


def _kill_marked_on_host(marker: str) -> None:
    """Kill, from the host, every process carrying `marker`, until none is left."""
    needle = f"{EXEC_MARKER}={marker}".encode()
    for _ in range(50):
        found = False
        for entry in os.scandir("/proc"):
            if entry.name.isdigit() and _environ_has(entry.name, needle):
                try:
                    os.kill(int(entry.name), signal.SIGKILL)
                    found = True
                except (ProcessLookupError, PermissionError):
                    pass
        if not found:
            return


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (another user's counts too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DockerSandbox:
    """One running container (implements `ttgen.sandbox.base.Sandbox`)."""

    def __init__(
        self,
        backend: DockerBackend,
        container: aiodocker.docker.DockerContainer,
        name: str,
        image: str,
        task: str,
    ) -> None:
        self.backend = backend
        self.container = container
        self.id: str = container.id
        self.name = name
        self.image = image
        self.task = task
        self.workdir: str | None = None
        self._stopped = False
        self._local: bool | None = None
        self._channel: ExecChannel | None = None
        self._channel_task: asyncio.Future[None] | None = None
        self._default_user: str | None = None
        self._channel_can_switch_user = True
        self._docker_execs = 0
        self._channel_mode: bool | Literal["eager"] = backend.exec_channel
        # how it was created (for a snapshot of it), and an image it owns (a snapshot's)
        self._create_config: dict[str, Any] | None = None
        self._owned_image: str | None = None
        self._channel_exec: Any = None  # the exec running the helper (its pid is ttgen's)
        self._init_pid = 0  # host pid of the container's init (known once _engine_is_local ran)

    async def __aenter__(self) -> DockerSandbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- exec -----------------------------------------------------------------------------

    async def exec(
        self,
        command: str | Sequence[str],
        *,
        timeout: float | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        stdin: bytes | None = None,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    ) -> ExecResult:
        marker = uuid.uuid4().hex
        req = _ExecRequest(
            cmd=["sh", "-c", command] if isinstance(command, str) else list(command),
            marker=marker,
            env={EXEC_MARKER: marker, **(env or {})},
            timeout=timeout,
            cwd=cwd,
            user=user,
            stdin=stdin,
            out=_OutputBuffer(max_output_bytes),
            err=_OutputBuffer(max_output_bytes),
        )
        out, err = req.out, req.err
        t0 = time.monotonic()
        channel = self._channel if self._channel is not None and self._channel.alive else None
        if (
            channel is not None
            and (user or self._default_user)
            and not self._channel_can_switch_user
        ):
            channel = None
        if channel is None:
            self._start_channel_soon()
            exit_code, timed_out = await self._exec_docker(req)
        else:
            exit_code, timed_out = await self._exec_channel(channel, req)
        return ExecResult(
            exit_code=exit_code,
            stdout=out.text(),
            stderr=err.text(),
            timed_out=timed_out,
            duration_sec=time.monotonic() - t0,
            stdout_omitted_bytes=out.omitted,
            stderr_omitted_bytes=err.omitted,
        )

    async def _exec_docker(self, req: _ExecRequest) -> tuple[int | None, bool]:
        """One `docker exec` per command: works in every image."""
        try:
            execution = await self.container.exec(
                req.cmd,
                stdout=True,
                stderr=True,
                stdin=req.stdin is not None,
                user=req.user or "",
                environment=req.env,
                workdir=req.cwd,
            )
        except aiodocker.DockerError as exc:
            raise SandboxError(f"{self.name}: exec failed to start: {exc.message}") from exc
        timed_out = False
        stream = execution.start(detach=False)

        async def pump() -> None:
            async with stream:
                if req.stdin is not None:
                    await stream.write_in(req.stdin)
                    await _close_stdin(stream)
                while True:
                    msg = await stream.read_out()
                    if msg is None:
                        return
                    (req.out if msg.stream == 1 else req.err).feed(msg.data)

        pump_task = asyncio.ensure_future(pump())
        try:
            await asyncio.wait_for(asyncio.shield(pump_task), req.timeout)
        except TimeoutError:
            timed_out = True
            await self._kill_tree(req.marker)
            try:
                await asyncio.wait_for(asyncio.shield(pump_task), 5)
            except TimeoutError:
                pump_task.cancel()
        except asyncio.CancelledError:
            pump_task.cancel()
            await asyncio.shield(self._kill_tree(req.marker))
            raise
        except aiodocker.DockerError as exc:
            raise SandboxError(f"{self.name}: exec failed: {exc.message}") from exc
        if pump_task.done() and not pump_task.cancelled() and pump_task.exception() is not None:
            exc = pump_task.exception()
            raise SandboxError(f"{self.name}: exec stream failed: {exc}") from exc
        if timed_out:
            return None, True
        try:
            info = await execution.inspect()
        except aiodocker.DockerError as exc:
            raise SandboxError(f"{self.name}: cannot read exec result: {exc.message}") from exc
        return info.get("ExitCode"), False

    async def _exec_channel(
        self, channel: ExecChannel, req: _ExecRequest
    ) -> tuple[int | None, bool]:
        """Through the container's exec helper (see execd.py): no runc exec per command."""
        try:
            done = await channel.run(
                req.cmd,
                env=req.env,
                cwd=req.cwd,
                user=req.user or self._default_user,
                stdin=req.stdin,
                out=req.out,
                err=req.err,
            )
        except ConnectionError:  # the request never reached it: the classic path is safe
            return await self._exec_docker(req)
        try:
            return await asyncio.wait_for(asyncio.shield(done), req.timeout), False
        except UserSwitchError:  # nothing ran; docker exec can switch users
            self._channel_can_switch_user = False
            return await self._exec_docker(req)
        except TimeoutError:
            await self._kill_tree(req.marker)
            with contextlib.suppress(TimeoutError, ConnectionError):
                await asyncio.wait_for(asyncio.shield(done), 5)
            return None, True
        except asyncio.CancelledError:
            await asyncio.shield(self._kill_tree(req.marker))
            raise
        except ConnectionError as exc:
            raise SandboxError(
                f"{self.name}: the exec helper died while running {req.cmd[:3]}: {exc}"
            ) from exc

    def _start_channel_soon(self) -> None:
        # From the second exec on: a container used for one command never pays for the helper.
        self._docker_execs += 1
        if (
            self._docker_execs >= 2
            and self._channel_task is None
            and not self._stopped
            and self._channel_mode
        ):
            self._channel_task = asyncio.ensure_future(self._start_channel())

    async def _start_channel(self) -> None:
        try:
            ex = await self.container.exec(["python3", "-c", HELPER], stdin=True, user="root")
            self._channel_exec = ex
            stream = ex.start(detach=False)
            await stream.__aenter__()
            channel = ExecChannel(stream)
            if await asyncio.wait_for(asyncio.shield(channel.ready), 15):
                self._channel = channel
            else:
                await channel.close()
        except Exception as exc:  # no python3, no room: the classic path keeps working
            log.debug("%s: no exec helper: %r", self.name, exc)

    async def _kill_tree(self, marker: str) -> None:
        """Kill every process started by one exec: those carrying its marker in their environment.

        Where the engine runs on this host and we may signal its processes, this is done from
        outside (no process needs to start inside the container, which a fork bomb may have
        filled up to its pids limit); otherwise a small sh script does it from inside.
        """
        if await self._engine_is_local():
            await asyncio.to_thread(_kill_marked_on_host, marker)
            return
        if self._channel is not None and self._channel.alive:
            try:
                await self._channel.kill(marker)
                return
            except Exception:
                pass
        try:
            ex = await self.container.exec(
                ["sh", "-c", _KILL_TREE, "ttgen-kill", marker], user="root"
            )
            await ex.start(detach=True)
            for _ in range(100):
                info = await ex.inspect()
                if not info.get("Running"):
                    break
                await asyncio.sleep(0.05)
        except aiodocker.DockerError as exc:
            log.warning("%s: could not kill exec %s: %s", self.name, marker, exc)

    async def _engine_is_local(self) -> bool:
        """Whether this container's processes are visible (and ours to signal) in our /proc."""
        if self._local is None:
            self._local = False
            try:
                pid = (await self.container.show())["State"].get("Pid") or 0
                self._init_pid = int(pid)
                with open(f"/proc/{pid}/cgroup") as f:
                    self._local = (
                        bool(pid)
                        and self.id in f.read()
                        and os.access(f"/proc/{pid}/environ", os.R_OK)
                    )
            except (OSError, KeyError, aiodocker.DockerError):
                self._local = False
        return self._local

    # -- files ----------------------------------------------------------------------------

    async def _put_files(self, dest_dir: str, files: Mapping[str, tuple[bytes, int]]) -> None:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for rel, (data, mode) in files.items():
                info = tarfile.TarInfo(rel)
                info.size = len(data)
                info.mode = mode
                info.mtime = int(time.time())
                tar.addfile(info, io.BytesIO(data))
        await self._put_archive(dest_dir, buf.getvalue())

    def _channel_alive(self) -> bool:
        return self._channel is not None and self._channel.alive

    async def _put_archive(self, dest_dir: str, data: bytes) -> None:
        # With the exec helper up, a tar through its stdin costs a few ms; the archive API
        # costs a dockerd mount/chroot per call (100+ ms on a busy engine).
        if self._channel_alive() and len(data) <= FAST_COPY_MAX_BYTES:
            q = shlex.quote(self._abs(dest_dir))
            res = await self.exec(
                f"mkdir -p {q} && tar -xf - -C {q}", user="root", stdin=data, timeout=300
            )
            if res.ok:
                return
            log.debug("%s: tar upload failed (%s); using the archive API", self.name, res.stderr)
        try:
            await self.container.put_archive(dest_dir, data)
            return
        except aiodocker.DockerError as exc:
            if exc.status != 404:
                raise SandboxError(
                    f"{self.name}: upload to {dest_dir} failed: {exc.message}"
                ) from exc
        # The destination folder does not exist yet: create it, then retry once.
        res = await self.exec(["mkdir", "-p", dest_dir], user="root")
        if not res.ok:
            raise SandboxError(f"{self.name}: cannot create {dest_dir}: {res.stderr.strip()}")
        try:
            await self.container.put_archive(dest_dir, data)
        except aiodocker.DockerError as exc:
            raise SandboxError(f"{self.name}: upload to {dest_dir} failed: {exc.message}") from exc

    async def write_file(self, remote: str, content: bytes | str, mode: int = 0o644) -> None:
        data = content.encode("utf-8") if isinstance(content, str) else content
        p = PurePosixPath(self._abs(remote))
        await self._put_files(str(p.parent), {p.name: (data, mode)})

    async def upload_file(self, local: str | os.PathLike[str], remote: str) -> None:
        src = Path(local)
        st = src.stat()
        await self.write_file(remote, src.read_bytes(), st.st_mode & 0o7777)

    async def upload_dir(self, local: str | os.PathLike[str], remote: str) -> None:
        """Copy the contents of folder `local` into folder `remote` (created if needed)."""
        src = Path(local)
        if not src.is_dir():
            raise SandboxError(f"upload_dir: {src} is not a directory")
        dest = PurePosixPath(self._abs(remote))

        def pack() -> bytes:
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:

                def owner(info: tarfile.TarInfo) -> tarfile.TarInfo:
                    info.uid = info.gid = 0
                    info.uname = info.gname = "root"
                    return info

                tar.add(src, arcname=dest.name or ".", filter=owner)
            return buf.getvalue()

        await self._put_archive(str(dest.parent), await asyncio.to_thread(pack))

    async def _get_archive(self, remote: str, max_bytes: int | None = None) -> tarfile.TarFile:
        """Fetch `remote` as a tar archive, streamed to a spooled file (memory stays small).

        Raises `TooLargeError` once the archive passes `max_bytes`.
        """
        buf = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115 - returned open, inside the tar
        try:
            async with self.backend.docker._query(
                f"containers/{self.id}/archive", method="GET", params={"path": self._abs(remote)}
            ) as response:
                total = 0
                async for chunk in response.content.iter_chunked(256 * 1024):
                    total += len(chunk)
                    if max_bytes is not None and total > max_bytes:
                        raise TooLargeError(
                            f"{self.name}:{remote} is larger than {max_bytes} bytes; not copied"
                        )
                    buf.write(chunk)
        except aiodocker.DockerError as exc:
            buf.close()
            if exc.status == 404:
                raise FileNotFoundError(
                    f"{self.name}:{remote}: no such file or directory"
                ) from None
            raise SandboxError(f"{self.name}: download of {remote} failed: {exc.message}") from exc
        except BaseException:
            buf.close()
            raise
        buf.seek(0)
        try:
            return tarfile.open(fileobj=buf, mode="r")
        except tarfile.TarError as exc:
            buf.close()
            raise SandboxError(f"{self.name}: download of {remote} failed: {exc}") from exc

    async def _tar_through_channel(
        self, remote: str, max_bytes: int | None
    ) -> tarfile.TarFile | None:
        """`remote` as a tar made by the helper (base64 on stdout); None: use the API."""
        if not self._channel_alive():
            return None
        q = shlex.quote(self._abs(remote))
        limit = FAST_COPY_MAX_BYTES if max_bytes is None else min(max_bytes, FAST_COPY_MAX_BYTES)
        res = await self.exec(
            f"cd {q} 2>/dev/null || exit 3; {{ tar -cf - . || echo TTGEN_TAR_FAILED >&2; }} "
            "| base64",
            user="root",
            timeout=300,
            max_output_bytes=limit * 4 // 3 + 8192,
        )
        if res.exit_code == 3:
            raise FileNotFoundError(f"{self.name}:{remote}: no such file or directory")
        if not res.ok or "TTGEN_TAR_FAILED" in res.stderr or res.stdout_omitted_bytes:
            return None  # no tar/base64 in the image, or too big for this path: the API decides
        try:
            data = base64.b64decode(res.stdout)
            return tarfile.open(fileobj=io.BytesIO(data), mode="r")
        except (ValueError, tarfile.TarError):
            return None

    async def read_file(self, remote: str, max_bytes: int | None = None) -> bytes:
        tar = await self._get_archive(remote, max_bytes)
        with tar:
            for member in tar.getmembers():
                if member.isfile():
                    f = tar.extractfile(member)
                    assert f is not None
                    return f.read()
        raise IsADirectoryError(f"{self.name}:{remote} is not a regular file")

    async def download_file(self, remote: str, local: str | os.PathLike[str]) -> Path:
        data = await self.read_file(remote)
        dest = Path(local)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        return dest

    async def download_dir(
        self, remote: str, local: str | os.PathLike[str], max_bytes: int | None = None
    ) -> Path:
        """Copy the contents of folder `remote` into folder `local`.

        Entries that would land outside `local` (absolute or escaping links) are skipped; more
        than `max_bytes` in all raises `TooLargeError` and copies nothing.
        """
        tar = await self._tar_through_channel(remote, max_bytes)
        if tar is None:
            tar = await self._get_archive(remote, max_bytes)
        dest = Path(local)
        dest.mkdir(parents=True, exist_ok=True)

        def extract() -> None:
            with tar:
                for member in tar.getmembers():
                    parts = member.name.split("/", 1)
                    if len(parts) < 2 or not parts[1]:
                        continue  # the folder itself
                    member.name = parts[1]
                    try:
                        tar.extract(member, dest, filter="data")
                    except (tarfile.FilterError, OSError) as exc:
                        log.warning(
                            "%s: skipped %s while downloading %s: %s",
                            self.name,
                            member.name,
                            remote,
                            exc,
                        )

        await asyncio.to_thread(extract)
        return dest

    async def state(self) -> dict[str, Any]:
        """The container's State from the engine (Running, ExitCode, OOMKilled, ...)."""
        try:
            info = await self.container.show()
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return {"Running": False, "Status": "removed"}
            raise SandboxError(f"cannot inspect container {self.name}: {exc.message}") from exc
        return info.get("State") or {}

    def oom_kills(self) -> int | None:
        """How many processes the kernel's OOM killer killed in this container (local engines
        with a readable cgroup only; None when unknown)."""
        candidates = [
            (Path(f"/sys/fs/cgroup/memory/docker/{self.id}/memory.oom_control"), "oom_kill "),
            (
                Path(f"/sys/fs/cgroup/system.slice/docker-{self.id}.scope/memory.events"),
                "oom_kill ",
            ),
            (Path(f"/sys/fs/cgroup/docker/{self.id}/memory.events"), "oom_kill "),
        ]
        for path, key in candidates:
            try:
                for line in path.read_text().splitlines():
                    if line.startswith(key):
                        return int(line[len(key) :].strip())
            except (OSError, ValueError):
                continue
        return None

    def _abs(self, path: str) -> str:
        if path.startswith("/"):
            return path
        return str(PurePosixPath(self.workdir or "/") / path)

    # -- lifecycle ------------------------------------------------------------------------

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._channel_task is not None:
            self._channel_task.cancel()
        try:
            await asyncio.shield(self.container.delete(force=True, v=True))
        except aiodocker.DockerError as exc:
            if exc.status not in (404, 409):
                raise SandboxError(f"cannot remove container {self.name}: {exc.message}") from exc
        finally:
            if self._channel is not None:
                await self._channel.close()
            if self._owned_image is not None:
                with contextlib.suppress(aiodocker.DockerError):
                    await asyncio.shield(self.backend.docker.images.delete(self._owned_image))

    async def trusted_exec_channel(self) -> None:
        """Make sure no process the agent ran could have tampered with the exec helper: keep it
        when it sealed itself (not dumpable: no ptrace into it without CAP_SYS_PTRACE), else
        replace it by a fresh process; without python3 commands use `docker exec`."""
        if self._channel is not None and self._channel.alive and self._channel.sealed:
            return
        if self._channel_task is not None:
            self._channel_task.cancel()
            with contextlib.suppress(BaseException):
                await self._channel_task
            self._channel_task = None
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
        self._channel_exec = None
        if self._channel_mode:
            await self._start_channel()

    async def foreign_processes(self) -> list[str] | None:
        """The processes running in the container besides ttgen's own (its init, the keep-alive
        command, the exec helper): what an agent left running, as "pid command" lines. None when
        they cannot be listed from here (a remote engine): assume there are some."""
        if not await self._engine_is_local():
            return None
        init = self._init_pid  # the container's init: fixed for its life
        ours = {init}
        if self._channel_exec is not None:
            with contextlib.suppress(aiodocker.DockerError, KeyError, TypeError, ValueError):
                ours.add(int((await self._channel_exec.inspect())["Pid"]))
        return await asyncio.to_thread(_foreign_pids, init, ours)

    async def changes(self) -> list[dict[str, Any]]:
        """What differs between the container's files and its image (`docker diff`): a list of
        {"Path": ..., "Kind": 0 modified | 1 added | 2 deleted}.

        The engine's own endpoint costs ~0.5 s of its CPU per call (it compares the whole file
        tree); on a local overlay2 engine the container's upper layer is read directly instead
        (milliseconds: only what the container wrote)."""
        try:
            info = await self.container.show()
            gd = info.get("GraphDriver") or {}
            data = gd.get("Data") or {}
            upper = data.get("UpperDir")
            if gd.get("Name") == "overlay2" and upper and os.access(upper, os.R_OK | os.X_OK):
                lowers = [d for d in str(data.get("LowerDir") or "").split(":") if d]
                return await asyncio.to_thread(_overlay_changes, upper, lowers)
        except (OSError, aiodocker.DockerError):
            pass
        try:
            async with self.backend.docker._query(f"containers/{self.id}/changes") as resp:
                data = await resp.json()
        except aiodocker.DockerError as exc:
            raise SandboxError(f"{self.name}: cannot list its changes: {exc.message}") from exc
        return list(data or [])


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of a host process, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return fields[0].decode(), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        if p in found:
            continue
        found.add(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children", encoding="ascii") as f:
                    todo += [int(x) for x in f.read().split()]
        except (OSError, ValueError):
            continue
    return found


def _foreign_pids(init: int, ours: set[int]) -> list[str] | None:
    """Host pids in the cgroup of container process `init`, minus `ours` and the keep-alive
    command (the first child init started: nothing the agent runs can start before it; an
    orphan re-parented to init and named like it starts later), minus zombies."""
    try:
        with open(f"/proc/{init}/cgroup", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    candidates = []
    for line in lines:
        _, ctrl, path = line.split(":", 2)
        if ctrl == "pids":
            candidates.insert(0, f"/sys/fs/cgroup/pids{path}/cgroup.procs")
        elif ctrl == "":
            candidates += [f"/sys/fs/cgroup/unified{path}/cgroup.procs",
                           f"/sys/fs/cgroup{path}/cgroup.procs"]  # fmt: skip
    pids: list[int] | None = None
    for c in candidates:
        try:
            with open(c, encoding="ascii") as f:
                pids = [int(x) for x in f.read().split()]
            break
        except (OSError, ValueError):
            continue
    if pids is None:
        return None
    try:
        children = []
        for task in os.listdir(f"/proc/{init}/task"):
            with open(f"/proc/{init}/task/{task}/children", encoding="ascii") as f:
                children += [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        return None
    keepalive = (" ".join(KEEPALIVE_CMD), KEEPALIVE_CMD[-1])  # sh may exec its command
    started = sorted((st[1], pid) for pid in children if (st := _proc_stat(pid)) is not None)
    if started and _cmdline(started[0][1]) in keepalive:
        # it and what it runs (`sh -c` forks the sleep): no agent process can be its child
        ours = {*ours, *_descendants(started[0][1])}
    out = []
    for pid in pids:
        if pid in ours:
            continue
        st = _proc_stat(pid)
        if st is None or st[0] in ("Z", "X"):
            continue  # gone, or a zombie: runs nothing
        out.append(f"{pid} {_cmdline(pid)[:200]}")
    return out


def _overlay_changes(upper: str, lowers: list[str]) -> list[dict[str, Any]]:
    """`docker diff` from an overlay2 container's upper layer: a whiteout (a 0:0 character
    device) is a deletion; a path present in a lower layer was modified, else added."""
    out: list[dict[str, Any]] = []
    for root, dirs, files in os.walk(upper):
        for name in [*dirs, *files]:
            full = os.path.join(root, name)
            rel = "/" + os.path.relpath(full, upper)
            try:
                st = os.lstat(full)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                out.append({"Path": rel, "Kind": 2})
                continue
            below = any(os.path.lexists(os.path.join(low, rel.lstrip("/"))) for low in lowers)
            out.append({"Path": rel, "Kind": 0 if below else 1})
    return sorted(out, key=lambda c: c["Path"])


async def _close_stdin(stream: Any) -> None:
    """Half-close the exec's stdin so the command sees EOF."""
    resp = getattr(stream, "_resp", None)
    conn = getattr(resp, "connection", None) if resp is not None else None
    transport = getattr(conn, "transport", None) if conn is not None else None
    if transport is not None and transport.can_write_eof():
        transport.write_eof()
