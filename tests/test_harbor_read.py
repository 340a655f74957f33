"""Reading what Harbor writes, and writing what Harbor reads (without Harbor's code; the test that
runs Harbor 0.24.0 itself on our folders is test_harbor_compat.py):

* trial config.json / result.json in Harbor's shape (task.path, agent.model_name, UUID job ids),
  and ttgen's earlier flat shape still read;
* a Harbor result.json (no `outcome`): the outcome from its exception and verifier fields, with
  infrastructure and model failures told apart as in our own jobs;
* conversations from the ATIF trajectory when a trial has no messages.json: turn for turn the
  same as messages.json for a real Terminus 2 run; Harbor's structured steps rebuilt.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest

from conftest import BASE_IMAGE
from ttgen.curate.atif import contexts_from_trajectory
from ttgen.curate.trials import read_trial
from ttgen.formats.trial import AgentSpec, Outcome, TrialConfig, TrialResult, harbor_outcome
from ttgen.rollout.job import Job, JobOptions, rollout_specs
from ttgen.task import Task
from ttgen.testing import Reply, ScriptedLLMServer

CHECK = """#!/bin/bash
if [ "$(cat /app/hello.txt 2>/dev/null)" = "Hello" ]; then echo 1; else echo 0; fi \
  > /logs/verifier/reward.txt
"""


def action(commands, complete=False, **extra) -> str:
    return json.dumps({
        "analysis": "Looking at the terminal.", "plan": "Run the next commands.",
        "commands": [{"keystrokes": k, "duration": d} for k, d in commands],
        "task_complete": complete, **extra,
    })  # fmt: skip


@pytest.fixture(scope="module")
def terminus_job(tmp_path_factory, docker_ready):
    """One real Terminus 2 job with a scripted teacher: reasoning, a parse error, a response cut
    at the output limit, a warning, and completion confirmed twice."""
    import asyncio

    from ttgen.sandbox import open_backend

    root = tmp_path_factory.mktemp("harbor-read")
    task_dir = root / "tasks" / "hello"
    (task_dir / "tests").mkdir(parents=True)
    (task_dir / "instruction.md").write_text("Create /app/hello.txt containing the word Hello.\n")
    (task_dir / "task.toml").write_text(
        f'schema_version = "1.1"\n[metadata]\nsource = "skill_synth"\ndomain = "file-ops"\n'
        f'difficulty = "easy"\n[environment]\ndocker_image = "{BASE_IMAGE}"\n'
    )
    (task_dir / "tests" / "test.sh").write_text(CHECK)
    script = [
        Reply(action([("mkdir -p /app && cd /app\n", 0.1)]), reasoning="\nNothing exists yet.\n"),
        "I believe the task is done.",
        Reply('{"analysis": "cut', finish_reason="length"),
        Reply(action([("echo Hello > hello.txt\n", 1)], extra_field=1), reasoning="Write it."),
        action([("cat hello.txt\n", 0.1)], complete=True),
        action([], complete=True),
    ]

    async def run() -> Path:
        async with ScriptedLLMServer(script) as server:
            agent = AgentSpec(name="terminus-2", kwargs={
                "model": "teacher", "base_url": server.base_url, "api_key": "k", "max_tokens": 256,
            })  # fmt: skip
            out = root / "job"
            backend = open_backend()
            try:
                await Job(out, rollout_specs([Task.load(task_dir)], agent, 1),
                          JobOptions(n_concurrent=1), backend=backend).run()  # fmt: skip
            finally:
                await backend.close()
            return out

    return asyncio.run(run())


def test_trial_and_job_files_are_in_harbors_shape(terminus_job):
    config = json.loads((terminus_job / "config.json").read_text())
    uuid.UUID(config["job_id"])  # Harbor's job ids are UUIDs
    assert config["job_name"] == "job" and config["n_attempts"] == 1
    assert config["agents"][0]["name"] == "terminus-2"
    assert config["agents"][0]["model_name"] == "teacher"
    assert config["tasks"] == [{"path": str((terminus_job.parent / "tasks" / "hello").resolve())}]
    assert config["identity"]["kind"] == "rollout"  # ttgen's own keys beside Harbor's
    trial = terminus_job / "hello__0"
    tconf = json.loads((trial / "config.json").read_text())
    assert tconf["task"]["path"].endswith("/tasks/hello") and "task_path" not in tconf
    assert tconf["job_id"] == config["job_id"] and tconf["trials_dir"] == str(terminus_job)
    assert tconf["agent"]["model_name"] == "teacher"
    assert tconf["environment"]["type"] == "docker"
    result = json.loads((trial / "result.json").read_text())
    assert result["config"] == tconf
    assert isinstance(result["task_checksum"], str) and len(result["task_checksum"]) == 64
    job_result = json.loads((terminus_job / "result.json").read_text())
    assert job_result["id"] == config["job_id"]
    assert result["written_by"] == "ttgen"
    # the API key is never written: Harbor's tools and the Hub read these files as they are
    for f in (terminus_job / "config.json", trial / "config.json", trial / "result.json"):
        text = f.read_text()
        assert '"api_key": "<redacted>"' in text and '"api_key": "k"' not in text, f


def test_conversation_from_atif_equals_messages_json(terminus_job, tmp_path):
    trial = terminus_job / "hello__0"
    ours, drops = read_trial(trial)
    assert not drops and len(ours) == 1
    messages = json.loads((trial / "agent" / "messages.json").read_text())
    assert ours[0]["messages"] == messages
    assert ours[0]["messages"][1]["content"].startswith("<think>\nNothing exists yet.\n</think>\n\n{")
    assert ours[0]["completed"] is True

    # The same trial without messages.json, as Harbor's Terminus 2 leaves it.
    bare = tmp_path / "job" / "hello__0"
    shutil.copytree(trial, bare)
    (bare / "agent" / "messages.json").unlink()
    theirs, drops = read_trial(bare)
    assert not drops and len(theirs) == 1
    assert theirs[0]["messages"] == messages  # turn for turn, byte for byte
    same = ("task", "source", "subset", "domain", "difficulty", "model", "reward", "outcome",
            "passed", "completed", "n_turns", "instruction", "run_id", "trial_name")  # fmt: skip
    assert {k: theirs[0][k] for k in same} == {k: ours[0][k] for k in same}


def test_harbors_structured_steps_are_rebuilt_as_the_json_response():
    traj = {"steps": [
        {"step_id": 1, "source": "user", "message": "Task: say hi"},
        {"step_id": 2, "source": "agent", "message": "Analysis: Empty dir.\nPlan: Echo hi.",
         "reasoning_content": "Easy.",
         "tool_calls": [{"tool_call_id": "call_0_1", "function_name": "bash_command",
                         "arguments": {"keystrokes": "echo hi\n", "duration": 0.1}}],
         "observation": {"results": [{"content": "New Terminal Output:\nhi"}]}},
        {"step_id": 3, "source": "agent", "message": "Plan: Done.",
         "tool_calls": [{"tool_call_id": "call_1_task_complete",
                         "function_name": "mark_task_complete", "arguments": {}}],
         "observation": {"results": [{"content": "Are you sure?"}]}},
        {"step_id": 4, "source": "system",
         "message": "Performed context summarization and handoff to continue task."},
        {"step_id": 5, "source": "user", "message": "Here is the handoff."},
        {"step_id": 6, "source": "agent", "message": "{\"analysis\": \"a\", \"plan\": \"p\", "
         "\"commands\": [], \"task_complete\": true}"},
    ]}  # fmt: skip
    first, second = contexts_from_trajectory(traj)
    assert [m["role"] for m in first] == ["user", "assistant", "user", "assistant", "user"]
    think, body = first[1]["content"].split("</think>\n\n")
    assert think == "<think>\nEasy.\n"
    assert json.loads(body) == {
        "analysis": "Empty dir.", "plan": "Echo hi.",
        "commands": [{"keystrokes": "echo hi\n", "duration": 0.1}],
    }  # fmt: skip
    assert json.loads(first[3]["content"]) == {
        "analysis": "", "plan": "Done.", "commands": [], "task_complete": True
    }  # fmt: skip
    # after the summarization the context starts again from the task prompt
    assert second[0] == {"role": "user", "content": "Task: say hi"}
    assert second[1] == {"role": "user", "content": "Here is the handoff."}
    assert second[2]["content"].startswith('{"analysis": "a"')  # a raw response is kept as is


def _harbor_result(exception: str | None = None, rewards=None, *, agent_ran=True) -> dict:
    """A result.json with exactly the fields Harbor 0.24.0's TrialResult writes."""
    t = "2026-12-01T10:00:00Z"
    phase = {"started_at": t, "finished_at": t}
    return {
        "id": str(uuid.uuid4()), "task_name": "hello", "trial_name": "hello__AbC12xY",
        "trial_uri": "file:///jobs/j/hello__AbC12xY", "task_id": {"path": "/tasks/hello"},
        "source": None, "task_checksum": "abc",
        "config": {"task": {"path": "/tasks/hello"}, "trial_name": "hello__AbC12xY",
                   "agent": {"name": "terminus-2", "model_name": "openai/teacher", "kwargs": {}},
                   "job_id": str(uuid.uuid4())},
        "agent_info": {"name": "terminus-2", "version": "2.0.0",
                       "model_info": {"name": "teacher", "provider": "openai"}},
        "agent_result": {"n_input_tokens": 10, "n_output_tokens": 5, "metadata": {}},
        "verifier_result": None if rewards is None else {"rewards": rewards},
        "exception_info": None if exception is None else {
            "exception_type": exception, "exception_message": "x", "exception_traceback": "",
            "occurred_at": t},
        "started_at": t, "finished_at": t, "environment_setup": phase,
        "agent_setup": phase if agent_ran else None,
        "agent_execution": phase if agent_ran else None, "verifier": None,
        "step_results": None,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("exception", "rewards", "agent_ran", "outcome", "reward"),
    [
        (None, {"reward": 1.0}, True, Outcome.PASSED, 1.0),
        (None, {"reward": 0}, True, Outcome.FAILED, 0.0),
        (None, {}, True, Outcome.UNVERIFIED, None),  # tests that give no reward
        ("AgentTimeoutError", {"reward": 0.0}, True, Outcome.AGENT_TIMEOUT, 0.0),
        ("VerifierTimeoutError", None, True, Outcome.VERIFIER_TIMEOUT, None),
        ("RewardFileNotFoundError", None, True, Outcome.REWARD_MISSING, None),
        ("ContextLengthExceededError", {"reward": 1}, True, Outcome.PASSED, 1.0),
        ("CancelledError", None, True, Outcome.CANCELLED, None),
        ("RateLimitError", None, True, Outcome.LLM_ERROR, None),
        ("EnvironmentStartTimeoutError", None, False, Outcome.ENVIRONMENT_ERROR, None),
        ("RuntimeError", None, False, Outcome.AGENT_ERROR, None),  # agent set-up broke
        ("ValueError", None, True, Outcome.AGENT_ERROR, None),
    ],
)
def test_harbor_outcomes(exception, rewards, agent_ran, outcome, reward):
    data = _harbor_result(exception, rewards, agent_ran=agent_ran)
    assert harbor_outcome(data) == (outcome, reward)
    r = TrialResult.model_validate_json(json.dumps(data))
    assert (r.outcome, r.reward, r.written_by) == (outcome, reward, "harbor")
    assert r.is_infra == (outcome in (Outcome.CANCELLED, Outcome.LLM_ERROR,
                                      Outcome.ENVIRONMENT_ERROR, Outcome.AGENT_ERROR))  # fmt: skip
    assert r.config.task_path == "/tasks/hello" and r.config.agent.model_name == "openai/teacher"


def test_earlier_flat_trial_config_is_read():
    old = {"task_path": "/t/x", "task_name": "x", "trial_name": "x__0", "attempt": 1,
           "job_id": "0123456789ab", "agent": {"name": "oracle", "kwargs": {}},
           "force_build": True, "verifier_env": {"A": "1"}}  # fmt: skip
    c = TrialConfig.model_validate(old)
    assert (c.task_path, c.task_name, c.attempt, c.job_id) == ("/t/x", "x", 1, "0123456789ab")
    assert c.force_build and c.verifier_env == {"A": "1"}
    dumped = json.loads(c.model_dump_json())
    assert dumped["task"]["path"] == "/t/x" and "task_path" not in dumped


HARBOR_TRIAL_RESULT = {
    "id", "task_name", "trial_name", "trial_uri", "task_id", "source", "task_checksum", "config",
    "agent_info", "agent_result", "verifier_result", "exception_info", "started_at",
    "finished_at", "environment_setup", "agent_setup", "agent_execution", "verifier",
    "step_results",
}  # fmt: skip
HARBOR_TRIAL_CONFIG = {"task", "trial_name", "trials_dir", "agent", "environment", "verifier",
                       "job_id"}  # fmt: skip
HARBOR_JOB_CONFIG = {"job_name", "jobs_dir", "n_attempts", "n_concurrent_trials", "retry",
                     "environment", "verifier", "agents", "tasks", "timeout_multiplier"}  # fmt: skip


def _as_harbor_wrote_it(job: Path, dest: Path) -> Path:
    """A copy of a ttgen job with only the fields Harbor's models write (no messages.json, no
    outcome, reward, attempt, task_metadata, ...) and Harbor's trial folder names."""
    shutil.copytree(job, dest)
    for trial in [p for p in dest.iterdir() if p.is_dir()]:
        (trial / "agent" / "messages.json").unlink(missing_ok=True)
        config = json.loads((trial / "config.json").read_text())
        config = {k: v for k, v in config.items() if k in HARBOR_TRIAL_CONFIG}
        result = json.loads((trial / "result.json").read_text())
        result = {k: v for k, v in result.items() if k in HARBOR_TRIAL_RESULT}
        result["config"] = config
        new_name = result["trial_name"].split("__")[0] + "__" + uuid.uuid4().hex[:7]
        result["trial_name"] = config["trial_name"] = new_name
        (trial / "config.json").write_text(json.dumps(config))
        (trial / "result.json").write_text(json.dumps(result))
        trial.rename(dest / new_name)
    config = json.loads((dest / "config.json").read_text())
    (dest / "config.json").write_text(
        json.dumps({k: v for k, v in config.items() if k in HARBOR_JOB_CONFIG})
    )
    result = json.loads((dest / "result.json").read_text())
    keep = ("id", "started_at", "updated_at", "finished_at", "n_total_trials")
    (dest / "result.json").write_text(json.dumps(
        {**{k: result[k] for k in keep}, "stats": {"n_completed_trials": 1}, "trial_results": []}
    ))  # fmt: skip
    for name in ("trials.jsonl", ".lock", "job.log"):
        (dest / name).unlink(missing_ok=True)
    return dest


def test_curate_report_stats_and_eval_read_a_harbor_job(terminus_job, tmp_path):
    from typer.testing import CliRunner

    from ttgen.cli import app

    harbor = _as_harbor_wrote_it(terminus_job, tmp_path / "harbor-job")
    runner = CliRunner()
    for job, out in ((terminus_job, tmp_path / "ours"), (harbor, tmp_path / "theirs")):
        r = runner.invoke(app, ["curate", str(job), "-o", str(out / "curated"), "--no-decontam"])
        assert r.exit_code == 0, r.output
    ours = [json.loads(x) for x in (tmp_path / "ours/curated/records.jsonl").open()]
    theirs = [json.loads(x) for x in (tmp_path / "theirs/curated/records.jsonl").open()]
    assert len(ours) == len(theirs) == 1
    assert theirs[0]["messages"] == ours[0]["messages"]
    for key in ("source", "subset", "domain", "outcome", "reward", "completed", "attempt",
                "model", "instruction", "run_id"):  # fmt: skip
        assert theirs[0][key] == ours[0][key], key

    r = runner.invoke(app, ["stats", str(harbor), "--json"])
    assert r.exit_code == 0, r.output
    st = json.loads(r.output)
    assert st["records"] == 1 and st["by_source"] == {"skill_based/easy/file-ops": 1}

    r = runner.invoke(app, ["eval", str(harbor), "-o", str(tmp_path / "eval"), "--json"])
    assert r.exit_code == 0, r.output
    ev = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert ev["summarized"] is True and ev["agent"] == "terminus-2" and ev["model"] == "teacher"
    assert ev["n_passed"] == 1 and ev["n_missing"] == 0

    r = runner.invoke(app, ["report", str(harbor), "--out", str(tmp_path / "report")])
    assert r.exit_code == 0, r.output
    html = (tmp_path / "report" / "index.html").read_text()
    assert "terminus-2" in html and "passed" in html


async def test_a_job_written_by_an_earlier_release_resumes_and_curates(docker_ready, make_task,
                                                                       tmp_path):  # fmt: skip
    """Flat trial configs and a 12-hex job id (ttgen before Harbor's shapes): the finished trial
    is kept, the missing one runs, the job keeps its id (it labels its containers)."""
    solve = "#!/bin/bash\necho 42 > /app/answer.txt\n"
    check = ('#!/bin/bash\nif [ "$(cat /app/answer.txt)" = 42 ]; then echo 1; else echo 0; fi'
             " > /logs/verifier/reward.txt\n")  # fmt: skip
    task = Task.load(make_task("t", dockerfile=None,
                               toml=f'[environment]\ndocker_image = "{BASE_IMAGE}"\n',
                               test_sh=check, solve_sh=solve))  # fmt: skip
    out = tmp_path / "job"
    await Job(out, rollout_specs([task], AgentSpec(name="oracle"), 1)).run()
    old_id = "0123456789ab"
    config = json.loads((out / "config.json").read_text())
    old_config = {k: config[k] for k in ("job_id", "created_at", "identity", "runs")}
    (out / "config.json").write_text(json.dumps({**old_config, "job_id": old_id}))
    trial = out / "t__0"
    result = json.loads((trial / "result.json").read_text())
    flat = {"task_path": result["config"]["task"]["path"], "task_name": "t", "trial_name": "t__0",
            "attempt": 0, "job_id": old_id, "agent": {"name": "oracle", "kwargs": {}},
            "timeouts": result["config"]["timeouts"], "force_build": False,
            "verifier_env": {}}  # fmt: skip
    result["config"] = flat
    (trial / "config.json").write_text(json.dumps(flat))
    (trial / "result.json").write_text(json.dumps(result))
    before = (trial / "result.json").read_bytes()

    await Job(out, rollout_specs([task], AgentSpec(name="oracle"), 2)).run()
    assert (trial / "result.json").read_bytes() == before  # kept, not run again
    assert json.loads((out / "config.json").read_text())["job_id"] == old_id
    second = json.loads((out / "t__1" / "result.json").read_text())
    assert second["outcome"] == "passed" and second["config"]["job_id"] == old_id
    assert second["config"]["task"]["path"] == flat["task_path"]
    records, drops = read_trial(trial)
    assert records == [] and drops[0].reason == "no_conversation" and drops[0].id == f"{old_id}/t__0"


def test_harbors_empty_rewards_mean_no_tests_only_for_a_task_without_tests(tmp_path):
    from ttgen.task import NO_TESTS_SCRIPT

    for name, script, outcome in (("adapted", NO_TESTS_SCRIPT, Outcome.UNVERIFIED),
                                  ("real", CHECK, Outcome.REWARD_MISSING)):  # fmt: skip
        (tmp_path / name / "tests").mkdir(parents=True)
        (tmp_path / name / "tests" / "test.sh").write_text(script)
        data = _harbor_result(None, {})
        data["config"]["task"]["path"] = str(tmp_path / name)
        assert harbor_outcome(data) == (outcome, None), name
