"""Terminal-Bench style evaluation figures from a job's trials: accuracy ± SE, pass@k, categories.

An evaluation runs every task k times (TB2's protocol: k = 5, so 89 tasks give 445 trials). Run j
is the j-th attempt of every task. The figures:

* **accuracy**: the fraction of trials passed (reward ≥ 1, as TB2 counts a task solved), over
  every trial that ended with a model outcome. **mean reward** is the mean of those trials'
  rewards (a missing reward counts 0); it differs from accuracy only when rewards are partial.
* **± (the headline SE)**: the standard error of the mean over the k runs: the accuracy of each
  run (its passed trials / its scored trials), then SE = sample standard deviation of those k
  accuracies / sqrt(k), as leaderboards report it. The paper does not say what its ± is; this is
  the usual reading. With a single run there is no spread between runs and the headline falls
  back to the binomial SE (the output says which one it shows).
* **binomial SE**: sqrt(p (1 - p) / n) over the n scored trials, reported for reference.
* **pass@k**: the unbiased estimator 1 - C(n-c, k) / C(n, k) per task, averaged over the tasks
  with at least k scored trials, for k = 1, the powers of two below k, and k.
* **categories**: from each task's task.toml `[metadata] category` (missing: "uncategorized"),
  the same figures per category (the paper's Table 4).

Infrastructure outcomes (build/environment/agent/LLM errors, cancelled) say nothing about the
model: the job retries them, and those left after the retries are counted apart by type and
never as failures; the figures are then over the trials that finished with a model outcome and
the summary says how many trials are missing. Trials of tasks without tests (`unverified`) are
excluded and counted apart as well.

Everything here is a pure function of trial summaries and task categories (no Docker).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from ttgen.formats.trial import Outcome, read_job, task_metadata_of
from ttgen.rollout.job_stats import TrialSummary, pass_at_k

UNCATEGORIZED = "uncategorized"

SE_DEFINITION = (
    "accuracy_se: standard error of the mean over the k runs (run j = the j-th attempt of every "
    "task): sample standard deviation of the per-run accuracies / sqrt(number of runs). "
    "accuracy_binomial_se: sqrt(p(1-p)/n) over the n scored trials. The headline ± is "
    "accuracy_se (headline_se = 'runs'), or the binomial SE when there is only one run "
    "(headline_se = 'binomial')."
)


def task_category(metadata: Mapping[str, Any] | None) -> str:
    """A task's category: task.toml `[metadata] category`, else "uncategorized"."""
    value = (metadata or {}).get("category") if isinstance(metadata, Mapping) else None
    if isinstance(value, str) and value.strip():
        return value.strip()
    return UNCATEGORIZED


def eval_k_values(k: int) -> list[int]:
    """1, the powers of two below k, and k."""
    ks = {1, k}
    p = 2
    while p < k:
        ks.add(p)
        p *= 2
    return sorted(x for x in ks if x >= 1)


def mean_and_se(values: Iterable[float]) -> tuple[float | None, float | None]:
    """The mean and its standard error: sample standard deviation (n - 1) / sqrt(n).
    (None, None) for no values; the SE is None for one value."""
    xs = list(values)
    if not xs:
        return None, None
    mean = sum(xs) / len(xs)
    if len(xs) < 2:
        return mean, None
    return mean, statistics.stdev(xs) / math.sqrt(len(xs))


def binomial_se(p: float | None, n: int) -> float | None:
    """sqrt(p (1 - p) / n): the standard error of a proportion p over n trials."""
    if p is None or n <= 0:
        return None
    return math.sqrt(max(0.0, p * (1.0 - p)) / n)


def _reward(s: TrialSummary) -> float:
    return s.reward if s.reward is not None else 0.0


def _is_scored(s: TrialSummary) -> bool:
    return not s.is_infra and s.outcome != Outcome.UNVERIFIED.value


def _figures(scored: list[TrialSummary], ks: list[int], k: int) -> dict[str, Any]:
    """accuracy, mean reward (pooled, with per-run and binomial SEs), per-run figures, pass@k."""
    n = len(scored)
    n_passed = sum(1 for s in scored if s.success)
    accuracy = n_passed / n if n else None
    mean_reward = sum(_reward(s) for s in scored) / n if n else None
    runs = []
    for j in range(k):
        items = [s for s in scored if s.attempt == j]
        passed = sum(1 for s in items if s.success)
        runs.append({
            "run": j,
            "n_trials": len(items),
            "n_passed": passed,
            "accuracy": passed / len(items) if items else None,
            "mean_reward": sum(_reward(s) for s in items) / len(items) if items else None,
        })  # fmt: skip
    counted = [r for r in runs if r["n_trials"]]
    run_mean, run_se = mean_and_se(r["accuracy"] for r in counted)
    _, reward_se = mean_and_se(r["mean_reward"] for r in counted)
    per_task: dict[str, list[int]] = {}
    for s in scored:
        nc = per_task.setdefault(s.task_name, [0, 0])
        nc[0] += 1
        nc[1] += int(s.success)
    pak: dict[str, float] = {}
    pak_tasks: dict[str, int] = {}
    for kk in ks:
        eligible = [(nn, c) for nn, c in per_task.values() if nn >= kk]
        if eligible:
            pak[str(kk)] = sum(pass_at_k(nn, c, kk) for nn, c in eligible) / len(eligible)
            pak_tasks[str(kk)] = len(eligible)
    binom = binomial_se(accuracy, n)
    headline = "runs" if run_se is not None else ("binomial" if binom is not None else None)
    return {
        "n_tasks": len(per_task),
        "n_trials": n,
        "n_passed": n_passed,
        "accuracy": accuracy,
        "accuracy_se": run_se if run_se is not None else binom,
        "headline_se": headline,
        "accuracy_runs_se": run_se,
        "accuracy_binomial_se": binom,
        "accuracy_mean_of_runs": run_mean,
        "mean_reward": mean_reward,
        "mean_reward_se": reward_se,
        "n_runs": len(counted),
        "runs": runs,
        "pass_at_k": pak,
        "pass_at_k_tasks": pak_tasks,
    }


def summarize_job(job_dir: Path) -> tuple[list[TrialSummary], dict[str, str], int]:
    """What `evaluate` needs from a finished job folder, ttgen's or Harbor's: the trials'
    summaries, each task's category (its metadata, recorded or in its task folder) and k (the
    most attempts any task had). ValueError when the folder holds no finished trial."""
    results = read_job(job_dir)
    if not results:
        raise ValueError(f"{job_dir}: no finished trial (no valid result.json in its folders)")
    summaries = [TrialSummary.of(r) for r in results]
    categories = {r.task_name: task_category(task_metadata_of(r)) for r in results}
    return summaries, categories, max(s.attempt for s in summaries) + 1


def evaluate(
    summaries: Iterable[TrialSummary], categories: Mapping[str, str], k: int
) -> dict[str, Any]:
    """The evaluation summary of `k` attempts at each task of `categories` (task name →
    category) from the trials' summaries. Trials of other tasks or of attempts ≥ k are ignored;
    planned trials without a summary (or with an infrastructure outcome) count as missing."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    planned = dict(categories)
    items = [s for s in summaries if s.task_name in planned and 0 <= s.attempt < k]
    ks = eval_k_values(k)
    by_task: dict[str, dict[int, TrialSummary]] = {t: {} for t in planned}
    for s in items:
        by_task[s.task_name][s.attempt] = s
    scored = [s for s in items if _is_scored(s)]
    infra = [s for s in items if s.is_infra]
    unverified_trials = [s for s in items if s.outcome == Outcome.UNVERIFIED.value]
    scored_tasks = {s.task_name for s in scored}
    unverified_tasks = sorted(
        {s.task_name for s in unverified_trials} - scored_tasks
    )  # tasks without tests: nothing to score
    evaluated = [t for t in planned if t not in unverified_tasks]
    n_planned = len(evaluated) * k
    n_missing = (
        n_planned - len(scored) - sum(1 for s in unverified_trials if s.task_name in evaluated)
    )

    tasks: dict[str, Any] = {}
    for name in sorted(planned):
        trials = by_task[name]
        mine = [s for s in trials.values() if _is_scored(s)]
        n, c = len(mine), sum(1 for s in mine if s.success)
        tasks[name] = {
            "category": planned[name],
            "n_trials": k,
            "n_scored": n,
            "n_passed": c,
            "outcomes": [trials[j].outcome if j in trials else None for j in range(k)],
            "rewards": [
                (_reward(trials[j]) if _is_scored(trials[j]) else None) if j in trials else None
                for j in range(k)
            ],
            "mean_reward": sum(_reward(s) for s in mine) / n if n else None,
            "pass_at_k": {str(kk): pass_at_k(n, c, kk) for kk in ks if kk <= n},
        }

    cats: dict[str, Any] = {}
    cat_names = sorted(
        {planned[t] for t in evaluated},
        key=lambda cat: (-sum(1 for t in evaluated if planned[t] == cat), cat),
    )
    for cat in cat_names:
        members = [t for t in evaluated if planned[t] == cat]
        cat_scored = [s for s in scored if planned[s.task_name] == cat]
        fig = _figures(cat_scored, ks, k)
        fig["n_tasks"] = len(members)
        fig["n_tasks_scored"] = len({s.task_name for s in cat_scored})
        fig["n_missing"] = len(members) * k - len(cat_scored)
        cats[cat] = fig

    overall = _figures(scored, ks, k)
    overall["n_tasks_scored"] = overall["n_tasks"]
    overall["n_tasks"] = len(evaluated)
    rewards = {_reward(s) for s in scored}
    return {
        "k": k,
        "k_values": ks,
        **overall,
        "n_trials_planned": n_planned,
        "n_missing": n_missing,
        "partial_rewards": any(r not in (0.0, 1.0) for r in rewards),
        "outcomes": dict(sorted(Counter(s.outcome for s in items).items())),
        "infra": {
            "n_trials": len(infra),
            "outcomes": dict(sorted(Counter(s.outcome for s in infra).items())),
            "tasks": sorted({s.task_name for s in infra}),
        },
        "n_retries": sum(s.n_retries for s in items),
        "unverified": {"n_trials": len(unverified_trials), "tasks": unverified_tasks},
        "categories": cats,
        "tasks": tasks,
        "se_definition": SE_DEFINITION,
    }


def headline(summary: dict[str, Any]) -> str:
    """One line, e.g. `accuracy 13.0% ± 2.2 (k=5, 89 tasks, 445 trials; SE over 5 runs)`."""
    acc = summary["accuracy"]
    if acc is None:
        return f"accuracy - (k={summary['k']}, no trial finished with a model outcome)"
    se = summary["accuracy_se"]
    how = {
        "runs": f"SE over {summary['n_runs']} runs",
        "binomial": "binomial SE, one run",
    }.get(summary["headline_se"] or "", "no SE")
    pm = f" ± {100 * se:.1f}" if se is not None else ""
    line = (
        f"accuracy {100 * acc:.1f}%{pm} (k={summary['k']}, {summary['n_tasks_scored']} tasks, "
        f"{summary['n_trials']} trials; {how})"
    )
    if summary["partial_rewards"] and summary["mean_reward"] is not None:
        line += f"; mean reward {summary['mean_reward']:.3f}"
    return line


def missing_line(summary: dict[str, Any]) -> str | None:
    """What is missing from the figures, or None when every planned trial was scored."""
    if not summary["n_missing"]:
        return None
    parts = []
    infra = summary["infra"]["outcomes"]
    if infra:
        counts = ", ".join(f"{o} {n}" for o, n in infra.items())
        parts.append(f"infrastructure errors left after retries: {counts}")
    unfinished = summary["n_missing"] - summary["infra"]["n_trials"]
    if unfinished > 0:
        parts.append(f"not run: {unfinished}")
    return (
        f"{summary['n_missing']} of {summary['n_trials_planned']} trials missing "
        f"({'; '.join(parts)}); the figures are over the {summary['n_trials']} trials that "
        "finished with a model outcome"
    )


# -- terminal output ----------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def category_table(summary: dict[str, Any], title: str) -> Table:
    """The per-category table (the paper's Table 4) with an `overall` row; pass@k at the k
    evaluated; `mean reward` when rewards are partial, `missing` when trials are missing."""
    kmax = str(summary["k"])
    table = Table(title=escape(title))
    cols = ["category", "tasks", "trials", "passed", "accuracy %", "± SE", f"pass@{kmax} %"]
    if summary["partial_rewards"]:
        cols.append("mean reward")
    if summary["n_missing"]:
        cols.append("missing")
    for col in cols:
        table.add_column(col, justify="left" if col == "category" else "right")
    rows = [*summary["categories"].items(), ("overall", summary)]
    for i, (name, c) in enumerate(rows):
        cells = [escape(name), str(c["n_tasks"]), str(c["n_trials"]), str(c["n_passed"]),
                 _pct(c["accuracy"]), _pct(c["accuracy_se"]), _pct(c["pass_at_k"].get(kmax))]  # fmt: skip
        if summary["partial_rewards"]:
            cells.append("-" if c["mean_reward"] is None else f"{c['mean_reward']:.3f}")
        if summary["n_missing"]:
            cells.append(str(c["n_missing"]))
        table.add_row(*cells, end_section=i == len(rows) - 2)
    return table


def report_lines(summary: dict[str, Any]) -> list[str]:
    """The lines printed under the table: headline, what is missing, runs, pass@k, what was
    left out (rich markup)."""
    lines = [f"[bold]{escape(headline(summary))}[/]"]
    if missing := missing_line(summary):
        lines.append(f"[yellow]{escape(missing)}[/]")
    runs = "  ".join(f"{_pct(r['accuracy'])}%" for r in summary["runs"])
    lines.append(f"runs: {runs}  (binomial SE {_pct(summary['accuracy_binomial_se'])})")
    pak = "  ".join(f"@{k} {_pct(v)}%" for k, v in summary["pass_at_k"].items())
    lines.append(f"pass@k: {pak or '-'}")
    if summary["infra"]["n_trials"] or summary["n_retries"]:
        counts = ", ".join(f"{o} {n}" for o, n in summary["infra"]["outcomes"].items())
        retried = f" ({summary['n_retries']} retried)" if summary["n_retries"] else ""
        lines.append(
            f"infrastructure errors (never counted as failures): {counts or 'none left'}{retried}"
        )
    if summary["unverified"]["n_trials"]:
        lines.append(
            f"left out: {summary['unverified']['n_trials']} trial(s) of "
            f"{len(summary['unverified']['tasks'])} task(s) without tests"
        )
    return lines
