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
from typing import TYPE_CHECKING, Protocol

from ttgen.errors import ConfigError
from ttgen.formats.trial import RetryRecord, TrialResult
from ttgen.rollout.ray_executor import (
    RAY_MISSING,
    NodeCallError,
    RayExecutor,
    import_ray,
    shipped_env,
)
from ttgen.rollout.ray_node import NodeRunner, settings_from_dict, settings_to_dict
from ttgen.rollout.trial import Trial, TrialSpec
from ttgen.rollout.trial_archive import (
    MAX_TRIAL_ARCHIVE_BYTES,
    pack_task,
    pack_trial,
    record_failure,
    unpack_trial,
)
from ttgen.sandbox import SandboxBackend, open_backend

if TYPE_CHECKING:
    from ttgen.rollout.job import JobOptions

Log = Callable[[str], None]


class TrialExecutor(Protocol):
    """Runs trials of one job. `start` before the first trial, `close` at the end."""

    name: str

    async def start(self, job_id: str, log: Log) -> list[str]:
        """Check the engine(s) and remove containers an earlier run of the job left behind;
        return their names."""
        ...

    def capacity(self, requested: int) -> int:
        """How many trials the job should keep in flight (`requested`: its n_concurrent)."""
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
        settings = backend.settings if backend is not None else None
        name = options.backend or (backend.name if backend is not None else None)
        return RayExecutor(
            address=options.ray_address, per_node=options.per_node, settings=settings, backend=name
        )
    raise ConfigError(f"unknown executor {options.executor!r}: use local or ray")


# -- local --------------------------------------------------------------------------------------


class LocalExecutor:
    """Trials in this process, against one sandbox backend: the one given, else `name`'s (None:
    the configured backend), opened by start()."""

    name = "local"

    def __init__(self, backend: SandboxBackend | None = None, *, name: str | None = None) -> None:
        self._given = backend
        self.backend: SandboxBackend | None = backend
        self.backend_name = name

    async def start(self, job_id: str, log: Log) -> list[str]:
        if self.backend is None:
            self.backend = open_backend(self.backend_name)
        await self.backend.ping()
        gone = await self.backend.gc(job=job_id, keep_network=True)
        return gone["containers"]

    def capacity(self, requested: int) -> int:
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
        )
        return await trial.run()

    async def cleanup(self, job_id: str) -> None:
        if self.backend is not None:
            await self.backend.gc(job=job_id, keep_network=True)

    async def close(self) -> None:
        if self._given is None and self.backend is not None:
            await self.backend.close()
            self.backend = None


__all__ = [
    "MAX_TRIAL_ARCHIVE_BYTES",
    "RAY_MISSING",
    "LocalExecutor",
    "NodeCallError",
    "NodeRunner",
    "RayExecutor",
    "TrialExecutor",
    "import_ray",
    "make_executor",
    "pack_task",
    "pack_trial",
    "record_failure",
    "settings_from_dict",
    "settings_to_dict",
    "shipped_env",
    "unpack_trial",
]
