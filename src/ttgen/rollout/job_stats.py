"""Job statistics: outcomes, mean reward, pass@k (unbiased estimator averaged over tasks), and
Harbor's JobStats with Harbor's meanings beside them (see `compute_stats`).

Infrastructure outcomes (build/environment/agent/LLM errors, cancelled) are counted apart and
never enter the reward figures: they say nothing about the model. A model outcome without a
reward (verifier timeout, reward missing) counts as reward 0, as in Harbor. Trials of tasks
without tests (outcome `unverified`) are counted apart too: nothing scored them.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from ttgen.formats.trial import INFRA_OUTCOMES, Outcome, TrialResult


@dataclass
class TrialSummary:
    """The few fields of a trial result a job keeps in memory (and writes to trials.jsonl)."""

    trial_name: str
    task_name: str
    agent: str
    model: str | None
    attempt: int
    outcome: str
    reward: float | None
    n_retries: int = 0
    n_input_tokens: int = 0
    n_cache_tokens: int = 0
    n_output_tokens: int = 0
    cost_usd: float | None = None
    duration_sec: float | None = None
    exception_type: str | None = None
    source: str | None = None  # the task's dataset (Harbor's eval key)
    rewards: dict[str, float | int] | None = None  # the verifier's; None: it gave no result

    @classmethod
    def of(cls, r: TrialResult) -> TrialSummary:
        ar = r.agent_result
        mi = r.agent_info.model_info
        return cls(
            trial_name=r.trial_name,
            task_name=r.task_name,
            agent=r.agent_info.name,
            model=mi.name if mi else None,
            attempt=r.attempt,
            outcome=r.outcome.value,
            reward=r.reward,
            n_retries=len(r.retries),
            n_input_tokens=(ar.n_input_tokens or 0) if ar else 0,
            n_cache_tokens=(ar.n_cache_tokens or 0) if ar else 0,
            n_output_tokens=(ar.n_output_tokens or 0) if ar else 0,
            cost_usd=ar.cost_usd if ar else None,
            duration_sec=r.duration_sec,
            exception_type=r.exception_info.exception_type if r.exception_info else None,
            source=r.source,
            rewards=dict(r.verifier_result.rewards) if r.verifier_result is not None else None,
        )

    @property
    def is_infra(self) -> bool:
        return Outcome(self.outcome) in INFRA_OUTCOMES

    @property
    def success(self) -> bool:
        return self.reward is not None and self.reward >= 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one task: 1 - C(n-c, k) / C(n, k) (n samples, c correct)."""
    if k > n:
        raise ValueError(f"k={k} > n={n}")
    if n - c < k:
        return 1.0
    prob_all_fail = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_fail *= 1.0 - k / i
    return 1.0 - prob_all_fail


def k_values(max_k: int) -> list[int]:
    """1, powers of two and multiples of five, up to max_k (Harbor's set plus k=1)."""
    ks = {1}
    p = 2
    while p <= max_k:
        ks.add(p)
        p *= 2
    ks.update(range(5, max_k + 1, 5))
    return sorted(k for k in ks if k <= max_k)


def pass_at_k_over_tasks(per_task: dict[str, tuple[int, int]]) -> dict[str, float]:
    """Mean pass@k over tasks, for every k up to the fewest scored trials any task has."""
    scored = {t: nc for t, nc in per_task.items() if nc[0] > 0}
    if not scored:
        return {}
    min_n = min(n for n, _ in scored.values())
    return {
        str(k): sum(pass_at_k(n, c, k) for n, c in scored.values()) / len(scored)
        for k in k_values(min_n)
    }


def _block(items: list[TrialSummary]) -> dict[str, Any]:
    # Infrastructure errors and tasks without tests say nothing about the model's success.
    scored = [s for s in items if not s.is_infra and s.outcome != Outcome.UNVERIFIED.value]
    per_task: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for s in scored:
        per_task[s.task_name][0] += 1
        per_task[s.task_name][1] += int(s.success)
    rewards = [s.reward if s.reward is not None else 0.0 for s in scored]
    return {
        "n_trials": len(items),
        "n_scored": len(scored),
        "n_errors": sum(1 for s in items if s.is_infra),
        "n_unverified": sum(1 for s in items if s.outcome == Outcome.UNVERIFIED.value),
        "n_passed": sum(1 for s in scored if s.success),
        "mean_reward": (sum(rewards) / len(rewards)) if rewards else None,
        "pass_at_k": pass_at_k_over_tasks({t: (n, c) for t, (n, c) in per_task.items()}),
    }


def harbor_eval_key(s: TrialSummary) -> str:
    """Harbor's key of a trial's eval: agent__model__dataset (agent__dataset without a model),
    the dataset being the task's source or "adhoc"."""
    dataset = s.source or "adhoc"
    return f"{s.agent}__{s.model}__{dataset}" if s.model else f"{s.agent}__{dataset}"


def _harbor_pass_at_k(items: list[TrialSummary]) -> dict[str, float]:
    """Harbor's pass@k of an eval: only when every trial has one 0/1 reward (none counts 0);
    k in {2, 4, 8, ...} and {5, 10, ...} up to the fewest trials any task has."""
    per_task: dict[str, list[int]] = defaultdict(list)
    for s in items:
        if s.rewards is None:
            per_task[s.task_name].append(0)
            continue
        values = list(s.rewards.values())
        if len(values) != 1 or values[0] not in (0, 1) or isinstance(values[0], bool):
            return {}
        per_task[s.task_name].append(int(values[0]))
    if not per_task:
        return {}
    least = min(len(v) for v in per_task.values())
    ks = sorted(k for k in k_values(least) if k != 1)
    return {
        str(k): sum(pass_at_k(len(v), sum(v), k) for v in per_task.values()) / len(per_task)
        for k in ks
    }


def _harbor_eval(items: list[TrialSummary]) -> dict[str, Any]:
    """One entry of Harbor's JobStats.evals, with Harbor's meanings (n_trials: trials the
    verifier gave a result; n_errors: trials with an exception; metrics: the mean reward over
    all trials, none counting 0), then ttgen's figures (scored trials only)."""
    reward_stats: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    exception_stats: dict[str, list[str]] = defaultdict(list)
    firsts = []
    for s in items:
        if s.rewards is not None:
            for key, value in s.rewards.items():
                reward_stats[key][str(value)].append(s.trial_name)
        if s.exception_type:
            exception_stats[s.exception_type].append(s.trial_name)
        firsts.append(next(iter(s.rewards.values()), 0) if s.rewards else 0)
    ours = _block(items)
    return {
        "n_trials": sum(1 for s in items if s.rewards is not None),
        "n_errors": sum(1 for s in items if s.exception_type),
        "metrics": [{"mean": sum(firsts) / len(firsts)}] if firsts else [],
        "pass_at_k": _harbor_pass_at_k(items),
        "reward_stats": {k: dict(v) for k, v in reward_stats.items()},
        "exception_stats": dict(exception_stats),
        # ttgen's: infrastructure and tasks without tests apart
        "n_scored": ours["n_scored"],
        "n_infra_errors": ours["n_errors"],
        "n_unverified": ours["n_unverified"],
        "n_passed": ours["n_passed"],
        "mean_reward": ours["mean_reward"],
        "pass_at_k_scored": ours["pass_at_k"],
    }


def compute_stats(
    summaries: list[TrialSummary], *, n_total: int, n_running: int = 0, wall_sec: float = 0.0
) -> dict[str, Any]:
    """A job's stats: Harbor's JobStats keys with Harbor's meanings (n_completed_trials: every
    finished trial; n_errored_trials: trials with an exception, a timeout included; evals by
    Harbor's key), then ttgen's figures, in which infrastructure outcomes and tasks without
    tests are apart (n_scored_trials, n_infra_errors, outcomes, mean_reward, pass_at_k)."""
    outcomes = Counter(s.outcome for s in summaries)
    durations = [s.duration_sec for s in summaries if s.duration_sec is not None]
    main = _block(summaries)
    costs = [s.cost_usd for s in summaries if s.cost_usd is not None]
    by_eval: dict[str, list[TrialSummary]] = defaultdict(list)
    for s in summaries:
        by_eval[harbor_eval_key(s)].append(s)
    exception_stats = Counter(s.exception_type for s in summaries if s.exception_type)
    return {
        # Harbor's JobStats
        "n_completed_trials": len(summaries),
        "n_errored_trials": sum(1 for s in summaries if s.exception_type),
        "n_running_trials": n_running,
        "n_pending_trials": max(0, n_total - len(summaries) - n_running),
        "n_cancelled_trials": outcomes.get(Outcome.CANCELLED.value, 0),
        "n_retries": sum(s.n_retries for s in summaries),
        "evals": {key: _harbor_eval(items) for key, items in sorted(by_eval.items())},
        "n_input_tokens": sum(s.n_input_tokens for s in summaries),
        "n_cache_tokens": sum(s.n_cache_tokens for s in summaries),
        "n_output_tokens": sum(s.n_output_tokens for s in summaries),
        "cost_usd": sum(costs) if costs else None,
        # ttgen's
        "n_total_trials": n_total,
        "n_finished_trials": len(summaries),
        "n_scored_trials": main["n_scored"],
        "n_unverified_trials": main["n_unverified"],
        "n_infra_errors": sum(
            1 for s in summaries if s.is_infra and s.outcome != Outcome.CANCELLED.value
        ),
        "n_passed": main["n_passed"],
        "n_tampered": outcomes.get(Outcome.TAMPERED.value, 0),
        "outcomes": {o.value: outcomes.get(o.value, 0) for o in Outcome if outcomes.get(o.value)},
        "mean_reward": main["mean_reward"],
        "pass_at_k": main["pass_at_k"],
        "median_trial_sec": statistics.median(durations) if durations else None,
        "wall_sec": wall_sec,
        "exception_stats": dict(exception_stats),
    }
