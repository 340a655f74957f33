"""The validation stage: `ttgen validate` on every task (a job in RUN/validation/); the tasks
whose verdict is in `validation.keep` are listed in RUN/validation/kept.txt for the rollouts.
Disabled, every task is listed."""

from __future__ import annotations

import asyncio

from ttgen.pipeline.stages import Context, StageResult
from ttgen.pipeline.stages.common import stage_job_options, task_roots, with_events, write_lines
from ttgen.rollout.validate import summarize, validate_tasks
from ttgen.task import find_tasks


def run(ctx: Context) -> StageResult:
    tasks = sorted(find_tasks([r for r in task_roots(ctx.config, ctx.run) if r.exists()]))
    out = ctx.run / "validation"
    v = ctx.config.validation
    if not v.enabled:
        write_lines(out / "kept.txt", [str(p) for p in tasks])
        return StageResult("skipped", {"kept": "validation/kept.txt"}, {"kept": len(tasks)},
                           "validation disabled: every task goes on")  # fmt: skip
    events = ctx.events("validate")
    verdicts = asyncio.run(with_events(events, validate_tasks(
        tasks, out, stage_job_options(v), events=events)))  # fmt: skip
    kept = [vd.path for vd in verdicts if vd.verdict in v.keep]
    write_lines(out / "kept.txt", kept)
    summary = summarize(verdicts)
    left = {verdict: n for verdict, n in summary.items() if verdict not in v.keep}
    counts = {"tasks": len(verdicts), "verdicts": summary, "kept": len(kept),
              "left_out": left}  # fmt: skip
    note = (
        "left out (verdict not in validation.keep): "
        + ", ".join(f"{k} {n}" for k, n in left.items())
        if left
        else ""
    )
    return StageResult(
        "done", {"validation": "validation", "kept": "validation/kept.txt"}, counts, note
    )
