"""The sources stage: each source's tasks under RUN/tasks/<source>/ (`ttgen adapt`, `ttgen
synth`), or an existing folder of tasks used in place. Synthesis sources need the teacher:
without one they are skipped (with a note)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ttgen.llm import LLMConfig, check_endpoint
from ttgen.pipeline.config import Source
from ttgen.pipeline.stages import Context, PipelineError, StageResult
from ttgen.sources.adapters import AdaptOptions, adapt
from ttgen.sources.skills_taxonomy import load_taxonomy
from ttgen.sources.synth.engine import SynthOptions, synthesize
from ttgen.sources.synth.gates import parse_gate_list
from ttgen.sources.synth.items import load_seeds, seed_items, skill_items
from ttgen.task import find_tasks


def run(ctx: Context) -> StageResult:
    config = ctx.config
    counts: dict[str, Any] = {"by_source": {}}
    bad_total = 0
    notes = []
    for s in config.sources:
        dest = ctx.run / "tasks" / s.folder_name
        if s.adapter:
            n, bad = _adapt(ctx, s, dest)
        elif s.synth:
            if not config.teacher.configured:
                notes.append(
                    f"{s.folder_name} skipped: synthesis needs a teacher (--model/--base-url)"
                )
                counts["by_source"][s.folder_name] = 0
                continue
            n, bad = _synthesize(ctx, s, dest)
        else:
            path = config.path(s.tasks or "")
            if not path.exists():
                raise PipelineError(f"sources: {path}: no such folder of tasks")
            n, bad = len(find_tasks([path])), 0
            # used in place: the report (and a reader of run.json) finds them here
            counts.setdefault("task_roots", {})[s.folder_name] = str(path)
        counts["by_source"][s.folder_name] = n
        bad_total += bad
    counts["generated"] = sum(counts["by_source"].values())
    counts["bad"] = bad_total
    if counts["generated"] == 0:
        raise PipelineError("sources produced no tasks")
    return StageResult("done", {"tasks": "tasks"}, counts, "; ".join(notes))


def _adapt(ctx: Context, s: Source, dest: Path) -> tuple[int, int]:
    defaults = AdaptOptions()
    options = AdaptOptions(
        image=s.image or defaults.image,
        fields=dict(s.fields),
        limit=s.limit,
        suffix=s.suffix,
    )
    src = s.input or ""
    local = ctx.config.path(src)
    summary = adapt(s.adapter or "", str(local) if local.exists() else src, dest, options)
    for bad in summary.bad[:5]:
        ctx.log(f"  skipped record {bad.origin}: {bad.problem}")
    return summary.tasks, summary.n_bad


def _synthesize(ctx: Context, s: Source, dest: Path) -> tuple[int, int]:
    t = ctx.config.teacher
    llm = LLMConfig(
        model=t.model, base_url=t.base_url,
        price_input_per_mtok=t.price_input_per_mtok, price_output_per_mtok=t.price_output_per_mtok,
        **{k: v for k, v in t.params.items() if k in LLMConfig.model_fields},
    )  # fmt: skip
    taxonomy = load_taxonomy()
    if s.synth == "skills":
        ids = list(taxonomy.domains) if s.domains == ["all"] else s.domains
        try:
            domains = [taxonomy.get(d) for d in ids]
        except (KeyError, ValueError) as exc:
            raise PipelineError(f"sources {s.folder_name}: {exc}") from None
        items = skill_items(
            domains, n=s.n, difficulty=s.difficulty, seed=s.seed, model=t.model or ""
        )
    else:
        loaded = load_seeds(str(ctx.config.path(s.seeds or "")), limit=s.limit)
        items = seed_items(loaded.seeds, taxonomy=taxonomy, model=t.model or "")
    gates = parse_gate_list(s.gates, validate=False)
    options = SynthOptions(out=dest, concurrency=ctx.config.rollouts.concurrency)

    async def go() -> dict[str, Any]:
        await check_endpoint(llm)  # one short request: a wrong model or key stops here
        return await synthesize(
            llm,
            options,
            gates,
            items,
            job=f"synth-{ctx.run.name}",
            executor=s.executor,
            address=s.address,
            per_node=s.per_node,
            log=ctx.log,
        )

    summary = asyncio.run(go())
    return int(summary.get("written", 0)), int(summary.get("errors", 0))
