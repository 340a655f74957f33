"""The report stage: `ttgen report` of the run folder into RUN/report/index.html."""

from __future__ import annotations

from pathlib import Path

from ttgen.formats.trial import now
from ttgen.pipeline.stages import Context, StageResult
from ttgen.report import write_report


def run(ctx: Context) -> StageResult:
    # The report shows run.json: mark this stage done in it first (a failure below marks it
    # failed again), so the page does not show its own stage as still running.
    ctx.entry.update(status="done", finished_at=now().isoformat(),
                     outputs={"report": "report/index.html"})  # fmt: skip
    ctx.save()
    index = write_report(ctx.run, ctx.run / "report")
    return StageResult("done", {"report": str(Path(index).relative_to(ctx.run))}, {})
