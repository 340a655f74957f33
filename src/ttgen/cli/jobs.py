"""`ttgen rollout` (an agent on tasks) and `ttgen validate` (oracle and nop on tasks): jobs of
trials in a resumable folder. `ttgen eval` (cli/evaluation.py) runs its job with the helpers here."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ttgen.cli.common import _fail, _find_tasks, _preflight, _run_job, console, err_console
from ttgen.cli.options import (
    AgentFlags,
    JobFlags,
    JsonOut,
    PhaseMultiplier,
    TaskPaths,
    out_option,
    takes_groups,
)
from ttgen.errors import TtgenError


def _agent_spec(agent: str, kwargs: dict[str, Any], preflight: bool):  # -> AgentSpec
    """The agent to run, made once here so that an unknown agent or bad options fail now, not
    once per trial; with `preflight`, an LLM agent's endpoint answers a test request first."""
    from ttgen.agents import create_agent
    from ttgen.formats.trial import AgentSpec

    try:
        probe = create_agent(agent, **kwargs)
    except (TtgenError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if preflight and hasattr(probe, "preflight"):
        _preflight(probe.preflight, agent)
    return AgentSpec(name=agent, kwargs=kwargs)


def _valid_tasks(found: list[Path], what: str) -> tuple[list[Any], list[dict[str, Any]]]:
    """The tasks that load (Task), and the ones that do not (listed as skipped); none: exit 2."""
    from ttgen.rollout.job import load_tasks

    tasks, bad = load_tasks(found)
    for b in bad:
        err_console.print(
            f"[yellow]skipped[/] {escape(str(b['file']))}: {escape(str(b['problem']))}",
            highlight=False,
        )
    if not tasks:
        raise _fail(f"no valid tasks to {what}")
    return tasks, bad


def _stats_table(stats: dict[str, Any], title: str) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("trials", f"{stats['n_finished_trials']}/{stats['n_total_trials']} finished")
    for outcome, n in stats["outcomes"].items():
        table.add_row(f"  {outcome}", str(n))
    if stats["n_retries"]:
        table.add_row("retries", str(stats["n_retries"]))
    mr = stats["mean_reward"]
    table.add_row(
        "mean reward",
        "-" if mr is None else f"{mr:.3f} over {stats['n_scored_trials']} scored trials",
    )
    if stats["pass_at_k"]:
        table.add_row("pass@k", "  ".join(f"@{k} {v:.3f}" for k, v in stats["pass_at_k"].items()))
    if stats["n_input_tokens"] or stats["n_output_tokens"]:
        cost = "" if stats["cost_usd"] is None else f", ${stats['cost_usd']:.4f}"
        table.add_row(
            "tokens", f"{stats['n_input_tokens']} in, {stats['n_output_tokens']} out{cost}"
        )
    wall = stats["wall_sec"]
    if wall:
        table.add_row("wall time", f"{wall:.1f}s")
    if stats["median_trial_sec"] is not None:
        table.add_row("median trial", f"{stats['median_trial_sec']:.2f}s")
    return table


@takes_groups
def rollout(
    *,
    paths: TaskPaths,
    out: Annotated[Path, out_option("Job folder (re-run the command to resume).")],
    agent: Annotated[
        str, typer.Option("--agent", "-a", help="Agent name (oracle, nop, ...) or module:Class.")
    ],
    attempts: Annotated[
        int, typer.Option("-k", "--attempts", min=1, help="Attempts per task.")
    ] = 1,
    endpoint: AgentFlags,
    strict_timing: Annotated[
        bool,
        typer.Option(
            help="terminus-2: always wait each command's full duration (no early completion)."
        ),
    ] = False,
    trials: JobFlags,
    build_timeout_multiplier: PhaseMultiplier = None,
    agent_setup_timeout_multiplier: PhaseMultiplier = None,
    agent_timeout_multiplier: PhaseMultiplier = None,
    verifier_timeout_multiplier: PhaseMultiplier = None,
    agent_timeout: Annotated[
        float | None, typer.Option(help="Agent timeout in seconds, instead of the task's.")
    ] = None,
    verifier_timeout: Annotated[
        float | None, typer.Option(help="Verifier timeout in seconds, instead of the task's.")
    ] = None,
    verifier_env: Annotated[
        list[str] | None, typer.Option("--ve", help="Verifier environment variable KEY=VALUE.")
    ] = None,
    as_json: JsonOut = False,
) -> None:
    """Run an agent on tasks: tasks x attempts trials, concurrently, into a resumable job folder.

    Each trial gets a fresh container, the agent, then the verifier (tests are copied in only
    after the agent finished). Re-running the same command resumes: finished trials are kept,
    unfinished ones and infrastructure errors are redone, leftover containers removed.
    Exits 1 when trials still end in an infrastructure error, 0 otherwise.
    """
    from ttgen.rollout.job import Job, rollout_specs

    found = _find_tasks(paths)
    kwargs = endpoint.kwargs()
    if strict_timing:
        kwargs["strict_timing"] = True
    spec = _agent_spec(agent, kwargs, endpoint.preflight)
    options = trials.options(
        build_timeout_multiplier=build_timeout_multiplier,
        agent_setup_timeout_multiplier=agent_setup_timeout_multiplier,
        agent_timeout_multiplier=agent_timeout_multiplier,
        verifier_timeout_multiplier=verifier_timeout_multiplier,
        agent_timeout=agent_timeout,
        verifier_timeout=verifier_timeout,
        verifier_env=verifier_env,
    )
    tasks, bad = _valid_tasks(found, "run")

    async def go(progress):
        job = Job(
            out,
            rollout_specs(tasks, spec, attempts),
            options,
            kind="rollout",
            events=progress,
            skipped_tasks=bad,
        )
        return await job.run()

    result, _ = _run_job(go, as_json, f"{agent} x{attempts}")
    stats = result["stats"]
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        console.print(_stats_table(stats, escape(f"rollout: {out}")))
        if result["removed_containers"]:
            console.print(
                f"removed {len(result['removed_containers'])} container(s) left by an earlier run "
                f"in {result.get('cleanup_sec', 0):.1f} s"
            )
        console.print(
            f"job folder: {out}  (result.json, trials.jsonl, one folder per trial)", markup=False
        )
    raise typer.Exit(1 if stats["n_infra_errors"] or stats["n_cancelled_trials"] else 0)


@takes_groups
def validate(
    *,
    paths: TaskPaths,
    out: Annotated[Path, out_option("Output folder (re-run the command to resume).")],
    keep: Annotated[
        str | None,
        typer.Option(
            help="Copy the tasks with these verdicts (comma-separated, e.g. valid,no_solution) "
            "to --keep-dir."
        ),
    ] = None,
    keep_dir: Annotated[
        Path | None, typer.Option(help="Where --keep copies tasks (default OUT/kept).")
    ] = None,
    trials: JobFlags,
    agent_timeout: Annotated[
        float | None, typer.Option(help="Timeout for solve.sh in seconds, instead of the task's.")
    ] = None,
    strict: Annotated[
        bool, typer.Option(help="Exit 1 unless every task is valid, no_solution or no_tests.")
    ] = False,
    as_json: JsonOut = False,
) -> None:
    """Validate tasks: the oracle (solution/solve.sh) must score 1 and the nop agent 0.

    Verdicts: valid, no_solution, no_tests, trivial, oracle_failed, verifier_broken, build_failed,
    invalid, infra_error. Writes OUT/validation.jsonl (one object per task) and a job folder.
    """
    from ttgen.rollout.validate import GOOD_VERDICTS, VERDICTS, keep_tasks, validate_tasks

    keep_set: set[str] = set()
    if keep:
        keep_set = {v.strip() for v in keep.split(",") if v.strip()}
        unknown = keep_set - set(VERDICTS)
        if unknown:
            raise _fail(f"--keep: unknown verdict(s) {sorted(unknown)}; use {', '.join(VERDICTS)}")
    found = _find_tasks(paths)
    options = trials.options(agent_timeout=agent_timeout)

    async def go(progress):
        return await validate_tasks(found, out, options, events=progress)

    verdicts, _ = _run_job(go, as_json, "validate")
    kept = keep_tasks(verdicts, keep_set, keep_dir or out / "kept") if keep_set else []
    if as_json:
        for v in verdicts:
            sys.stdout.write(json.dumps(v.to_dict()) + "\n")
    else:
        _print_verdicts(verdicts, out)
        if keep_set:
            console.print(f"kept {len(kept)} task(s) in {keep_dir or out / 'kept'}", markup=False)
    bad = [v for v in verdicts if v.verdict not in GOOD_VERDICTS]
    infra = [v for v in verdicts if v.verdict == "infra_error"]
    raise typer.Exit(1 if infra or (strict and bad) else 0)


def _print_verdicts(verdicts: list[Any], out: Path) -> None:
    from ttgen.rollout.validate import summarize

    table = Table(title=escape(f"validation: {out}"))
    for col in ("task", "verdict", "oracle", "nop", "reasons"):
        table.add_column(col, overflow="fold")
    colors = {"valid": "green", "no_solution": "cyan", "no_tests": "cyan"}
    for v in verdicts:
        fmt = lambda r: "-" if r is None else f"{r:g}"  # noqa: E731
        color = colors.get(v.verdict, "red")
        table.add_row(
            escape(v.task),
            f"[{color}]{v.verdict}[/]",
            fmt(v.rewards.get("oracle")) if "oracle" in v.rewards else "n/a",
            fmt(v.rewards.get("nop")),
            escape("; ".join(v.reasons)),
        )
    console.print(table)
    counts = summarize(verdicts)
    console.print(", ".join(f"{k} {n}" for k, n in counts.items()) + f"  ({len(verdicts)} tasks)")
    console.print(f"verdicts: {out / 'validation.jsonl'}", markup=False)
