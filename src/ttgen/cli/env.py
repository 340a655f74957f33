"""`ttgen env`: run task environments (exec, shell, smoke test) and clean up after them."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from contextlib import nullcontext, suppress
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ttgen.cli.common import (
    _exit_on_signal,
    _fail,
    _find_tasks,
    _load_task,
    _open_backend,
    _run,
    console,
    err_console,
)
from ttgen.cli.options import Backend, ForceBuild, TaskPaths
from ttgen.errors import TtgenError

env_app = typer.Typer(
    help="Run task environments: exec, shell, smoke test, clean up.", no_args_is_help=True
)


@env_app.command(
    "exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def env_exec(
    task_path: Annotated[Path, typer.Argument(metavar="TASK", help="A task directory.")],
    command: Annotated[list[str], typer.Argument(metavar="-- CMD...", help="The command to run.")],
    timeout: Annotated[
        float | None, typer.Option(help="Kill the command after this many seconds (exit 124).")
    ] = None,
    force_build: ForceBuild = False,
    user: Annotated[str | None, typer.Option(help="User to run as.")] = None,
    backend_name: Backend = None,
) -> None:
    """Start the task's environment, run CMD in its working directory, print the output, exit with its code.

    The container is removed afterwards. Example: ttgen env exec examples/tasks/hello-world -- ls -la
    """

    task = _load_task(task_path)

    async def go() -> int:
        async with _open_backend(backend_name) as backend:
            await backend.ping()
            sandbox = await backend.start(task, job="env-exec", force_build=force_build)
            try:
                res = await sandbox.exec(command, timeout=timeout, user=user)
            finally:
                await sandbox.stop()
        sys.stdout.write(res.stdout)
        sys.stdout.flush()
        sys.stderr.write(res.stderr)
        if res.timed_out:
            err_console.print(
                f"[red]timed out after {timeout:g} s; the command's processes were killed[/]"
            )
            return 124
        if res.exit_code != 0:
            from ttgen.sandbox.diagnose import TLS_HINT, tls_intercepted

            if tls_intercepted(res.stdout + res.stderr):
                err_console.print(f"[yellow]hint:[/] {escape(TLS_HINT)}", highlight=False)
        return res.exit_code if res.exit_code is not None else 1

    raise typer.Exit(_run(go()))


@env_app.command("shell")
def env_shell(
    task_path: Annotated[Path, typer.Argument(metavar="TASK", help="A task directory.")],
    force_build: ForceBuild = False,
    with_tests: Annotated[
        bool, typer.Option("--with-tests", help="Also copy tests/ to /tests.")
    ] = False,
    with_solution: Annotated[
        bool, typer.Option("--with-solution", help="Also copy solution/ to /solution.")
    ] = False,
    backend_name: Backend = None,
) -> None:
    """Open an interactive shell in a fresh environment of the task; it is removed on exit."""

    task = _load_task(task_path)
    shell = "if command -v bash >/dev/null; then exec bash; else exec sh; fi"

    async def start() -> tuple[str, str, list[str]]:
        async with _open_backend(backend_name) as backend:
            await backend.ping()
            sandbox = await backend.start(task, job="env-shell", force_build=force_build)
            assert task.path is not None
            if with_tests:
                await sandbox.upload_dir(task.path / "tests", "/tests")
            if with_solution and (task.path / "solution").is_dir():
                await sandbox.upload_dir(task.path / "solution", "/solution")
            argv = backend.interactive_command(sandbox.id, ["sh", "-c", shell])
            return sandbox.id, sandbox.name, argv

    async def remove(cid: str) -> None:
        async with _open_backend(backend_name) as backend:
            with suppress(TtgenError):
                await backend.remove_container(cid)

    cid, name, argv = _run(start())
    if shutil.which(argv[0]) is None:
        _run(remove(cid))
        raise _fail(
            f"`ttgen env shell` needs the {argv[0]} command-line client for the interactive "
            "terminal"
        )
    # A closed terminal (SIGHUP) or a kill (SIGTERM) still removes the container.
    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, _exit_on_signal)
    console.print(f"[dim]container {escape(name)}; exit the shell to remove it[/]")
    try:
        rc = subprocess.call(argv)
    finally:
        _run(remove(cid))
    raise typer.Exit(rc)


@env_app.command("gc")
def env_gc(
    job: Annotated[
        str | None, typer.Option(help="Remove the containers of this job, whoever started them.")
    ] = None,
    everything: Annotated[
        bool, typer.Option("--all", help="Remove every ttgen container.")
    ] = False,
    backend_name: Backend = None,
) -> None:
    """Remove containers and networks left by crashed runs (found by their ttgen labels).

    By default only containers whose starting process has exited are removed, so running jobs are safe.
    """

    async def go() -> dict[str, list[str]]:
        async with _open_backend(backend_name) as backend:
            await backend.ping()
            return await backend.gc(job=job, everything=everything)

    removed = _run(go())
    for name in removed["containers"]:
        console.print(f"removed container {name}", markup=False)
    for name in removed["networks"]:
        console.print(f"removed network {name}", markup=False)
    console.print(
        f"{len(removed['containers'])} containers, {len(removed['networks'])} networks removed"
    )


@env_app.command("smoke")
def env_smoke(
    paths: TaskPaths,
    command: Annotated[
        str, typer.Option(help="Shell command to run in each environment.")
    ] = 'echo "$(uname -m) $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")"; pwd',
    concurrency: Annotated[int, typer.Option("-n", "--concurrency", help="Tasks at once.")] = 2,
    force_build: ForceBuild = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON lines instead of a table.")
    ] = False,
    backend_name: Backend = None,
) -> None:
    """Check, build, start and run a command in every task's environment; print a summary.

    Exits 1 when any task fails a step.
    """
    from ttgen.smoke import smoke_tasks

    found = _find_tasks(paths)
    with console.status(f"smoke-testing {len(found)} tasks ...") if not as_json else nullcontext():
        rows = _run(
            smoke_tasks(found, command=command, concurrency=concurrency, force_build=force_build,
                        backend=backend_name)
        )  # fmt: skip
    if as_json:
        for r in rows:
            sys.stdout.write(json.dumps(r.to_dict()) + "\n")
    else:
        table = Table(title="Environment smoke test")
        for col in ("task", "check", "image", "build s", "start→exec ms", "exit", "output / error"):
            table.add_column(col, overflow="fold")
        for r in rows:
            table.add_row(
                escape(r.task),
                "[green]ok[/]" if r.check_ok else "[red]invalid[/]",
                escape(f"{r.image_source or '-'}"),
                f"{r.build_sec:.1f}" if r.build_sec is not None else "-",
                f"{r.start_to_exec_ms:.0f}" if r.start_to_exec_ms is not None else "-",
                "-" if r.exit_code is None else str(r.exit_code),
                escape(r.error or r.output_head),
            )
        console.print(table)
        ok = sum(r.ok for r in rows)
        console.print(f"{ok}/{len(rows)} tasks passed the smoke test")
    raise typer.Exit(0 if all(r.ok for r in rows) else 1)
