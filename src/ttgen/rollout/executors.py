"""Where a job's trials run: in this process (LocalExecutor) or on a Ray cluster (RayExecutor).

The Job keeps everything that makes a job a job (the folder and its lock, config.json, what is
pending, retries, summaries, result.json, trials.jsonl, progress events); an executor only runs
one trial into `JOB/<trial>/` and returns its result, never raising for a failure of the task,
agent or environment.

    LocalExecutor   one sandbox backend in this process (the job's `backend`, else the
                    configured one): `Trial(...).run()`, as always
    RayExecutor     one NodeRunner actor per Ray node, each with its own backend of the same
                    name talking to that node's engine (ray_executor.py, ray_node.py; archives
                    of task and trial folders in trial_archive.py)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ttgen.errors import ConfigError
from ttgen.formats.trial import RetryRecord, TrialResult
from ttgen.rollout.pacing import AgentPacer
from ttgen.rollout.trial import Trial, TrialSpec
from ttgen.sandbox import SandboxBackend, open_backend

if TYPE_CHECKING:
    from ttgen.rollout.job import JobOptions

# The Ray side (and the archives it ships) is imported when first named: a local job, one
# trial from the command line, never pays for it.
_LAZY = {
    "RAY_MISSING": "ttgen.rollout.ray_executor",
    "NodeCallError": "ttgen.rollout.ray_executor",
    "RayExecutor": "ttgen.rollout.ray_executor",
    "import_ray": "ttgen.rollout.ray_executor",
    "shipped_env": "ttgen.rollout.ray_executor",
    "NodeRunner": "ttgen.rollout.ray_node",
    "settings_from_dict": "ttgen.rollout.ray_node",
    "settings_to_dict": "ttgen.rollout.ray_node",
    "MAX_TRIAL_ARCHIVE_BYTES": "ttgen.rollout.trial_archive",
    "pack_task": "ttgen.rollout.trial_archive",
    "pack_trial": "ttgen.rollout.trial_archive",
    "record_failure": "ttgen.rollout.trial_archive",
    "unpack_trial": "ttgen.rollout.trial_archive",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


Log = Callable[[str], None]


class TrialExecutor(Protocol):
    """Runs trials of one job. `start` before the first trial, `close` at the end."""

    name: str

    async def start(self, job_id: str, log: Log, *, fresh: bool = False) -> list[str]:
        """Check the engine(s) and remove containers an earlier run of the job left behind;
        return their names. `fresh`: the job has never run (its id is new), so nothing of it
        can be left anywhere and there is nothing to look for."""
        ...

    def capacity(self, requested: int) -> int:
        """How many trials the job should keep in flight (`requested`: its n_concurrent);
        ConfigError when the host(s) cannot keep them (open files, processes), saying what to
        change. Called before the job's first trial."""
        ...

    async def run_trial(
        self,
        spec: TrialSpec,
        trial_dir: Path,
        *,
        job_id: str,
        options: JobOptions,
        history: list[RetryRecord],
        known_build_error: str | None,
    ) -> TrialResult:
        """Run one trial into `trial_dir` (absent on entry); CancelledError after recording
        `cancelled` there when cancelled."""
        ...

    async def cleanup(self, job_id: str) -> None:
        """After a cancellation: remove whatever containers of the job are left."""
        ...

    async def close(self) -> None: ...


def make_executor(options: JobOptions, backend: SandboxBackend | None = None) -> TrialExecutor:
    """The executor of `options.executor`; trials use `backend` (local) or the backend named by
    `options.backend` (None: the configured one), on every Ray node alike."""
    if options.executor == "local":
        return LocalExecutor(backend, name=options.backend)
    if options.executor == "ray":
        from ttgen.rollout.ray_executor import RayExecutor

        settings = backend.settings if backend is not None else None
        name = options.backend or (backend.name if backend is not None else None)
        return RayExecutor(
            address=options.ray_address, per_node=options.per_node, settings=settings, backend=name
        )
    raise ConfigError(f"unknown executor {options.executor!r}: use local or ray")


# -- local --------------------------------------------------------------------------------------

# What one trial in flight holds on this host, measured with Terminus 2 at 1,000 trials: open
# files in this process (its exec helper's stream to the engine, the model connection, a
# transient engine call or file) and processes/threads (the engine's shim, the container's init,
# keep-alive, exec helper, tmux server, shell, pane logger, transient commands).
FILES_PER_TRIAL = 4
FILES_BASE = 256
TASKS_PER_TRIAL = 24


def check_host_capacity(n: int) -> None:
    """Make room for `n` trials in flight here: the soft open-files limit is raised (up to the
    hard one) to what they need; ConfigError when the hard limit, or the kernel's room for more
    processes, is too small, naming the setting to change."""
    import resource

    need = FILES_BASE + FILES_PER_TRIAL * n
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            raise ConfigError(
                f"{n} concurrent trials need about {need} open files in this process, but it "
                f"may open at most {hard} (`ulimit -Hn`). Raise the limit (`ulimit -n {need}` "
                f"as root, LimitNOFILE={need} for a systemd service, nofile in "
                "/etc/security/limits.conf) or lower --concurrency."
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    room = _task_room()
    if room is not None and room < TASKS_PER_TRIAL * n:
        raise ConfigError(
            f"{n} concurrent trials need about {TASKS_PER_TRIAL * n} more processes and threads "
            f"on this host, but the kernel allows only {room} more (kernel.pid_max and "
            "kernel.threads-max, less what runs now). Raise them (`sysctl -w "
            f"kernel.pid_max={4 * TASKS_PER_TRIAL * n}`) or lower --concurrency."
        )


def _task_room() -> int | None:
    """How many more processes/threads the kernel allows now (None: cannot tell)."""
    try:
        limit = min(
            int(Path("/proc/sys/kernel/pid_max").read_text()),
            int(Path("/proc/sys/kernel/threads-max").read_text()),
        )
        running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[1])
    except (OSError, ValueError, IndexError):
        return None
    return limit - running


class LocalExecutor:
    """Trials in this process, against one sandbox backend: the one given, else `name`'s (None:
    the configured backend), opened by start()."""

    name = "local"

    def __init__(self, backend: SandboxBackend | None = None, *, name: str | None = None) -> None:
        self._given = backend
        self.engine_note: str | None = None
        self.backend: SandboxBackend | None = backend
        self.backend_name = name
        self.pacer: AgentPacer | None = None

    async def start(self, job_id: str, log: Log, *, fresh: bool = False) -> list[str]:
        if self.backend is None:
            self.backend = open_backend(self.backend_name)
        version = await self.backend.ping()
        # a known problem of this engine's version, for the job's log once the run has started
        caveat = getattr(self.backend, "engine_caveat", None)
        self.engine_note = caveat(version) if caveat and isinstance(version, dict) else None
        settings = self.backend.settings
        self.pacer = AgentPacer(settings.engine_slots) if settings.agent_pacing else None
        if fresh:
            return []
        gone = await self.backend.gc(job=job_id, keep_network=True)
        return gone["containers"]

    def capacity(self, requested: int) -> int:
        check_host_capacity(requested)
        return requested

    async def run_trial(
        self,
        spec: TrialSpec,
        trial_dir: Path,
        *,
        job_id: str,
        options: JobOptions,
        history: list[RetryRecord],
        known_build_error: str | None,
    ) -> TrialResult:
        assert self.backend is not None, "start() first"
        trial = Trial(
            spec,
            self.backend,
            trial_dir,
            job_id=job_id,
            timeouts=options.timeouts,
            force_build=options.force_build,
            verifier_env=options.verifier_env,
            verifier_isolation=options.verifier_isolation,
            history=history,
            known_build_error=known_build_error,
            pacer=self.pacer,
        )
        return await trial.run()

    async def cleanup(self, job_id: str) -> None:
        if self.backend is not None:
            await self.backend.gc(job=job_id, keep_network=True)

    async def close(self) -> None:
        if self.pacer is not None:
            await self.pacer.close()
        if self._given is None and self.backend is not None:
            await self.backend.close()
            self.backend = None


__all__ = [
    "LocalExecutor",
    "TrialExecutor",
    "check_host_capacity",
    "make_executor",
    *_LAZY,
]
