"""Trials against a real Docker engine: phases, reward files, outcomes, and hostile solutions."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import ClassVar

import pytest

from conftest import job_containers, unique_dockerfile
from ttgen.agents import AGENTS, AgentContext, ModelInfo
from ttgen.errors import LLMError
from ttgen.formats.trial import AgentSpec, Outcome, TrialResult
from ttgen.rollout.trial import TimeoutPolicy, Trial, TrialSpec, parse_rewards
from ttgen.task import Task

PASS_IF_ANSWER = """#!/bin/bash
if [ "$(cat /app/answer.txt 2>/dev/null)" = "42" ]; then r=1; else r=0; fi
echo "checked: $r"
echo $r > /logs/verifier/reward.txt
"""
SOLVE_ANSWER = "#!/bin/bash\necho 42 > /app/answer.txt\necho solved\n"


async def run_trial(
    backend, job_name: str, task_dir: Path, out: Path, agent: str = "oracle", **kwargs
) -> tuple[TrialResult, Path]:
    task = Task.load(task_dir)
    tdir = out / f"{task_dir.name}__{agent}"
    spec = TrialSpec(task=task, trial_name=tdir.name, agent=AgentSpec(name=agent))
    result = await Trial(spec, backend, tdir, job_id=job_name, **kwargs).run()
    return result, tdir


async def test_oracle_passes_and_trial_folder_has_harbor_layout(
    backend, job_name, make_task, tmp_path
):
    task = make_task("answer", test_sh=PASS_IF_ANSWER, solve_sh=SOLVE_ANSWER)
    result, tdir = await run_trial(backend, job_name, task, tmp_path / "trials")
    assert result.outcome == Outcome.PASSED
    assert result.reward == 1
    assert result.verifier_result is not None and result.verifier_result.rewards == {"reward": 1}
    # Harbor TrialResult fields, readable as plain JSON
    data = json.loads((tdir / "result.json").read_text())
    for key in (
        "id", "task_name", "trial_name", "trial_uri", "task_id", "source", "task_checksum",
        "config", "agent_info", "agent_result", "verifier_result", "exception_info",
        "started_at", "finished_at", "environment_setup", "agent_setup", "agent_execution",
        "verifier", "step_results",
    ):  # fmt: skip
        assert key in data, key
    assert data["agent_info"]["name"] == "oracle"
    for phase in ("environment_setup", "agent_setup", "agent_execution", "verifier"):
        assert data[phase]["started_at"] <= data[phase]["finished_at"]
    assert data["outcome"] == "passed"
    assert (tdir / "agent" / "oracle.txt").read_text().strip() == "solved"
    assert "checked: 1" in (tdir / "verifier" / "test-stdout.txt").read_text()
    assert (tdir / "verifier" / "reward.txt").read_text().strip() == "1"
    assert (tdir / "config.json").is_file() and (tdir / "trial.log").is_file()
    assert not (tdir / "exception.txt").exists()
    assert await job_containers(job_name) == []


async def test_nop_fails(backend, job_name, make_task, tmp_path):
    task = make_task("answer", test_sh=PASS_IF_ANSWER, solve_sh=SOLVE_ANSWER)
    result, tdir = await run_trial(backend, job_name, task, tmp_path, agent="nop")
    assert result.outcome == Outcome.FAILED
    assert result.reward == 0
    assert "checked: 0" in (tdir / "verifier" / "test-stdout.txt").read_text()


async def test_tests_are_hidden_from_the_agent_and_stale_rewards_deleted(
    backend, job_name, make_task, tmp_path
):
    # The solution looks for /tests (must not exist yet) and plants a reward of 1.
    solve = (
        "#!/bin/bash\n"
        "if [ -e /tests ]; then echo visible > /app/seen; else echo hidden > /app/seen; fi\n"
        "echo 1 > /logs/verifier/reward.txt\n"
        "echo '{\"reward\": 1}' > /logs/verifier/reward.json\n"
    )
    test = (
        "#!/bin/bash\n"
        "[ -e /logs/verifier/reward.txt ] && echo STALE\n"
        "[ -e /logs/verifier/reward.json ] && echo STALE\n"
        'if [ "$(cat /app/seen)" = hidden ]; then echo 0.5 > /logs/verifier/reward.txt; fi\n'
    )
    task = make_task("hidden", test_sh=test, solve_sh=solve)
    result, tdir = await run_trial(backend, job_name, task, tmp_path)
    assert "STALE" not in (tdir / "verifier" / "test-stdout.txt").read_text()
    assert result.reward == 0.5  # tests were hidden; the planted 1 did not count
    assert result.outcome == Outcome.FAILED


async def test_planted_reward_without_verifier_output_is_reward_missing(
    backend, job_name, make_task, tmp_path
):
    solve = "#!/bin/bash\necho 1 > /logs/verifier/reward.txt\n"
    task = make_task(
        "plant", test_sh="#!/bin/bash\necho 'I write nothing'\nexit 1\n", solve_sh=solve
    )
    result, tdir = await run_trial(backend, job_name, task, tmp_path)
    assert result.outcome == Outcome.REWARD_MISSING
    assert result.reward is None
    assert result.exception_info.exception_type == "RewardFileNotFoundError"
    assert "exited 1" in result.exception_info.exception_message
    assert (tdir / "exception.txt").read_text().startswith("RewardFileNotFoundError")


def test_parse_rewards_prefers_json_and_rejects_junk(tmp_path):
    d = tmp_path
    (d / "reward.txt").write_text("0\n")
    (d / "reward.json").write_text('{"reward": 0.75, "runtime_sec": 1.5}')
    assert parse_rewards(d) == {"reward": 0.75, "runtime_sec": 1.5}
    (d / "reward.json").unlink()
    assert parse_rewards(d) == {"reward": 0}
    (d / "reward.txt").write_text("")
    with pytest.raises(Exception, match="empty"):
        parse_rewards(d)
    (d / "reward.txt").write_text("yes")
    with pytest.raises(Exception, match="one number"):
        parse_rewards(d)
    (d / "reward.json").write_text('{"reward": "high"}')
    with pytest.raises(Exception, match="bad keys"):
        parse_rewards(d)
    (d / "reward.json").write_text("[1]")
    with pytest.raises(Exception, match="object"):
        parse_rewards(d)


async def test_reward_json_with_several_keys(backend, job_name, make_task, tmp_path):
    test = '#!/bin/bash\necho \'{"reward": 1, "tests_passed": 3}\' > /logs/verifier/reward.json\n'
    task = make_task("json", test_sh=test, solve_sh="#!/bin/bash\ntrue\n")
    result, _ = await run_trial(backend, job_name, task, tmp_path)
    assert result.verifier_result.rewards == {"reward": 1, "tests_passed": 3}
    assert result.outcome == Outcome.PASSED


async def test_agent_timeout_is_recorded_and_verifier_still_runs(
    backend, job_name, make_task, tmp_path
):
    solve = "#!/bin/bash\necho 42 > /app/answer.txt\nsleep 300\n"
    task = make_task(
        "slow", toml="[agent]\ntimeout_sec = 2.0\n", test_sh=PASS_IF_ANSWER, solve_sh=solve
    )
    t0 = time.monotonic()
    result, tdir = await run_trial(backend, job_name, task, tmp_path)
    assert time.monotonic() - t0 < 30
    assert result.outcome == Outcome.AGENT_TIMEOUT
    assert result.exception_info.exception_type == "AgentTimeoutError"
    # the verifier ran after the timeout, and the work done before it counts
    assert result.reward == 1
    assert "checked: 1" in (tdir / "verifier" / "test-stdout.txt").read_text()
    assert await job_containers(job_name) == []


async def test_timeout_multipliers_apply(backend, job_name, make_task, tmp_path):
    toml = "[agent]\ntimeout_sec = 10.0\n[verifier]\ntimeout_sec = 20.0\n"
    task = make_task("mult", toml=toml, test_sh=PASS_IF_ANSWER, solve_sh=SOLVE_ANSWER)
    policy = TimeoutPolicy(multiplier=2.0, verifier_multiplier=0.5)
    result, tdir = await run_trial(backend, job_name, task, tmp_path, timeouts=policy)
    t = json.loads((tdir / "config.json").read_text())["timeouts"]
    assert t["agent_sec"] == 20.0 and t["verifier_sec"] == 10.0
    assert t["agent_setup_sec"] == 720.0 and t["build_sec"] == 1200.0
    assert result.outcome == Outcome.PASSED


async def test_hanging_verifier_is_verifier_timeout(backend, job_name, make_task, tmp_path):
    task = make_task(
        "hang",
        toml="[verifier]\ntimeout_sec = 2.0\n",
        test_sh="#!/bin/bash\necho started\nsleep 600\necho 1 > /logs/verifier/reward.txt\n",
        solve_sh="#!/bin/bash\ntrue\n",
    )
    t0 = time.monotonic()
    result, tdir = await run_trial(backend, job_name, task, tmp_path)
    assert time.monotonic() - t0 < 30
    assert result.outcome == Outcome.VERIFIER_TIMEOUT
    assert not result.is_infra  # the task's tests are at fault, not the infrastructure
    assert "started" in (tdir / "verifier" / "test-stdout.txt").read_text()
    assert await job_containers(job_name) == []


async def test_build_failure_is_build_error(backend, job_name, make_task, tmp_path):
    task = make_task(
        "nobuild",
        dockerfile=unique_dockerfile("RUN echo about-to-fail && exit 3\n"),
        solve_sh=SOLVE_ANSWER,
    )
    result, tdir = await run_trial(backend, job_name, task, tmp_path)
    assert result.outcome == Outcome.BUILD_ERROR
    assert result.is_infra
    text = (tdir / "exception.txt").read_text()
    assert "ImageBuildError" in text and "about-to-fail" in text


async def test_fork_bomb_is_contained(backend, job_name, make_task, tmp_path):
    solve = "#!/bin/bash\necho 42 > /app/answer.txt\nbomb() { bomb | bomb & }; bomb\nsleep 600\n"
    task = make_task(
        "bomb", toml="[agent]\ntimeout_sec = 5.0\n", test_sh=PASS_IF_ANSWER, solve_sh=solve
    )
    t0 = time.monotonic()
    result, _ = await run_trial(backend, job_name, task, tmp_path)
    assert time.monotonic() - t0 < 60
    assert result.outcome == Outcome.AGENT_TIMEOUT
    assert result.reward == 1  # the verifier still ran once the bomb was killed
    assert await job_containers(job_name) == []
    # the host still forks fine
    proc = await asyncio.create_subprocess_exec("true")
    assert await proc.wait() == 0


async def test_memory_hog_is_killed_inside_the_container(backend, job_name, make_task, tmp_path):
    solve = (
        "#!/bin/bash\n"
        "python3 -c 'x = bytearray(1024 * 1024 * 1024); print(len(x))'\n"
        'echo "hog exit $?"\necho 42 > /app/answer.txt\n'
    )
    task = make_task(
        "hog", toml="[environment]\nmemory_mb = 128\n", test_sh=PASS_IF_ANSWER, solve_sh=solve
    )
    result, tdir = await run_trial(backend, job_name, task, tmp_path)
    assert "hog exit 137" in (tdir / "agent" / "oracle.txt").read_text()
    assert result.outcome == Outcome.PASSED  # the rest of the solution ran; trial intact
    if result.environment.oom_kills is not None:
        assert result.environment.oom_kills >= 1
    assert await job_containers(job_name) == []


async def test_huge_output_is_capped(backend, job_name, make_task, tmp_path):
    solve = (
        "#!/bin/bash\nhead -c 200000000 /dev/zero | tr '\\0' a\necho\necho 42 > /app/answer.txt\n"
    )
    task = make_task("loud", test_sh=PASS_IF_ANSWER, solve_sh=solve)
    result, tdir = await run_trial(backend, job_name, task, tmp_path)
    assert result.outcome == Outcome.PASSED
    size = (tdir / "agent" / "oracle.txt").stat().st_size
    assert 0 < size <= 9 * 1024 * 1024
    assert result.agent_result.metadata["output_omitted_bytes"] > 190_000_000


async def test_killing_every_process_is_environment_error(backend, job_name, make_task, tmp_path):
    task = make_task("killer", test_sh=PASS_IF_ANSWER, solve_sh="#!/bin/bash\nkill -9 -1\n")
    result, _ = await run_trial(backend, job_name, task, tmp_path)
    assert result.outcome == Outcome.ENVIRONMENT_ERROR
    assert result.is_infra
    assert await job_containers(job_name) == []


# -- agents that misbehave ---------------------------------------------------------------------


class BoomAgent:
    name: ClassVar[str] = "boom"

    def __init__(self, error: str = "agent") -> None:
        self.error = error

    def version(self) -> str:
        return "1"

    def model_info(self) -> ModelInfo | None:
        return ModelInfo("scripted", "test")

    async def setup(self, sandbox, ctx: AgentContext) -> None:
        return None

    async def run(self, instruction: str, sandbox, ctx: AgentContext) -> None:
        await sandbox.exec("echo 42 > /app/answer.txt")
        ctx.add_usage(input_tokens=100, output_tokens=7, cost_usd=0.01)
        (ctx.logs_dir / "notes.txt").write_text("ran")
        if self.error == "llm":
            raise LLMError("endpoint returned 503 five times")
        if self.error == "agent":
            raise RuntimeError("bug in the agent")
        if self.error == "sleep":
            await asyncio.sleep(600)


@pytest.fixture
def boom_agent(monkeypatch):
    monkeypatch.setitem(AGENTS, "boom", f"{__name__}:BoomAgent")


@pytest.mark.parametrize(
    ("error", "outcome"), [("agent", Outcome.AGENT_ERROR), ("llm", Outcome.LLM_ERROR)]
)
async def test_agent_and_llm_errors_are_infra_outcomes(
    backend, job_name, make_task, tmp_path, boom_agent, error, outcome
):
    task = make_task("boom", test_sh=PASS_IF_ANSWER)
    spec = TrialSpec(
        task=Task.load(task),
        trial_name="boom",
        agent=AgentSpec(name="boom", kwargs={"error": error}),
    )
    result = await Trial(spec, backend, tmp_path / "boom", job_id=job_name).run()
    assert result.outcome == outcome
    assert result.is_infra
    assert result.verifier_result is None  # not scored: the attempt is not the model's
    assert result.agent_result.n_input_tokens == 100
    assert result.agent_result.cost_usd == pytest.approx(0.01)
    assert result.agent_info.model_info.name == "scripted"
    assert (tmp_path / "boom" / "agent" / "notes.txt").read_text() == "ran"
    assert await job_containers(job_name) == []


async def test_cancelled_trial_records_cancelled_and_removes_container(
    backend, job_name, make_task, tmp_path, boom_agent
):
    task = make_task("cancel", test_sh=PASS_IF_ANSWER)
    spec = TrialSpec(
        task=Task.load(task),
        trial_name="c",
        agent=AgentSpec(name="boom", kwargs={"error": "sleep"}),
    )
    trial = Trial(spec, backend, tmp_path / "c", job_id=job_name)
    running = asyncio.create_task(trial.run())
    for _ in range(200):
        await asyncio.sleep(0.05)
        if (tmp_path / "c" / "agent" / "notes.txt").exists():
            break
    assert await job_containers(job_name)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    data = json.loads((tmp_path / "c" / "result.json").read_text())
    assert data["outcome"] == "cancelled"
    assert "agent_execution" in data["exception_info"]["exception_message"]
    assert await job_containers(job_name) == []


def test_trial_files_are_not_left_half_written(tmp_path):
    # result.json is the commit point: written through a temp file and a rename.
    from ttgen.formats.trial import read_trial_result, write_json_atomic

    (tmp_path / "result.json").write_text('{"id": "x", "task_na')  # a torn write
    assert read_trial_result(tmp_path) is None
    write_json_atomic(tmp_path / "result.json", {"a": 1})
    assert json.loads((tmp_path / "result.json").read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
    assert os.stat(tmp_path / "result.json").st_size > 0
