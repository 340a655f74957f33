"""`ttgen tasks check|import-tb1` (Harbor task directories) and `ttgen adapt` (prompt datasets
to tasks)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ttgen.cli.common import _fail, _find_tasks, _kv, console, err_console
from ttgen.cli.options import JsonOut, TasksOut
from ttgen.errors import TtgenError

tasks_app = typer.Typer(help="Check and convert Harbor task directories.", no_args_is_help=True)


@tasks_app.command("check")
def tasks_check(
    paths: Annotated[
        list[Path], typer.Argument(help="Task directories, or folders holding tasks.")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per task (JSON lines).")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="List valid tasks and warnings too.")
    ] = False,
    workers: Annotated[
        int, typer.Option("--workers", help="Processes for large batches (0 = auto).")
    ] = 0,
) -> None:
    """Check task directories without building anything.

    Prints one line per invalid task naming the file and the problem, then a summary.
    Exits 1 when any task is invalid.
    """
    from ttgen.check import check_many

    found = _find_tasks(paths)
    t0 = time.perf_counter()
    results = list(check_many(found, workers=workers or None))
    elapsed = time.perf_counter() - t0
    invalid = [r for r in results if not r.valid]
    if as_json:
        for r in results:
            sys.stdout.write(json.dumps(r.to_dict()) + "\n")
        raise typer.Exit(1 if invalid else 0)

    shown = results if verbose else invalid
    if shown:
        table = Table(title="Task check", show_lines=False, expand=False)
        table.add_column("task", overflow="fold")
        table.add_column("status")
        table.add_column("reason", overflow="fold")
        for r in shown:
            status = "[green]valid[/]" if r.valid else "[red]invalid[/]"
            reasons = r.problems or (r.warnings if verbose else [])
            table.add_row(escape(r.path), status, escape(reasons[0]) if reasons else "")
            for extra in reasons[1:]:
                table.add_row("", "", escape(extra))
            if verbose and r.problems:
                for w in r.warnings:
                    table.add_row("", "[yellow]warning[/]", escape(w))
        console.print(table)
    n_warn = sum(1 for r in results if r.warnings)
    summary = Table.grid(padding=(0, 2))
    summary.add_row("tasks", str(len(results)))
    summary.add_row("valid", f"[green]{len(results) - len(invalid)}[/]")
    summary.add_row("invalid", f"[red]{len(invalid)}[/]" if invalid else "0")
    summary.add_row(
        "with warnings", f"{n_warn}  (-v lists them)" if n_warn and not verbose else str(n_warn)
    )
    summary.add_row("time", f"{elapsed:.2f} s")
    console.print(summary)
    raise typer.Exit(1 if invalid else 0)


@tasks_app.command("import-tb1")
def tasks_import_tb1(
    src: Annotated[Path, typer.Argument(help="A Terminal-Bench 1 task, or a folder of them.")],
    dest: Annotated[Path, typer.Argument(help="Folder to write Harbor tasks into.")],
    overwrite: Annotated[
        bool, typer.Option(help="Replace tasks that already exist in DEST.")
    ] = False,
) -> None:
    """Convert Terminal-Bench 1.x tasks (task.yaml, run-tests.sh, ...) to Harbor task directories."""
    from ttgen.sources.tb1 import import_tb1_tasks

    try:
        report = import_tb1_tasks(src, dest, overwrite=overwrite)
    except TtgenError as exc:
        raise _fail(str(exc)) from None
    table = Table(title=f"Terminal-Bench 1 → Harbor ({escape(str(dest))})")
    table.add_column("task", overflow="fold")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    for item in report:
        colour = {"converted": "green", "skipped": "yellow"}.get(item.status, "red")
        table.add_row(escape(item.name), f"[{colour}]{item.status}[/]", escape(item.detail))
    console.print(table)
    failed = [i for i in report if i.status == "failed"]
    console.print(
        f"{sum(i.status == 'converted' for i in report)} converted, "
        f"{sum(i.status == 'skipped' for i in report)} skipped, {len(failed)} failed"
    )
    raise typer.Exit(1 if failed else 0)


def adapt_cmd(
    kind: Annotated[str, typer.Argument(metavar="KIND", help="math, code, swe or generic.")],
    source: Annotated[
        str,
        typer.Option(
            "--input",
            "-i",
            help="A .jsonl/.json/.parquet file, a save_to_disk folder, a folder of such files, "
            "or a hub dataset owner/name.",
        ),
    ],
    out: TasksOut,
    field: Annotated[
        list[str] | None,
        typer.Option(
            "--field",
            help="Where a field is: CANONICAL=SOURCE, dotted paths allowed "
            "(prompt=question, answer=meta.answer).",
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after N tasks.")] = None,
    config: Annotated[str | None, typer.Option(help="Hub dataset configuration.")] = None,
    split: Annotated[str | None, typer.Option(help="Split (DatasetDict, hub, folder).")] = None,
    image: Annotated[
        str | None,
        typer.Option(help="Image the environments start FROM (default: ttgen/domain:general)."),
    ] = None,
    suffix: Annotated[
        str | None, typer.Option(help="generic: text appended to each prompt, as given.")
    ] = None,
    allow_no_files: Annotated[
        bool, typer.Option("--allow-no-files", help="swe: keep prompts with no code files.")
    ] = False,
    agent_timeout: Annotated[
        float | None, typer.Option(min=1, help="Agent timeout in seconds (default: 900).")
    ] = None,
    verifier_timeout: Annotated[
        float | None,
        typer.Option(
            min=1,
            help="Verifier timeout in seconds (default: 120; code: at least cases x case "
            "timeout + 30).",
        ),
    ] = None,
    case_timeout: Annotated[
        float | None,
        typer.Option(min=0.1, help="code: time limit per test case in seconds (default: 10)."),
    ] = None,
    cpus: Annotated[float | None, typer.Option(min=0.1, help="CPUs per task (default: 1).")] = None,
    memory_mb: Annotated[
        int | None, typer.Option(min=64, help="Memory per task in MB (default: 2048).")
    ] = None,
    as_json: JsonOut = False,
) -> None:
    """Turn a prompt dataset into tasks: the paper's instruction suffix per KIND, and tests when
    records carry answers (math) or test cases (code).

    Writes one task folder per record and OUT/adapt.jsonl (each record's task or skip reason).
    Exits 1 when any record was bad (they are listed), 2 on usage errors.
    """
    from ttgen.sources.adapters import AdaptOptions, adapt

    if case_timeout is not None and kind != "code":
        raise _fail("--case-timeout applies only to the code adapter")
    defaults = AdaptOptions()
    options = AdaptOptions(
        image=image or defaults.image,
        fields=_kv(field, "--field", parse_json=False),
        limit=limit,
        config=config,
        split=split,
        suffix=suffix,
        allow_no_files=allow_no_files,
        agent_timeout_sec=agent_timeout or defaults.agent_timeout_sec,
        verifier_timeout_sec=verifier_timeout or defaults.verifier_timeout_sec,
        cpus=cpus or defaults.cpus,
        memory_mb=memory_mb or defaults.memory_mb,
        case_timeout_sec=case_timeout or defaults.case_timeout_sec,
    )
    from rich.progress import Progress, SpinnerColumn, TimeElapsedColumn

    live = console.is_terminal and not as_json
    with Progress(
        SpinnerColumn(), "{task.description}", TimeElapsedColumn(), console=console,
        disable=not live, transient=True,
    ) as bar:  # fmt: skip
        task_id = bar.add_task(escape(f"adapt {kind}"), total=None)

        def progress(s) -> None:  # AdaptSummary
            if s.read % 50 == 0:
                bar.update(
                    task_id, description=escape(f"adapt {kind}: {s.read} read, {s.tasks} tasks")
                )

        try:
            summary = adapt(kind, source, out, options, progress=progress if live else None)
        except TtgenError as exc:
            raise _fail(str(exc)) from None
    if as_json:
        sys.stdout.write(json.dumps(summary.to_dict()) + "\n")
        raise typer.Exit(1 if summary.n_bad else 0)
    _print_adapt_summary(kind, source, out, summary)
    raise typer.Exit(1 if summary.n_bad else 0)


def _print_adapt_summary(kind: str, source: str, out: Path, summary) -> None:  # AdaptSummary
    console.print(
        f"[bold]adapt {escape(kind)}[/]: {escape(source)} → {escape(str(out))}", highlight=False
    )
    table = Table.grid(padding=(0, 2))
    table.add_row("records read", str(summary.read))
    table.add_row("tasks", str(summary.tasks))
    table.add_row("  written", str(summary.written))
    table.add_row("  unchanged", str(summary.unchanged))
    table.add_row("with tests", str(summary.with_tests))
    table.add_row("duplicates", str(summary.duplicates))
    if kind == "swe":
        table.add_row("no code files", str(summary.no_files))
    table.add_row("bad", f"[red]{summary.n_bad}[/]" if summary.n_bad else "0")
    table.add_row("time", f"{summary.elapsed_sec:.2f} s")
    console.print(table)
    if summary.n_bad:
        err_console.print(f"[red]{summary.n_bad} bad record(s)[/] (skipped):", highlight=False)
        for bad in summary.bad[:20]:
            err_console.print(
                f"  {bad.origin}: {bad.problem}", highlight=False, markup=False, soft_wrap=True
            )
        if summary.n_bad > 20:
            err_console.print(
                f"  ... and {summary.n_bad - 20} more; see {summary.manifest}", markup=False
            )
    console.print(f"manifest: {summary.manifest}", highlight=False, markup=False)
