"""Jobs on a Ray cluster (RayExecutor): same results as local, resume, node failures, Ctrl-C, CLI.

One Ray cluster of two nodes on this machine (ray.cluster_utils.Cluster; every node drives the
same local Docker engine) is shared by the whole module. Workers import this module for the
test agents (PYTHONPATH).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import pytest

from conftest import BASE_IMAGE, job_containers, unique_dockerfile
from test_synth_docker import BAD_IMPORT, GOOD, GOOD2, TRIVIAL, _item
from ttgen.agents import AgentContext, ModelInfo
from ttgen.formats.trial import AgentSpec
from ttgen.rollout.executors import RayExecutor, pack_trial, unpack_trial
from ttgen.rollout.job import Job, JobOptions, rollout_specs
from ttgen.task import Task
from ttgen.testing.scripted_llm import Reply, ScriptedLLMServer

ray = pytest.importorskip("ray")

PASS_IF_ANSWER = """#!/bin/bash
if [ "$(cat /app/answer.txt 2>/dev/null)" = "42" ]; then echo 1; else echo 0; fi \
  > /logs/verifier/reward.txt
"""
SOLVE = "#!/bin/bash\necho 42 > /app/answer.txt\n"
SLOW_SOLVE = "#!/bin/bash\nsleep 3\necho 42 > /app/answer.txt\n"
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), old) if p)
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    c.add_node(num_cpus=2)
    ray.init(address=c.address, log_to_driver=False)
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def job_id(out: Path) -> str:
    return json.loads((out / "config.json").read_text())["job_id"]


def results(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(out.glob("*/result.json"))}


def files(trial: Path) -> set[str]:
    return {str(p.relative_to(trial)) for p in trial.rglob("*") if p.is_file()}


def _tasks(make_task, parent: Path | None = None, solve: str = SOLVE) -> list[Task]:
    good = make_task("good", test_sh=PASS_IF_ANSWER, solve_sh=solve, parent=parent)
    bad = make_task(
        "bad",
        test_sh=PASS_IF_ANSWER,
        solve_sh="#!/bin/bash\necho 41 > /app/answer.txt\n",
        parent=parent,
    )
    return [Task.load(good), Task.load(bad)]


# -- archives (no cluster) ----------------------------------------------------------------------


def test_trial_archive_is_capped_keeping_the_essential_files(tmp_path):
    trial = tmp_path / "node" / "t__0"
    (trial / "agent").mkdir(parents=True)
    (trial / "verifier").mkdir()
    (trial / "config.json").write_text(
        json.dumps(
            {
                "task_path": "/node/tasks/t",
                "task_name": "t",
                "trial_name": "t__0",
                "agent": {"name": "oracle"},
            }
        )
    )
    (trial / "trial.log").write_text("x\n")
    (trial / "agent" / "small.txt").write_text("s" * 100)
    (trial / "agent" / "huge.bin").write_bytes(b"h" * 5000)
    (trial / "verifier" / "reward.txt").write_text("1\n")
    result = {
        "id": "1",
        "task_name": "t",
        "trial_name": "t__0",
        "trial_uri": "file:///node/t__0",
        "task_id": {"path": "/node/tasks/t"},
        "outcome": "passed",
        "reward": 1.0,
        "config": {
            "task_path": "/node/tasks/t",
            "task_name": "t",
            "trial_name": "t__0",
            "agent": {"name": "oracle"},
        },
        "agent_info": {"name": "oracle"},
    }
    (trial / "result.json").write_text(json.dumps(result))
    data, omitted = pack_trial(trial, cap=2000)
    assert omitted == ["agent/huge.bin"]
    dest = tmp_path / "job" / "t__0"
    dest.parent.mkdir()
    node = {"host": "n1", "node_id": "abc"}
    r = unpack_trial(data, dest, task_path="/driver/tasks/t", node=node, omitted=omitted)
    assert r is not None and r.outcome.value == "passed"
    assert files(dest) == {
        "config.json",
        "trial.log",
        "result.json",
        "agent/small.txt",
        "verifier/reward.txt",
    }
    on_disk = json.loads((dest / "result.json").read_text())
    # an earlier ttgen's flat config is read and written back in Harbor's shape
    assert on_disk["config"]["task"]["path"] == "/driver/tasks/t"
    assert on_disk["config"]["trials_dir"] == str(dest.parent.resolve())
    assert on_disk["task_id"]["path"] == "/driver/tasks/t"
    assert on_disk["trial_uri"] == dest.resolve().as_uri()
    assert on_disk["environment"]["node"] == node
    assert "agent/huge.bin" in on_disk["warnings"][0]
    assert json.loads((dest / "config.json").read_text())["task"]["path"] == "/driver/tasks/t"
    assert not list(dest.parent.glob(".*incoming"))


# -- jobs on the cluster ------------------------------------------------------------------------


async def test_ray_job_matches_local_job_and_resumes(
    cluster, docker_ready, make_task, tmp_path, backend, settings
):
    # "twin" is "good" under another name: the same archive content must not mix them up.
    tasks = [
        *_tasks(make_task),
        Task.load(make_task("twin", test_sh=PASS_IF_ANSWER, solve_sh=SOLVE)),
    ]
    agent = AgentSpec(name="oracle")
    local_out, ray_out = tmp_path / "local", tmp_path / "ray"
    local = await Job(
        local_out, rollout_specs(tasks, agent, 2), JobOptions(n_concurrent=4), backend=backend
    ).run()

    def ray_job() -> Job:
        ex = RayExecutor(per_node=2, settings=settings)
        return Job(ray_out, rollout_specs(tasks, agent, 2), JobOptions(), executor=ex)

    remote = await ray_job().run()
    lr, rr = results(local_out), results(ray_out)
    assert (
        sorted(rr) == sorted(lr) == [f"{t}__{a}" for t in ("bad", "good", "twin") for a in (0, 1)]
    )
    for name in lr:
        assert (rr[name]["outcome"], rr[name]["reward"]) == (
            lr[name]["outcome"],
            lr[name]["reward"],
        )
        assert files(ray_out / name) == files(local_out / name)
        assert {
            "result.json",
            "config.json",
            "trial.log",
            "verifier/reward.txt",
            "verifier/test-stdout.txt",
        } <= files(ray_out / name)
        assert rr[name]["trial_uri"] == (ray_out / name).resolve().as_uri()
        config = json.loads((ray_out / name / "config.json").read_text())
        task = next(t for t in tasks if t.name == name.split("__")[0])
        path = str(task.path.resolve())
        assert config["task"]["path"] == rr[name]["config"]["task"]["path"] == path
    keys = (
        "outcomes",
        "mean_reward",
        "pass_at_k",
        "n_finished_trials",
        "n_total_trials",
        "n_retries",
    )
    assert {k: remote["stats"][k] for k in keys} == {k: local["stats"][k] for k in keys}
    assert remote["stats"]["outcomes"] == {"passed": 4, "failed": 2}
    assert len({r["environment"]["node"]["node_id"] for r in rr.values()}) == 2  # both nodes
    assert {r["task_name"] for r in rr.values()} == {"good", "bad", "twin"}
    index = (ray_out / "trials.jsonl").read_text().splitlines()
    assert len(index) == 6
    assert await job_containers(job_id(ray_out)) == []

    # Resume: nothing new; then a deleted trial folder is run again, and only that one.
    first = {n: r["id"] for n, r in rr.items()}
    again = await ray_job().run()
    assert {n: r["id"] for n, r in results(ray_out).items()} == first
    assert again["stats"]["n_finished_trials"] == 6
    shutil.rmtree(ray_out / "good__1")
    third = await ray_job().run()
    now = {n: r["id"] for n, r in results(ray_out).items()}
    assert [n for n in now if now[n] != first[n]] == ["good__1"]
    assert third["stats"]["outcomes"] == {"passed": 4, "failed": 2}
    config = json.loads((ray_out / "config.json").read_text())
    assert len(config["runs"]) == 3 and config["runs"][0]["options"]["executor"] == "local"


async def test_ray_nodes_open_the_jobs_backend_by_name(
    cluster, podman_ready, docker_ready, make_task, tmp_path, settings
):
    """`JobOptions(backend="podman")` reaches every node: its runner opens that backend, so the
    trials' images are built in Podman's store (not Docker's) and their containers run there."""
    from ttgen.sandbox import open_backend

    df = unique_dockerfile()
    tasks = [
        Task.load(make_task("good", test_sh=PASS_IF_ANSWER, solve_sh=SOLVE, dockerfile=df)),
        Task.load(make_task("bad", test_sh=PASS_IF_ANSWER, dockerfile=df,
                            solve_sh="#!/bin/bash\necho 41 > /app/answer.txt\n")),
    ]  # fmt: skip
    out = tmp_path / "ray"
    opts = JobOptions(executor="ray", per_node=1, backend="podman", retries=0)
    result = await Job(out, rollout_specs(tasks, AgentSpec(name="oracle"), 1), opts).run()
    assert result["stats"]["outcomes"] == {"passed": 1, "failed": 1}
    rows = results(out)
    assert all("node" in r["environment"] for r in rows.values())
    image = rows["good__0"]["environment"]["image"]
    async with open_backend("podman", settings) as podman, open_backend("docker", settings) as docker:
        assert await podman.image_exists(image) is not None
        assert await docker.image_exists(image) is None
    assert await job_containers(job_id(out)) == []


class DyingAgent:
    """Kills the process it runs in (the node's runner) on its first try, mid-trial."""

    name: ClassVar[str] = "dying"

    def __init__(self, counter: str) -> None:
        self.counter = Path(counter)

    def version(self) -> str:
        return "1"

    def model_info(self) -> ModelInfo | None:
        return None

    async def setup(self, sandbox, ctx: AgentContext) -> None:
        return None

    async def run(self, instruction: str, sandbox, ctx: AgentContext) -> None:
        n = int(self.counter.read_text()) if self.counter.exists() else 0
        self.counter.write_text(str(n + 1))
        if n == 0:
            os._exit(1)
        await sandbox.exec("echo 42 > /app/answer.txt")


async def test_runner_dying_mid_trial_is_an_infrastructure_error_and_retried(
    cluster, docker_ready, make_task, tmp_path, settings
):
    task = Task.load(make_task("t", test_sh=PASS_IF_ANSWER))
    agent = AgentSpec(
        name="test_ray_executor:DyingAgent", kwargs={"counter": str(tmp_path / "count")}
    )
    out = tmp_path / "job"
    opts = JobOptions(retries=2, retry_min_wait_sec=0.2, retry_max_wait_sec=0.5)
    res = await Job(
        out,
        rollout_specs([task], agent, 1),
        opts,
        executor=RayExecutor(per_node=1, settings=settings),
    ).run()
    r = results(out)["t__0"]
    assert r["outcome"] == "passed", r
    assert [x["outcome"] for x in r["retries"]] == ["environment_error"]
    assert r["retries"][0]["exception_type"] == "ActorDiedError"
    assert res["stats"]["n_retries"] == 1 and res["stats"]["mean_reward"] == 1.0
    assert "runner died" in (out / "job.log").read_text()
    assert await job_containers(job_id(out)) == []  # the dead runner's container too


async def test_node_leaving_mid_trial_reruns_its_trial_elsewhere(
    cluster, docker_ready, make_task, tmp_path, settings
):
    extra = cluster.add_node(num_cpus=2)
    parent = tmp_path / "tasks"
    tasks = [
        Task.load(make_task(n, test_sh=PASS_IF_ANSWER, solve_sh=SLOW_SOLVE, parent=parent))
        for n in ("a", "b", "c")
    ]
    out = tmp_path / "job"
    ex = RayExecutor(per_node=1, settings=settings)
    opts = JobOptions(retries=2, retry_min_wait_sec=0.2, retry_max_wait_sec=0.5)
    run = asyncio.create_task(
        Job(out, rollout_specs(tasks, AgentSpec(name="oracle"), 1), opts, executor=ex).run()
    )
    end = time.monotonic() + 60
    while extra.node_id not in ex.in_flight.values():
        assert time.monotonic() < end and not run.done()
        await asyncio.sleep(0.1)
    victim = next(t for t, n in ex.in_flight.items() if n == extra.node_id)
    await asyncio.sleep(1.5)  # its container is up, solve.sh sleeping
    cluster.remove_node(extra, allow_graceful=False)
    res = await asyncio.wait_for(run, 120)
    rs = results(out)
    assert res["stats"]["outcomes"] == {"passed": 3}
    assert [x["outcome"] for x in rs[victim]["retries"]] == ["environment_error"]
    assert "failed" in rs[victim]["retries"][0]["exception_message"]
    assert rs[victim]["environment"]["node"]["node_id"] != extra.node_id
    assert all(r["retries"] == [] for n, r in rs.items() if n != victim)
    assert await job_containers(job_id(out)) == []


async def test_cancelling_a_ray_job_cancels_remote_trials_and_removes_containers(
    cluster, docker_ready, make_task, tmp_path, settings
):
    tasks = _tasks(make_task, solve=SLOW_SOLVE)
    out = tmp_path / "job"
    ex = RayExecutor(per_node=2, settings=settings)
    run = asyncio.create_task(
        Job(out, rollout_specs(tasks, AgentSpec(name="oracle"), 2), JobOptions(), executor=ex).run()
    )
    end = time.monotonic() + 60
    while not (out / "config.json").exists() or len(await job_containers(job_id(out))) < 2:
        assert time.monotonic() < end and not run.done()
        await asyncio.sleep(0.2)
    t0 = time.monotonic()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert time.monotonic() - t0 < 15
    assert await job_containers(job_id(out)) == []
    assert json.loads((out / "result.json").read_text())["status"] == "cancelled"
    cancelled = [n for n, r in results(out).items() if r["outcome"] == "cancelled"]
    assert cancelled


def _turn(commands: list[str], complete: bool) -> Reply:
    body = {
        "analysis": "a",
        "plan": "p",
        "task_complete": complete,
        "commands": [{"keystrokes": k, "duration": 0.5} for k in commands],
    }
    return Reply(json.dumps(body))


async def test_terminus_teacher_on_ray_gets_the_drivers_key_and_returns_its_logs(
    cluster, docker_ready, make_task, tmp_path, settings, monkeypatch
):
    monkeypatch.setenv("TTGEN_API_KEY", "sk-ray-test")  # only the driver has it
    task = Task.load(make_task("t", test_sh=PASS_IF_ANSWER))
    script = [_turn(["echo 42 > /app/answer.txt\n"], False), _turn([], True), _turn([], True)]
    async with ScriptedLLMServer(script) as server:
        agent = AgentSpec(name="terminus-2", kwargs={"model": "m", "base_url": server.base_url})
        out = tmp_path / "job"
        res = await Job(
            out,
            rollout_specs([task], agent, 1),
            JobOptions(),
            executor=RayExecutor(settings=settings),
        ).run()
        assert server.remaining == 0
        assert {r.headers["authorization"] for r in server.requests} == {"Bearer sk-ray-test"}
    assert res["stats"]["outcomes"] == {"passed": 1}
    trial = out / "t__0"
    assert {"agent/messages.json", "agent/trajectory.json", "agent/recording.cast"} <= files(trial)
    messages = json.loads((trial / "agent" / "messages.json").read_text())
    assert messages[0]["content"].startswith("You are an AI assistant tasked with solving")
    assert results(out)["t__0"]["agent_result"]["n_input_tokens"] > 0


# -- the command line ---------------------------------------------------------------------------


def test_cli_rollout_and_validate_on_ray(cluster, docker_ready, make_task, tmp_path):
    parent = tmp_path / "tasks"
    _tasks(make_task, parent=parent)
    env = {**os.environ, "TTGEN_IMAGE_ALIASES": f"ubuntu:*={BASE_IMAGE}", "COLUMNS": "200"}
    ray_args = ["--executor", "ray", "--address", cluster.address, "--per-node", "2"]
    out = tmp_path / "job"
    cmd = [
        sys.executable,
        "-m",
        "ttgen.cli",
        "rollout",
        str(parent),
        "-a",
        "oracle",
        "-k",
        "2",
        "--out",
        str(out),
        "--json",
        *ray_args,
    ]
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    stats = json.loads(done.stdout)["stats"]
    assert stats["outcomes"] == {"passed": 2, "failed": 2}
    assert sorted(results(out)) == ["bad__0", "bad__1", "good__0", "good__1"]
    assert json.loads((out / "config.json").read_text())["runs"][0]["options"]["executor"] == "ray"
    assert "Ray executor: 2 node(s)" in (out / "job.log").read_text()
    assert asyncio.run(job_containers(job_id(out))) == []

    vout = tmp_path / "validation"
    cmd = [
        sys.executable,
        "-m",
        "ttgen.cli",
        "validate",
        str(parent),
        "--out",
        str(vout),
        "--json",
        *ray_args,
    ]
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    verdicts = {v["task"]: v["verdict"] for v in map(json.loads, done.stdout.splitlines())}
    assert verdicts == {"good": "valid", "bad": "oracle_failed"}

    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "ttgen.cli",
            "rollout",
            str(parent),
            "-a",
            "oracle",
            "--out",
            str(tmp_path / "x"),
            "--per-node",
            "2",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "need --executor ray" in bad.stderr


# -- synthesis: the Docker gates on the nodes ----------------------------------------------------

# Synthesis answers (test_synth_docker): GOOD, GOOD2 pass every gate; with TRIVIAL a
# do-nothing agent scores > 0 (validate fails); BAD_IMPORT imports what the image lacks
# (collect fails).
ALL_GATES = ("static", "leak", "files", "collect", "validate")


async def _synth(out: Path, gates) -> tuple[dict, list[str]]:
    """Items 0-2 against [GOOD | TRIVIAL -> repaired to GOOD2 | BAD_IMPORT twice -> dropped]
    (one at a time, so the script's order is the items'); the summary and the repair prompts."""
    from ttgen.llm import LLMConfig
    from ttgen.sources.synth.engine import Synthesizer, SynthOptions

    script = [GOOD, TRIVIAL, GOOD2, BAD_IMPORT, BAD_IMPORT]
    async with ScriptedLLMServer(script) as server:
        config = LLMConfig(model="m", base_url=server.base_url, max_retries=0)
        options = SynthOptions(out=out, concurrency=1, novelty_threshold=1.0)
        summary = await Synthesizer(config, options, gates).run([_item(i) for i in range(3)])
        repairs = [_timeless(r.messages[-1]["content"]) for r in server.requests[2::2]]
    return summary, repairs


def _timeless(text: str) -> str:
    return re.sub(r"\b\d+\.\d+s\b", "N.NNs", text)  # pytest's "1 error in 0.25s"


def _gate_verdicts(out: Path) -> dict[str, list]:
    from ttgen.sources.synth.engine import read_records

    return {
        rid: [
            (rec["status"], rec.get("dropped_by")),
            [[(g["gate"], g["ok"], [_timeless(p) for p in g["problems"]])
              for g in a.get("gates", [])] for a in rec["attempts"]],
        ]
        for rid, rec in read_records(out).items()
    }  # fmt: skip


async def test_synthesis_gates_on_ray_nodes_give_the_local_verdicts(
    cluster, docker_ready, tmp_path, ca_settings, job_name
):
    """The same three drafts, their Docker gates once on this engine and once on the Ray
    nodes: the same verdicts, repairs, drops and task folders. The repaired item proves a
    re-staged folder travels again (its first draft fails validation, its repair passes)."""
    from ttgen.sandbox import open_backend
    from ttgen.sources.synth.gates import GateRunner

    async with open_backend(None, ca_settings) as backend:
        local_summary, local_repairs = await _synth(
            tmp_path / "local", GateRunner(ALL_GATES, backend, job=job_name)
        )
        await backend.gc(job=job_name)

    ex = RayExecutor(per_node=1, settings=ca_settings, cache_archives=False)
    lines: list[str] = []
    await ex.start(job_name, lines.append)
    try:
        ray_summary, ray_repairs = await _synth(
            tmp_path / "ray", GateRunner(ALL_GATES, job=job_name, executor=ex)
        )
        assigned = {r.node_id: r.assigned for r in ex.runners.values()}
    finally:
        await ex.cleanup(job_name)
        await ex.close()

    assert "Ray executor: 2 node(s)" in lines[0]
    assert local_summary["written"] == ray_summary["written"] == 2
    assert local_summary["dropped_by"] == ray_summary["dropped_by"] == {"collect": 1}
    assert local_summary["gate_failures"] == ray_summary["gate_failures"]
    assert ray_summary["gate_failures"] == {"validate": 1, "collect": 2}
    assert _gate_verdicts(tmp_path / "local") == _gate_verdicts(tmp_path / "ray")
    assert local_repairs == ray_repairs
    assert "[validate] an agent that does nothing already scores" in ray_repairs[0]
    assert "polars" in ray_repairs[1]
    for task in ("general_task_0000", "general_task_0001"):
        local_files = files(tmp_path / "local" / task)
        assert local_files == files(tmp_path / "ray" / task)
        for rel in local_files:
            assert (tmp_path / "local" / task / rel).read_bytes() == (
                tmp_path / "ray" / task / rel
            ).read_bytes(), rel
    # Every Docker gate ran on a node, and both nodes took some: 5 collects, 3 validations.
    docker_gates = sum(
        g[0] in ("collect", "validate")
        for _, attempts in _gate_verdicts(tmp_path / "ray").values()
        for gates in attempts
        for g in gates
    )
    assert docker_gates == 8 and sum(assigned.values()) == 8
    assert all(n > 0 for n in assigned.values()), assigned
    assert await job_containers(job_name) == []


def test_node_runner_keeps_a_bounded_task_cache(tmp_path, monkeypatch):
    """Synthesis ships a new folder per draft: a node keeps the most recent MAX_NODE_TASKS,
    never one in use, and asks for an evicted one again (need_task)."""
    import ttgen.rollout.ray_node as executors
    from ttgen.rollout.executors import NodeRunner, pack_task

    monkeypatch.setattr(executors, "MAX_NODE_TASKS", 2)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    archives = {}
    for name in "abc":
        (tmp_path / name).mkdir()
        (tmp_path / name / "f.txt").write_text(name)
        archives[name] = pack_task(tmp_path / name)
    runner = NodeRunner(executors.settings_to_dict(executors.Settings()), None, {})

    async def go():
        async with runner._task_dir("a", "a", archives["a"]) as a:
            assert (a / "f.txt").read_text() == "a"
            for name in "bc":  # a is in use: b goes instead, when c arrives
                async with runner._task_dir(name, name, archives[name]) as d:
                    assert (d / "f.txt").read_text() == name
            assert a.is_dir()
        assert list(runner._ready) == ["a", "c"]
        async with runner._task_dir("b", "b", None) as d:
            assert d is None  # evicted: the driver sends it again
        async with runner._task_dir("c", "c", None) as d:
            assert d is not None and (d / "f.txt").read_text() == "c"
        async with runner._task_dir("b", "b", archives["b"]) as d:
            assert (d / "f.txt").read_text() == "b"
        assert list(runner._ready) == ["c", "b"]  # a, least recently used, went
        assert sorted(p.name for p in (runner.scratch / "tasks").iterdir()) == ["b", "c"]
        await runner.backend.close()

    asyncio.run(go())


def test_cli_synth_and_eval_on_ray(cluster, docker_ready, make_task, tmp_path, monkeypatch):
    """`ttgen synth seeds --executor ray` (collect gate on the nodes) and `ttgen eval
    --executor ray` (the oracle, k=2) through the CLI."""
    from typer.testing import CliRunner

    from test_cli import scripted_server
    from ttgen.cli import app
    from ttgen.settings import host_ca_bundle

    monkeypatch.chdir(tmp_path)
    env = {
        "COLUMNS": "200",
        "TTGEN_IMAGE_ALIASES": f"ubuntu:*={BASE_IMAGE}",
        "TTGEN_EXTRA_CA_CERT": str(host_ca_bundle()),
    }
    seeds = TESTS.parent / "examples" / "synth" / "seeds.jsonl"
    ray_args = ["--executor", "ray", "--address", cluster.address, "--per-node", "1"]
    out = tmp_path / "seeds"
    with scripted_server([GOOD, BAD_IMPORT, BAD_IMPORT]) as server:
        res = CliRunner().invoke(
            app,
            ["synth", "seeds", "--seeds", str(seeds), "--limit", "2", "--out", str(out),
             "--model", "gen", "--base-url", server.base_url, "--no-preflight", "-n", "1",
             "--gates", "static,leak,files,collect", "--json", *ray_args],
            env=env,
        )  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert (summary["written"], summary["dropped_by"]) == (1, {"collect": 1})
    assert "Ray executor: 2 node(s)" in res.stderr

    res = CliRunner().invoke(
        app, ["synth", "seeds", "--seeds", str(seeds), "--out", str(tmp_path / "x"),
              "--model", "gen", "--base-url", "http://127.0.0.1:9/v1", "--no-preflight",
              "--gates", "static", *ray_args], env=env,
    )  # fmt: skip
    assert res.exit_code == 2 and "none is selected" in res.stderr

    parent = tmp_path / "tasks"
    _tasks(make_task, parent=parent)
    res = CliRunner().invoke(
        app,
        ["eval", str(parent), "-a", "oracle", "-k", "2", "--out", str(tmp_path / "eval"),
         "--json", *ray_args],
        env=env,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert report["accuracy"] == 0.5 and report["n_trials"] == 4
    config = json.loads((tmp_path / "eval" / "job" / "config.json").read_text())
    assert config["runs"][0]["options"]["executor"] == "ray"


def test_pipeline_synth_source_runs_its_gates_on_ray(cluster, docker_ready, tmp_path,
                                                     monkeypatch):  # fmt: skip
    """A synth source with `executor: ray` in PIPELINE.yaml: its collect gate runs on the nodes."""
    import yaml
    from typer.testing import CliRunner

    from test_cli import scripted_server
    from ttgen.cli import app
    from ttgen.settings import host_ca_bundle

    monkeypatch.chdir(tmp_path)
    cfg = {
        "name": "r",
        "sources": [{"synth": "seeds", "seeds": str(TESTS.parent / "examples/synth/seeds.jsonl"),
                     "limit": 1, "gates": "static,collect", "executor": "ray",
                     "address": cluster.address, "per_node": 1}],
    }  # fmt: skip
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(cfg))
    env = {"COLUMNS": "200", "TTGEN_IMAGE_ALIASES": f"ubuntu:*={BASE_IMAGE}",
           "TTGEN_EXTRA_CA_CERT": str(host_ca_bundle())}  # fmt: skip
    with scripted_server(
        [], default=lambda body: "OK" if len(body["messages"]) == 1 else GOOD
    ) as s:
        res = CliRunner().invoke(
            app,
            ["run", "p.yaml", "--until", "sources", "--model", "m", "--base-url", s.base_url],
            env=env,
        )
    assert res.exit_code == 0, res.output
    assert "Ray executor: 2 node(s)" in res.output
    stages = json.loads((tmp_path / "runs" / "r" / "run.json").read_text())["stages"]
    assert stages["sources"]["counts"]["by_source"] == {"synth-seeds": 1}
    (record,) = (tmp_path / "runs" / "r" / "tasks" / "synth-seeds" / "generation").glob("*.json")
    gates = json.loads(record.read_text())["attempts"][0]["gates"]
    assert [(g["gate"], g["ok"]) for g in gates] == [("static", True), ("collect", True)]
