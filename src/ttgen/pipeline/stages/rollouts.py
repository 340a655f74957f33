"""The rollouts stage: `ttgen rollout` of the kept tasks (RUN/validation/kept.txt) into the job
RUN/rollouts/: the teacher through `rollouts.agent`, or without a teacher the oracle agent as a
stand-in on the tasks with a reference solution (`stand_in: none` stops the pipeline here)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ttgen.agents import create_agent
from ttgen.formats.trial import AgentSpec
from ttgen.pipeline.stages import Context, PipelineError, StageResult
from ttgen.pipeline.stages.common import stage_job_options, with_events
from ttgen.rollout.job import Job, load_tasks, rollout_specs


def _kept_tasks(run: Path) -> list[Path]:
    kept = run / "validation" / "kept.txt"
    if not kept.exists():
        raise PipelineError("rollouts: no validation/kept.txt (run the validation stage)")
    return [Path(x) for x in kept.read_text(encoding="utf-8").splitlines() if x.strip()]


def run(ctx: Context) -> StageResult:
    r, t = ctx.config.rollouts, ctx.config.teacher
    tasks, bad = load_tasks(_kept_tasks(ctx.run))
    note = ""
    left: dict[str, int] = {}
    if bad:
        left["unreadable task"] = len(bad)
    if t.configured:
        kwargs = {**t.params, **r.agent_kwargs, "model": t.model, "base_url": t.base_url}
        if t.price_input_per_mtok is not None:
            kwargs.setdefault("price_input_per_mtok", t.price_input_per_mtok)
        if t.price_output_per_mtok is not None:
            kwargs.setdefault("price_output_per_mtok", t.price_output_per_mtok)
        spec = AgentSpec(name=r.agent, kwargs=kwargs)
        agent = create_agent(r.agent, **kwargs)
        if hasattr(agent, "preflight"):
            asyncio.run(agent.preflight())
    elif r.stand_in == "oracle":
        with_solution = [x for x in tasks if x.solve_script is not None]
        if len(with_solution) < len(tasks):
            left["no reference solution for the oracle stand-in"] = len(tasks) - len(with_solution)
        tasks = with_solution
        spec = AgentSpec(name="oracle", kwargs={"transcript": True})
        note = "no teacher: the oracle agent stands in (records labelled stand_in)"
    else:
        return StageResult("stopped", {}, {}, "no teacher and stand_in: none: stopping here")
    if not tasks:
        raise PipelineError("rollouts: no task to roll out (none kept by validation"
                            + (", or none has a reference solution for the stand-in)" if not t.configured else ")"))  # fmt: skip
    events = ctx.events(f"{spec.name} x{r.attempts}")
    job = Job(ctx.run / "rollouts", rollout_specs(tasks, spec, r.attempts),
              stage_job_options(r), kind="rollout", events=events,
              skipped_tasks=bad)  # fmt: skip
    result = asyncio.run(with_events(events, job.run()))
    st = result["stats"]
    counts = {
        "tasks": len(tasks),
        "left_out": left,
        "trials": st.get("n_trials", len(job.specs)),
        "outcomes": st.get("outcomes", {}),
        "agent": spec.name,
        "stand_in": spec.name == "oracle",
        "cost_usd": st.get("cost_usd"),
    }
    return StageResult("done", {"rollouts": "rollouts"}, counts, note)
