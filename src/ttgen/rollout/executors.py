"""Where a job's trials run: in this process (LocalExecutor) or on a Ray cluster (RayExecutor).

The Job keeps everything that makes a job a job (the folder and its lock, config.json, what is
pending, retries, summaries, result.json, trials.jsonl, progress events); an executor only runs
one trial into `JOB/<trial>/` and returns its result, never raising for a failure of the task,
agent or environment.

    LocalExecutor   one DockerBackend in this process: `Trial(...).run()`, as always
    RayExecutor     one NodeRunner actor per Ray node, each with its own DockerBackend talking
                    to that node's Docker engine; per-node concurrency; the task folder travels
                    as a tar archive (once per task and node), the finished trial folder comes
                    back as one (capped) and is unpacked into the job folder, result.json last

Ray failures are infrastructure outcomes: a node or actor that dies mid-trial gives that trial
`environment_error`, so the Job's retry logic runs it again (on a node that is still there).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import socket
import tarfile
import tempfile
import time
import traceback
import uuid
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ttgen import __version__
from ttgen.errors import ConfigError, DockerUnavailableError, TtgenError
from ttgen.formats.trial import (
    AgentInfo,
    AgentSpec,
    ExceptionInfo,
    Outcome,
    RetryRecord,
    TrialConfig,
    TrialResult,
    now,
    trial_config,
    write_json_atomic,
)
from ttgen.rollout.trial import TimeoutPolicy, Trial, TrialSpec
from ttgen.sandbox.docker import LABEL_JOB, DockerBackend, pid_alive
from ttgen.settings import ImageAlias, Settings, load_settings
from ttgen.task import Task

if TYPE_CHECKING:
    from ttgen.rollout.job import JobOptions

log = logging.getLogger(__name__)

RAY_MISSING = (
    "--executor ray needs Ray, which is not installed: pip install 'terminal-task-gen[ray]'"
)
# A finished trial folder travels back in one archive of at most this size; beyond it the
# biggest files are left on the node's side (and named in the result's warnings).
MAX_TRIAL_ARCHIVE_BYTES = 256 * 1024 * 1024
# Task archives kept in the driver's memory (they are re-made when evicted).
TASK_ARCHIVE_CACHE_BYTES = 256 * 1024 * 1024
# Files that always come back, whatever the cap.
_ESSENTIAL = ("result.json", "config.json", "trial.log", "exception.txt")
ACTOR_START_TIMEOUT_SEC = 180.0
STOP_GRACE_SEC = 20.0
NO_NODE_WAIT_SEC = 300.0  # how long trials wait for a usable node before failing (retried)
MAX_NODE_TASKS = 512  # unpacked task folders a node runner keeps (least recently used go)
EXTRA_CONTROL_CALLS = 4  # actor concurrency beyond the trial slots (start, stop, gc)

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


def make_executor(options: JobOptions, backend: DockerBackend | None = None) -> TrialExecutor:
    if options.executor == "local":
        return LocalExecutor(backend)
    if options.executor == "ray":
        settings = backend.settings if backend is not None else None
        return RayExecutor(
            address=options.ray_address, per_node=options.per_node, settings=settings
        )
    raise ConfigError(f"unknown executor {options.executor!r}: use local or ray")


# -- local --------------------------------------------------------------------------------------


class LocalExecutor:
    """Trials in this process, against one DockerBackend (the engine of DOCKER_HOST)."""

    name = "local"

    def __init__(self, backend: DockerBackend | None = None) -> None:
        self._given = backend
        self.backend: DockerBackend | None = backend

    async def start(self, job_id: str, log: Log) -> list[str]:
        if self.backend is None:
            self.backend = DockerBackend()
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


# -- archives -----------------------------------------------------------------------------------


def pack_task(path: Path) -> bytes:
    """The task folder as a tar archive (every file, hidden ones and symlinks included)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(path)
            if str(rel_dir) != ".":
                tar.add(dirpath, arcname=str(rel_dir), recursive=False)
            for name in sorted(filenames):
                tar.add(os.path.join(dirpath, name), arcname=str(rel_dir / name), recursive=False)
            # Symlinks to folders are listed in dirnames and not walked into: keep them as links.
            for name in list(dirnames):
                full = os.path.join(dirpath, name)
                if os.path.islink(full):
                    tar.add(full, arcname=str(rel_dir / name), recursive=False)
                    dirnames.remove(name)
    return buf.getvalue()


def pack_trial(root: Path, cap: int = MAX_TRIAL_ARCHIVE_BYTES) -> tuple[bytes, list[str]]:
    """The trial folder as a tar archive of at most about `cap` bytes: the essential files
    always, then the others smallest first while they fit. Returns (archive, files left out)."""
    dirs: list[str] = []
    files: list[tuple[int, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(root)
        if str(rel_dir) != ".":
            dirs.append(str(rel_dir))
        for name in sorted(filenames) + [d for d in dirnames if os.path.islink(Path(dirpath, d))]:
            rel = str(rel_dir / name) if str(rel_dir) != "." else name
            files.append((os.lstat(root / rel).st_size, rel))
    total = sum(size for size, _ in files)
    chosen = {rel for _, rel in files}
    omitted: list[str] = []
    if total > cap:
        budget = cap
        chosen = set()
        for size, rel in files:
            if rel in _ESSENTIAL:
                chosen.add(rel)
                budget -= size
        for size, rel in sorted(files):
            if rel in chosen:
                continue
            if size <= budget:
                chosen.add(rel)
                budget -= size
            else:
                omitted.append(rel)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for rel in dirs:
            tar.add(root / rel, arcname=rel, recursive=False)
        for _, rel in files:
            if rel in chosen and rel != "result.json":
                tar.add(root / rel, arcname=rel, recursive=False)
        if (root / "result.json").is_file():  # last, like on disk
            tar.add(root / "result.json", arcname="result.json", recursive=False)
    return buf.getvalue(), sorted(omitted)


def _skip_unsafe(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """tarfile's `data` filter, skipping (instead of failing on) what it refuses."""
    try:
        return tarfile.data_filter(member, dest)
    except tarfile.FilterError:
        return None


def unpack_trial(
    data: bytes,
    trial_dir: Path,
    *,
    task_path: str,
    node: dict[str, Any],
    omitted: list[str],
) -> TrialResult | None:
    """Unpack a trial archive into `trial_dir` (through a temporary folder beside it, renamed
    into place; result.json written last), with the task path and trial URI of this machine.
    None when the archive holds no valid result.json."""
    tmp = trial_dir.parent / f".{trial_dir.name}.incoming"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        result_bytes = None
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            members = []
            for m in tar.getmembers():
                if m.name == "result.json" and m.isfile():
                    f = tar.extractfile(m)
                    result_bytes = f.read() if f else None
                else:
                    members.append(m)
            tar.extractall(tmp, members=members, filter=_skip_unsafe)
        if result_bytes is None:
            return None
        try:
            result = TrialResult.model_validate_json(result_bytes)
        except ValueError:
            return None
        config_path = tmp / "config.json"
        if config_path.is_file():
            try:
                config = TrialConfig.model_validate_json(config_path.read_bytes())
                config.task.path = task_path
                config.trials_dir = str(trial_dir.parent.resolve())
                write_json_atomic(config_path, config.model_dump_json(indent=2), fsync=False)
            except ValueError:
                pass
        result.config.task.path = task_path
        result.config.trials_dir = str(trial_dir.parent.resolve())
        result.task_id = {**result.task_id, "path": task_path}
        result.trial_uri = trial_dir.resolve().as_uri()
        result.environment.__pydantic_extra__["node"] = node  # type: ignore[index]
        if omitted:
            result.warnings.append(
                f"the trial folder exceeded {MAX_TRIAL_ARCHIVE_BYTES // (1024 * 1024)} MB; "
                f"left on node {node.get('host')}: {', '.join(omitted[:20])}"
                + (f" and {len(omitted) - 20} more" if len(omitted) > 20 else "")
            )
        with contextlib.suppress(OSError), (tmp / "trial.log").open("a", encoding="utf-8") as f:
            stamp = now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            f.write(f"{stamp} ran on Ray node {node.get('host')} ({node.get('node_id')})\n")
        if trial_dir.exists():
            shutil.rmtree(trial_dir)
        tmp.rename(trial_dir)
        write_json_atomic(trial_dir / "result.json", result.model_dump_json(indent=2))
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def record_failure(
    spec: TrialSpec,
    trial_dir: Path,
    *,
    job_id: str,
    options: JobOptions,
    history: list[RetryRecord],
    outcome: Outcome,
    exc_type: str,
    message: str,
    tb: str = "",
    started_at: Any = None,
    node: dict[str, Any] | None = None,
) -> TrialResult:
    """Write a trial folder for a trial whose node never gave one back (it died, Ray failed,
    the trial was cancelled): config.json, trial.log, exception.txt, then result.json."""
    task = spec.task
    task_path = str(task.path.resolve()) if task.path else ""
    config = trial_config(
        spec,
        trial_dir,
        job_id=job_id,
        timeouts=options.timeouts.effective(task),
        force_build=options.force_build,
        verifier_env=options.verifier_env,
    )
    result = TrialResult(
        id=str(uuid.uuid4()),
        task_name=task.name,
        trial_name=spec.trial_name,
        trial_uri=trial_dir.resolve().as_uri(),
        task_id={"path": task_path},
        source=spec.source,
        task_checksum=spec.task_checksum,
        config=config,
        agent_info=AgentInfo(name=spec.agent.name),
        started_at=started_at or now(),
        finished_at=now(),
        outcome=outcome,
        attempt=spec.attempt,
        retries=history,
        ttgen_version=__version__,
        task_metadata=dict(task.config.metadata or {}),
        exception_info=ExceptionInfo(
            exception_type=exc_type, exception_message=message, exception_traceback=tb
        ),
    )
    if spec.extra:
        result.__pydantic_extra__["extra"] = spec.extra  # type: ignore[index]
    if node:
        result.environment.__pydantic_extra__["node"] = node  # type: ignore[index]
    trial_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(trial_dir / "config.json", config.model_dump_json(indent=2), fsync=False)
    stamp = now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    (trial_dir / "trial.log").write_text(f"{stamp} {outcome.value}: {message}\n", encoding="utf-8")
    (trial_dir / "exception.txt").write_text(f"{exc_type}: {message}\n\n{tb}", encoding="utf-8")
    write_json_atomic(trial_dir / "result.json", result.model_dump_json(indent=2))
    return result


# -- the node side ------------------------------------------------------------------------------


def settings_to_dict(settings: Settings) -> dict[str, Any]:
    return {
        "aliases": [(a.pattern, a.image, a.source) for a in settings.aliases],
        "pull": settings.pull,
        "pids_limit": settings.pids_limit,
        "default_cpus": settings.default_cpus,
        "default_memory_mb": settings.default_memory_mb,
        "domain_base": settings.domain_base,
        "sources": list(settings.sources),
    }


def settings_from_dict(d: dict[str, Any]) -> Settings:
    return Settings(
        aliases=[ImageAlias(*a) for a in d.get("aliases", [])],
        pull=d.get("pull", True),
        pids_limit=d.get("pids_limit", 4096),
        default_cpus=d.get("default_cpus", 1.0),
        default_memory_mb=d.get("default_memory_mb", 2048),
        domain_base=d.get("domain_base"),
        sources=[*d.get("sources", []), "ray driver"],
    )


def _import_function(path: str) -> Any:
    """The function at "module:function" (the node-side calls of `RayExecutor.run_on_node`)."""
    import importlib

    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


class NodeRunner:
    """Runs trials on one Ray node (a Ray actor placed on that node; async, so `per_node`
    trials share its event loop like a local job's do). Its scratch folder
    ($TMPDIR/ttgen-ray/<pid>/) holds unpacked tasks (one per archive key: the attempts of a task
    ship once) and trial folders while they run; folders of dead runners are removed on start."""

    def __init__(
        self, settings: dict[str, Any], ca_bundle: bytes | None, env: dict[str, str]
    ) -> None:
        os.environ.update(env)
        base = Path(tempfile.gettempdir()) / "ttgen-ray"
        base.mkdir(parents=True, exist_ok=True)
        for entry in base.iterdir():  # scratch of runners that died
            if entry.name.isdigit() and not pid_alive(int(entry.name)):
                shutil.rmtree(entry, ignore_errors=True)
        self.scratch = base / str(os.getpid())
        shutil.rmtree(self.scratch, ignore_errors=True)
        (self.scratch / "tasks").mkdir(parents=True)
        (self.scratch / "trials").mkdir(parents=True)
        st = settings_from_dict(settings)
        if ca_bundle:
            ca = self.scratch / "ca-bundle.crt"
            ca.write_bytes(ca_bundle)
            st.extra_ca_cert = ca
        self.backend = DockerBackend(st)
        # Unpacked tasks, oldest use first; beyond MAX_NODE_TASKS the oldest not in use are
        # removed (a synthesis run ships a new folder per draft). The driver re-sends an evicted
        # task when the node answers need_task.
        self._ready: OrderedDict[str, Path] = OrderedDict()
        self._in_use: Counter[str] = Counter()
        self._task_locks: dict[str, asyncio.Lock] = {}
        self._running: dict[str, set[asyncio.Task[Any]]] = {}

    async def start(self, job_id: str, first: bool) -> dict[str, Any]:
        """Ping the engine; remove the job's leftovers (first start of a run) or the containers
        of processes that are gone (a runner replacing a dead one)."""
        await self.backend.ping()
        if first:
            gone = await self.backend.gc(job=job_id, keep_network=True)
        else:
            gone = await self.backend.gc(keep_network=True)
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "cpus": os.cpu_count() or 1,
            "removed": gone["containers"],
        }

    @contextlib.asynccontextmanager
    async def _task_dir(
        self, key: str, dirname: str, archive: bytes | None
    ) -> AsyncIterator[Path | None]:
        """The unpacked task (unpacked now from `archive` the first time), kept while the
        block runs; None when this runner does not have it and no archive came with the call."""
        dest = self.scratch / "tasks" / key / dirname
        if key not in self._ready:
            lock = self._task_locks.setdefault(key, asyncio.Lock())
            async with lock:
                if key not in self._ready:
                    if archive is None:
                        yield None
                        return
                    await asyncio.to_thread(self._unpack_task, archive, dest)
                    self._ready[key] = dest
        self._ready.move_to_end(key)
        self._in_use[key] += 1
        try:
            yield dest
        finally:
            self._in_use[key] -= 1
            if not self._in_use[key]:
                del self._in_use[key]
            self._evict()

    def _evict(self) -> None:
        over = len(self._ready) - MAX_NODE_TASKS
        for key in [k for k in self._ready if k not in self._in_use][: max(0, over)]:
            shutil.rmtree(self._ready.pop(key).parent, ignore_errors=True)
            self._task_locks.pop(key, None)

    @staticmethod
    def _unpack_task(archive: bytes, dest: Path) -> None:
        shutil.rmtree(dest.parent, ignore_errors=True)
        dest.mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
            tar.extractall(dest, filter="tar")

    async def _tracked(self, job_id: str, call: Awaitable[dict[str, Any]]) -> dict[str, Any]:
        """Run one call of the job (stop_job cancels it); exceptions as plain text."""
        me = asyncio.current_task()
        assert me is not None
        running = self._running.setdefault(job_id, set())
        running.add(me)
        try:
            return await call
        except Exception as exc:
            # Our own exception types do not all survive Ray's pickling: send plain text.
            raise RuntimeError(
                f"{type(exc).__name__}: {exc}\n{''.join(traceback.format_exception(exc))}"
            ) from None
        finally:
            running.discard(me)

    async def run_trial(self, payload: dict[str, Any], archive: bytes | None) -> dict[str, Any]:
        return await self._tracked(payload["job_id"], self._run_trial(payload, archive))

    async def _run_trial(self, payload: dict[str, Any], archive: bytes | None) -> dict[str, Any]:
        async with self._task_dir(
            payload["task_key"], payload["task_dirname"], archive
        ) as task_dir:
            if task_dir is None:
                return {"need_task": True}
            task = Task.load(task_dir)
            task.name = payload["task_name"]
            spec = TrialSpec(
                task=task,
                trial_name=payload["trial_name"],
                agent=AgentSpec.model_validate(payload["agent"]),
                attempt=payload["attempt"],
                task_checksum=payload["task_checksum"],
                source=payload["source"],
                extra=payload["extra"],
            )
            work = Path(tempfile.mkdtemp(dir=self.scratch / "trials"))
            try:
                trial = Trial(
                    spec,
                    self.backend,
                    work / spec.trial_name,
                    job_id=payload["job_id"],
                    timeouts=TimeoutPolicy(**payload["timeouts"]),
                    force_build=payload["force_build"],
                    verifier_env=payload["verifier_env"],
                    verifier_isolation=payload.get("verifier_isolation", "snapshot"),
                    history=[RetryRecord.model_validate(h) for h in payload["history"]],
                    known_build_error=payload["known_build_error"],
                )
                await trial.run()
                data, omitted = await asyncio.to_thread(
                    pack_trial, work / spec.trial_name, payload["max_archive_bytes"]
                )
                return {"archive": data, "omitted": omitted}
            finally:
                shutil.rmtree(work, ignore_errors=True)

    async def call_with_task(
        self, payload: dict[str, Any], archive: bytes | None
    ) -> dict[str, Any]:
        """A generic call on this node's engine: the function named by payload["fn"]
        ("module:function", imported here, so the executor knows no stage) is awaited as
        fn(backend, task_dir, job_id, **payload["kwargs"]) and must answer a JSON-able dict;
        {"need_task": True} when this node lacks the task's files."""
        return await self._tracked(payload["job_id"], self._call_with_task(payload, archive))

    async def _call_with_task(
        self, payload: dict[str, Any], archive: bytes | None
    ) -> dict[str, Any]:
        fn = _import_function(payload["fn"])
        async with self._task_dir(
            payload["task_key"], payload["task_dirname"], archive
        ) as task_dir:
            if task_dir is None:
                return {"need_task": True}
            return await fn(self.backend, task_dir, payload["job_id"], **payload["kwargs"])

    async def stop_job(self, job_id: str) -> list[str]:
        """Cancel this node's trials of the job (each records `cancelled` and removes its
        container), then remove any container of the job still there."""
        deadline = time.monotonic() + STOP_GRACE_SEC
        tasks = list(self._running.get(job_id, ()))
        for t in tasks:
            if not t.cancelling():  # Ray's own cancel may have come first: once is enough
                t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_GRACE_SEC)
        removed: list[str] = []
        labels = json.dumps({"label": [f"{LABEL_JOB}={job_id}"]})
        while True:
            removed += (await self.backend.gc(job=job_id, keep_network=True))["containers"]
            # Removals already under way (409 to us) finish in their own time: wait for them.
            left = await self.backend.docker.containers.list(all=True, filters=labels)
            if not left or time.monotonic() > deadline:
                return removed
            await asyncio.sleep(0.2)

    async def finish(self) -> list[str]:
        """End of the job: remove containers whose process is gone (runners that died), close
        the engine client and the scratch folder."""
        try:
            gone = await self.backend.gc(keep_network=True)
        finally:
            await self.backend.close()
            shutil.rmtree(self.scratch, ignore_errors=True)
        return gone["containers"]


# -- the driver side ----------------------------------------------------------------------------


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_MISSING) from None
    return ray


_ACTOR_CLASS: Any = None


def _actor_class(ray: Any) -> Any:
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        _ACTOR_CLASS = ray.remote(NodeRunner)
    return _ACTOR_CLASS


def shipped_env() -> dict[str, str]:
    """The driver's environment variables a node needs: API keys and ttgen's own (minus the
    ones naming files on the driver; its settings are shipped as values)."""
    skip = {"TTGEN_CONFIG", "TTGEN_EXTRA_CA_CERT"}
    return {
        k: v
        for k, v in os.environ.items()
        if (k.startswith("TTGEN_") or k.startswith("OPENAI_")) and k not in skip
    }


class _NoNodeError(Exception):
    pass


class NodeCallError(TtgenError):
    """A call on a Ray node failed for a reason of the cluster, not of the task."""


@dataclass
class _Runner:
    node_id: str
    address: str
    slots: int
    actor: Any = None
    host: str = ""
    generation: int = 0
    in_flight: int = 0
    assigned: int = 0
    usable: bool = False
    shipped: set[str] = field(default_factory=set)

    @property
    def info(self) -> dict[str, Any]:
        return {"host": self.host, "address": self.address, "node_id": self.node_id}


class RayExecutor:
    """Trials on the nodes of a Ray cluster, `per_node` at a time on each (default: the node's
    CPUs / 2, at least 1). Nodes whose Ray CPU resource is 0 (e.g. a head started with
    `--num-cpus=0`) and nodes without a working Docker engine get no trials."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        per_node: int | None = None,
        settings: Settings | None = None,
        env: dict[str, str] | None = None,
        max_archive_bytes: int = MAX_TRIAL_ARCHIVE_BYTES,
        init_kwargs: dict[str, Any] | None = None,
        cache_archives: bool = True,
    ) -> None:
        if per_node is not None and per_node < 1:
            raise ConfigError("--per-node must be at least 1")
        self.address = address
        self.per_node = per_node
        self.settings = settings
        self.env = env
        self.max_archive_bytes = max_archive_bytes
        self.init_kwargs = init_kwargs or {}
        # Task archives are cached by folder path (a job's tasks do not change while it runs);
        # off for synthesis, whose staging folders are rewritten between gate rounds.
        self.cache_archives = cache_archives
        self.runners: dict[str, _Runner] = {}
        self.in_flight: dict[str, str] = {}  # trial name -> node id (for tests and reports)
        self._ray: Any = None
        self._own_ray = False
        self._job_id = ""
        self._log: Log = lambda message: None
        self._wake = asyncio.Event()
        self._reviving: dict[str, asyncio.Task[None]] = {}
        self._archives: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._archive_bytes = 0
        self._settings_dict: dict[str, Any] = {}
        self._ca: bytes | None = None
        self._last_discovery = 0.0

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, job_id: str, log: Log) -> list[str]:
        ray = self._ray = import_ray()
        self._job_id, self._log = job_id, log
        if not ray.is_initialized():
            if self.address not in (None, "auto", "local"):
                await asyncio.to_thread(_check_reachable, self.address)
            try:
                ray.init(
                    address=self.address,
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                    **self.init_kwargs,
                )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ConfigError(
                    f"cannot reach the Ray cluster at {self.address or 'auto'}: {exc}"
                ) from None
            self._own_ray = True
        settings = self.settings or load_settings()
        self._settings_dict = settings_to_dict(settings)
        self._ca = settings.extra_ca_cert.read_bytes() if settings.extra_ca_cert else None
        removed: set[str] = set()
        nodes = await asyncio.to_thread(ray.nodes)
        starts = [self._add_node(n, first=True) for n in nodes if n.get("Alive")]
        for got in await asyncio.gather(*starts):
            removed.update(got)
        usable = [r for r in self.runners.values() if r.usable]
        if not usable:
            raise DockerUnavailableError(
                "no Ray node can run trials (each needs a CPU resource > 0, a Docker engine and "
                "ttgen installed); see job.log"
            )
        log(
            f"Ray executor: {len(usable)} node(s), "
            + ", ".join(f"{r.host or r.address} x{r.slots}" for r in usable)
        )
        self._last_discovery = time.monotonic()
        return sorted(removed)

    async def _add_node(self, node: dict[str, Any], *, first: bool) -> list[str]:
        """Start a runner on one node; its leftovers removed (names), [] when unusable."""
        node_id = node["NodeID"]
        address = node.get("NodeManagerAddress", "")
        cpus = float((node.get("Resources") or {}).get("CPU", 0))
        if cpus <= 0:
            if first:
                self._log(f"Ray node {address} ({node_id[:8]}) has no CPU resource: not used")
            return []
        slots = self.per_node or max(1, int(cpus // 2))
        runner = self.runners.get(node_id)
        if runner is None:
            runner = self.runners[node_id] = _Runner(node_id=node_id, address=address, slots=slots)
        return await self._start_runner(runner, first=first)

    async def _start_runner(self, runner: _Runner, *, first: bool) -> list[str]:
        ray = self._ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        actor = (
            _actor_class(ray)
            .options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(runner.node_id, soft=False),
                num_cpus=0,
                max_concurrency=runner.slots + EXTRA_CONTROL_CALLS,
                max_restarts=0,
            )
            .remote(self._settings_dict, self._ca, shipped_env() if self.env is None else self.env)
        )
        try:
            info = await asyncio.wait_for(
                actor.start.remote(self._job_id, first), ACTOR_START_TIMEOUT_SEC
            )
        except Exception as exc:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
            self._log(
                f"Ray node {runner.address} ({runner.node_id[:8]}) cannot run trials: "
                f"{type(exc).__name__}: {_first_line(exc)}"
            )
            runner.usable = False
            return []
        runner.actor = actor
        runner.host = info["host"]
        runner.generation += 1
        runner.shipped = set()
        runner.usable = True
        self._poke()
        if info["removed"]:
            self._log(
                f"node {runner.host}: removed {len(info['removed'])} container(s) left behind"
            )
        return list(info["removed"])

    def capacity(self, requested: int) -> int:
        return max(1, sum(r.slots for r in self.runners.values() if r.usable))

    async def cleanup(self, job_id: str) -> None:
        calls = [
            asyncio.wait_for(r.actor.stop_job.remote(job_id), STOP_GRACE_SEC + 15)
            for r in self.runners.values()
            if r.usable
        ]
        await asyncio.gather(*calls, return_exceptions=True)

    async def close(self) -> None:
        for t in self._reviving.values():
            t.cancel()
        ray = self._ray
        if ray is None:
            return
        live = [r for r in self.runners.values() if r.usable and r.actor is not None]
        done = await asyncio.gather(
            *(asyncio.wait_for(r.actor.finish.remote(), 60) for r in live), return_exceptions=True
        )
        n = sum(len(d) for d in done if isinstance(d, list))
        if n:
            self._log(f"removed {n} container(s) of runners that died")
        for r in self.runners.values():
            if r.actor is not None:
                with contextlib.suppress(Exception):
                    ray.kill(r.actor, no_restart=True)
            r.actor, r.usable = None, False
        if self._own_ray:
            with contextlib.suppress(Exception):
                ray.shutdown()
            self._own_ray = False

    # -- scheduling -----------------------------------------------------------------------

    def _poke(self) -> None:
        """Wake every trial waiting for a slot (a slot or a runner became free or usable)."""
        self._wake.set()
        self._wake = asyncio.Event()

    async def _acquire(self) -> _Runner:
        deadline = time.monotonic() + NO_NODE_WAIT_SEC
        while True:
            wake = self._wake  # taken before looking: a change after the look wakes us
            free = [r for r in self.runners.values() if r.usable and r.in_flight < r.slots]
            if free:
                best = max(free, key=lambda r: (r.slots - r.in_flight, -r.assigned))
                best.in_flight += 1
                best.assigned += 1
                return best
            if not any(r.usable for r in self.runners.values()) and not self._reviving:
                if time.monotonic() > deadline:
                    raise _NoNodeError("no Ray node with a working Docker engine is left")
                if time.monotonic() - self._last_discovery > 5:
                    self._last_discovery = time.monotonic()
                    self._discover()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), 5)

    def _release(self, runner: _Runner) -> None:
        runner.in_flight -= 1
        self._poke()

    def _discover(self) -> None:
        """Look for nodes that joined (or came back) and start runners there, in background."""

        async def go() -> None:
            try:
                nodes = await asyncio.to_thread(self._ray.nodes)
                fresh = [
                    n
                    for n in nodes
                    if n.get("Alive")
                    and not (n["NodeID"] in self.runners and self.runners[n["NodeID"]].usable)
                ]
                await asyncio.gather(*(self._add_node(n, first=False) for n in fresh))
            finally:
                self._reviving.pop("discover", None)
                self._poke()

        if "discover" not in self._reviving:
            self._reviving["discover"] = asyncio.get_running_loop().create_task(go())

    def _broken(self, runner: _Runner, generation: int, exc: BaseException) -> None:
        """The runner's actor died: stop sending it trials; start a new one on the node if the
        node is still alive (in background)."""
        if runner.generation != generation or not runner.usable:
            return
        runner.usable = False
        with contextlib.suppress(Exception):
            self._ray.kill(runner.actor, no_restart=True)
        self._log(
            f"Ray node {runner.host} ({runner.node_id[:8]}): runner died "
            f"({type(exc).__name__}); its trials are retried"
        )

        async def revive() -> None:
            try:
                nodes = await asyncio.to_thread(self._ray.nodes)
                alive = any(n["NodeID"] == runner.node_id and n.get("Alive") for n in nodes)
                if alive:
                    await self._start_runner(runner, first=False)
                    if runner.usable:
                        self._log(f"Ray node {runner.host}: new runner started")
                else:
                    self._log(f"Ray node {runner.host} ({runner.node_id[:8]}) is gone")
            finally:
                self._reviving.pop(runner.node_id, None)
                self._poke()

        if runner.node_id not in self._reviving:
            self._reviving[runner.node_id] = asyncio.get_running_loop().create_task(revive())

    # -- one trial ------------------------------------------------------------------------

    @staticmethod
    async def _task_archive_uncached(path: Path) -> tuple[str, bytes]:
        data = await asyncio.to_thread(pack_task, path)
        # The folder's name is part of the key: equal contents under two names are two tasks.
        key = hashlib.sha256(path.resolve().name.encode() + b"\0" + data).hexdigest()[:32]
        return key, data

    async def _task_archive(self, task: Task) -> tuple[str, bytes]:
        assert task.path is not None
        path = str(task.path.resolve())
        hit = self._archives.get(path)
        if hit is not None:
            self._archives.move_to_end(path)
            return hit
        key, data = await self._task_archive_uncached(task.path)
        if not self.cache_archives:
            return key, data
        self._archives[path] = (key, data)
        self._archive_bytes += len(data)
        while self._archive_bytes > TASK_ARCHIVE_CACHE_BYTES and len(self._archives) > 1:
            _, (_, old) = self._archives.popitem(last=False)
            self._archive_bytes -= len(old)
        return key, data

    async def _call(
        self, runner: _Runner, method: str, payload: dict[str, Any], key: str, archive: bytes
    ) -> dict[str, Any]:
        """Call the runner's `method` with the task: the archive goes along the first time the
        runner gets the task, and again when it answers need_task (it evicted it, or it is a
        new runner). Ray's exceptions propagate; cancelling cancels the remote call."""
        out: dict[str, Any] = {}
        for _ in range(2):
            send = None if key in runner.shipped else archive
            runner.shipped.add(key)
            ref = getattr(runner.actor, method).remote(payload, send)
            try:
                out = await ref
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    self._ray.cancel(ref)
                raise
            if not out.get("need_task"):
                break
            runner.shipped.discard(key)
        return out

    async def run_on_node(
        self, fn: str, task_path: Path, kwargs: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Await the function `fn` ("module:function") on a free node with that node's engine:
        fn(backend, task_dir, job_id, **kwargs) -> a JSON-able dict, the task folder packed now
        (not cached: synthesis re-stages a folder under the same path). Returns (its answer,
        the node's info); raises NodeCallError when the node or Ray fails, or no node is left."""
        method = "call_with_task"
        payload = {"fn": fn, "kwargs": kwargs}
        ray = self._ray
        try:
            runner = await self._acquire()
        except _NoNodeError as exc:
            raise NodeCallError(str(exc)) from None
        generation = runner.generation
        try:
            key, archive = await self._task_archive_uncached(task_path)
            call = {
                **payload,
                "job_id": self._job_id,
                "task_key": key,
                "task_dirname": task_path.resolve().name,
            }
            try:
                out = await self._call(runner, method, call, key, archive)
            except ray.exceptions.RayActorError as exc:
                self._broken(runner, generation, exc)
                raise NodeCallError(
                    f"the Ray node {runner.host} failed: {_first_line(exc)}"
                ) from None
            except ray.exceptions.RayError as exc:
                cause = getattr(exc, "cause", None)
                raise NodeCallError(
                    f"{fn} failed on Ray node {runner.host}: {_first_line(cause or exc)}"
                ) from None
            if out.get("need_task"):
                raise NodeCallError(f"the task did not reach Ray node {runner.host}")
            return out, runner.info
        finally:
            self._release(runner)

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
        ray = self._ray
        task = spec.task
        if task.path is None:
            raise ConfigError(f"{task.name}: a task without a folder cannot be shipped to Ray")
        started = now()

        def failed(exc: BaseException, runner: _Runner | None, what: str) -> TrialResult:
            return record_failure(
                spec,
                trial_dir,
                job_id=job_id,
                options=options,
                history=history,
                outcome=Outcome.ENVIRONMENT_ERROR,
                exc_type=type(exc).__name__,
                message=f"{what}: {_first_line(exc)}",
                tb="".join(traceback.format_exception(exc)),
                started_at=started,
                node=runner.info if runner else None,
            )

        try:
            runner = await self._acquire()
        except _NoNodeError as exc:
            return failed(exc, None, "no Ray node to run the trial on")
        generation = runner.generation
        self.in_flight[spec.trial_name] = runner.node_id
        try:
            try:
                key, archive = await self._task_archive(task)
            except OSError as exc:  # as a local trial's build context would: a build error
                return record_failure(
                    spec,
                    trial_dir,
                    job_id=job_id,
                    options=options,
                    history=history,
                    outcome=Outcome.BUILD_ERROR,
                    exc_type="TaskError",
                    message=f"{task.path}: cannot read the task folder: {exc}",
                    started_at=started,
                )
            payload = {
                "job_id": job_id,
                "task_key": key,
                "task_dirname": task.path.resolve().name,
                "task_name": task.name,
                "trial_name": spec.trial_name,
                "agent": spec.agent.model_dump(mode="json"),
                "attempt": spec.attempt,
                "task_checksum": spec.task_checksum,
                "source": spec.source,
                "extra": spec.extra,
                "timeouts": dict(options.timeouts.__dict__),
                "force_build": options.force_build,
                "verifier_env": dict(options.verifier_env),
                "verifier_isolation": options.verifier_isolation,
                "history": [h.model_dump(mode="json") for h in history],
                "known_build_error": known_build_error,
                "max_archive_bytes": self.max_archive_bytes,
            }
            try:
                out = await self._call(runner, "run_trial", payload, key, archive)
            except asyncio.CancelledError:
                record_failure(
                    spec,
                    trial_dir,
                    job_id=job_id,
                    options=options,
                    history=history,
                    outcome=Outcome.CANCELLED,
                    exc_type="CancelledError",
                    message=f"the trial was cancelled (on Ray node {runner.host})",
                    started_at=started,
                    node=runner.info,
                )
                raise
            except ray.exceptions.RayActorError as exc:
                self._broken(runner, generation, exc)
                return failed(exc, runner, f"the Ray node {runner.host} running it failed")
            except ray.exceptions.RayError as exc:
                cause = getattr(exc, "cause", None)  # RayTaskError: what the node raised
                what = f"the trial failed on Ray node {runner.host}"
                return failed(cause if isinstance(cause, Exception) else exc, runner, what)
            if out.get("need_task"):
                return failed(RuntimeError("the task did not reach the node"), runner, "Ray")
            result = await asyncio.to_thread(
                unpack_trial,
                out["archive"],
                trial_dir,
                task_path=str(task.path.resolve()),
                node=runner.info,
                omitted=out.get("omitted", []),
            )
            if result is None:
                return failed(RuntimeError("no result.json in the trial archive"), runner, "Ray")
            return result
        finally:
            self.in_flight.pop(spec.trial_name, None)
            self._release(runner)


def _check_reachable(address: str) -> None:
    """Fail fast on an address nothing listens at (ray.init would retry for minutes)."""
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--address {address!r}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address}: {exc}. Is `ray start --head` running "
            "there, and is the port open from here?"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]


__all__ = [
    "LocalExecutor",
    "NodeCallError",
    "NodeRunner",
    "RayExecutor",
    "TrialExecutor",
    "make_executor",
    "pack_task",
    "pack_trial",
    "unpack_trial",
]
