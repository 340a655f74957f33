"""`ttgen validate`: one verdict per task from real nop and oracle trials; and job statistics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from math import comb
from pathlib import Path

import pytest

from conftest import BASE_IMAGE, unique_dockerfile
from ttgen.rollout.job_stats import TrialSummary, compute_stats, k_values, pass_at_k
from ttgen.rollout.validate import validate_tasks
from ttgen.task import NO_TESTS_SCRIPT

CHECK = """#!/bin/bash
if [ "$(cat /app/answer.txt 2>/dev/null)" = "42" ]; then echo 1; else echo 0; fi \
  > /logs/verifier/reward.txt
"""
SOLVE = "#!/bin/bash\necho 42 > /app/answer.txt\n"


@pytest.fixture
def task_zoo(make_task, tmp_path) -> Path:
    parent = tmp_path / "zoo"
    make_task("good", parent=parent, test_sh=CHECK, solve_sh=SOLVE)
    make_task("unsolved", parent=parent, test_sh=CHECK)  # no solution/
    make_task("always-one", parent=parent, solve_sh=SOLVE,
              test_sh="#!/bin/bash\necho 1 > /logs/verifier/reward.txt\n")  # fmt: skip
    make_task("wrong-oracle", parent=parent, test_sh=CHECK,
              solve_sh="#!/bin/bash\necho 41 > /app/answer.txt\nexit 2\n")  # fmt: skip
    make_task("silent-tests", parent=parent, solve_sh=SOLVE,
              test_sh="#!/bin/bash\nset -e\npytest /tests/nothing.py\n")  # fmt: skip
    make_task("no-build", parent=parent, solve_sh=SOLVE, test_sh=CHECK,
              dockerfile=unique_dockerfile("RUN false\n"))  # fmt: skip
    make_task("bad-toml", parent=parent, toml="[verifier]\ntimeout_sec = 'soon'\n")
    make_task("no-tests", parent=parent, test_sh=None)  # an adapter task, as written before
    # an adapter task as written now: Harbor's tests/test.sh that gives no reward ({}); ttgen does
    # not run it (a solve.sh changes nothing: the oracle is not even run)
    make_task("no-tests-script", parent=parent, test_sh=NO_TESTS_SCRIPT, solve_sh=SOLVE)
    # real tests that give no reward ({}): a broken verifier to ttgen, not a task without tests
    make_task("empty-reward", parent=parent, solve_sh=SOLVE,
              test_sh="#!/bin/bash\ncat /app/answer.txt\necho '{}' > /logs/verifier/reward.json\n")  # fmt: skip
    return parent


EXPECTED = {
    "good": "valid",
    "unsolved": "no_solution",
    "always-one": "trivial",
    "wrong-oracle": "oracle_failed",
    "silent-tests": "verifier_broken",
    "no-build": "build_failed",
    "bad-toml": "invalid",
    "no-tests": "no_tests",
    "no-tests-script": "no_tests",
    "empty-reward": "verifier_broken",
}


async def test_verdicts(docker_ready, task_zoo, tmp_path):
    from ttgen.rollout.job import JobOptions
    from ttgen.task import find_tasks

    out = tmp_path / "val"
    verdicts = await validate_tasks(
        find_tasks([task_zoo]), out, JobOptions(n_concurrent=4, retries=0)
    )
    got = {Path(v.path).name: v for v in verdicts}
    assert {k: v.verdict for k, v in got.items()} == EXPECTED
    assert got["good"].rewards == {"nop": 0, "oracle": 1}
    assert got["unsolved"].rewards == {"nop": 0}
    assert "solve.sh exited 2" in got["wrong-oracle"].reasons
    assert "nop scores 1" in got["always-one"].reasons[0]
    assert "RUN false" in got["no-build"].reasons[0] or "build" in got["no-build"].reasons[0]
    assert "timeout_sec" in got["bad-toml"].reasons[0]
    for name in ("no-tests", "no-tests-script"):
        assert got[name].rewards == {"nop": None} and got[name].outcomes == {"nop": "unverified"}
        assert not (out / got[name].trials["nop"] / "verifier" / "test-stdout.txt").exists()
    assert got["no-tests-script"].trials == {"nop": "no-tests-script__nop"}
    assert got["empty-reward"].outcomes == {"nop": "reward_missing", "oracle": "reward_missing"}
    assert "non-empty JSON object" in got["empty-reward"].reasons[0]
    lines = [json.loads(x) for x in (out / "validation.jsonl").read_text().splitlines()]
    assert {Path(x["path"]).name: x["verdict"] for x in lines} == EXPECTED
    assert all({"task", "verdict", "reasons", "rewards"} <= set(x) for x in lines)


def test_validate_cli_table_keep_and_resume(docker_ready, task_zoo, tmp_path):
    env = {**os.environ, "TTGEN_IMAGE_ALIASES": f"ubuntu:*={BASE_IMAGE}", "COLUMNS": "200"}
    out, kept = tmp_path / "val", tmp_path / "kept"
    cmd = [sys.executable, "-m", "ttgen.cli", "validate", str(task_zoo), "--out", str(out),
           "-n", "4", "--retries", "0", "--keep", "valid,no_solution", "--keep-dir", str(kept)]  # fmt: skip
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    for verdict in EXPECTED.values():
        assert verdict in run.stdout
    assert "valid 1, no_solution 1, no_tests 2, trivial 1, oracle_failed 1" in run.stdout
    assert sorted(p.name for p in kept.iterdir()) == ["good", "unsolved"]
    assert (kept / "good" / "solution" / "solve.sh").read_text() == SOLVE
    trials_before = {p.name: p.stat().st_mtime_ns for p in out.glob("*/result.json")}
    again = subprocess.run([*cmd, "--strict"], env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 1  # --strict: some tasks are not valid
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*/result.json")} == trials_before


# -- statistics ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "c", "k"), [(5, 0, 1), (5, 2, 1), (5, 2, 3), (10, 9, 5), (8, 8, 8)])
def test_pass_at_k_matches_the_combinatorial_formula(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k))


def test_k_values():
    assert k_values(1) == [1]
    assert k_values(5) == [1, 2, 4, 5]
    assert k_values(16) == [1, 2, 4, 5, 8, 10, 15, 16]


EXCEPTIONS = {"llm_error": "LLMError", "environment_error": "SandboxError",
              "verifier_timeout": "VerifierTimeoutError"}  # fmt: skip


def _s(task: str, outcome: str, reward: float | None, attempt: int = 0) -> TrialSummary:
    return TrialSummary(trial_name=f"{task}__{attempt}", task_name=task, agent="oracle",
                        model=None, attempt=attempt, outcome=outcome, reward=reward,
                        exception_type=EXCEPTIONS.get(outcome),
                        rewards=None if reward is None else {"reward": reward})  # fmt: skip


def test_stats_leave_infrastructure_errors_out_of_scores():
    items = [
        _s("a", "passed", 1.0, 0), _s("a", "failed", 0.0, 1), _s("a", "llm_error", None, 2),
        _s("b", "verifier_timeout", None, 0), _s("b", "passed", 1.0, 1),
        _s("b", "environment_error", None, 2),
    ]  # fmt: skip
    st = compute_stats(items, n_total=7)
    assert st["n_scored_trials"] == 4
    assert st["n_infra_errors"] == 2
    assert st["n_pending_trials"] == 1
    # Harbor's meanings beside ours: every finished trial, every trial with an exception
    assert (st["n_completed_trials"], st["n_errored_trials"]) == (6, 3)
    assert st["mean_reward"] == pytest.approx(0.5)  # the timeout counts 0; errors not at all
    assert st["pass_at_k"] == {"1": pytest.approx(0.5), "2": pytest.approx(1.0)}
    assert st["outcomes"] == {
        "passed": 2, "failed": 1, "verifier_timeout": 1, "environment_error": 1, "llm_error": 1
    }  # fmt: skip
    ev = st["evals"]["oracle__adhoc"]  # Harbor's key: agent__dataset without a model
    assert (ev["n_infra_errors"], ev["n_errors"], ev["n_trials"]) == (2, 3, 3)
    assert ev["metrics"] == [{"mean": pytest.approx(2 / 6)}]  # Harbor: no reward counts 0
    assert ev["reward_stats"] == {"reward": {"1.0": ["a__0", "b__1"], "0.0": ["a__1"]}}
    assert ev["exception_stats"]["LLMError"] == ["a__2"]


def test_stats_leave_tasks_without_tests_out_of_scores():
    items = [_s("a", "passed", 1.0), _s("b", "failed", 0.0), _s("c", "unverified", None)]
    st = compute_stats(items, n_total=3)
    assert st["mean_reward"] == pytest.approx(0.5)  # not 1/3: nothing scored task c
    assert st["pass_at_k"] == {"1": pytest.approx(0.5)}
    assert st["outcomes"]["unverified"] == 1
    assert st["evals"]["oracle__adhoc"]["n_unverified"] == 1
