"""Harbor both ways, with Harbor's OWN code (PyPI ``harbor``, pinned) as the client.

What ttgen writes is read by Harbor's models, its ATIF validator, its Task class and its traces
exporter, in the Harbor image (`harbor` fixture, tests/harbor_support.py); and a job written by
Harbor's models for the same run (`write-harbor-job`) curates into the same records as ttgen's.
Real folders are made once per module: an oracle job, a Terminus 2 job (scripted teacher over
real sockets) and a validation job on examples/tasks/hello-world, adapter tasks from
examples/adapters and one synthesized task.
"""

from __future__ import annotations

import asyncio
import json
import re
import tomllib
import uuid
from pathlib import Path
from typing import Any

import pytest

from conftest import BASE_IMAGE
from ttgen.curate.curator import CurateOptions, curate, read_records
from ttgen.formats.trial import AgentSpec, read_trial_result
from ttgen.rollout.job import Job, JobOptions, rollout_specs
from ttgen.rollout.validate import validate_tasks
from ttgen.sandbox import open_backend
from ttgen.settings import ImageAlias, Settings
from ttgen.sources.adapters import adapt
from ttgen.sources.synth.answer import parse_answer
from ttgen.sources.synth.build import draft_to_task
from ttgen.task import Task
from ttgen.testing import Reply, ScriptedLLMServer
from ttgen.testing.harbor import HARBOR_VERSION

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
HELLO = EXAMPLES / "tasks" / "hello-world"
SYNTH_ANSWER = Path(__file__).parent / "data" / "synth" / "sensor_rollup.xml"

pytestmark = pytest.mark.docker


def _settings() -> Settings:
    return Settings(aliases=[ImageAlias("ubuntu:*", BASE_IMAGE, "tests")], pull=False)


def _run_job(out: Path, specs, options: JobOptions) -> None:
    async def go() -> None:
        async with open_backend(None, _settings()) as backend:
            await Job(out, specs, options, backend=backend).run()

    asyncio.run(go())


def _action(keys: list[str], complete: bool = False) -> str:
    return json.dumps({
        "analysis": "Looking at the terminal.",
        "plan": "Run the next commands.",
        "commands": [{"keystrokes": k, "duration": 0.1} for k in keys],
        "task_complete": complete,
    })  # fmt: skip


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("harbor-compat").resolve()


@pytest.fixture(scope="module")
def oracle_job(docker_ready, root: Path) -> Path:
    """hello-world twice (passed) and a task whose solution outlives the agent timeout."""
    slow = root / "tasks" / "slow-oracle"
    (slow / "environment").mkdir(parents=True)
    (slow / "environment" / "Dockerfile").write_text("FROM ubuntu:24.04\nWORKDIR /app\n")
    (slow / "task.toml").write_text('schema_version = "1.2"\n[agent]\ntimeout_sec = 2.0\n')
    (slow / "instruction.md").write_text("Wait.\n")
    (slow / "solution").mkdir()
    (slow / "solution" / "solve.sh").write_text("#!/bin/bash\nsleep 60\n")
    (slow / "tests").mkdir()
    (slow / "tests" / "test.sh").write_text("#!/bin/bash\necho 0 > /logs/verifier/reward.txt\n")
    out = root / "jobs" / "oracle"
    specs = rollout_specs([Task.load(HELLO)], AgentSpec(name="oracle"), 2)
    specs += rollout_specs([Task.load(slow)], AgentSpec(name="oracle"), 1)
    _run_job(out, specs, JobOptions(n_concurrent=3, retries=0))
    return out


@pytest.fixture(scope="module")
def terminus_job(docker_ready, root: Path) -> Path:
    """Terminus 2 on hello-world, driven by a scripted teacher over real sockets: 3 episodes."""
    script = [
        Reply(
            _action(["printf 'Hello, world!\\n' > /app/hello.txt\n"]),
            reasoning="The file does not exist yet.",
        ),
        _action(["cat /app/hello.txt\n"], complete=True),
        _action([], complete=True),
    ]
    out = root / "jobs" / "terminus"

    async def go() -> None:
        async with ScriptedLLMServer(script) as server, open_backend(None, _settings()) as backend:
            agent = AgentSpec(
                name="terminus-2",
                kwargs={"model": "teacher", "base_url": server.base_url, "api_key": "k"},
            )
            specs = rollout_specs([Task.load(HELLO)], agent, 1)
            await Job(out, specs, JobOptions(n_concurrent=1, retries=0), backend=backend).run()

    asyncio.run(go())
    return out


@pytest.fixture(scope="module")
def validation_job(docker_ready, root: Path) -> Path:
    """nop + oracle on hello-world; nop on a task without tests (outcome `unverified`)."""
    no_tests = root / "tasks" / "no-tests"
    (no_tests / "environment").mkdir(parents=True)
    (no_tests / "environment" / "Dockerfile").write_text("FROM ubuntu:24.04\nWORKDIR /app\n")
    (no_tests / "task.toml").write_text('schema_version = "1.2"\n')
    (no_tests / "instruction.md").write_text("Do the thing.\n")
    out = root / "jobs" / "validate"

    async def go() -> None:
        async with open_backend(None, _settings()) as backend:
            await validate_tasks(
                [HELLO, no_tests], out, JobOptions(n_concurrent=3, retries=0), backend=backend
            )

    asyncio.run(go())
    return out


@pytest.fixture(scope="module")
def made_tasks(root: Path) -> dict[str, list[Path]]:
    """Tasks ttgen writes: `ttgen adapt` on every examples/adapters/*.jsonl, one synthesized."""
    adapted: list[Path] = []
    for src in sorted((EXAMPLES / "adapters").glob("*.jsonl")):
        out = root / "adapted" / src.stem
        adapt(src.stem, src, out)
        adapted += sorted(p for p in out.iterdir() if (p / "task.toml").is_file())
    draft = parse_answer(SYNTH_ANSWER.read_text())
    synth = root / "synth" / "sensor-rollup"
    draft_to_task(
        draft,
        name="sensor-rollup",
        image="ttgen/domain:data_processing",
        metadata={"source": "skill_synth", "domain": "data_processing", "difficulty": "medium"},
    ).save(synth)
    return {"adapted": adapted, "synth": [synth]}


def _problems(report: dict[str, Any]) -> list[str]:
    """Every file Harbor refused in a check-job report, with Harbor's error text."""
    out = []
    for name in ("config", "result"):
        if not report[name]["ok"]:
            out.append(f"job {name}.json: {report[name]['error']}")
    for trial, entry in report["trials"].items():
        for name in ("config", "result"):
            if not entry[name]["ok"]:
                out.append(f"{trial}/{name}.json: {entry[name]['error']}")
        if entry["trajectory"]["present"] and not entry["trajectory"]["ok"]:
            out.append(f"{trial}/agent/trajectory.json: {entry['trajectory']['errors']}")
    return out


_CHECKED: dict[str, dict[str, Any]] = {}


def _check(harbor, job: Path) -> dict[str, Any]:
    """Harbor's check-job report of a job folder (once per folder: they never change)."""
    if str(job) not in _CHECKED:
        _CHECKED[str(job)] = harbor.run("check-job", job, mounts=[job, EXAMPLES])
    return _CHECKED[str(job)]


def _ignored(report: dict[str, Any]) -> dict[str, list[str]]:
    """Keys Harbor's models did not read, per file of a check-job report."""
    out = {f"job {n}.json": report[n].get("ignored_keys") for n in ("config", "result")}
    for trial, entry in report["trials"].items():
        for n in ("config", "result"):
            out[f"{trial}/{n}.json"] = entry[n].get("ignored_keys")
    return {k: v for k, v in out.items() if v}


def _assert_harbor_accepts(report: dict[str, Any], n_trials: int) -> None:
    assert len(report["trials"]) == n_trials, sorted(report["trials"])
    problems = _problems(report)
    assert not problems, "Harbor's models refuse:\n" + "\n\n".join(problems)


# -- the image -----------------------------------------------------------------------------------


def test_the_harbor_image_runs_the_pinned_harbor(harbor):
    got = harbor.run("version")
    assert got["harbor"] == HARBOR_VERSION
    assert tuple(int(x) for x in got["python"].split(".")[:2]) >= (3, 12)
    assert harbor.image.size_bytes > 0


# -- ttgen → Harbor: job folders -------------------------------------------------------------------


def test_harbor_models_accept_an_oracle_job(harbor, oracle_job):
    _assert_harbor_accepts(_check(harbor, oracle_job), 3)


def test_harbor_models_accept_a_terminus_2_job(harbor, terminus_job):
    _assert_harbor_accepts(_check(harbor, terminus_job), 1)


def test_harbor_models_accept_a_validation_job(harbor, validation_job):
    _assert_harbor_accepts(_check(harbor, validation_job), 3)


def test_our_job_stats_mean_what_harbor_means(harbor, oracle_job, terminus_job, validation_job):
    """The counts in our job result.json are those Harbor's JobStats computes from the same
    trial results (Harbor's viewer and exporter read them: completed = finished trials,
    evals keyed agent__model__dataset)."""
    wrong = []
    for job in (oracle_job, terminus_job, validation_job):
        report = _check(harbor, job)
        assert report["result"]["ok"], report["result"]["error"]
        ours = report["result"]["harbor_view"]["stats"]
        harbors = report["recomputed_stats"]
        if ours != harbors:
            wrong.append(
                f"{job.name}: result.json stats {ours}\n  Harbor's from the trials {harbors}"
            )
    assert not wrong, "\n".join(wrong)


def _agents(view: dict[str, Any]) -> set[tuple[str, str | None]]:
    return {(a["name"], a["model_name"]) for a in view["agents"]}


def _task_paths(view: dict[str, Any]) -> set[str]:
    return {t["path"] for t in view["tasks"]}


def test_harbor_reads_agent_model_tasks_and_attempts_from_our_job_configs(
    harbor, oracle_job, terminus_job, validation_job, root
):
    """Harbor's JobConfig drops keys it does not know without a word: what it READ must be
    ours (not its defaults: agent oracle, no tasks, 1 attempt)."""
    views = {}
    for job in (oracle_job, terminus_job, validation_job):
        report = _check(harbor, job)
        assert report["config"]["ok"], report["config"]["error"]
        views[job.name] = (report["config"]["harbor_view"], report["config"]["ignored_keys"])
    hello, slow, no_tests = (
        str(HELLO),
        str(root / "tasks/slow-oracle"),
        str(root / "tasks/no-tests"),
    )
    expected = {
        "oracle": ({("oracle", None)}, {hello, slow}, 2),
        "terminus": ({("terminus-2", "teacher")}, {hello}, 1),
        "validate": ({("nop", None), ("oracle", None)}, {hello, no_tests}, 1),
    }
    wrong = []
    for name, (agents, tasks, attempts) in expected.items():
        view, ignored = views[name]
        got = (_agents(view), _task_paths(view), view["n_attempts"])
        if got != (agents, tasks, attempts):
            wrong.append(
                f"{name}: Harbor read agents={sorted(got[0], key=str)} tasks={sorted(got[1])} "
                f"n_attempts={got[2]}; expected agents={sorted(agents, key=str)} "
                f"tasks={sorted(tasks)} n_attempts={attempts}. Keys Harbor ignored: {ignored}"
            )
    assert not wrong, "\n".join(wrong)


def test_harbor_reads_trial_configs_and_results(harbor, terminus_job, oracle_job):
    t = _check(harbor, terminus_job)
    (entry,) = t["trials"].values()
    assert entry["config"]["harbor_view"]["agent"] == "terminus-2"
    assert entry["config"]["harbor_view"]["model_name"] == "teacher"
    assert entry["config"]["harbor_view"]["task_path"] == str(HELLO)
    assert entry["config"]["harbor_view"]["job_id"] == t["result"]["harbor_view"]["id"]
    view = entry["result"]["harbor_view"]
    assert (view["agent"], view["model"], view["rewards"]) == (
        "terminus-2",
        "teacher",
        {"reward": 1},
    )
    assert view["n_input_tokens"] > 0 and view["exception_type"] is None
    o = _check(harbor, oracle_job)
    types = {
        name: e["result"]["harbor_view"]["exception_type"]
        for name, e in o["trials"].items()
        if e["result"]["ok"]
    }
    slow = [n for n in types if n.startswith("slow-oracle")]
    assert slow and types[slow[0]] == "AgentTimeoutError", types


def test_the_atif_validator_accepts_our_trajectories(harbor, terminus_job):
    report = _check(harbor, terminus_job)
    (entry,) = report["trials"].values()
    traj = entry["trajectory"]
    assert traj["present"], "Terminus 2 wrote no agent/trajectory.json"
    assert traj["ok"], f"Harbor's ATIF validator: {traj['errors']} {traj['error']}"


# -- ttgen → Harbor: task folders ----------------------------------------------------------------


def test_harbor_task_loads_examples_adapter_and_synthesized_tasks(harbor, made_tasks, root):
    examples = sorted(p for p in (EXAMPLES / "tasks").iterdir() if (p / "task.toml").is_file())
    ours = made_tasks["adapted"] + made_tasks["synth"]
    got = harbor.run("check-tasks", *examples, *ours, mounts=[EXAMPLES, root])["tasks"]
    refused = {p: r["error"] for p, r in got.items() if not r["ok"]}
    assert not refused, "Harbor's Task refuses:\n" + "\n".join(
        f"{p}: {e}" for p, e in refused.items()
    )
    assert all(got[str(p)]["is_valid_dir"] for p in [*examples, *ours])
    # Tasks ttgen writes use the current schema: Harbor warns about nothing in them.
    warned = {str(p): got[str(p)]["warnings"] for p in ours if got[str(p)]["warnings"]}
    assert not warned, warned
    # Adapter tasks without tests (the paper's) load too, as Harbor tasks that score nothing.
    untested = [
        p
        for p in made_tasks["adapted"]
        if tomllib.loads((p / "task.toml").read_text()).get("metadata", {}).get("has_tests")
        is False
    ]
    assert untested, "examples/adapters gave no task without tests"
    assert {got[str(p)]["name"] for p in made_tasks["synth"]} == {"sensor-rollup"}


# -- ttgen → Harbor: the traces exporter -----------------------------------------------------------


def test_harbor_traces_exporter_reads_a_terminus_2_job(harbor, terminus_job, root):
    out = root / "traces"
    summary = harbor.run(
        "traces-export", terminus_job, out / "rows.jsonl", "--episodes", "all",
        "--episodes", "last", mounts=[terminus_job], writable=[out],
    )  # fmt: skip
    assert summary["ok"], summary
    rows = {
        mode: [json.loads(x) for x in (out / f"rows.{mode}.jsonl").read_text().splitlines()]
        for mode in ("all", "last")
    }
    assert len(rows["all"]) == 3 and len(rows["last"]) == 1  # one row per episode
    last = rows["last"][0]
    assert last == rows["all"][-1]
    assert (last["agent"], last["model"], last["task"]) == (
        "terminus-2",
        "teacher",
        "ttgen-examples/hello-world",  # Harbor's task name: task.toml [task] name
    )
    assert last["result"] == "1.0"
    # The whole conversation, turn for turn, as Terminus 2 kept it (messages.json). Harbor renders
    # an assistant turn from the ATIF step as <think>reasoning</think>, the message, then one
    # <tool_call> block per tool call; the reasoning and the message must be ours.
    conv = last["conversations"]
    assert [m["role"] for m in conv] == ["user", "assistant"] * 3
    (trial,) = [p for p in terminus_job.iterdir() if (p / "agent").is_dir()]
    kept = json.loads((trial / "agent" / "messages.json").read_text())
    assert [m["role"] for m in kept] == [m["role"] for m in conv]
    for i, (theirs, ours) in enumerate(zip(conv, kept, strict=True)):
        if ours["role"] == "user":
            assert theirs["content"] == ours["content"], f"user turn {i} differs"
        else:
            assert _split_assistant(theirs["content"]) == _split_assistant(ours["content"]), i
    assert "printf 'Hello, world!" in conv[1]["content"]
    assert '"name": "mark_task_complete"' in conv[-1]["content"]


_THINK = re.compile(r"^<think>(.*?)</think>", re.S)
_TOOL_CALLS = re.compile(r"(?:\s*<tool_call>\n.*?\n</tool_call>)+\s*$", re.S)


def _split_assistant(text: str) -> tuple[str, str]:
    """(reasoning, message) of an assistant turn, in ttgen's or Harbor's exporter's rendering."""
    m = _THINK.match(text)
    reasoning = m.group(1).strip() if m else ""
    body = text[m.end() :] if m else text
    return reasoning, _TOOL_CALLS.sub("", body).strip()


# -- Harbor → ttgen: the job Harbor would have written ---------------------------------------------

TTGEN_ONLY = {"outcome", "reward", "retries", "task_metadata", "attempt", "ttgen_version",
              "tamper_evidence", "verifier_isolation", "warnings", "environment"}  # fmt: skip


def test_a_job_harbor_writes_for_the_same_run_curates_into_the_same_records(
    harbor, terminus_job, oracle_job, root
):
    written = {}
    for job in (terminus_job, oracle_job):
        dest = root / "harbor-jobs" / job.name
        res = harbor.run(
            "write-harbor-job", job, dest, mounts=[job, EXAMPLES, root / "tasks"],
            writable=[dest.parent],
        )  # fmt: skip
        assert res["ok"], res.get("error")
        written[job.name] = (dest, res)
    # Harbor's own output is what Harbor reads back, and carries nothing of ttgen's.
    for dest, _ in written.values():
        report = _check(harbor, dest)
        assert not _problems(report), _problems(report)
        assert not _ignored(report), _ignored(report)
        for trial in (p for p in dest.iterdir() if p.is_dir()):
            assert not (trial / "agent" / "messages.json").exists()
            result = json.loads((trial / "result.json").read_text())
            assert not TTGEN_ONLY & set(result), TTGEN_ONLY & set(result)
            assert len(trial.name.split("__")[-1]) == 7
    oracle_types = {
        t["task_name"]: t["exception_type"] for t in written["oracle"][1]["trials"].values()
    }
    assert oracle_types["slow-oracle"] == "AgentTimeoutError"

    def records(job: Path, name: str) -> list[dict[str, Any]]:
        out = root / "curated" / name
        curate([job], out, CurateOptions(decontaminate=False, dedup=False))
        return sorted(read_records(out), key=lambda r: (r["task"], r["messages"][0]["content"]))

    ours = records(terminus_job, "ttgen")
    theirs = records(written["terminus"][0], "harbor")
    assert len(ours) == len(theirs) == 1
    fields = ("task", "agent", "model", "reward", "passed", "completed", "n_turns", "instruction")
    assert {k: theirs[0].get(k) for k in fields} == {k: ours[0].get(k) for k in fields}
    assert len(theirs[0]["messages"]) == len(ours[0]["messages"])
    for i, (a, b) in enumerate(zip(theirs[0]["messages"], ours[0]["messages"], strict=True)):
        assert a == b, f"message {i} differs:\nharbor job: {a}\nttgen job:  {b}"


# ttgen's outcome → the exception type Harbor records for the same ending.
HARBOR_EXCEPTION = {
    "passed": None,
    "failed": None,
    "unverified": None,
    "agent_timeout": "AgentTimeoutError",  # harbor.trial.errors
    "verifier_timeout": "VerifierTimeoutError",  # harbor.trial.errors
    "reward_missing": "RewardFileNotFoundError",  # harbor.verifier.verifier
    "build_error": "SandboxBuildFailedError",  # harbor.environments.base
    "environment_error": "EnvironmentStartTimeoutError",  # harbor.trial.errors
    "llm_error": "ServiceUnavailableError",  # litellm, from the recorded HTTP 503
    "agent_error": "ContainerDiedError",  # the recorded exception type
    "cancelled": "CancelledError",  # asyncio
}


def _phases(outcome: str) -> dict[str, Any]:
    """The phase timings of a trial that ended so: the phases it reached, the one it broke in
    (infrastructure outcomes) left unfinished."""
    t = "2026-01-01T00:0{}:00+00:00".format
    order = ["environment_setup", "agent_setup", "agent_execution", "verifier"]
    broke = {"build_error": 0, "environment_error": 0, "cancelled": 0, "agent_error": 2,
             "llm_error": 2}.get(outcome)  # fmt: skip
    last = broke if broke is not None else (2 if outcome == "unverified" else 3)
    return {
        name: {"started_at": t(i), **({"finished_at": t(i + 1)} if i != broke else {})}
        for i, name in enumerate(order[: last + 1])
    }


def _earlier_shape_job(job: Path, task: Path) -> None:
    """A job folder in ttgen's earlier shape (flat task_path/task_name, the model only in the
    agent's kwargs, a 12-hex job id), one trial per outcome, written as plain JSON."""
    job.mkdir(parents=True)
    job_id = "0123456789ab"
    agent = {"name": "terminus-2", "kwargs": {"model": "teacher", "api_key": "secret"}}
    (job / "config.json").write_text(json.dumps({
        "job_id": job_id, "created_at": "2026-01-01T00:00:00+00:00",
        "identity": {"kind": "rollout", "agents": [agent]},
        "runs": [{"options": {"n_concurrent": 2, "retries": 1, "timeouts": {"multiplier": 1.0}}}],
    }))  # fmt: skip
    (job / "result.json").write_text(json.dumps({
        "id": job_id, "kind": "rollout", "status": "finished",
        "started_at": "2026-01-01T00:00:00+00:00", "finished_at": "2026-01-01T00:10:00+00:00",
        "n_total_trials": len(HARBOR_EXCEPTION), "stats": {"outcomes": {}},
    }))  # fmt: skip
    for i, outcome in enumerate(HARBOR_EXCEPTION):
        d = job / f"{task.name}__{i}"
        (d / "agent").mkdir(parents=True)
        config = {"task_path": str(task), "task_name": task.name, "trial_name": d.name,
                  "attempt": i, "job_id": job_id, "agent": agent}  # fmt: skip
        reward = {"passed": 1, "failed": 0, "agent_timeout": 0}.get(outcome)
        message = {"llm_error": "http://x/v1: gave up after 3 attempts; last error: HTTP 503: busy"}
        result = {
            "id": str(uuid.uuid4()), "task_name": task.name, "trial_name": d.name,
            "trial_uri": d.as_uri(), "config": config,
            "agent_info": {"name": "terminus-2", "version": "1", "model_info": {"name": "teacher"}},
            "agent_result": {"n_input_tokens": 10, "n_output_tokens": 5,
                             "metadata": {"n_episodes": 1, "ended": "task_complete"}},
            "verifier_result": {"rewards": {"reward": reward}} if reward is not None else None,
            "exception_info": None if HARBOR_EXCEPTION[outcome] is None and outcome != "agent_error"
            else {"exception_type": "ContainerDiedError" if outcome == "agent_error" else "X",
                  "exception_message": message.get(outcome, outcome),
                  "occurred_at": "2026-01-01T00:05:00+00:00"},
            "started_at": "2026-01-01T00:00:00+00:00", "finished_at": "2026-01-01T00:05:00+00:00",
            **_phases(outcome),
            "outcome": outcome, "reward": reward, "task_metadata": {"source": "adapter"},
        }  # fmt: skip
        (d / "config.json").write_text(json.dumps(config))
        (d / "result.json").write_text(json.dumps(result))
        (d / "agent" / "messages.json").write_text("[]")


def test_write_harbor_job_reads_ttgen_earlier_shape_and_maps_every_outcome(harbor, root):
    src, dest = root / "earlier" / "job", root / "earlier" / "harbor"
    _earlier_shape_job(src, HELLO)
    # The checks bite: Harbor's models refuse the earlier shape, and its JobConfig, which drops
    # unknown keys without a word, reads its own defaults from it (agent oracle, no tasks).
    earlier = _check(harbor, src)
    assert any("job_id" in p and "valid UUID" in p for p in _problems(earlier))
    assert any("task\n  Field required" in p for p in _problems(earlier))
    view = earlier["config"]["harbor_view"]
    assert (_agents(view), _task_paths(view)) == ({("oracle", None)}, set())
    res = harbor.run("write-harbor-job", src, dest, mounts=[src, EXAMPLES], writable=[dest.parent])
    assert res["ok"], res.get("error")
    got = {t["from"].rsplit("__", 1)[1]: t["exception_type"] for t in res["trials"].values()}
    assert got == {str(i): exc for i, exc in enumerate(HARBOR_EXCEPTION.values())}
    report = _check(harbor, dest)
    _assert_harbor_accepts(report, len(HARBOR_EXCEPTION))
    assert not _ignored(report), _ignored(report)
    view = report["config"]["harbor_view"]
    assert _agents(view) == {("terminus-2", "teacher")} and _task_paths(view) == {str(HELLO)}
    job_uuid = report["result"]["harbor_view"]["id"]
    assert job_uuid == str(uuid.uuid5(uuid.NAMESPACE_URL, "ttgen:job:0123456789ab"))
    assert {e["config"]["harbor_view"]["job_id"] for e in report["trials"].values()} == {job_uuid}
    assert "secret" not in "".join(p.read_text() for p in dest.rglob("*.json"))
    assert report["recomputed_stats"] == report["result"]["harbor_view"]["stats"]
    # And back: ttgen reads each trial Harbor wrote as the outcome it started from.
    back = {}
    for d in (p for p in dest.iterdir() if p.is_dir()):
        r = read_trial_result(d)
        assert r is not None, d
        back[r.id] = r.outcome.value
    origin = {
        json.loads((p / "result.json").read_text())["id"]: json.loads(
            (p / "result.json").read_text()
        )["outcome"]
        for p in src.iterdir()
        if p.is_dir()
    }
    assert back == origin
