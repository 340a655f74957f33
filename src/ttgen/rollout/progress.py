"""A rich progress display for jobs (implements `JobEvents`).

On a terminal: one bar with done/total, passed, failures and infrastructure errors by type, and
the ETA. Elsewhere (CI logs, cluster job logs): one plain line per finished trial.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ttgen.formats.trial import INFRA_OUTCOMES, Outcome, TrialResult
from ttgen.rollout.job_stats import TrialSummary

SHORT = {
    Outcome.BUILD_ERROR.value: "build",
    Outcome.ENVIRONMENT_ERROR.value: "env",
    Outcome.AGENT_ERROR.value: "agent",
    Outcome.LLM_ERROR.value: "llm",
    Outcome.CANCELLED.value: "cancelled",
}


class JobProgress:
    def __init__(self, console: Console, label: str = "trials", *, quiet: bool = False) -> None:
        self.console = Console(stderr=True, quiet=True) if quiet else console
        self.label = label
        self.live = not quiet and console.is_terminal
        self.counts: Counter[str] = Counter()
        self.passed = 0
        self.retries = 0
        self.done = 0
        self.total = 0
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            disable=not self.live,
        )
        self._task: Any = None

    def __enter__(self) -> JobProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def status(self) -> str:
        model = [
            f"{o} {self.counts[o]}"
            for o in (
                Outcome.FAILED.value,
                Outcome.AGENT_TIMEOUT.value,
                Outcome.VERIFIER_TIMEOUT.value,
                Outcome.REWARD_MISSING.value,
                Outcome.UNVERIFIED.value,
            )
            if self.counts[o]
        ]
        errors = [
            f"{SHORT[o.value]} {self.counts[o.value]}"
            for o in INFRA_OUTCOMES
            if self.counts[o.value]
        ]
        parts = [f"[green]passed {self.passed}[/]", *model]
        if errors:
            parts.append("[red]errors: " + ", ".join(sorted(errors)) + "[/]")
        if self.retries:
            parts.append(f"retries {self.retries}")
        return " · ".join(parts)

    # -- JobEvents --------------------------------------------------------------------------

    def job_started(self, job: Any, n_total: int, finished: list[TrialSummary]) -> None:
        self.total = n_total
        for s in finished:
            self._count(s)
        self.done = len(finished)
        self._task = self.progress.add_task(  # the label holds names: plain text
            escape(self.label), total=n_total, completed=self.done, status=self.status()
        )
        if not self.live:
            kept = f", {self.done} already finished" if self.done else ""
            self.console.print(
                f"{job.kind} {job.out}: {n_total} trials{kept}", highlight=False, markup=False
            )

    def trial_started(self, spec: Any) -> None:
        pass

    def trial_retrying(self, spec: Any, result: TrialResult, wait_sec: float) -> None:
        self.retries += 1
        if not self.live:
            self.console.print(
                f"  retry {spec.trial_name}: {result.outcome.value} (waiting {wait_sec:.1f}s)",
                highlight=False,
                markup=False,
            )
        self._refresh()

    def trial_finished(self, result: TrialResult, summary: TrialSummary) -> None:
        self._count(summary)
        self.done += 1
        if not self.live:
            reward = "-" if result.reward is None else f"{result.reward:g}"
            self.console.print(
                f"  [{self.done}/{self.total}] {result.trial_name}: {result.outcome.value} "
                f"reward={reward} ({summary.duration_sec or 0:.1f}s)",
                highlight=False,
                markup=False,
            )
        self._refresh(advance=1)

    def _count(self, s: TrialSummary) -> None:
        self.counts[s.outcome] += 1
        if s.success and not s.is_infra:
            self.passed += 1

    def _refresh(self, advance: int = 0) -> None:
        if self._task is not None:
            self.progress.update(self._task, advance=advance, status=self.status())
