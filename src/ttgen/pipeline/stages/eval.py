"""The eval stage: serve the trained model (RUN/train/model) and evaluate it Terminal-Bench
style through Terminus 2 on `eval.tasks` (`ttgen eval`): the job in RUN/eval/job, the result in
RUN/eval/eval.json. An eval folder of another fingerprint (another model or settings) is set
aside, never resumed: its job would count the old model's trials as this one's."""

from __future__ import annotations

import asyncio

from ttgen.formats.trial import AgentSpec, write_json_atomic
from ttgen.pipeline.stages import Context, PipelineError, StageResult
from ttgen.pipeline.stages.common import stage_job_options, with_events
from ttgen.rollout.evaluate import evaluate, task_category
from ttgen.rollout.job import Job, load_tasks, rollout_specs
from ttgen.task import find_tasks
from ttgen.train.serve import ModelServer, port_free, previous_port


def run(ctx: Context) -> StageResult:
    c = ctx.config.eval
    assert c is not None  # (the stage is off without the section)
    model_dir = ctx.run / "train" / "model"
    if not (model_dir / "config.json").is_file():
        raise PipelineError(f"eval: no trained model in {model_dir} (the train stage "
                            "writes it; with backend verl, train on a GPU cluster first)")  # fmt: skip
    tasks, bad = load_tasks(find_tasks([ctx.config.path(t) for t in c.tasks]))
    if not tasks:
        raise PipelineError("eval: no valid task in eval.tasks")
    out = ctx.fresh_folder("eval", "the model or settings changed", "the earlier eval")
    server = ModelServer(model_dir, c.engine, log_path=out / "server.log")
    # the port of an earlier run of this stage, so that its job resumes (the job's identity
    # holds the base URL)
    port = previous_port(out / "job" / "config.json", server.model)
    server.port = port if port is not None and port_free(port) else None
    with server:
        kwargs = {**c.agent_kwargs, "model": server.model, "base_url": server.base_url}
        spec = AgentSpec(name="terminus-2", kwargs=kwargs)
        events = ctx.events(f"eval x{c.attempts}")
        job = Job(out / "job", rollout_specs(tasks, spec, c.attempts), stage_job_options(c),
                  kind="eval", events=events, skipped_tasks=bad)  # fmt: skip
        result = asyncio.run(with_events(events, job.run()))
    summary = evaluate(job.summaries.values(),
                       {t.name: task_category(t.config.metadata) for t in tasks}, c.attempts)  # fmt: skip
    report = {
        "agent": "terminus-2",
        "model": server.model,
        "checkpoint": str(model_dir),
        "served_by": server.engine,
        "agent_kwargs": dict(c.agent_kwargs),
        "job_folder": str(out / "job"),
        "job_id": result["id"],
        "skipped_tasks": bad,
        **summary,
    }
    write_json_atomic(out / "eval.json", report)
    counts = {"tasks": summary["n_tasks"], "trials": summary["n_trials"],
              "accuracy": summary["accuracy"], "missing": summary["n_missing"],
              "outcomes": summary["outcomes"]}  # fmt: skip
    if summary["n_missing"]:
        raise PipelineError(f"eval: {summary['n_missing']} trial(s) missing after retries "
                            f"(infrastructure errors; see {out / 'job'}); re-run to resume")  # fmt: skip
    return StageResult("done", {"eval": "eval/eval.json"}, counts)
