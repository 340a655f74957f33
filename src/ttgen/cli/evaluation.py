"""`ttgen eval`: an agent/model on tasks Terminal-Bench style (k trials per task, accuracy ± SE,
pass@k, per category), optionally serving a model folder for it; or the summary of a finished
job folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ttgen.cli.common import _fail, _find_tasks, _run_job, console, err_console
from ttgen.cli.jobs import _agent_spec, _valid_tasks
from ttgen.cli.options import AgentFlags, JobFlags, JsonOut, out_option, takes_groups
from ttgen.cli.train import _start_server


@takes_groups
def eval_cmd(
    *,
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Tasks or folders of tasks (e.g. a Terminal-Bench 2.0 checkout); or one "
            "finished job folder (ttgen's or Harbor's) to summarize without running anything."
        ),
    ],
    out: Annotated[
        Path, out_option("Writes OUT/eval.json and the job folder OUT/job (re-run to resume).")
    ],
    agent: Annotated[
        str,
        typer.Option("--agent", "-a", help="Agent name (terminus-2, oracle, ...) or module:Class."),
    ] = "terminus-2",
    attempts: Annotated[
        int, typer.Option("-k", "--attempts", min=1, help="Trials per task (= runs).")
    ] = 5,
    endpoint: AgentFlags,
    trials: JobFlags,
    serve: Annotated[
        Path | None,
        typer.Option(
            "--serve",
            help="Serve this model folder (a checkpoint in Hugging Face format, e.g. RUN/model) "
            "with an OpenAI-compatible server for the eval: started first, stopped at the end; "
            "it sets --model and --base-url. Log: OUT/server.log.",
            show_default=False,
        ),
    ] = None,
    serve_engine: Annotated[
        str,
        typer.Option(
            "--serve-engine",
            help="--serve: transformers (CPU or GPU), vllm (GPU), or auto (vllm when installed "
            "and a GPU is present).",
        ),
    ] = "auto",
    serve_port: Annotated[
        int | None,
        typer.Option(
            "--serve-port",
            help="--serve: the port (default: the one this OUT used before, else a free one).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOut = False,
) -> None:
    """Evaluate an agent/model Terminal-Bench style: k trials per task, accuracy ± SE, pass@k,
    and accuracy per category (task.toml metadata `category`).

    Accuracy is the fraction of trials passed (reward >= 1) among those that ended with a model
    outcome; ± is the standard error over the k runs (run j = every task's j-th attempt: sample
    std of the per-run accuracies / sqrt(k)); the binomial SE sqrt(p(1-p)/n) is in eval.json.
    Infrastructure errors are retried, never counted as failures, and reported apart; tasks
    without tests are left out. Exits 1 when trials are still missing (infrastructure errors).

    With --serve MODEL_DIR the model folder is served for the eval (`ttgen serve`) and its
    path is recorded in eval.json (`checkpoint`). A model that never answers in the agent's
    format (an untrained one) fails every trial, as a model outcome. Bound the cost of a slow
    model with --ak max_tokens=N (tokens per reply), --ak max_turns=N, --ak timeout_sec=S (per
    request) and --timeout-multiplier (the tasks' agent timeouts).
    """
    from ttgen.formats.trial import is_job_folder

    if paths and all(is_job_folder(p) for p in paths):
        if len(paths) > 1:
            raise _fail("give one job folder to summarize")
        _eval_summary_of_job(paths[0], out, as_json)
        return
    found = _find_tasks(paths)
    kwargs = endpoint.kwargs()
    server = None
    if serve is not None:
        if endpoint.model is not None or endpoint.base_url is not None:
            raise _fail("--serve sets the model and the base URL: drop --model and --base-url")
        server = _start_eval_server(serve, serve_engine, serve_port, out, agent)
        kwargs.update(model=server.model, base_url=server.base_url)
    try:
        _eval_with(kwargs, found, out, agent, attempts, endpoint.preflight, trials, as_json, server)
    finally:
        if server is not None:
            server.stop()
            if not as_json:
                err_console.print("model server stopped", highlight=False, markup=False)


def _report(out: Path, report: dict[str, Any], summary: dict[str, Any], as_json: bool,
            where: str) -> None:  # fmt: skip
    """Write OUT/eval.json; print it (--json) or the tables and `where` it is; exit 1 when
    trials are missing."""
    from ttgen.formats.trial import write_json_atomic
    from ttgen.rollout.evaluate import category_table, report_lines

    write_json_atomic(out / "eval.json", report)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        title = f"eval: {report['agent']}" + (f" / {report['model']}" if report["model"] else "")
        console.print(category_table(summary, title))
        for line in report_lines(summary):
            console.print(line, highlight=False)
        console.print(where, highlight=False, markup=False)
    raise typer.Exit(1 if summary["n_missing"] else 0)


def _eval_summary_of_job(job_dir: Path, out: Path, as_json: bool) -> None:
    """`ttgen eval JOB --out OUT`: the evaluation summary of a finished job folder (ttgen's, or
    one that Harbor ran), without running anything: OUT/eval.json and the same tables."""
    from ttgen.rollout.evaluate import evaluate, summarize_job

    try:
        summaries, categories, k = summarize_job(job_dir)
    except (OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
    summary = evaluate(summaries, categories, k)
    agents = sorted({s.agent for s in summaries})
    models = sorted({s.model for s in summaries if s.model})
    report = {
        "agent": ", ".join(agents),
        "model": ", ".join(models) or None,
        "job_folder": str(job_dir),
        "summarized": True,  # read from an existing job; nothing was run
        **summary,
    }
    out.mkdir(parents=True, exist_ok=True)
    _report(out, report, summary, as_json, f"eval.json: {out / 'eval.json'}")


def _start_eval_server(folder: Path, engine: str, port: int | None, out: Path, agent: str):
    """`ttgen eval --serve`: the model server, started and ready (or the command fails)."""
    from ttgen.train.serve import ENGINES, ModelServer, ServerError, port_free, previous_port

    if engine not in ENGINES:
        raise _fail(f"--serve-engine {engine!r}: use one of {', '.join(ENGINES)}")
    if agent != "terminus-2" and ":" not in agent:
        raise _fail(f"--serve: agent {agent!r} does not call a model (use terminus-2)")
    try:
        server = ModelServer(folder, engine, log_path=out / "server.log")
    except ServerError as exc:
        raise _fail(str(exc)) from None
    if port is None:  # the port of an earlier run of this OUT, so that the job resumes
        port = previous_port(out / "job" / "config.json", server.model)
        if port is not None and not port_free(port):
            port = None
    server.port = port
    _start_server(
        server, f"serving {server.folder} with {server.engine} (log: {server.log_path}) ..."
    )
    err_console.print(
        f"model server ready in {server.startup_sec:.1f}s: {server.base_url} "
        f"(model {server.model})",
        highlight=False,
        markup=False,
    )
    return server


def _eval_with(
    kwargs: dict[str, Any],
    found: list[Path],
    out: Path,
    agent: str,
    attempts: int,
    preflight: bool,
    trials: JobFlags,
    as_json: bool,
    server: Any,
) -> None:
    """The eval itself (`eval_cmd`), against kwargs' model; `server`: the --serve server."""
    from ttgen.rollout.evaluate import evaluate, task_category
    from ttgen.rollout.job import Job, rollout_specs

    spec = _agent_spec(agent, kwargs, preflight)
    options = trials.options()
    tasks, bad = _valid_tasks(found, "evaluate")
    specs = rollout_specs(tasks, spec, attempts)

    async def go(progress):
        job = Job(out / "job", specs, options, kind="eval", events=progress, skipped_tasks=bad)
        return await job.run(), job

    (result, job), _ = _run_job(go, as_json, f"eval {agent} x{attempts}")
    summary = evaluate(
        job.summaries.values(), {t.name: task_category(t.config.metadata) for t in tasks}, attempts
    )
    report = {
        "agent": agent,
        "model": kwargs.get("model"),
        "checkpoint": str(server.folder) if server is not None else None,
        "server": server.describe() if server is not None else None,
        "agent_kwargs": {k: v for k, v in kwargs.items() if "key" not in k.lower()},
        "job_folder": str(out / "job"),
        "job_id": result["id"],
        "skipped_tasks": bad,
        **summary,
    }
    where = f"eval.json: {out / 'eval.json'}  job folder: {out / 'job'}"
    _report(out, report, summary, as_json, where)
