"""`ttgen run` (the whole pipeline from a PIPELINE.yaml into a run folder) and `ttgen report`
(a static HTML report of a run, job or data folder)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ttgen.cli.common import _fail, console, err_console
from ttgen.cli.options import JsonOut, out_option
from ttgen.errors import TtgenError


def run_cmd(
    pipeline: Annotated[Path, typer.Argument(metavar="PIPELINE.yaml", help="The pipeline file.")],
    out: Annotated[Path | None, out_option("Run folder (default: the file's `out`).")] = None,
    until: Annotated[
        str | None,
        typer.Option(
            help="Stop after this stage: sources, validation, rollouts, curation, export, report."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan and the LLM cost estimate only.")
    ] = False,
    model: Annotated[
        str | None, typer.Option(help="The teacher model (overrides the file).")
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(help="The teacher's OpenAI-compatible endpoint.")
    ] = None,
    as_json: JsonOut = False,
) -> None:
    """Run the whole pipeline (sources → validation → rollouts → curation → export → report)
    into one run folder; re-running skips the stages already done and resumes the others."""
    from ttgen.pipeline.config import STAGES, load_pipeline
    from ttgen.pipeline.run import PipelineError, Runner

    try:
        config = load_pipeline(pipeline)
    except TtgenError as exc:
        raise _fail(str(exc)) from None
    if until is not None and until not in STAGES:
        raise _fail(f"--until: unknown stage {until!r} (stages: {', '.join(STAGES)})")
    if model is not None:
        config.teacher.model = model
    if base_url is not None:
        config.teacher.base_url = base_url
    if bool(config.teacher.model) != bool(config.teacher.base_url):
        raise _fail("a teacher needs both a model and a base URL (--model and --base-url)")
    run_dir = out or (config.path(config.out) if config.out else Path("runs") / config.name)

    def events(label: str) -> Any:
        from ttgen.rollout.progress import JobProgress

        return JobProgress(console, label, quiet=as_json)

    runner = Runner(
        config,
        run_dir,
        log=(lambda m: None)
        if as_json
        else (lambda m: console.print(m, highlight=False, markup=False)),
        job_events=events,
    )
    if dry_run:
        plan = runner.plan()
        if as_json:
            console.print_json(json.dumps(plan))
            return
        console.print(
            f"run folder: {plan['run']}\nteacher: {plan['teacher']}", highlight=False, markup=False
        )
        table = Table(title="plan")
        table.add_column("stage")
        table.add_column("state")
        for st in plan["stages"]:
            table.add_row(st["stage"], "done (skipped)" if st["state"] == "done" else "to run")
        console.print(table)
        e = plan["estimate"]
        if not config.teacher.configured:
            console.print(
                f"tasks planned: {plan['tasks_planned']}; trials: {plan['trials_planned']}; no "
                "teacher, so no LLM calls (synthesis skipped, the oracle stands in for rollouts)",
                highlight=False,
            )
            return
        cost = (
            f"${e['cost_usd']:,.2f}"
            if e["cost_usd"] is not None
            else "set teacher prices for a cost"
        )
        console.print(
            f"tasks planned: {plan['tasks_planned']} (synthesis items: {plan['synthesis_items']}); "
            f"trials: {plan['trials_planned']}\nLLM estimate: {e['input_tokens']:,} input + "
            f"{e['output_tokens']:,} output tokens, {cost} (assumptions: the `estimate` section; "
            "an estimate, not a quote)",
            highlight=False,
        )
        return
    try:
        manifest = runner.execute(until=until)
    except (KeyboardInterrupt, asyncio.CancelledError):
        err_console.print("[yellow]interrupted[/]: run the same command again to resume.")
        raise typer.Exit(130) from None
    except (PipelineError, TtgenError, ValueError, OSError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        console.print_json(json.dumps(manifest, default=str))
        return
    report = (manifest["stages"].get("report") or {}).get("outputs", {}).get("report")
    console.print(
        f"run folder: {run_dir}  (manifest: {run_dir / 'run.json'})", highlight=False, markup=False
    )
    if report:
        console.print(f"report: {run_dir / report}", highlight=False, markup=False)


def report_cmd(
    run: Annotated[
        Path,
        typer.Argument(
            metavar="RUN",
            help="A pipeline run folder (run.json), a rollout job folder or a curated DATA folder.",
        ),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", help="The report folder (default: RUN/report).")
    ] = None,
    max_trajectories: Annotated[
        int,
        typer.Option(
            "--max-trajectories", min=0, help="Trajectories in the viewer (a deterministic sample)."
        ),
    ] = 200,
) -> None:
    """A static HTML report (opens from file://, no server, no network): stage funnel with drop
    reasons, domain/difficulty mix, token and turn histograms, outcomes, pass rates by domain,
    cost, and a trajectory viewer. Prints the path of index.html."""
    from ttgen.report import ReportError, ReportOptions, write_report

    try:
        index = write_report(run, out, ReportOptions(max_trajectories=max_trajectories))
    except (ReportError, OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
    console.print(str(index), highlight=False, markup=False, soft_wrap=True)
