"""The curation stage: `ttgen curate` of the rollout job into RUN/curated/ (records.jsonl,
dropped.jsonl, curate.json): filters, decontamination against `curation.benchmarks`, dedup."""

from __future__ import annotations

from ttgen.curate.curator import BenchmarkSpec, CurateError, CurateOptions, curate
from ttgen.curate.filters import DEFAULT_IDENTITY_PATTERNS, FilterOptions
from ttgen.pipeline.stages import Context, PipelineError, StageResult


def run(ctx: Context) -> StageResult:
    c = ctx.config.curation
    options = CurateOptions(
        benchmarks=[BenchmarkSpec(ctx.config.path(b)) for b in c.benchmarks],
        decontaminate=c.decontaminate,
        bench_fields=tuple(c.bench_fields),
        ngram=c.ngram,
        filters=FilterOptions(
            identity=c.identity,
            identity_patterns=[*DEFAULT_IDENTITY_PATTERNS, *c.identity_patterns],
            cjk=c.cjk,
            complete_only=c.complete_only,
            success_only=c.success_only,
            max_turns=c.max_turns,
            max_tokens=c.max_tokens,
            keep_tampered=c.keep_tampered,
        ),
        dedup=c.dedup,
        dedup_threshold=c.dedup_threshold,
        dedup_adapters=c.dedup_adapters,
    )
    try:
        m = curate([ctx.run / "rollouts"], ctx.run / "curated", options)
    except CurateError as exc:
        raise PipelineError(f"curation: {exc} (in the pipeline: curation.benchmarks or "
                            "curation.decontaminate: false)") from None  # fmt: skip
    counts = {**m["counts"], "dropped_by": m["dropped"],
              "decontaminated_tasks": m["decontamination"].get("tasks_matched", 0)}  # fmt: skip
    return StageResult("done", {"curated": "curated"}, counts)
