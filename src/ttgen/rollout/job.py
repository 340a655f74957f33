"""A job: many trials with bounded concurrency, retries, and resume from the job folder.

    JOB/
      config.json     job id, what it runs (agents), options, one entry per run of the job
      result.json     JobResult: stats (outcomes, mean reward, pass@k, tokens), rewritten while
                      the job runs (every few seconds) and at the end
      trials.jsonl    one summary line per finished trial (written at the end of each run)
      job.log         one line per event
      .lock           held (flock) by the process running the job: two runs never overlap
      <trial>/        one folder per trial (see trial.py)

The trial folders are the ledger. A trial is done when its result.json is valid (it is written
last, atomically); re-running the same command keeps those, removes the folders of trials that
never finished, removes the containers a dead run left behind (found by the job's label), and
runs the rest. Trials that ended in an infrastructure outcome (and cancelled ones) are run again
unless `rerun_errors` is off. Nothing is duplicated: a trial's folder name is fixed by its task
and attempt.

Only running one trial is delegated, to an executor (executors.py): this process's sandbox backend
(local: Docker or Podman, `JobOptions.backend`) or the nodes of a Ray cluster (ray); everything
above stays here, on the driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import sys
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ttgen import __version__
from ttgen.errors import BuildInfraError, ConfigError, EngineStuckError, TaskError
from ttgen.formats.trial import (
    INFRA_OUTCOMES,
    RETRYABLE_OUTCOMES,
    AgentSpec,
    Outcome,
    RetryRecord,
    TrialResult,
    now,
    read_trial_result,
    redact,
    write_json_atomic,
)
from ttgen.rollout.executors import TrialExecutor, make_executor
from ttgen.rollout.job_stats import TrialSummary, compute_stats
from ttgen.rollout.trial import TimeoutPolicy, TrialSpec, raise_if_cancel_requested
from ttgen.sandbox import SandboxBackend, check_backend
from ttgen.task import Task

RESULT_WRITE_INTERVAL_SEC = 5.0
_SLUG_BAD = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class JobOptions:
    n_concurrent: int = 4
    retries: int = 2  # extra runs of a trial that ended in an infrastructure outcome
    retry_min_wait_sec: float = 1.0
    retry_max_wait_sec: float = 60.0
    rerun_errors: bool = True  # on resume, run infrastructure-failed trials again
    timeouts: TimeoutPolicy = field(default_factory=TimeoutPolicy)
    force_build: bool = False
    verifier_env: dict[str, str] = field(default_factory=dict)
    # "snapshot": the verifier runs in a copy of the agent's container that nothing the agent
    # left running can reach (rewards cannot be forged); "shared": in the agent's container
    # itself, as Harbor does (for tests that inspect the agent's processes).
    verifier_isolation: str = "snapshot"
    # Where trials run (executors.py): "local" (this process's engine) or "ray" (the
    # nodes of a Ray cluster at `ray_address`, `per_node` trials at a time on each).
    executor: str = "local"
    ray_address: str | None = None
    per_node: int | None = None
    # The sandbox backend trials run on ("docker", "podman"), here and on every Ray node;
    # None: the configured one (ttgen.toml `backend`, TTGEN_BACKEND).
    backend: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["timeouts"] = dict(self.timeouts.__dict__)
        return d


def check_executor(executor: str, address: str | None, per_node: int | None) -> None:
    """Where trials run: local, or ray (with its address / per_node); ConfigError if not."""
    if executor not in ("local", "ray"):
        raise ConfigError(f"--executor {executor!r}: use local or ray")
    if executor == "local" and (address is not None or per_node is not None):
        raise ConfigError("--address and --per-node need --executor ray")
    if executor == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise ConfigError("--executor ray needs Ray: pip install 'terminal-task-gen[ray]'")


def job_options(
    *,
    concurrency: int = 4,
    retries: int = 2,
    keep_errors: bool = False,
    timeout_multiplier: float = 1.0,
    build_timeout_multiplier: float | None = None,
    agent_setup_timeout_multiplier: float | None = None,
    agent_timeout_multiplier: float | None = None,
    verifier_timeout_multiplier: float | None = None,
    agent_timeout: float | None = None,
    verifier_timeout: float | None = None,
    force_build: bool = False,
    verifier_env: Mapping[str, str] | None = None,
    executor: str = "local",
    address: str | None = None,
    per_node: int | None = None,
    verifier_isolation: str = "snapshot",
    backend: str | None = None,
) -> JobOptions:
    """The one translation from what a user sets (the CLI's job flags, or a PIPELINE.yaml
    stage's keys, named alike) to JobOptions; ConfigError names the setting that is wrong."""
    check_executor(executor, address, per_node)
    if backend is not None:
        check_backend(backend)
    if verifier_isolation not in ("snapshot", "shared"):
        raise ConfigError(
            f"verifier isolation must be snapshot or shared, not {verifier_isolation!r}"
        )
    if concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, not {concurrency}")
    return JobOptions(
        n_concurrent=concurrency,
        retries=retries,
        rerun_errors=not keep_errors,
        timeouts=TimeoutPolicy(
            multiplier=timeout_multiplier,
            build_multiplier=build_timeout_multiplier,
            agent_setup_multiplier=agent_setup_timeout_multiplier,
            agent_multiplier=agent_timeout_multiplier,
            verifier_multiplier=verifier_timeout_multiplier,
            agent_override_sec=agent_timeout,
            verifier_override_sec=verifier_timeout,
        ),
        force_build=force_build,
        verifier_env=dict(verifier_env or {}),
        verifier_isolation=verifier_isolation,
        executor=executor,
        ray_address=address,
        per_node=per_node,
        backend=backend,
    )


class JobEvents(Protocol):
    """What a job tells its caller (the CLI's progress bar)."""

    def job_started(self, job: Job, n_total: int, finished: list[TrialSummary]) -> None: ...

    def trial_started(self, spec: TrialSpec) -> None: ...

    def trial_retrying(self, spec: TrialSpec, result: TrialResult, wait_sec: float) -> None: ...

    def trial_finished(self, result: TrialResult, summary: TrialSummary) -> None: ...


class _NoEvents:
    def job_started(self, job: Job, n_total: int, finished: list[TrialSummary]) -> None:
        pass

    def trial_started(self, spec: TrialSpec) -> None:
        pass

    def trial_retrying(self, spec: TrialSpec, result: TrialResult, wait_sec: float) -> None:
        pass

    def trial_finished(self, result: TrialResult, summary: TrialSummary) -> None:
        pass


# -- building the trial list ----------------------------------------------------------------------


def slug(text: str, limit: int = 40) -> str:
    return _SLUG_BAD.sub("-", text).strip("-.")[:limit] or "task"


def task_checksum(path: Path) -> str:
    """sha256 over every file of a task (relative path, mode bit x, content)."""
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts):
            h.update(str(p.relative_to(path)).encode() + b"\0")
            h.update(b"x" if os.access(p, os.X_OK) else b"-")
            with p.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            h.update(b"\0")
    return h.hexdigest()


def task_slugs(tasks: Sequence[Task]) -> dict[int, str]:
    """A folder-safe, stable, unique short name per task (index → slug)."""
    base = {i: slug(t.name.rsplit("/", 1)[-1]) for i, t in enumerate(tasks)}
    counts: dict[str, int] = {}
    for s in base.values():
        counts[s] = counts.get(s, 0) + 1
    out = {}
    for i, s in base.items():
        if counts[s] > 1:  # same short name: tell them apart by full name and path
            key = f"{tasks[i].name}\0{tasks[i].path}"
            s = f"{s}-{hashlib.sha1(key.encode()).hexdigest()[:6]}"
        out[i] = s
    return out


def rollout_specs(tasks: Sequence[Task], agent: AgentSpec, attempts: int) -> list[TrialSpec]:
    """tasks x attempts, attempt-major (every task's first attempt before any second one), so
    a job stopped early still covers all tasks."""
    slugs = task_slugs(tasks)
    sums = {i: task_checksum(t.path) if t.path else None for i, t in enumerate(tasks)}
    return [
        TrialSpec(
            task=t,
            trial_name=f"{slugs[i]}__{a}",
            agent=agent,
            attempt=a,
            task_checksum=sums[i],
            source=_source(t),
        )
        for a in range(attempts)
        for i, t in enumerate(tasks)
    ]


def build_retryable(result: TrialResult) -> bool:
    """A failed build is worth another try only when its log showed infrastructure (the engine,
    the network, a registry): BuildInfraError. The task's own failures fail the same way again."""
    info = result.exception_info
    return info is not None and info.exception_type == BuildInfraError.__name__


def _source(task: Task) -> str | None:
    src = getattr(task.config, "source", None)
    if isinstance(src, str) and src:
        return src
    meta = task.config.metadata or {}
    value = meta.get("source") if isinstance(meta, dict) else None
    return str(value) if value else None


def load_tasks(paths: Iterable[Path]) -> tuple[list[Task], list[dict[str, str]]]:
    """Load task folders; a bad one is reported (path + problem) and skipped."""
    tasks, bad = [], []
    for p in paths:
        try:
            tasks.append(Task.load(p))
        except TaskError as exc:
            bad.append({"path": str(p), "file": str(exc.path), "problem": exc.problem})
    return tasks, bad


# -- the job ------------------------------------------------------------------------------------


class JobLockedError(ConfigError):
    pass


def _agents_text(agents: Iterable[Any]) -> str:
    """'agent oracle', 'agents nop, terminus-2 (model=m)': how a user names agents."""
    names = []
    for a in agents:
        if not isinstance(a, dict):
            names.append(str(a))
            continue
        kw = {k: v for k, v in (a.get("kwargs") or {}).items() if "key" not in k.lower()}
        opts = ", ".join(f"{k}={v}" for k, v in sorted(kw.items()))
        names.append(f"{a.get('name')}" + (f" ({opts})" if opts else ""))
    return ("agent " if len(names) == 1 else "agents ") + ", ".join(names)


class Job:
    def __init__(
        self,
        out: Path,
        specs: list[TrialSpec],
        options: JobOptions | None = None,
        *,
        kind: str = "rollout",
        backend: SandboxBackend | None = None,
        events: JobEvents | None = None,
        skipped_tasks: list[dict[str, str]] | None = None,
        executor: TrialExecutor | None = None,
    ) -> None:
        self.out = Path(out)
        self.specs = specs
        self.options = options or JobOptions()
        self.kind = kind
        self._backend = backend
        self._executor = executor
        self.events: JobEvents = events or _NoEvents()
        self.skipped_tasks = skipped_tasks or []
        names = [s.trial_name for s in specs]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ConfigError(f"duplicate trial names in one job: {dup[:5]}")
        self.job_id = ""
        self.summaries: dict[str, TrialSummary] = {}
        self.running = 0
        self.removed_containers: list[str] = []
        self.cleanup_sec = 0.0
        self._build_failures: dict[str, str] = {}
        self._dirty = False
        self._t0 = 0.0
        self._started_at = now()
        self._lock_fd: int | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        """Run every unfinished trial; return the job result (also written to result.json).

        A start that is refused (another kind of job or another agent in the folder, a job
        running elsewhere) or that fails before the first trial (engine unreachable, a dead Ray
        cluster) leaves every file of an existing job as it was, and no folder behind for a new
        one: result.json is rewritten only once the run has really started."""
        self._read_config()  # refuse a mismatched job before touching anything
        executor = self._executor or make_executor(self.options, self._backend)
        created = not self.out.exists()
        self.out.mkdir(parents=True, exist_ok=True)
        try:
            self._acquire_lock()
        except BaseException:
            if created:
                shutil.rmtree(self.out, ignore_errors=True)
            raise
        self._t0 = time.monotonic()
        status = "finished"
        started = False
        try:
            config = self._read_config()  # again, now that this process holds the job
            t0 = time.monotonic()
            self.removed_containers = await executor.start(
                self.job_id, self._log, fresh=config is None
            )
            self.cleanup_sec = time.monotonic() - t0
            pending = self._scan()
            # before anything is written: a host that cannot hold them refuses the run
            n_workers = executor.capacity(min(self.options.n_concurrent, len(pending)) or 1)
            self._write_config(config)
            started = True
            self._log(f"run started (pid {os.getpid()}, {len(self.specs)} trials planned)")
            if note := getattr(executor, "engine_note", None):
                self._log(f"note: {note}")
            if self.removed_containers:
                self._log(
                    f"removed {len(self.removed_containers)} container(s) left by an earlier run "
                    f"in {self.cleanup_sec:.1f}s"
                )
            self.events.job_started(self, len(self.specs), list(self.summaries.values()))
            writer = asyncio.create_task(self._write_periodically())
            try:
                await self._run_pending(executor, pending, n_workers)
            finally:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
        except asyncio.CancelledError:
            status = "cancelled"
            # Every trial removed its container; this catches one caught mid-creation.
            with contextlib.suppress(Exception):
                await asyncio.shield(executor.cleanup(self.job_id))
            raise
        except BaseException:
            status = "failed"
            raise
        finally:
            try:
                if started:
                    result = self._write_result(status)
                    self._write_index()
                    self._log(f"run {status}: {json.dumps(result['stats']['outcomes'])}")
            finally:
                try:
                    await executor.close()
                finally:
                    self._release_lock()
                    if created and not started:
                        shutil.rmtree(self.out, ignore_errors=True)
        return result

    def _acquire_lock(self) -> None:
        path = self.out / ".lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise JobLockedError(
                f"{self.out} is being run by {holder}; wait for it or stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{socket.gethostname()}:{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._lock_fd, 0)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _identity(self) -> dict[str, Any]:
        agents = sorted({s.agent.key for s in self.specs})
        return {"kind": self.kind, "agents": [json.loads(a) for a in agents]}

    def _read_config(self) -> dict[str, Any] | None:
        """The job's config.json (None for a new job); refuses (ConfigError) a folder that holds
        another kind of job or other agents' trials. Reads only."""
        path = self.out / "config.json"
        if not path.exists():
            if not self.job_id:
                self.job_id = str(uuid.uuid4())  # Harbor's job ids are UUIDs
            return None
        identity = self._identity()
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
            self.job_id = config["job_id"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: not a ttgen job config ({exc})") from None
        old = config.get("identity", {})
        if old.get("kind") != identity["kind"]:
            raise ConfigError(
                f"{self.out} holds a {old.get('kind')} job; this is a {identity['kind']}. "
                "Use another --out folder."
            )
        old_agents = {  # jobs of earlier releases wrote secrets: compare without them
            json.dumps({**a, "kwargs": redact(a.get("kwargs") or {})}, sort_keys=True)
            if isinstance(a, dict)
            else json.dumps(a)
            for a in old.get("agents", [])
        }
        new_agents = {json.dumps(a, sort_keys=True) for a in identity["agents"]}
        if not new_agents <= old_agents:
            raise ConfigError(
                f"{self.out} was run with {_agents_text(old.get('agents', []))}; this command "
                f"asks for {_agents_text(json.loads(a) for a in sorted(new_agents - old_agents))}. "
                "Results of different agents do not mix in one job: use another --out folder. "
                "Nothing in it was changed."
            )
        return config

    def _write_config(self, config: dict[str, Any] | None) -> None:
        run_info = {
            "started_at": now().isoformat(),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "argv": sys.argv,
            "ttgen_version": __version__,
            "options": self.options.to_dict(),
        }
        if config is None:
            config = {
                "job_id": self.job_id,
                "created_at": now().isoformat(),
                "identity": self._identity(),
                "runs": [run_info],
            }
        else:
            config.setdefault("runs", []).append(run_info)
        harbor = self._harbor_config()
        rest = {k: v for k, v in config.items() if k not in harbor}
        write_json_atomic(self.out / "config.json", {**harbor, **rest})

    def _harbor_config(self) -> dict[str, Any]:
        """Harbor's JobConfig keys for what this run does (its latest run's options), so that
        Harbor's tools read the job: name, folder, attempts, concurrency, retries, timeout
        multipliers, environment, verifier, agents (with model_name) and task paths."""
        o, t = self.options, self.options.timeouts
        agents, seen = [], set()
        for s in self.specs:
            if s.agent.key not in seen:
                seen.add(s.agent.key)
                agents.append({
                    **s.agent.redacted().model_dump(mode="json"),
                    "override_timeout_sec": t.agent_override_sec,
                    "override_setup_timeout_sec": t.agent_setup_override_sec,
                    "max_timeout_sec": t.max_agent_sec,
                })  # fmt: skip
        paths = dict.fromkeys(str(s.task.path.resolve()) for s in self.specs if s.task.path)
        return {
            "job_name": self.out.name,
            "jobs_dir": str(self.out.parent.resolve()),
            "n_attempts": max((s.attempt for s in self.specs), default=0) + 1,
            "timeout_multiplier": t.multiplier,
            "agent_timeout_multiplier": t.agent_multiplier,
            "verifier_timeout_multiplier": t.verifier_multiplier,
            "agent_setup_timeout_multiplier": t.agent_setup_multiplier,
            "environment_build_timeout_multiplier": t.build_multiplier,
            "n_concurrent_trials": o.n_concurrent,
            "retry": {
                "max_retries": o.retries,
                "min_wait_sec": o.retry_min_wait_sec,
                "max_wait_sec": o.retry_max_wait_sec,
            },
            "environment": {"type": "docker", "force_build": o.force_build, "delete": True},
            "verifier": {
                "override_timeout_sec": t.verifier_override_sec,
                "max_timeout_sec": t.max_verifier_sec,
                "env": dict(o.verifier_env),
            },
            "agents": agents,
            "tasks": [{"path": p} for p in paths],
        }

    def _scan(self) -> list[tuple[TrialSpec, list[RetryRecord]]]:
        """Split the planned trials into finished ones (kept) and the rest (to run)."""
        pending = []
        for spec in self.specs:
            tdir = self.out / spec.trial_name
            prev = read_trial_result(tdir) if tdir.exists() else None
            if prev is not None and prev.config.agent.key != spec.agent.key:
                prev = None  # a different agent's folder (cannot happen through the CLI)
            if prev is not None:
                infra = prev.outcome in INFRA_OUTCOMES
                if not infra or (
                    not self.options.rerun_errors and prev.outcome != Outcome.CANCELLED
                ):
                    self.summaries[spec.trial_name] = TrialSummary.of(prev)
                    continue
                history = [
                    *prev.retries,
                    RetryRecord.of(prev, previous_job_run=True),
                ]
                pending.append((spec, history))
            else:
                pending.append((spec, []))
        return pending

    async def _run_pending(
        self,
        executor: TrialExecutor,
        pending: list[tuple[TrialSpec, list[RetryRecord]]],
        n_workers: int,
    ) -> None:
        if not pending:
            return
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        sigterm_installed = False
        if main is not None:
            try:  # a cluster's SIGTERM stops the job like Ctrl-C does
                loop.add_signal_handler(signal.SIGTERM, main.cancel)
                sigterm_installed = True
            except (NotImplementedError, RuntimeError, ValueError):
                pass
        queue = iter(pending)

        async def worker() -> None:
            for spec, history in queue:
                # A stop (Ctrl-C, SIGTERM) that a trial did not see -- Python 3.11's wait_for
                # can lose a cancellation that lands as its inner call finishes -- must still
                # stop this worker: no trial starts once the job is asked to stop.
                raise_if_cancel_requested()
                await self._run_trial(executor, spec, history)

        try:
            async with asyncio.TaskGroup() as tg:
                for _ in range(max(1, min(n_workers, len(pending)))):
                    tg.create_task(worker())
        except BaseExceptionGroup as group:
            # A stuck engine stops the job (the other trials are cancelled, so a later run
            # runs them): said as itself, not as a group.
            stuck = group.subgroup(EngineStuckError)
            if stuck is None:
                raise
            raise stuck.exceptions[0] from None
        finally:
            if sigterm_installed:
                loop.remove_signal_handler(signal.SIGTERM)

    async def _run_trial(
        self, executor: TrialExecutor, spec: TrialSpec, history: list[RetryRecord]
    ) -> None:
        tdir = self.out / spec.trial_name
        opts = self.options
        key = str(spec.task.path)
        self.running += 1
        try:
            for n in range(opts.retries + 1):
                if tdir.exists():
                    shutil.rmtree(tdir)
                self.events.trial_started(spec)
                result = await executor.run_trial(
                    spec,
                    tdir,
                    job_id=self.job_id,
                    options=opts,
                    history=list(history),
                    known_build_error=self._build_failures.get(key),
                )
                if result.outcome in RETRYABLE_OUTCOMES and n < opts.retries:
                    if result.outcome == Outcome.BUILD_ERROR and key in self._build_failures:
                        break  # failed fast on a build already known to fail: nothing to retry
                    if result.outcome == Outcome.BUILD_ERROR and not build_retryable(result):
                        self._log(
                            f"{spec.trial_name}: build_error of the task's own environment "
                            "(deterministic): not retried"
                        )
                        break
                    history.append(RetryRecord.of(result))
                    wait = min(opts.retry_max_wait_sec, opts.retry_min_wait_sec * 2**n)
                    wait *= random.uniform(0.5, 1.0)
                    self._log(
                        f"{spec.trial_name}: {result.outcome.value}, retry {n + 1} of "
                        f"{opts.retries} in {wait:.1f}s"
                    )
                    self.events.trial_retrying(spec, result, wait)
                    await asyncio.sleep(wait)
                    raise_if_cancel_requested()
                    continue
                break
            if result.outcome == Outcome.BUILD_ERROR and result.exception_info:
                self._build_failures.setdefault(key, result.exception_info.exception_message)
        finally:
            self.running -= 1
        summary = TrialSummary.of(result)
        self.summaries[spec.trial_name] = summary
        self._dirty = True
        self._log(
            f"{spec.trial_name}: {result.outcome.value} reward={result.reward} "
            f"({summary.duration_sec or 0:.1f}s)"
        )
        self.events.trial_finished(result, summary)
        info = result.exception_info
        if info is not None and info.exception_type == EngineStuckError.__name__:
            self._log(f"stopping: {info.exception_message}")
            raise EngineStuckError(info.exception_message)

    # -- outputs ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        planned = {s.trial_name for s in self.specs}
        items = [v for k, v in self.summaries.items() if k in planned]
        return compute_stats(
            items,
            n_total=len(self.specs),
            n_running=self.running,
            wall_sec=time.monotonic() - self._t0 if self._t0 else 0.0,
        )

    def _write_result(self, status: str) -> dict[str, Any]:
        result = {
            "id": self.job_id,
            "kind": self.kind,
            "status": status,
            "started_at": self._started_at.isoformat(),
            "updated_at": now().isoformat(),
            "finished_at": now().isoformat() if status != "running" else None,
            "n_total_trials": len(self.specs),
            "stats": self.stats(),
            "removed_containers": self.removed_containers,
            # seconds this run spent finding and removing what an earlier run left (resume)
            "cleanup_sec": round(self.cleanup_sec, 3),
            "skipped_tasks": self.skipped_tasks,
        }
        if self.job_id:
            write_json_atomic(self.out / "result.json", result)
        self._dirty = False
        return result

    def _write_index(self) -> None:
        if not self.job_id:
            return
        planned = [s.trial_name for s in self.specs]
        lines = [json.dumps(self.summaries[n].to_dict()) for n in planned if n in self.summaries]
        write_json_atomic(self.out / "trials.jsonl", "\n".join(lines) + ("\n" if lines else ""))

    async def _write_periodically(self) -> None:
        interval = RESULT_WRITE_INTERVAL_SEC
        while True:
            await asyncio.sleep(interval)
            if self._dirty:
                t0 = time.monotonic()
                self._write_result("running")
                # Huge jobs: keep the rewrite under ~5% of the loop's time.
                interval = max(RESULT_WRITE_INTERVAL_SEC, 20 * (time.monotonic() - t0))

    def _log(self, message: str) -> None:
        stamp = now().strftime("%Y-%m-%dT%H:%M:%S")
        with (self.out / "job.log").open("a", encoding="utf-8") as f:
            f.write(f"{stamp} {message}\n")
