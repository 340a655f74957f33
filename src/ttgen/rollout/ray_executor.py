"""The driver side of the Ray executor: trials on the nodes of a Ray cluster.

One NodeRunner actor (ray_node.py) per Ray node, each with its own sandbox backend (the same
backend by name as the driver's: `settings.backend`, or the job's `backend`) talking to that
node's engine; per-node concurrency; the task folder travels as a tar archive (once per task and
node), the finished trial folder comes back as one (capped) and is unpacked into the job folder,
result.json last (trial_archive.py).

Ray failures are infrastructure outcomes: a node or actor that dies mid-trial gives that trial
`environment_error`, so the Job's retry logic runs it again (on a node that is still there).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ttgen.errors import ConfigError, DockerUnavailableError, TtgenError
from ttgen.formats.trial import Outcome, RetryRecord, TrialResult, now
from ttgen.rollout.ray_node import STOP_GRACE_SEC, NodeRunner, settings_to_dict
from ttgen.rollout.trial import TrialSpec
from ttgen.rollout.trial_archive import (
    MAX_TRIAL_ARCHIVE_BYTES,
    pack_task,
    record_failure,
    unpack_trial,
)
from ttgen.settings import Settings, load_settings
from ttgen.task import Task

if TYPE_CHECKING:
    from ttgen.rollout.job import JobOptions

RAY_MISSING = (
    "--executor ray needs Ray, which is not installed: pip install 'terminal-task-gen[ray]'"
)
# Task archives kept in the driver's memory (they are re-made when evicted).
TASK_ARCHIVE_CACHE_BYTES = 256 * 1024 * 1024
ACTOR_START_TIMEOUT_SEC = 180.0
NO_NODE_WAIT_SEC = 300.0  # how long trials wait for a usable node before failing (retried)
EXTRA_CONTROL_CALLS = 4  # actor concurrency beyond the trial slots (start, stop, gc)

Log = Callable[[str], None]


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
        backend: str | None = None,
    ) -> None:
        if per_node is not None and per_node < 1:
            raise ConfigError("--per-node must be at least 1")
        self.address = address
        self.per_node = per_node
        self.settings = settings
        self.backend = backend  # the sandbox backend's name on every node (None: the settings')
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

    async def start(self, job_id: str, log: Log, *, fresh: bool = False) -> list[str]:
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
        if self.backend:
            self._settings_dict["backend"] = self.backend
        self._ca = settings.extra_ca_cert.read_bytes() if settings.extra_ca_cert else None
        removed: set[str] = set()
        nodes = await asyncio.to_thread(ray.nodes)
        starts = [self._add_node(n, first=True) for n in nodes if n.get("Alive")]
        for got in await asyncio.gather(*starts):
            removed.update(got)
        usable = [r for r in self.runners.values() if r.usable]
        if not usable:
            raise DockerUnavailableError(
                "no Ray node can run trials (each needs a CPU resource > 0, a "
                f"{self._settings_dict.get('backend', 'docker')} engine and ttgen installed); "
                "see job.log"
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
