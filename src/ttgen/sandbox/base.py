"""The sandbox protocol: what everything above sandbox/ may use, whatever runs the containers.

    Sandbox           a running task environment as agents use it: exec, files, stop
    ContainerSandbox  what a trial needs besides: the container's state, the processes an agent
                      left running, its file changes, OOM kills, a trusted exec channel
    ImageStore        images for tasks: ensure (build once per content, or use a prebuilt one),
                      build a prepared context, pull, import a root file system
    SandboxBackend    an engine: images, start a sandbox (and a snapshot of one for the
                      verifier), garbage collection of a job's or dead runs' leftovers

A backend is opened by name (`ttgen.sandbox.open_backend`, registry in backends.py); the Docker
backend (docker.py) is the reference, Podman (podman.py) the second. Backends share the labels,
the limits and the helpers defined here, so a container started by one is recognised by the gc
of another pointed at the same engine.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import uuid
from collections.abc import AsyncIterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ttgen.sandbox.context import BuildContext
    from ttgen.settings import Settings
    from ttgen.task import Task

# Per stream; more is cut in the middle (head and tail kept) and counted.
DEFAULT_MAX_OUTPUT_BYTES = 4 * 1024 * 1024
# The listing `ContainerSandbox.tree_digest` gives, as a command run in the folder (where a
# sandbox has no faster way): what test.sh may not change while it runs.
TREE_DIGEST_CMD = (
    "find . -type f ! -path '*/__pycache__/*' ! -path '*/.pytest_cache/*' "
    "-exec sha256sum {} + | sort -k 2"
)

# Labels on every container (and snapshot image) ttgen makes, whatever the backend.
LABEL_MANAGED = "ttgen.managed"
LABEL_JOB = "ttgen.job"
LABEL_OWNER = "ttgen.owner"  # "<hostname>:<pid>" of the process that started the container
LABEL_TASK = "ttgen.task"
LABEL_CA = "ttgen.ca"
LABEL_CA_OF = "ttgen.ca-of"  # on a prebuilt image plus the CA bundle: the image it adds to
LABEL_SNAPSHOT = "ttgen.snapshot"  # on a snapshot image (verifier containers): its job
LABEL_ROLE = "ttgen.role"  # "verifier" on a container started from a snapshot

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_NAME_BAD = re.compile(r"[^a-zA-Z0-9_.-]+")


def owner_id() -> str:
    """The value of LABEL_OWNER for this process."""
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
    # The image containers start from when it is not `tag` itself: a prebuilt image with the
    # extra CA bundle added as one layer (built once; `tag` stays the task's image).
    runs_from: str | None = None

    @property
    def container_image(self) -> str:
        return self.runs_from or self.tag


@dataclass(frozen=True)
class Limits:
    """What one container may use. Every backend applies all of them (or refuses to start)."""

    cpus: float
    memory_mb: int
    pids: int
    network: bool  # False: no network at all (task.toml network_mode = "no-network")


def limits_for(
    task: Task, settings: Settings, *, cpus: float | None = None, memory_mb: int | None = None
) -> Limits:
    """The task's limits: explicit values, else task.toml's, else the configured defaults."""
    env = task.config.environment
    return Limits(
        cpus=float(cpus or env.cpus or settings.default_cpus),
        memory_mb=int(memory_mb or env.memory_mb or settings.default_memory_mb),
        pids=settings.pids_limit,
        network=bool(env.allow_internet),
    )


def sandbox_labels(job: str, task: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The labels of a container started for `task` in `job` by this process."""
    return {
        LABEL_MANAGED: "true",
        LABEL_JOB: job,
        LABEL_OWNER: owner_id(),
        LABEL_TASK: task,
        **(extra or {}),
    }


@dataclass
class ExecResult:
    """What one command did. `exit_code` is None when it timed out and was killed."""

    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool = False
    duration_sec: float = 0.0
    stdout_omitted_bytes: int = 0
    stderr_omitted_bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@runtime_checkable
class Sandbox(Protocol):
    """A running task environment (what agents get)."""

    id: str
    workdir: str | None

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
        """Run `command` (a string goes through ``sh -c``) and wait for it, up to `timeout`.

        On timeout the whole process tree the command started is killed.
        """
        ...

    async def upload_file(self, local: str | os.PathLike[str], remote: str) -> None: ...

    async def upload_dir(self, local: str | os.PathLike[str], remote: str) -> None: ...

    async def write_file(self, remote: str, content: bytes | str, mode: int = 0o644) -> None: ...

    async def download_file(self, remote: str, local: str | os.PathLike[str]) -> Path: ...

    async def download_dir(self, remote: str, local: str | os.PathLike[str]) -> Path: ...

    async def read_file(self, remote: str) -> bytes: ...

    async def stop(self) -> None:
        """Stop and remove the environment. Safe to call twice."""
        ...


@runtime_checkable
class ContainerSandbox(Sandbox, Protocol):
    """A sandbox as a trial drives it: `Sandbox` plus what the verifier phase needs."""

    name: str  # the container's name (trial.log, result.json)
    image: str
    task: str

    async def read_file(self, remote: str, max_bytes: int | None = None) -> bytes:
        """A file's bytes; FileNotFoundError, IsADirectoryError, TooLargeError past `max_bytes`."""
        ...

    async def download_dir(
        self, remote: str, local: str | os.PathLike[str], max_bytes: int | None = None
    ) -> Path:
        """Copy folder `remote` into `local`; entries escaping `local` are skipped; more than
        `max_bytes` in all raises TooLargeError and copies nothing."""
        ...

    async def state(self) -> dict[str, Any]:
        """The engine's State: Running, Status, ExitCode, OOMKilled, Error (Docker's names)."""
        ...

    def oom_kills(self) -> int | None:
        """Processes the kernel's OOM killer killed in the container; None when unknown."""
        ...

    async def foreign_processes(self) -> list[str] | None:
        """What the agent left running ("pid command" lines) besides ttgen's own processes;
        None when it cannot be listed from here (then assume something runs)."""
        ...

    async def freeze_idle_terminal(self, harness: Sequence[str] = ()) -> list[str] | None:
        """When all the agent left running is an idle terminal (a tmux server whose shells sit
        at their prompt, and harness helpers whose command lines start with one of `harness`),
        stop its processes (SIGSTOP) so that nothing in the container runs any more; the
        stopped processes as "pid command" lines. None, with nothing changed, otherwise or when
        it cannot be done from here."""
        ...

    async def trusted_exec_channel(self) -> None:
        """Make sure later commands go through a channel no agent process could have touched."""
        ...

    async def changes(self) -> list[dict[str, Any]]:
        """The container's file changes against its image: [{"Path", "Kind": 0 modified |
        1 added | 2 deleted}] (`docker diff`)."""
        ...

    async def tree_digest(self, remote: str) -> str:
        """A sha256 per regular file under folder `remote` (`TREE_DIGEST_CMD`'s listing:
        "<hex>  ./<path>" lines sorted by path, caches of Python and pytest left out); empty
        when the folder is not there."""
        ...


@runtime_checkable
class ImageStore(Protocol):
    """Images for tasks, on one engine."""

    settings: Settings
    builds: int  # images built by this backend object (tests and reports)

    async def image_exists(self, ref: str) -> dict[str, Any] | None:
        """The engine's inspect of `ref` (Docker's shape: Id, Config, ...), None if absent."""
        ...

    async def pull(self, ref: str) -> bool:
        """Pull `ref` when the settings allow; True when it is now present."""
        ...

    async def ensure_image(
        self, task: Task, *, force_build: bool = False, build_timeout: float | None = None
    ) -> ImageRef:
        """The task's image, built at most once per content (concurrent requests share it)."""
        ...

    async def build(
        self, task: Task, *, force: bool = False, timeout: float | None = None
    ) -> ImageRef: ...

    def build_lock(self, tag: str) -> asyncio.Lock:
        """The lock under which `tag` is checked and built."""
        ...

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
        """Build a prepared context as `tag` (caller holds `build_lock(tag)`); the seconds."""
        ...

    async def import_rootfs(
        self, chunks: AsyncIterable[bytes], tag: str, changes: Sequence[str] = ()
    ) -> str:
        """Import a root file system (a tar stream) as image `tag` with Dockerfile `changes`
        (ENV, WORKDIR, CMD); its image id."""
        ...


@runtime_checkable
class SandboxBackend(ImageStore, Protocol):
    """One engine and the state all sandboxes of a process share on it."""

    name: str  # the registry name: "docker", "podman"

    async def __aenter__(self) -> SandboxBackend: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def ping(self) -> dict[str, Any]:
        """The engine's version; EngineUnavailableError (a ConfigError) when it does not answer."""
        ...

    async def close(self) -> None: ...

    def limits(
        self, task: Task, *, cpus: float | None = None, memory_mb: int | None = None
    ) -> Limits:
        """What a container of `task` gets (see `limits_for`)."""
        ...

    async def start(
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
    ) -> ContainerSandbox:
        """A fresh container of `task` (its image ensured first unless given), with the
        task's limits and `sandbox_labels(job, task, labels)`."""
        ...

    async def start_snapshot(
        self, source: ContainerSandbox, role: str = "verifier"
    ) -> ContainerSandbox:
        """A new container of `source`'s files as they are now, in `source`'s network
        namespace but with its own mount and pid namespaces; its stop() removes its image."""
        ...

    async def containers(self, *, job: str | None = None) -> list[str]:
        """Names of the ttgen containers on the engine (of `job` only, when given)."""
        ...

    async def gc(
        self, *, job: str | None = None, everything: bool = False, keep_network: bool = False
    ) -> dict[str, list[str]]:
        """Remove leftovers: containers (and snapshot images) whose owning process is gone, or
        all of `job`, or `everything`; the shared network when unused unless `keep_network`.
        Returns {"containers": names, "networks": names}."""
        ...

    async def remove_container(self, ref: str) -> None:
        """Remove one container by id or name (gone already is fine)."""
        ...

    def interactive_command(self, container: str, argv: Sequence[str]) -> list[str]:
        """The command line that runs `argv` in `container` on a terminal (`env shell`)."""
        ...
