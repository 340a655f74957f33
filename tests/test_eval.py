"""`ttgen eval`: the figures (accuracy ± SE over runs, binomial SE, pass@k, categories, what is
left out) on hand-computed examples, and the command end to end with a scripted teacher."""

from __future__ import annotations

import json
import math
import re
import threading
import time

import pytest
from typer.testing import CliRunner

from test_cli import PREBUILT_TOML, WIDE, scripted_server
from ttgen.cli import app
from ttgen.llm import PREFLIGHT_PROMPT
from ttgen.rollout.evaluate import (
    UNCATEGORIZED,
    binomial_se,
    eval_k_values,
    evaluate,
    headline,
    mean_and_se,
    missing_line,
    task_category,
)
from ttgen.rollout.job_stats import TrialSummary
from ttgen.testing import Error


def trial(task: str, attempt: int, outcome: str, reward: float | None = None, **kw) -> TrialSummary:
    if reward is None and outcome in ("passed", "failed"):
        reward = 1.0 if outcome == "passed" else 0.0
    return TrialSummary(
        trial_name=f"{task}__{attempt}", task_name=task, agent="a", model="m",
        attempt=attempt, outcome=outcome, reward=reward, **kw,
    )  # fmt: skip


def grid(rows: dict[str, str]) -> list[TrialSummary]:
    """One string per task, one letter per attempt: P passed, F failed, L llm_error, B build_error,
    U unverified, T verifier_timeout (no reward), - not run."""
    names = {"P": "passed", "F": "failed", "L": "llm_error", "B": "build_error",
             "U": "unverified", "T": "verifier_timeout"}  # fmt: skip
    return [
        trial(task, j, names[ch])
        for task, row in rows.items()
        for j, ch in enumerate(row)
        if ch != "-"
    ]


CATS = {"a": "software-engineering", "b": "software-engineering", "c": "security"}


# -- the math -------------------------------------------------------------------------------------


def test_mean_and_se_and_binomial_se():
    assert mean_and_se([]) == (None, None)
    assert mean_and_se([0.25]) == (0.25, None)
    mean, se = mean_and_se([0.5, 0.25])
    assert mean == 0.375 and se == pytest.approx(0.125)  # std 0.1768 / sqrt(2)
    mean, se = mean_and_se([2 / 3, 1 / 3, 1 / 3])
    assert mean == pytest.approx(4 / 9) and se == pytest.approx(1 / 9)
    assert binomial_se(0.5, 4) == pytest.approx(0.25)
    assert binomial_se(0.0, 10) == 0.0
    assert binomial_se(None, 0) is None and binomial_se(0.5, 0) is None


def test_k_values_and_categories():
    assert eval_k_values(1) == [1]
    assert eval_k_values(2) == [1, 2]
    assert eval_k_values(5) == [1, 2, 4, 5]
    assert eval_k_values(8) == [1, 2, 4, 8]
    assert task_category({"category": "security", "difficulty": "hard"}) == "security"
    assert task_category({"category": "  games "}) == "games"
    for meta in ({}, None, {"category": ""}, {"category": 3}, {"tags": ["x"]}):
        assert task_category(meta) == UNCATEGORIZED


def test_accuracy_runs_se_pass_at_k_and_categories():
    # run 0: a b c = P F P (2/3), run 1: P F F (1/3), run 2: P F F (1/3)
    s = evaluate(grid({"a": "PPP", "b": "FFF", "c": "PFF"}), CATS, 3)
    assert (s["k"], s["n_tasks"], s["n_trials"], s["n_passed"]) == (3, 3, 9, 4)
    assert s["accuracy"] == pytest.approx(4 / 9)
    assert [r["accuracy"] for r in s["runs"]] == pytest.approx([2 / 3, 1 / 3, 1 / 3])
    assert s["accuracy_mean_of_runs"] == pytest.approx(4 / 9)
    # sample std of (2/3, 1/3, 1/3) = sqrt(1/27); / sqrt(3) = 1/9
    assert s["accuracy_se"] == s["accuracy_runs_se"] == pytest.approx(1 / 9)
    assert s["headline_se"] == "runs" and s["n_runs"] == 3
    assert s["accuracy_binomial_se"] == pytest.approx(math.sqrt(4 / 9 * 5 / 9 / 9))
    assert s["mean_reward"] == pytest.approx(4 / 9) and s["partial_rewards"] is False
    # pass@1 = mean c/n; pass@2 for c (n=3, c=1) = 1 - C(2,2)/C(3,2) = 2/3
    assert s["pass_at_k"] == pytest.approx({"1": 4 / 9, "2": (1 + 0 + 2 / 3) / 3, "3": 2 / 3})
    assert s["pass_at_k_tasks"] == {"1": 3, "2": 3, "3": 3}
    assert (s["n_missing"], s["n_trials_planned"], s["infra"]["n_trials"]) == (0, 9, 0)
    assert missing_line(s) is None

    assert list(s["categories"]) == ["software-engineering", "security"]  # most tasks first
    se, sec = s["categories"]["software-engineering"], s["categories"]["security"]
    assert (se["n_tasks"], se["n_trials"], se["n_passed"]) == (2, 6, 3)
    assert se["accuracy"] == 0.5 and se["accuracy_se"] == 0.0  # every run 1/2
    assert se["pass_at_k"]["3"] == 0.5
    assert (sec["n_tasks"], sec["n_trials"], sec["n_passed"]) == (1, 3, 1)
    # runs 1, 0, 0: std sqrt(1/3), / sqrt(3) = 1/3
    assert sec["accuracy"] == pytest.approx(1 / 3) and sec["accuracy_se"] == pytest.approx(1 / 3)
    assert sec["pass_at_k"] == pytest.approx({"1": 1 / 3, "2": 2 / 3, "3": 1.0})

    assert s["tasks"]["c"] == {
        "category": "security", "n_trials": 3, "n_scored": 3, "n_passed": 1,
        "outcomes": ["passed", "failed", "failed"], "rewards": [1.0, 0.0, 0.0],
        "mean_reward": pytest.approx(1 / 3),
        "pass_at_k": pytest.approx({"1": 1 / 3, "2": 2 / 3, "3": 1.0}),
    }  # fmt: skip
    assert headline(s) == "accuracy 44.4% ± 11.1 (k=3, 3 tasks, 9 trials; SE over 3 runs)"


def test_infrastructure_errors_are_left_out_and_reported():
    # a's 3rd attempt and both of d's first attempts ended in infrastructure errors; e was never
    # run at all (job stopped): none of them is a failure, all of them are missing.
    rows = {"a": "PPB", "b": "FFF", "c": "PFF", "d": "LLP", "e": "---"}
    cats = {**CATS, "d": "security", "e": "games"}
    s = evaluate(grid(rows), cats, 3)
    assert s["n_tasks"] == 5 and s["n_tasks_scored"] == 4
    assert (s["n_trials"], s["n_passed"], s["n_trials_planned"], s["n_missing"]) == (9, 4, 15, 6)
    assert s["infra"] == {"n_trials": 3, "outcomes": {"build_error": 1, "llm_error": 2},
                          "tasks": ["a", "d"]}  # fmt: skip
    # runs: 0 = a P, b F, c P (2/3); 1 = a P, b F, c F (1/3); 2 = b F, c F, d P (1/3)
    assert [(r["n_trials"], r["n_passed"]) for r in s["runs"]] == [(3, 2), (3, 1), (3, 1)]
    assert s["accuracy"] == pytest.approx(4 / 9) and s["accuracy_se"] == pytest.approx(1 / 9)
    # pass@k over the tasks with at least k scored trials (d has 1, a has 2)
    assert s["pass_at_k_tasks"] == {"1": 4, "2": 3, "3": 2}
    assert s["pass_at_k"]["1"] == pytest.approx((1 + 0 + 1 / 3 + 1) / 4)
    assert s["pass_at_k"]["3"] == pytest.approx((0 + 1) / 2)
    assert s["tasks"]["a"]["outcomes"] == ["passed", "passed", "build_error"]
    assert s["tasks"]["a"]["rewards"] == [1.0, 1.0, None]
    assert s["tasks"]["e"]["outcomes"] == [None, None, None] and s["tasks"]["e"]["n_scored"] == 0
    assert s["categories"]["security"]["n_missing"] == 2
    assert s["categories"]["games"]["n_trials"] == 0
    assert s["categories"]["games"]["accuracy"] is None
    assert missing_line(s) == (
        "6 of 15 trials missing (infrastructure errors left after retries: build_error 1, "
        "llm_error 2; not run: 3); the figures are over the 9 trials that finished with a model "
        "outcome"
    )


def test_unverified_tasks_are_excluded_and_counted_apart():
    s = evaluate(grid({"a": "PF", "n": "UU"}), {"a": "x", "n": "y"}, 2)
    assert (s["n_tasks"], s["n_trials"], s["n_trials_planned"], s["n_missing"]) == (1, 2, 2, 0)
    assert s["unverified"] == {"n_trials": 2, "tasks": ["n"]}
    assert list(s["categories"]) == ["x"]
    assert s["accuracy"] == 0.5 and s["outcomes"] == {"failed": 1, "passed": 1, "unverified": 2}


def test_partial_rewards_give_a_mean_reward_apart_from_accuracy():
    items = [trial("a", 0, "passed"), trial("a", 1, "failed", 0.5), trial("b", 0, "failed", 0.25),
             trial("b", 1, "verifier_timeout")]  # fmt: skip
    s = evaluate(items, {"a": "x", "b": "x"}, 2)
    assert s["partial_rewards"] is True
    assert s["accuracy"] == 0.25  # only reward >= 1 passes
    assert s["mean_reward"] == pytest.approx((1 + 0.5 + 0.25 + 0) / 4)
    assert [r["mean_reward"] for r in s["runs"]] == pytest.approx([0.625, 0.25])
    assert s["mean_reward_se"] == pytest.approx(0.1875)  # |0.625 - 0.25| / 2
    assert s["tasks"]["b"]["rewards"] == [0.25, 0.0]
    assert headline(s).endswith("SE over 2 runs); mean reward 0.438")


def test_one_run_falls_back_to_the_binomial_se_and_nothing_scored_has_no_figures():
    s = evaluate(grid({"a": "P", "b": "F", "c": "F", "d": "F"}), dict.fromkeys("abcd", "x"), 1)
    assert s["accuracy_runs_se"] is None and s["headline_se"] == "binomial"
    assert s["accuracy_se"] == pytest.approx(math.sqrt(0.25 * 0.75 / 4))
    assert headline(s) == "accuracy 25.0% ± 21.7 (k=1, 4 tasks, 4 trials; binomial SE, one run)"
    empty = evaluate(grid({"a": "LL"}), {"a": "x"}, 2)
    assert empty["accuracy"] is None and empty["accuracy_se"] is None
    assert empty["pass_at_k"] == {} and empty["n_missing"] == 2
    assert headline(empty).startswith("accuracy - (k=2")
    with pytest.raises(ValueError):
        evaluate([], {}, 0)


def test_trials_of_other_tasks_or_attempts_are_ignored():
    items = [*grid({"a": "PPF"}), trial("zzz", 0, "passed")]
    s = evaluate(items, {"a": "x"}, 2)  # a third attempt from an earlier, larger -k
    assert (s["n_trials"], s["n_passed"], s["accuracy"]) == (2, 2, 1.0)


def test_the_category_table_shows_names_as_written():
    import io

    from rich.console import Console

    from ttgen.rollout.evaluate import category_table

    s = evaluate(grid({"a": "PF"}), {"a": "[draft] security"}, 2)
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(category_table(s, "eval: terminus-2 / org/[beta]-model"))
    text = console.export_text()
    assert "[draft] security" in text
    assert "org/[beta]-model" in text


# -- the command, with real containers ------------------------------------------------------------

CHECK = "#!/bin/sh\nif [ -f /tmp/done ]; then echo 1; else echo 0; fi > /logs/verifier/reward.txt\n"
HALF = "#!/bin/sh\necho 0.5 > /logs/verifier/reward.txt\n"


def write_eval_task(root, name: str, category: str | None, test_sh: str = CHECK):
    task = root / name
    (task / "environment").mkdir(parents=True)
    (task / "tests").mkdir()
    meta = f'\n[metadata]\ncategory = "{category}"\n' if category else ""
    (task / "task.toml").write_text(f'[task]\nname = "{name}"\n{meta}{PREBUILT_TOML}')
    (task / "instruction.md").write_text(f"TASK-{name}: create the file /tmp/done.\n")
    (task / "tests" / "test.sh").write_text(test_sh)


def action(commands: list[str]) -> str:
    return json.dumps({
        "analysis": "a", "plan": "p", "task_complete": True,
        "commands": [{"keystrokes": c, "duration": 0.1} for c in commands],
    })  # fmt: skip


class Teacher:
    """Solves `alpha` and `epsilon` always, `gamma` on its first try only, never `beta` or
    `delta` (whose test gives 0.5 whatever happens); answers 500 for `epsilon` while `down`."""

    def __init__(self) -> None:
        self.down = True
        self.first_turns: dict[str, int] = {}
        self.lock = threading.Lock()

    def __call__(self, body: dict):
        messages = body["messages"]
        if messages[-1]["content"] == PREFLIGHT_PROMPT:
            return "OK"
        name = re.search(r"TASK-(\w+):", messages[0]["content"]).group(1)
        if name == "epsilon" and self.down:
            return Error(500, "the GPU fell over")
        if len(messages) > 1:  # the completion check: confirm
            return action([])
        with self.lock:
            self.first_turns[name] = n = self.first_turns.get(name, 0) + 1
        solve = name in ("alpha", "epsilon") or (name == "gamma" and n == 1)
        return action(["touch /tmp/done\n"] if solve else [])


def table_rows(stdout: str) -> dict[str, list[str]]:
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in re.split("[│┃]", line.strip().strip("│┃"))]
        if len(cells) > 5:
            rows[cells[0]] = cells[1:]
    return rows


def test_eval_end_to_end_with_an_outage_then_resume(docker_ready, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    suite = tmp_path / "tb"
    write_eval_task(suite, "alpha", "software-engineering")
    write_eval_task(suite, "beta", "software-engineering")
    write_eval_task(suite, "gamma", "security")
    write_eval_task(suite, "delta", "security", test_sh=HALF)
    write_eval_task(suite, "epsilon", None)
    out = tmp_path / "eval"
    teacher = Teacher()
    t0 = time.monotonic()
    with scripted_server(default=teacher) as server:
        # -n 1: attempt-major order, so gamma's first try is run 0's
        cmd = ["eval", str(suite), "--model", "m", "--base-url", server.base_url, "-k", "2",
               "-n", "1", "--retries", "0", "--ak", "max_retries=0", "--out", str(out)]  # fmt: skip
        res = runner.invoke(app, cmd, env=WIDE)
        assert res.exit_code == 1, res.output
        # run 0: alpha P, beta F, gamma P, delta F (0.5) = 50%; run 1: P F F F = 25%
        # mean 37.5%, SE = std(0.5, 0.25) / sqrt(2) = 12.5; binomial sqrt(.375 * .625 / 8) = 17.1
        assert "accuracy 37.5% ± 12.5 (k=2, 4 tasks, 8 trials; SE over 2 runs); mean reward " \
            "0.500" in res.stdout  # fmt: skip
        assert "2 of 10 trials missing (infrastructure errors left after retries: llm_error 2)" \
            in res.stdout  # fmt: skip
        assert "runs: 50.0%  25.0%  (binomial SE 17.1)" in res.stdout
        assert "pass@k: @1 37.5%  @2 50.0%" in res.stdout
        assert "infrastructure errors (never counted as failures): llm_error 2\n" in res.stdout
        rows = table_rows(res.stdout)
        header = rows.pop("category")
        assert header == ["tasks", "trials", "passed", "accuracy %", "± SE", "pass@2 %",
                          "mean reward", "missing"]  # fmt: skip
        assert rows["software-engineering"] == ["2", "4", "2", "50.0", "0.0", "50.0", "0.500", "0"]
        assert rows["security"] == ["2", "4", "1", "25.0", "25.0", "50.0", "0.500", "0"]
        assert rows["uncategorized"] == ["1", "0", "0", "-", "-", "-", "-", "2"]
        assert rows["overall"] == ["5", "8", "3", "37.5", "12.5", "50.0", "0.500", "2"]

        saved = json.loads((out / "eval.json").read_text())
        assert saved["model"] == "m" and saved["agent"] == "terminus-2"
        assert (saved["n_trials"], saved["n_passed"], saved["n_missing"]) == (8, 3, 2)
        assert saved["infra"]["outcomes"] == {"llm_error": 2}
        assert saved["tasks"]["gamma"]["outcomes"] == ["passed", "failed"]
        assert saved["tasks"]["delta"]["rewards"] == [0.5, 0.5]
        assert saved["tasks"]["epsilon"]["outcomes"] == ["llm_error", "llm_error"]
        assert [r["accuracy"] for r in saved["runs"]] == [0.5, 0.25]
        assert saved["accuracy_binomial_se"] == pytest.approx(math.sqrt(0.375 * 0.625 / 8))
        assert (out / "job" / "result.json").exists() and (out / "job" / "alpha__1").is_dir()
        assert "se_definition" in saved

        # The endpoint is back: the re-run runs epsilon's two trials only, and nothing else.
        teacher.down = False
        before = dict(teacher.first_turns)
        res = runner.invoke(app, [*cmd, "--json"], env=WIDE)
        assert res.exit_code == 0, res.output
        assert teacher.first_turns == {**before, "epsilon": 2}
        data = json.loads(res.stdout)
        assert data == json.loads((out / "eval.json").read_text())
        # run 0: P F P F P = 60%, run 1: P F F F P = 40%
        assert (data["n_trials"], data["n_passed"], data["n_missing"]) == (10, 5, 0)
        assert data["accuracy"] == 0.5 and data["accuracy_se"] == pytest.approx(0.1)
        assert data["infra"]["n_trials"] == 0
        assert data["categories"]["uncategorized"]["accuracy"] == 1.0
        assert data["pass_at_k"] == pytest.approx({"1": 0.5, "2": 0.6})

        # A third run finds every trial done: no request at all (the preflight aside).
        n_requests = len(server.requests)
        res = runner.invoke(app, [*cmd, "--json", "--no-preflight"], env=WIDE)
        assert res.exit_code == 0, res.output
        assert len(server.requests) == n_requests
        assert json.loads(res.stdout)["accuracy"] == 0.5
    assert time.monotonic() - t0 < 90


def test_eval_needs_an_endpoint_and_checks_it_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_eval_task(tmp_path / "tb", "alpha", "x")
    res = CliRunner().invoke(app, ["eval", str(tmp_path / "tb"), "--out", str(tmp_path / "e")])
    assert res.exit_code == 2 and "model" in res.stderr
    with scripted_server([Error(404, "The model `nope` does not exist.")]) as server:
        res = CliRunner().invoke(
            app, ["eval", str(tmp_path / "tb"), "--model", "nope", "--base-url", server.base_url,
                  "--out", str(tmp_path / "e")], env=WIDE,
        )  # fmt: skip
    assert res.exit_code == 2 and "nothing was started" in res.stderr
    assert not (tmp_path / "e").exists()
