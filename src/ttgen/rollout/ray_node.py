"""The node side of the Ray executor: a `NodeRunner` actor per Ray node runs trials (and named
functions) against that node's own engine, opened by backend name like a local job's.

Its scratch folder ($TMPDIR/ttgen-ray/<pid>/) holds unpacked tasks (one per archive key: the
attempts of a task ship once) and trial folders while they run.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import socket
import tarfile
import tempfile
import time
import traceback
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

from ttgen.formats.trial import AgentSpec, RetryRecord
from ttgen.rollout.pacing import AgentPacer
from ttgen.rollout.trial import TimeoutPolicy, Trial, TrialSpec
from ttgen.rollout.trial_archive import pack_trial
from ttgen.sandbox import open_backend
from ttgen.sandbox.host import pid_alive
from ttgen.settings import DEFAULT_BACKEND, ImageAlias, Settings
from ttgen.task import Task

STOP_GRACE_SEC = 20.0
MAX_NODE_TASKS = 512  # unpacked task folders a node runner keeps (least recently used go)


def settings_to_dict(settings: Settings) -> dict[str, Any]:
    return {
        "aliases": [(a.pattern, a.image, a.source) for a in settings.aliases],
        "pull": settings.pull,
        "pids_limit": settings.pids_limit,
        "default_cpus": settings.default_cpus,
        "default_memory_mb": settings.default_memory_mb,
        "start_concurrency": settings.start_concurrency,  # None: each node's own CPUs decide
        "engine_call_timeout": settings.engine_call_timeout,
        "agent_pacing": settings.agent_pacing,
        "domain_base": settings.domain_base,
        "backend": settings.backend,
        "sources": list(settings.sources),
    }


def settings_from_dict(d: dict[str, Any]) -> Settings:
    return Settings(
        aliases=[ImageAlias(*a) for a in d.get("aliases", [])],
        pull=d.get("pull", True),
        pids_limit=d.get("pids_limit", 4096),
        default_cpus=d.get("default_cpus", 1.0),
        default_memory_mb=d.get("default_memory_mb", 2048),
        start_concurrency=d.get("start_concurrency"),
        engine_call_timeout=d.get("engine_call_timeout", 300.0),
        agent_pacing=d.get("agent_pacing", True),
        domain_base=d.get("domain_base"),
        backend=d.get("backend") or DEFAULT_BACKEND,
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
    ship once) and trial folders while they run; folders of dead runners are removed on start.
    Its sandbox backend is the driver's (`settings["backend"]`), on this node's engine."""

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
        # The driver's backend, by name (a node has its own engine of that kind); checked by
        # start(), whose error reaches the driver's log.
        self.backend = open_backend(st.backend, st, check=False)
        # this node's start bursts hold its early agents back (pacing.py), as a local job does
        self.pacer = AgentPacer(st.engine_slots) if st.agent_pacing else None
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
                    pacer=self.pacer,
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
        while True:
            removed += (await self.backend.gc(job=job_id, keep_network=True))["containers"]
            # Removals already under way (409 to us) finish in their own time: wait for them.
            left = await self.backend.containers(job=job_id)
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
