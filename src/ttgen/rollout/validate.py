"""Task validation: does the verifier tell a solved task from an untouched one?

For every task, the `nop` agent (does nothing) and, when the task has solution/solve.sh and
tests, the `oracle` agent (runs it) each get one trial, through the same job machinery as rollouts (so
validation is concurrent and resumable). One verdict per task:

    valid            oracle scores 1, nop scores 0
    no_solution      no solve.sh to check against; nop scores 0
    no_tests         no tests, by design (the paper's adapter tasks): tests/test.sh is the
                     no-tests script (`ttgen.task.NO_TESTS_SCRIPT`), or there is no tests/;
                     rollouts of it are kept unscored (outcome `unverified`)
    trivial          nop already scores > 0: the verifier does not check the work
    oracle_failed    the reference solution scores < 1
    verifier_broken  no reward file, an unreadable one, or test.sh timed out
    build_failed     the environment image does not build
    invalid          the task folder itself is invalid (task.toml, instruction.md, ...)
    infra_error      a trial kept failing for infrastructure reasons; re-run to retry
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ttgen.formats.trial import (
    AgentSpec,
    Outcome,
    TrialResult,
    read_trial_result,
    write_json_atomic,
)
from ttgen.rollout.executors import TrialExecutor
from ttgen.rollout.job import Job, JobEvents, JobOptions, load_tasks, task_checksum, task_slugs
from ttgen.rollout.trial import TrialSpec
from ttgen.sandbox import SandboxBackend
from ttgen.sandbox.diagnose import TLS_HINT
from ttgen.task import Task

VERDICTS = (
    "valid",
    "no_solution",
    "no_tests",
    "trivial",
    "oracle_failed",
    "verifier_broken",
    "build_failed",
    "invalid",
    "infra_error",
)
GOOD_VERDICTS = ("valid", "no_solution", "no_tests")


@dataclass
class TaskVerdict:
    task: str
    path: str
    verdict: str
    reasons: list[str] = field(default_factory=list)
    rewards: dict[str, float | None] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)
    trials: dict[str, str] = field(default_factory=dict)
    checksum: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _first_line(r: TrialResult) -> str:
    if r.exception_info is None:
        return r.outcome.value
    return (r.exception_info.exception_message.strip().splitlines() or [""])[0][:300]


def judge(nop: TrialResult | None, oracle: TrialResult | None) -> tuple[str, list[str]]:
    """The verdict for one task from its nop and oracle trials (oracle None: no solve.sh)."""
    runs = {"nop": nop, "oracle": oracle}
    present = {k: r for k, r in runs.items() if r is not None}
    for role, r in present.items():
        if r.outcome == Outcome.BUILD_ERROR:
            return "build_failed", [f"{role}: {_first_line(r)}"]
    infra = {k: r for k, r in present.items() if r.is_infra}
    if infra:
        return "infra_error", [
            f"{k}: {r.outcome.value}: {_first_line(r)}" for k, r in infra.items()
        ]
    for role, r in present.items():
        if r.outcome in (Outcome.REWARD_MISSING, Outcome.VERIFIER_TIMEOUT):
            return "verifier_broken", [f"after {role}: {_first_line(r)}"]
    assert nop is not None
    if nop.outcome == Outcome.UNVERIFIED:
        return "no_tests", ["the task has no tests (by design, like the paper's adapter tasks)"]
    if nop.reward is not None and nop.reward > 0:
        detail = "" if nop.reward >= 1 else " (partial credit with no work done)"
        return "trivial", [f"nop scores {nop.reward:g}{detail}"]
    if oracle is None:
        return "no_solution", ["no solution/solve.sh; nop scores 0"]
    if oracle.reward is None or oracle.reward < 1:
        reasons = [f"oracle scores {oracle.reward if oracle.reward is not None else 0:g}"]
        meta = (oracle.agent_result.metadata or {}) if oracle.agent_result else {}
        if oracle.outcome == Outcome.AGENT_TIMEOUT:
            reasons.append("solve.sh ran past the agent timeout")
        elif meta.get("exit_code") not in (0, None):
            reasons.append(f"solve.sh exited {meta['exit_code']}")
        reasons += [w for w in oracle.warnings if TLS_HINT in w]
        return "oracle_failed", reasons
    return "valid", []


def validation_specs(tasks: list[Task]) -> list[TrialSpec]:
    slugs = task_slugs(tasks)
    specs = []
    for i, t in enumerate(tasks):
        checksum = task_checksum(t.path) if t.path else None
        # Nothing scores a task without tests, so its oracle would tell nothing: nop only.
        roles = ["nop"] + (["oracle"] if t.solve_script is not None and t.has_tests else [])
        for role in roles:
            specs.append(
                TrialSpec(
                    task=t,
                    trial_name=f"{slugs[i]}__{role}",
                    agent=AgentSpec(name=role),
                    task_checksum=checksum,
                    extra={"role": role},
                )
            )
    return specs


async def validate_tasks(
    paths: list[Path],
    out: Path,
    options: JobOptions | None = None,
    *,
    backend: SandboxBackend | None = None,
    events: JobEvents | None = None,
    executor: TrialExecutor | None = None,
) -> list[TaskVerdict]:
    """Validate the tasks at `paths` into `out` (a job folder + validation.jsonl)."""
    tasks, bad = load_tasks(paths)
    specs = validation_specs(tasks)
    job = Job(
        out,
        specs,
        options,
        kind="validate",
        backend=backend,
        events=events,
        skipped_tasks=bad,
        executor=executor,
    )
    await job.run()
    verdicts = [
        TaskVerdict(
            task=Path(b["path"]).name, path=b["path"], verdict="invalid", reasons=[b["problem"]]
        )
        for b in bad
    ]
    by_task: dict[int, dict[str, TrialSpec]] = {}
    for s in specs:
        by_task.setdefault(id(s.task), {})[s.extra["role"]] = s
    for t in tasks:
        roles = by_task[id(t)]
        results = {role: read_trial_result(out / s.trial_name) for role, s in roles.items()}
        nop, oracle = results.get("nop"), results.get("oracle")
        if nop is None or ("oracle" in roles and oracle is None):
            verdict, reasons = "infra_error", ["a trial did not finish; re-run to complete"]
        else:
            verdict, reasons = judge(nop, oracle)
        verdicts.append(
            TaskVerdict(
                task=t.name,
                path=str(t.path),
                verdict=verdict,
                reasons=reasons,
                rewards={role: r.reward if r else None for role, r in results.items()},
                outcomes={role: r.outcome.value for role, r in results.items() if r},
                trials={role: s.trial_name for role, s in roles.items()},
                checksum=roles["nop"].task_checksum,
            )
        )
    lines = "".join(json.dumps(v.to_dict()) + "\n" for v in verdicts)
    write_json_atomic(out / "validation.jsonl", lines)
    return verdicts


def keep_tasks(verdicts: list[TaskVerdict], keep: set[str], dest: Path) -> list[Path]:
    """Copy the tasks whose verdict is in `keep` into `dest` (one folder each)."""
    dest.mkdir(parents=True, exist_ok=True)
    kept = [v for v in verdicts if v.verdict in keep]
    loaded = [Task.load(v.path) for v in kept]
    slugs = task_slugs(loaded)
    out = []
    for i, v in enumerate(kept):
        target = dest / slugs[i]
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(v.path, target, symlinks=True)
        out.append(target)
    return out


def summarize(verdicts: list[TaskVerdict]) -> dict[str, int]:
    counts = Counter(v.verdict for v in verdicts)
    return {k: counts[k] for k in VERDICTS if counts.get(k)}
