"""Many trials on one host (issue 21), at concurrencies the suite can afford: admission control
of container starts, an engine connection pool that long-lived exec streams cannot exhaust, the
host's open-file and process limits, and kill -9 of a Terminus 2 job with every trial in flight.
benchmarks/scale.py runs the same at 64, 256 and 1,000 trials."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import BASE_IMAGE, job_containers
from ttgen.settings import Settings, load_settings
from ttgen.task import Task
from ttgen.testing import ScriptedLLMServer


def _task(make_task, name: str = "t") -> Task:
    return Task.load(make_task(name, dockerfile=None,
                               toml=f'[environment]\ndocker_image = "{BASE_IMAGE}"\n'))  # fmt: skip


async def test_container_starts_wait_for_a_slot_and_all_start(docker_ready, make_task, job_name):
    """Asked for 8 containers at once with 2 start slots, the engine never has more than 2
    starts in flight; every container starts, and all are removed."""
    from ttgen.sandbox.docker import DockerBackend

    backend = DockerBackend(Settings(pull=False, start_concurrency=2))
    task = _task(make_task)
    in_flight = peak = 0
    original = backend._create_and_start

    async def counting(*args, **kwargs):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await original(*args, **kwargs)
        finally:
            in_flight -= 1

    backend._create_and_start = counting  # type: ignore[method-assign]
    try:
        boxes = await asyncio.gather(*(
            backend.start(task, job=job_name, name=f"{job_name}-{i}") for i in range(8)
        ))  # fmt: skip
        assert peak == 2
        outs = await asyncio.gather(*(b.exec("echo up") for b in boxes))
        assert [o.stdout.strip() for o in outs] == ["up"] * 8
        await asyncio.gather(*(b.stop() for b in boxes))
        assert await job_containers(job_name) == []
    finally:
        await backend.gc(job=job_name)
        await backend.close()



async def test_a_removal_the_engine_gave_up_on_is_asked_again(
    docker_ready, make_task, job_name, monkeypatch
):
    """To remove a running container the engine kills it and waits 2 s for its exit event; on a
    loaded host (CI, 1,000 trials stopping at once) the wait lapses and the removal answers 500
    "did not receive an exit event" while the kill goes on. A sandbox's stop asks again: the
    container is gone and the trial sees no error. An error that persists is raised, naming the
    container, after a bounded number of tries."""
    from ttgen.errors import SandboxError
    from ttgen.sandbox import docker_sandbox
    from ttgen.sandbox.docker import DockerBackend
    from ttgen.sandbox.engine_client import DockerError

    backend = DockerBackend(Settings(pull=False))
    task = _task(make_task)
    try:
        sb = await backend.start(task, job=job_name, name=f"{job_name}-lapse")
        real_delete = sb.container.delete
        tries = 0

        async def lapsing(**kwargs):
            nonlocal tries
            tries += 1
            if tries <= 2:
                if tries == 1:
                    await sb.container.kill()
                raise DockerError(500, f"Could not kill running container "
                    f"{sb.container.id}, cannot remove - tried to kill container, but did not "
                    "receive an exit event")  # fmt: skip
            return await real_delete(**kwargs)

        sb.container.delete = lapsing
        await sb.stop()
        assert tries == 3
        assert await job_containers(job_name) == []

        monkeypatch.setattr(docker_sandbox, "REMOVE_RETRY_DELAYS", (0.0, 0.0))
        stuck = await backend.start(task, job=job_name, name=f"{job_name}-stuck")
        tries = 0

        async def failing(**kwargs):
            nonlocal tries
            tries += 1
            raise DockerError(500, "driver overlay2 failed to remove root filesystem")

        stuck.container.delete = failing
        with pytest.raises(SandboxError, match=f"cannot remove container {stuck.name}: driver"):
            await stuck.stop()
        assert tries == 3
        assert await job_containers(job_name) == [stuck.container.id]  # left for the gc
    finally:
        await backend.gc(job=job_name)
        await backend.close()
    assert await job_containers(job_name) == []

def test_start_slots_setting_and_its_errors(tmp_path, monkeypatch):
    assert load_settings(tmp_path, {"TTGEN_START_CONCURRENCY": "3"}).engine_slots == 3
    assert 1 <= load_settings(tmp_path, {}).engine_slots <= 32
    (tmp_path / "ttgen.toml").write_text("[sandbox]\nstart_concurrency = 5\n")
    assert load_settings(tmp_path, {}).engine_slots == 5
    from ttgen.errors import ConfigError

    with pytest.raises(ConfigError, match="TTGEN_START_CONCURRENCY='many' is not an integer"):
        load_settings(tmp_path, {"TTGEN_START_CONCURRENCY": "many"})
    (tmp_path / "ttgen.toml").write_text("[sandbox]\nstart_concurrency = 0\n")
    with pytest.raises(ConfigError, match=r"ttgen.toml: \[sandbox\] start_concurrency must be"):
        load_settings(tmp_path, {})


def test_engine_call_timeout_setting_and_its_errors(tmp_path):
    from ttgen.errors import ConfigError

    assert load_settings(tmp_path, {}).engine_call_timeout == 300
    assert load_settings(tmp_path, {"TTGEN_ENGINE_CALL_TIMEOUT": "2.5"}).engine_call_timeout == 2.5
    (tmp_path / "ttgen.toml").write_text("[sandbox]\nengine_call_timeout = 60\n")
    assert load_settings(tmp_path, {}).engine_call_timeout == 60
    with pytest.raises(ConfigError, match="TTGEN_ENGINE_CALL_TIMEOUT='soon' is not a number"):
        load_settings(tmp_path, {"TTGEN_ENGINE_CALL_TIMEOUT": "soon"})
    with pytest.raises(ConfigError, match="TTGEN_ENGINE_CALL_TIMEOUT='0': must be more than 0"):
        load_settings(tmp_path, {"TTGEN_ENGINE_CALL_TIMEOUT": "0"})
    (tmp_path / "ttgen.toml").write_text("[sandbox]\nengine_call_timeout = -1\n")
    with pytest.raises(ConfigError, match=r"ttgen.toml: \[sandbox\] engine_call_timeout must be"):
        load_settings(tmp_path, {})


def test_agent_pacing_setting_and_its_errors(tmp_path):
    from ttgen.errors import ConfigError
    from ttgen.rollout.ray_node import settings_from_dict, settings_to_dict

    assert load_settings(tmp_path, {}).agent_pacing is True
    assert load_settings(tmp_path, {"TTGEN_AGENT_PACING": "off"}).agent_pacing is False
    (tmp_path / "ttgen.toml").write_text("[sandbox]\nagent_pacing = false\n")
    off = load_settings(tmp_path, {})
    assert off.agent_pacing is False
    assert load_settings(tmp_path, {"TTGEN_AGENT_PACING": "1"}).agent_pacing is True
    # a Ray node gets the driver's choice (and its engine call limit)
    off.engine_call_timeout = 42.0
    node = settings_from_dict(settings_to_dict(off))
    assert node.agent_pacing is False and node.engine_call_timeout == 42.0
    with pytest.raises(ConfigError, match="TTGEN_AGENT_PACING='maybe': use 1 or 0"):
        load_settings(tmp_path, {"TTGEN_AGENT_PACING": "maybe"})
    (tmp_path / "ttgen.toml").write_text('[sandbox]\nagent_pacing = "no"\n')
    with pytest.raises(ConfigError, match=r"ttgen.toml: \[sandbox\] agent_pacing must be true or"):
        load_settings(tmp_path, {})


async def test_more_long_lived_exec_streams_than_a_default_pool_holds(docker_ready, job_name):
    """Every trial keeps an exec stream open for its whole life (its exec helper). A pool of
    100 connections (aiohttp's default, what ttgen used before its own client): with 120 streams
    open, the next engine call would wait for a free connection forever. The backend's pool has
    no such limit."""
    from ttgen.sandbox.docker import DockerBackend
    from ttgen.sandbox.docker_sandbox import force_remove

    backend = DockerBackend(Settings(pull=False))
    docker = backend.docker
    container = await docker.containers.create({
        "Image": BASE_IMAGE, "Cmd": ["sleep", "300"], "Labels": {"ttgen.job": job_name},
    })  # fmt: skip
    streams = []
    try:
        await container.start()

        async def hold_open_streams() -> float:
            for _ in range(120):
                ex = await container.exec(["cat"], stdin=True)
                stream = ex.attach()
                await stream.__aenter__()
                streams.append(stream)
            t0 = time.monotonic()
            await docker.version()
            return time.monotonic() - t0

        assert await asyncio.wait_for(hold_open_streams(), 60) < 5
        assert len(streams) == 120
        assert docker.open_connections > 120  # the streams' and the calls' ones
    finally:
        for s in streams:
            await s.__aexit__(None, None, None)
        await force_remove(container)  # 120 processes to kill: the engine's wait may lapse
        await backend.close()


def _capacity_in_child(soft: int, hard: int, n: int) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))
        from ttgen.errors import ConfigError
        from ttgen.rollout.executors import check_host_capacity
        try:
            check_host_capacity({n})
        except ConfigError as exc:
            print("refused:", exc)
            sys.exit(3)
        print("soft", resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_open_files_limit_is_raised_or_the_job_is_refused_saying_what_to_change():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 5000:
        pytest.fail(f"this test needs a hard open-files limit of 5000 or more, not {hard}")
    ok = _capacity_in_child(300, 5000, 1000)  # 1,000 trials need 4,256: the soft one is raised
    assert ok.returncode == 0 and ok.stdout.split() == ["soft", "4256"], ok.stdout + ok.stderr
    low = _capacity_in_child(300, 1024, 1000)  # the hard one is too low: refused, with the fix
    assert low.returncode == 3, low.stdout + low.stderr
    assert "1000 concurrent trials need about 4256 open files" in low.stdout
    assert "at most 1024 (`ulimit -Hn`)" in low.stdout and "ulimit -n 4256" in low.stdout


def test_a_job_the_host_cannot_hold_is_refused_before_it_starts(docker_ready, make_task, tmp_path):
    task = make_task("t", dockerfile=None, toml=f'[environment]\ndocker_image = "{BASE_IMAGE}"\n')
    out = tmp_path / "job"

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 512))

    done = subprocess.run(
        [sys.executable, "-m", "ttgen.cli", "rollout", str(task), "-a", "nop", "-k", "300",
         "-n", "300", "--out", str(out)],
        capture_output=True, text=True, timeout=120, preexec_fn=low_limit,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "300 concurrent trials need about 1456 open files" in done.stderr
    assert not out.exists()  # nothing written, nothing to clean up


# -- kill -9 with every trial of a Terminus 2 job in flight ----------------------------------------

N_TRIALS = 24


def _teacher(body: dict) -> str:
    n = sum(1 for m in body["messages"] if m["role"] == "assistant")
    return json.dumps({
        "analysis": f"turn {n}", "plan": "look around",
        "commands": [] if n >= 6 else [{"keystrokes": "ls /\n", "duration": 0.1}],
        "task_complete": n >= 6,
    })  # fmt: skip


async def test_kill_9_with_every_terminus_trial_in_flight_then_resume(
    docker_ready, make_task, tmp_path
):
    task = make_task("t", dockerfile=None, toml=f'[environment]\ndocker_image = "{BASE_IMAGE}"\n')
    out = tmp_path / "job"
    async with ScriptedLLMServer([], default=_teacher, latency_sec=0.5) as server:
        cmd = [sys.executable, "-m", "ttgen.cli", "rollout", str(task), "-a", "terminus-2",
               "--model", "m", "--base-url", server.base_url, "--ak", "api_key=k",
               "-k", str(N_TRIALS), "-n", str(N_TRIALS), "--retries", "0", "--out", str(out)]  # fmt: skip
        env = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
        proc = await asyncio.create_subprocess_exec(
            *cmd, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            # every trial has its container and none has finished: pull the plug
            end = time.monotonic() + 120
            job_id = None
            while time.monotonic() < end:
                if job_id is None and (out / "config.json").exists():
                    job_id = json.loads((out / "config.json").read_text())["job_id"]
                if job_id and len(await job_containers(job_id)) == N_TRIALS:
                    break
                await asyncio.sleep(0.2)
            assert job_id and not list(out.glob("*/result.json"))
            proc.kill()
            await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        left = await job_containers(job_id)
        assert len(left) == N_TRIALS
        resume = await asyncio.create_subprocess_exec(
            *cmd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        stdout = (await asyncio.wait_for(resume.communicate(), 300))[0].decode()
    assert resume.returncode == 0, stdout
    names = sorted(p.parent.name for p in out.glob("*/result.json"))
    assert names == sorted(f"t__{a}" for a in range(N_TRIALS))  # none lost
    rows = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    assert sorted(r["trial_name"] for r in rows) == names  # none twice
    assert {json.loads((out / n / "result.json").read_text())["outcome"] for n in names} == {
        "passed"
    }
    assert await job_containers(job_id) == []
    result = json.loads((out / "result.json").read_text())
    assert len(result["removed_containers"]) == N_TRIALS and result["cleanup_sec"] > 0
    assert f"removed {N_TRIALS} container(s) left by an earlier run in " in stdout


# -- an engine that stops answering (the libnetwork deadlock of Docker 20.10 < 20.10.27) ---------


class _WedgingProxy:
    """The engine's socket seen through a proxy that, from the first container removal on,
    never answers a container create, start or removal or a network call -- what Docker 20.10
    before 20.10.27 does once its network controller deadlocks (moby/moby#46661: seen here at
    1,000 containers) -- while listing containers and execs still answer. Runs its own event
    loop in a thread, so a CLI in another process can use it (DOCKER_HOST)."""

    def __init__(self, path: str, upstream: str = "/var/run/docker.sock") -> None:
        import threading

        self.path, self.upstream = path, upstream
        self.wedged = False
        self.held: list[str] = []  # the requests it never answered
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _stalls(self, method: str, path: str) -> bool:
        path = path.split("?", 1)[0]
        if method == "DELETE" and "/containers/" in path:
            self.wedged = True
        if not self.wedged:
            return False
        return (
            (method == "DELETE" and "/containers/" in path)
            or path.endswith("/containers/create")
            or (method == "POST" and path.endswith("/start") and "/containers/" in path)
            or "/networks" in path
        )

    async def _client(self, reader, writer) -> None:
        up_r, up_w = await asyncio.open_unix_connection(self.upstream)

        async def pump(src, dst) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        back = asyncio.ensure_future(pump(up_r, writer))
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, path, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (h.decode().partition(":") for h in head.split(b"\r\n")[1:])
                }
                if self._stalls(method, path):
                    self.held.append(f"{method} {path}")
                    await asyncio.Event().wait()  # never answered
                body = await reader.readexactly(int(headers.get("content-length") or 0))
                up_w.write(head + body)
                await up_w.drain()
                if "upgrade" in headers:  # an attach or an exec's stream: bytes from now on
                    await pump(reader, up_w)
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            back.cancel()
            up_w.close()
            writer.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_unix_server(self._client, path=self.path)
        )
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> _WedgingProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    async def _shutdown(self) -> None:
        self._server.close()
        mine = asyncio.current_task()
        rest = [t for t in asyncio.all_tasks() if t is not mine]
        for t in rest:
            t.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def test_a_stuck_engine_stops_the_job_saying_what_to_do_and_the_rerun_finishes_it(
    docker_ready, make_task, tmp_path
):
    """The engine stops answering removals, starts and network calls after the first trial:
    that trial's removal gives up after the limit (its result stands, with a warning), the job
    starts nothing more, stops with exit 2 and a message naming the engine, the call and what to
    do, and records the trial it could not start as cancelled. Run again on a working engine
    (restarted), the job removes what was left and runs the rest: every trial passes, none
    twice, no container left. Without the limit the first run would hang for good."""
    task = make_task("t", dockerfile=None, solve_sh="#!/bin/bash\necho done\n",
                     toml=f'[environment]\ndocker_image = "{BASE_IMAGE}"\n')  # fmt: skip
    out = tmp_path / "job"
    cmd = [sys.executable, "-m", "ttgen.cli", "rollout", str(task), "-a", "oracle", "-k", "3",
           "-n", "1", "--out", str(out)]  # fmt: skip
    sock = str(tmp_path / "engine.sock")
    env = {**os.environ, "COLUMNS": "250", "TTGEN_ENGINE_CALL_TIMEOUT": "3"}
    with _WedgingProxy(sock) as proxy:
        t0 = time.monotonic()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                              env={**env, "DOCKER_HOST": f"unix://{sock}"})  # fmt: skip
        took = time.monotonic() - t0
    assert done.returncode == 2, done.stdout + done.stderr
    err = " ".join(done.stderr.split())
    assert f"the docker engine at unix://{sock} did not finish removing container" in err
    assert "in 3 s" in err and "moby/moby#46661" in err
    assert "restart the engine" in err and "run the same command again" in err
    assert proxy.held and proxy.held[0].startswith("DELETE ")
    assert took < 60
    results = {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/result.json")}
    first, second = (results[f"t__{i}"] for i in (0, 1))
    assert first["outcome"] == "passed"
    assert any("did not finish removing container" in w for w in first["warnings"])
    assert second["outcome"] == "cancelled"
    assert second["exception_info"]["exception_type"] == "EngineStuckError"
    assert "t__2" not in results  # never started
    assert json.loads((out / "result.json").read_text())["status"] == "failed"
    assert "stopping: the docker engine" in (out / "job.log").read_text()

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    job = json.loads((out / "result.json").read_text())
    assert job["stats"]["outcomes"] == {"passed": 3}
    assert len(job["removed_containers"]) == 1  # the first trial's, left by the stuck engine
    lines = (out / "trials.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["trial_name"] for x in lines) == ["t__0", "t__1", "t__2"]
    assert asyncio.run(job_containers(job["id"])) == []


async def test_a_docker_version_with_the_known_deadlock_is_noted_in_the_job_log(
    docker_ready, make_task, tmp_path
):
    """Docker before 20.10.27 (Debian bookworm's 20.10.24) can deadlock when many containers
    start and stop: a job on such an engine says so in job.log, right after it starts, with
    what will happen (the job stops after the engine call limit); a fixed engine, another
    version line or another engine gets no such note. The engine's version is the one thing
    not asked of the real engine here (it is whatever this host runs)."""
    from ttgen.formats.trial import AgentSpec
    from ttgen.rollout.job import Job, JobOptions, rollout_specs
    from ttgen.sandbox.docker import DockerBackend

    class Versioned(DockerBackend):
        version = ""

        async def ping(self) -> dict:
            return {**await super().ping(), "Version": self.version}

    backend = Versioned(Settings(pull=False, engine_call_timeout=120))
    assert backend.engine_caveat({"Version": "20.10.27"}) is None
    assert backend.engine_caveat({"Version": "24.0.7"}) is None
    assert backend.engine_caveat({"Version": "dev"}) is None
    assert backend.engine_caveat({"Version": "19.03.13"}) is not None
    task = _task(make_task)
    try:
        for version, noted in (("20.10.24+dfsg1", True), ("26.1.5+dfsg1", False)):
            backend.version = version
            out = tmp_path / version
            specs = rollout_specs([task], AgentSpec(name="nop"), 1)
            result = await Job(out, specs, JobOptions(retries=0), backend=backend).run()
            assert result["stats"]["outcomes"] == {"passed": 1}  # the task's test always passes
            lines = (out / "job.log").read_text().splitlines()
            notes = [x for x in lines if " note: " in x]
            if noted:
                assert " run started " in lines[0] and lines[1] == notes[0]
                assert f"the engine is Docker {version}: versions before 20.10.27 can " in notes[0]
                assert "moby/moby#46661" in notes[0] and "stops after 120 s" in notes[0]
            else:
                assert notes == []
    finally:
        await backend.close()


# -- the agents of a start burst (ttgen.rollout.pacing) ------------------------------------------


async def test_in_a_start_burst_early_agents_wait_for_the_last_starts(
    docker_ready, make_task, tmp_path
):
    """8 Terminus 2 trials at once with 1 start slot (a burst: more than 4 x 1): the first trial's agent begins as soon as
    it is set up; the others' wait (trial.log says how long) and begin in the last part of the
    start phase, none after the last container is up; every trial passes. With
    `agent_pacing = false` none waits."""
    from datetime import datetime

    from ttgen.formats.trial import AgentSpec
    from ttgen.rollout.job import Job, JobOptions, rollout_specs
    from ttgen.rollout.pacing import SPREAD
    from ttgen.sandbox.docker import DockerBackend

    def at(stamp) -> float:
        return datetime.fromisoformat(str(stamp)).timestamp()

    task = _task(make_task)
    n = 8
    async with ScriptedLLMServer([], default=_teacher, latency_sec=0.3) as server:
        for pacing in (True, False):
            backend = DockerBackend(Settings(pull=False, start_concurrency=1, agent_pacing=pacing))
            kwargs = {"model": "m", "base_url": server.base_url, "api_key": "k"}
            specs = rollout_specs([task], AgentSpec(name="terminus-2", kwargs=kwargs), n)
            out = tmp_path / f"pacing-{pacing}"
            try:
                result = await Job(
                    out, specs, JobOptions(n_concurrent=n, retries=0), backend=backend
                ).run()
            finally:
                await backend.close()
            assert result["stats"]["outcomes"] == {"passed": n}
            trials = [json.loads((out / s.trial_name / "result.json").read_text()) for s in specs]
            began = min(at(t["environment_setup"]["started_at"]) for t in trials)
            ready = {t["trial_name"]: at(t["agent_setup"]["finished_at"]) for t in trials}
            go = {t["trial_name"]: at(t["agent_execution"]["started_at"]) for t in trials}
            held = {
                s.trial_name
                for s in specs
                if "while other trials' containers started"
                in (out / s.trial_name / "trial.log").read_text()
            }
            if not pacing:
                assert held == set()
                assert all(go[k] - ready[k] < 0.5 for k in ready)
                continue
            first = min(ready, key=ready.get)
            last_up = max(ready.values())
            assert first not in held and go[first] - ready[first] < 0.5
            assert len(held) >= n // 2, held
            window = max(1.0, SPREAD * (last_up - began))
            for name in held:
                assert last_up - window - 0.5 <= go[name] <= last_up + 0.5, (name, go, ready)
