"""The Docker backend: the Docker Engine API through engine_client.py (no CLI on the hot path).

`DockerBackend` owns one API client per process and does the once-per-process work: images
(docker_images.py: one build per distinct content, concurrent requests share it), the isolated
network, snapshots for the verifier, garbage collection. `DockerSandbox` (docker_sandbox.py) is
one running container: exec, files, stop.

Containers run untrusted agent commands, so every one gets: the task's cpus and memory (or the
configured defaults), a pids limit, no privileges and no-new-privileges, no network at all when
the task says ``network_mode = "no-network"`` (or the legacy ``allow_internet = false``;
otherwise a bridge where containers cannot reach each other), an init process so that stopping
is immediate, and labels naming the job and the process that started it, so leftovers of a
crashed run can be found and removed.

Everything above sandbox/ names the protocol (`ttgen.sandbox.base.SandboxBackend`) and opens a
backend by name (`ttgen.sandbox.open_backend`); this module is that protocol's reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from ttgen.errors import EngineStuckError, EngineUnavailableError, SandboxError
from ttgen.sandbox.base import (
    LABEL_CA,
    LABEL_JOB,
    LABEL_MANAGED,
    LABEL_OWNER,
    LABEL_ROLE,
    LABEL_SNAPSHOT,
    LABEL_TASK,
    ImageRef,
    Limits,
    container_name,
    limits_for,
    owner_id,
    resolve_env,
    sandbox_labels,
)
from ttgen.sandbox.context import CA_CONTAINER_PATH, BuildContext, ca_env
from ttgen.sandbox.docker_images import BUILD_LOG_TAIL_LINES, DockerImages, build_failure
from ttgen.sandbox.docker_sandbox import (
    FAST_COPY_MAX_BYTES,
    KEEPALIVE_CMD,
    MAIN_HELPER_CONFIG,
    SNAPSHOT_KEEPALIVE,
    DockerSandbox,
    force_remove,
)
from ttgen.sandbox.engine_client import DockerError, EngineClient, resolve_url
from ttgen.sandbox.host import EXEC_MARKER, owner_alive, pid_alive
from ttgen.settings import Settings, load_settings
from ttgen.task import Task

_SLUG = re.compile(r"[^a-z0-9_.-]+")  # what an image repository name may hold
NETWORK_NAME = "ttgen-isolated"
_T = TypeVar("_T")


class _NetworkGoneError(SandboxError):
    """The container's network was removed by another process before the container started."""


def _network_gone(exc: DockerError) -> bool:
    message = str(exc.message).lower()
    return "network" in message and "not found" in message


class DockerBackend(DockerImages):
    """One Docker Engine API client and the state shared by all sandboxes of a process."""

    name = "docker"
    sandbox_class: type[DockerSandbox] = DockerSandbox
    # With exec_channel "eager", the exec helper is the container's own command, attached
    # before the start (no `docker exec` for it): one engine round trip and a runc exec less.
    helper_as_main = True
    UNAVAILABLE_HINT = "Start one (e.g. `dockerd &`), or set DOCKER_HOST."

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        url: str | None = None,
        docker_url: str | None = None,
        exec_channel: bool | Literal["eager"] = True,
        build_concurrency: int | None = None,
    ) -> None:
        self.settings = settings if settings is not None else load_settings()
        # Run commands through a persistent helper in the container where it can (see execd.py):
        # True starts it in the background at the second exec (until then `docker exec`),
        # "eager" starts it with the container, False never.
        self.exec_channel = exec_channel
        self._url = url or docker_url or self.default_url()
        self._docker: EngineClient | None = None
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
        # Admission control: the engine creates, starts and removes containers one after
        # another however many it is asked for at once; asked for hundreds, it answers each
        # late (calls time out, trials fail for nothing). So only `engine_slots` starts, and as
        # many removals, are asked for at once; the rest wait here, first come first served,
        # and the first trials start working while the others still wait.
        self.start_slots = asyncio.Semaphore(self.settings.engine_slots)
        self.remove_slots = asyncio.Semaphore(self.settings.engine_slots)
        # Set when a container or network call ran past settings.engine_call_timeout: what
        # happened, said to every later such call (refused at once, see `bounded`).
        self.stuck: str | None = None

    # -- client ---------------------------------------------------------------------------

    @classmethod
    def default_url(cls) -> str | None:
        """The engine's address when none is given; None: the client's own search
        (DOCKER_HOST, the Docker context, the usual sockets)."""
        return None

    @property
    def engine_url(self) -> str | None:
        """Where the engine is expected (None: not known before connecting)."""
        try:
            return resolve_url(self._url)  # the address the client will use
        except ValueError:
            return None

    @property
    def docker(self) -> EngineClient:
        """The Engine API client (made on first use; one connection pool per backend, with
        no upper bound: an exec's attached stream keeps a connection for as long as the exec
        runs, a trial's exec helper the whole trial, so a bounded pool would make the trial
        after the last free connection wait for one only a finished trial frees, and every
        call behind it with it. What the engine is asked at once is bounded by admission
        control: start_slots, remove_slots)."""
        if self._docker is None:
            try:
                self._docker = EngineClient(self._url)
            except ValueError as exc:
                raise EngineUnavailableError(
                    f"the {self.name} backend cannot create an API client"
                    f"{f' for {self._url}' if self._url else ''}: {exc}. {self.UNAVAILABLE_HINT}"
                ) from exc
        return self._docker

    async def ping(self) -> dict[str, Any]:
        try:
            return await self.docker.version()
        except (OSError, DockerError) as exc:
            where = self.engine_url or "the default socket"
            raise EngineUnavailableError(
                f"no {self.name} engine answers at {where} ({exc}). {self.UNAVAILABLE_HINT}"
            ) from exc

    def engine_caveat(self, version: Mapping[str, Any]) -> str | None:
        """A known problem of this engine's version (`version`: what ping() answered) that a
        large job can run into, said in one line; None when there is none known."""
        if self.name != "docker":
            return None
        found = re.match(r"(\d+)\.(\d+)\.(\d+)", str(version.get("Version", "")))
        if found is None or tuple(int(x) for x in found.groups()) >= (20, 10, 27):
            return None
        return (
            f"the engine is Docker {version.get('Version')}: versions before 20.10.27 can "
            "deadlock when many containers start and stop (moby/moby#46661); if it happens, "
            f"the job stops after {self.settings.engine_call_timeout:g} s saying so (restart "
            "the engine, then run the same command again)"
        )

    async def bounded(self, what: str, call: Awaitable[_T]) -> _T:
        """`call` (an engine call about containers or networks), given at most
        settings.engine_call_timeout seconds; past that the engine counts as stuck: this and
        every later bounded call raise EngineStuckError at once, saying what to do.

        Docker 20.10 before 20.10.27 (Debian bookworm's docker.io is 20.10.24) can deadlock in
        its network controller when containers start and stop at a high rate (moby/moby#46661):
        from then on every removal, and every start or network call, waits forever while
        `docker ps` and execs still answer. Without a bound a job would hang with it. `call`
        must stop at once when cancelled (a shielded future does: it goes on alone)."""
        if self.stuck is not None:
            raise EngineStuckError(self.stuck)
        limit = self.settings.engine_call_timeout
        try:
            async with asyncio.timeout(limit) as deadline:
                return await call
        except TimeoutError:
            if not deadline.expired():
                raise  # the call's own timeout, not ours
            where = f" at {self.engine_url}" if self.engine_url else ""
            known = (
                " Docker 20.10 before 20.10.27 (Debian's docker.io 20.10.24) can deadlock when "
                "many containers start and stop (moby/moby#46661)."
                if self.name == "docker"
                else ""
            )
            self.stuck = (
                f"the {self.name} engine{where} did not finish {what} in {limit:g} s, so it is "
                f"taken as stuck and nothing more is started on it.{known} If removing a ttgen "
                "container by hand hangs too, restart the engine (e.g. `systemctl restart "
                f"{self.name}`) and run the same command again: finished trials are kept, the "
                "rest run then. (The limit: [sandbox] engine_call_timeout or "
                "TTGEN_ENGINE_CALL_TIMEOUT.)"
            )
            raise EngineStuckError(self.stuck) from None

    async def close(self) -> None:
        if self._docker is not None:
            docker, self._docker = self._docker, None
            await docker.close()

    async def __aenter__(self) -> DockerBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def limits(
        self, task: Task, *, cpus: float | None = None, memory_mb: int | None = None
    ) -> Limits:
        return limits_for(task, self.settings, cpus=cpus, memory_mb=memory_mb)

    def interactive_command(self, container: str, argv: Sequence[str]) -> list[str]:
        """`docker exec -it` (the docker CLI, pointed at this backend's engine)."""
        host = ["-H", self._url] if self._url else []
        return ["docker", *host, "exec", "-it", container, *argv]

    async def remove_container(self, ref: str) -> None:
        try:
            await self.bounded(
                f"removing container {ref}",
                asyncio.shield(force_remove(self.docker.containers.container(ref))),
            )
        except DockerError as exc:
            raise SandboxError(f"cannot remove container {ref}: {exc.message}") from exc

    async def containers(self, *, job: str | None = None) -> list[str]:
        filters: dict[str, list[str]] = {"label": [f"{LABEL_MANAGED}=true"]}
        if job is not None:
            filters["label"].append(f"{LABEL_JOB}={job}")
        try:
            found = await self.docker.containers.list(all=True, filters=filters)
        except DockerError as exc:
            raise SandboxError(f"cannot list containers: {exc.message}") from exc
        return [(c.data.get("Names") or [c.id])[0].lstrip("/") for c in found]

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
            return await self.bounded(f"setting up network {NETWORK_NAME}", self._make_network())

    async def _make_network(self) -> str:
        """Find or create the isolated network (see _isolated_network); its id."""
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
            except DockerError as exc:
                if exc.status != 409:  # created meanwhile by another process
                    raise SandboxError(
                        f"cannot create network {NETWORK_NAME}: {exc.message}"
                    ) from exc
            nets = await self._networks_named(NETWORK_NAME)
            if not nets:
                raise SandboxError(f"network {NETWORK_NAME} vanished right after creation")
        keep, *extra = sorted(nets, key=lambda n: (str(n.get("Created", "")), n["Id"]))
        for dup in extra:
            with contextlib.suppress(DockerError):
                await (await self.docker.networks.get(dup["Id"])).delete()
        self._network_ready = keep["Id"]
        return keep["Id"]

    async def _networks_named(self, name: str) -> list[dict[str, Any]]:
        try:
            nets = await self.docker.networks.list(filters={"name": [name]})
        except DockerError as exc:
            raise SandboxError(f"cannot list networks: {exc.message}") from exc
        return [n for n in nets if n.get("Name") == name]  # the filter matches substrings

    async def _image_defaults(self, tag: str) -> tuple[str, str | None]:
        """The image's WORKDIR and USER (cached)."""
        if tag not in self._workdirs and await self.image_exists(tag) is None:
            return "/", None
        return self._workdirs[tag]

    def _host_config(self, limits: Limits, network: str) -> dict[str, Any]:
        """The HostConfig of a task container: init, limits, no privileges, its network."""
        return {
            "Init": True,
            "NanoCpus": int(limits.cpus * 1e9),
            "Memory": limits.memory_mb * 1024 * 1024,
            "MemorySwap": limits.memory_mb * 1024 * 1024,  # no swap beyond the limit
            "PidsLimit": limits.pids,
            "Privileged": False,
            "SecurityOpt": ["no-new-privileges:true"],
            "NetworkMode": network,
            "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "1"}},
        }

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
        limits = self.limits(task, cpus=cpus, memory_mb=memory_mb)
        env = resolve_env(envcfg.env)
        ca = self._ca()
        inject_ca = ca is not None and not image.has_ca
        if ca is not None:
            env = {**ca_env(), **env}
        network = await self._isolated_network() if limits.network else "none"
        name = name or container_name(job, task.name)
        config: dict[str, Any] = {
            "Image": image.container_image,
            "Cmd": KEEPALIVE_CMD,
            "Env": [f"{k}={v}" for k, v in env.items()],
            "Labels": sandbox_labels(job, task.name, labels),
            "HostConfig": self._host_config(limits, network),
            "Tty": False,
            "OpenStdin": False,
        }
        if envcfg.workdir:
            config["WorkingDir"] = envcfg.workdir
        mode = self.exec_channel if exec_channel is None else exec_channel
        if mode == "eager" and self.helper_as_main:
            config.update(MAIN_HELPER_CONFIG)
            config["HostConfig"]["LogConfig"] = {"Type": "none"}
            mode = "main"
        async with self.start_slots:
            return await self._create_and_start(
                task, image, name, config, network, inject_ca, ca, envcfg, mode
            )

    async def _create_and_start(
        self,
        task: Task,
        image: ImageRef,
        name: str,
        config: dict[str, Any],
        network: str,
        inject_ca: bool,
        ca: bytes | None,
        envcfg: Any,
        mode: bool | Literal["eager", "main"],
    ) -> DockerSandbox:
        # Cancelled while the engine creates the container, we would never learn its id: let
        # the create finish, then remove what it made.
        create = asyncio.ensure_future(self.docker.containers.create(config, name=name))
        try:
            container = await self.bounded(f"creating container {name}", asyncio.shield(create))
        except DockerError as exc:
            if _network_gone(exc) and network != "none":
                raise _NetworkGoneError(str(exc.message)) from exc
            raise SandboxError(
                f"{task.name}: cannot create container from {image.tag}: {exc.message}"
            ) from exc
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                made = await create
                await asyncio.shield(force_remove(made))
            raise
        sandbox = self.sandbox_class(self, container, name, image.container_image, task.name)
        sandbox._create_config = config
        try:
            image_workdir, image_user = await self._image_defaults(image.container_image)
            sandbox.workdir = envcfg.workdir or image_workdir
            sandbox._default_user = image_user
            if inject_ca:
                assert ca is not None
                await sandbox._put_files("/", {CA_CONTAINER_PATH.lstrip("/"): (ca, 0o644)})
            if mode == "main":
                # The helper is the container's own command: attach to its stdin and stdout
                # before it starts (nothing it writes is missed), then wait for its hello.
                sandbox._channel_mode = "eager"
                await sandbox._attach_main_channel(
                    lambda: self.bounded(f"starting container {name}", container.start())
                )
            else:
                await self.bounded(f"starting container {name}", container.start())
                sandbox._channel_mode = mode
                if mode == "eager":
                    await sandbox._start_channel()
        except BaseException as exc:
            await sandbox.stop()
            if isinstance(exc, DockerError):
                if _network_gone(exc) and network != "none":
                    # Another process removed the shared network between our check and the
                    # start (its gc saw it unused): make it again, once.
                    raise _NetworkGoneError(str(exc.message)) from exc
                raise SandboxError(
                    f"{task.name}: cannot start container {name}: {exc.message}"
                ) from exc
            raise
        return sandbox

    # -- snapshots and garbage collection ---------------------------------------------------

    async def _commit(
        self, source: DockerSandbox, repo: str, tag: str, changes: Sequence[str]
    ) -> None:
        """Commit `source`'s files as image repo:tag (paused while it is taken)."""
        await source.container.commit(repository=repo, tag=tag, changes=changes, pause=True)

    async def start_snapshot(self, source: DockerSandbox, role: str = "verifier") -> DockerSandbox:
        """A new container of `source`'s files as they are now, for a verifier no process of
        `source` can reach.

        The files are committed to an image (the engine pauses `source` while it takes them);
        the new container runs from it with `source`'s limits, environment, user and working
        directory, in `source`'s network namespace (services `source` left running answer on
        localhost) but in mount and process namespaces of its own: nothing still running in
        `source` can read or write its files, its /tests or its reward. Its stop() removes it
        and the image; `gc` removes both after a crash (labels `ttgen.snapshot`, `ttgen.role`)."""
        async with self.start_slots:
            return await self._snapshot(source, role)

    async def _snapshot(self, source: DockerSandbox, role: str) -> DockerSandbox:
        cfg = source._create_config
        if cfg is None:
            raise SandboxError(f"{source.name}: only containers ttgen started can be snapshotted")
        labels = dict(cfg.get("Labels") or {})
        repo = f"ttgen-snapshot/{_SLUG.sub('-', source.name.lower()).strip('-.')[:100] or 'c'}"
        tag = uuid.uuid4().hex[:12]
        image = f"{repo}:{tag}"
        try:
            await self._commit(
                source,
                repo,
                tag,
                [
                    f"LABEL {LABEL_SNAPSHOT}={labels.get(LABEL_JOB, 'adhoc')}",
                    f"LABEL {LABEL_OWNER}={owner_id()}",
                ],
            )
        except DockerError as exc:
            raise SandboxError(
                f"{source.name}: cannot snapshot the container: {exc.message}"
            ) from exc
        config = {
            **cfg,
            **SNAPSHOT_KEEPALIVE,
            "Image": image,
            "Labels": {**labels, LABEL_ROLE: role, LABEL_OWNER: owner_id()},
            "HostConfig": {**cfg["HostConfig"], "NetworkMode": f"container:{source.id}"},
        }
        name = f"{source.name}-{role}"[:200]
        create = asyncio.ensure_future(self.docker.containers.create(config, name=name))
        try:
            container = await self.bounded(f"creating container {name}", asyncio.shield(create))
        except BaseException as exc:
            with contextlib.suppress(Exception):
                if isinstance(exc, asyncio.CancelledError):
                    made = await create
                    await asyncio.shield(force_remove(made))
                await asyncio.shield(self.docker.images.delete(image, force=True))
            if isinstance(exc, DockerError):
                raise SandboxError(
                    f"{source.name}: cannot create the {role} container: {exc.message}"
                ) from exc
            raise
        sandbox = self.sandbox_class(self, container, name, image, source.task)
        sandbox.workdir = source.workdir
        sandbox._default_user = source._default_user
        sandbox._owned_image = image
        try:
            await self.bounded(f"starting container {name}", container.start())
        except BaseException as exc:
            await asyncio.shield(sandbox.stop())
            if isinstance(exc, DockerError):
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
        containers = await self.docker.containers.list(all=True, filters=filters)
        removed: list[str] = []
        host = socket.gethostname()

        async def remove(c: Any) -> None:
            try:
                async with self.remove_slots:
                    # False: someone else removes it already
                    gone = await self.bounded(
                        f"removing container {c.id[:12]}", asyncio.shield(force_remove(c))
                    )
                if gone:
                    names = c.data.get("Names") or [c.id]
                    removed.append(names[0].lstrip("/"))
            except DockerError as exc:
                raise SandboxError(f"cannot remove container {c.id[:12]}: {exc.message}") from exc

        doomed = [
            c
            for c in containers
            # unless its process runs, or it is another machine's on a shared engine
            if everything
            or job is not None
            or not owner_alive(c.data.get("Labels") or {}, host)
        ]
        # as many at once as admission control allows (a crashed 1,000-trial job leaves 1,000)
        await asyncio.gather(*(remove(c) for c in doomed))
        await self._gc_snapshots(job, everything, host)
        networks: list[str] = []
        if keep_network:
            return {"containers": removed, "networks": networks}
        try:
            for found in await self._networks_named(NETWORK_NAME):
                net = await self.docker.networks.get(found["Id"])
                info = await net.show()
                if not info.get("Containers"):
                    await self.bounded(f"removing network {NETWORK_NAME}", net.delete())
                    networks.append(NETWORK_NAME)
                    self._network_ready = None
        except (DockerError, SandboxError):
            pass
        return {"containers": removed, "networks": networks}

    async def _gc_snapshots(self, job: str | None, everything: bool, host: str) -> None:
        """Remove the snapshot images (verifier containers) that crashed runs left: those of
        `job`, or whose process is gone. An image still in use is left."""
        label = LABEL_SNAPSHOT if job is None else f"{LABEL_SNAPSHOT}={job}"
        try:
            images = await self.docker.images.list(filters={"label": [label]})
        except DockerError:
            return
        for img in images:
            labels = img.get("Labels") or {}
            if not everything and job is None and owner_alive(labels, host):
                continue
            for ref in img.get("RepoTags") or [img["Id"]]:
                with contextlib.suppress(DockerError):
                    await self.docker.images.delete(ref, force=False)


__all__ = [
    "BUILD_LOG_TAIL_LINES",
    "EXEC_MARKER",
    "FAST_COPY_MAX_BYTES",
    "KEEPALIVE_CMD",
    "LABEL_CA",
    "LABEL_JOB",
    "LABEL_MANAGED",
    "LABEL_OWNER",
    "LABEL_ROLE",
    "LABEL_SNAPSHOT",
    "LABEL_TASK",
    "NETWORK_NAME",
    "DockerBackend",
    "DockerSandbox",
    "ImageRef",
    "build_failure",
    "container_name",
    "owner_id",
    "pid_alive",
    "resolve_env",
]
