"""The `ttgen` command line: one sub-command group per stage, kept thin (parse, call, print)."""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Coroutine
from contextlib import nullcontext, suppress
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ttgen import __version__
from ttgen.errors import ConfigError, LLMError, TtgenError

T = TypeVar("T")

app = typer.Typer(
    name="ttgen",
    help="ttgen: Terminal-Task-Gen. Make, validate and run terminal tasks to produce agent training data.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
tasks_app = typer.Typer(help="Check and convert Harbor task directories.", no_args_is_help=True)
images_app = typer.Typer(help="Build and manage environment images.", no_args_is_help=True)
env_app = typer.Typer(
    help="Run task environments: exec, shell, smoke test, clean up.", no_args_is_help=True
)
app.add_typer(tasks_app, name="tasks")
app.add_typer(images_app, name="images")
app.add_typer(env_app, name="env")

# Options shared by several commands.
ForceBuild = Annotated[
    bool,
    typer.Option(
        "--force-build", help="Rebuild the environment image(s) without the layer cache first."
    ),
]

console = Console()
err_console = Console(stderr=True)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except TtgenError as exc:
        err_console.print(
            f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(2) from None


def _fail(message: str, code: int = 2) -> typer.Exit:
    """Print `message` (plain text: brackets in paths or errors are shown as they are)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


class _Ticker:
    """Progress of a long step without a bar: on a terminal one transient status line (gone when
    the step ends, so the summary below is the only count left on screen); elsewhere (logs) a
    line every LOG_SEC at most. Nothing for a step shorter than the first interval."""

    LOG_SEC = 10.0

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self._t0 = time.monotonic()
        self._last = self._t0
        self._status: Any = None
        self._printed: str | None = None
        self._latest: str | None = None

    def __enter__(self) -> _Ticker:
        self._t0 = self._last = time.monotonic()
        return self

    def tick(self, text: str) -> None:
        if self.quiet:
            return
        t = time.monotonic()
        if err_console.is_terminal:
            if self._status is None:
                if t - self._t0 < 1.0:
                    return
                self._status = err_console.status(escape(text))
                self._status.start()
            elif t - self._last >= 0.2:
                self._status.update(escape(text))
            else:
                return
            self._last = t
        else:
            self._latest = text
            if t - self._last >= self.LOG_SEC:
                self._last = t
                self._printed = text
                err_console.print(escape(text), highlight=False)

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
        # in a log, the last progress line is the final count (never a stale one above the
        # summary)
        if exc[0] is None and self._printed is not None and self._latest != self._printed:
            err_console.print(escape(self._latest or ""), highlight=False)


def _version(value: bool) -> None:
    if value:
        console.print(f"ttgen {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """ttgen: Terminal-Task-Gen."""


# -- tasks ------------------------------------------------------------------------------------


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
    from ttgen.task import find_tasks

    try:
        found = find_tasks(paths)
    except TtgenError as exc:
        raise _fail(str(exc)) from None
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


# -- images -----------------------------------------------------------------------------------


@images_app.command("bootstrap")
def images_bootstrap(
    tag: Annotated[str, typer.Option(help="Tag of the image to create.")] = "ttgen/base:bookworm",
    suite: Annotated[str, typer.Option(help="Debian suite.")] = "bookworm",
    mirror: Annotated[str, typer.Option(help="Debian mirror.")] = "http://deb.debian.org/debian",
    package: Annotated[
        list[str], typer.Option("--package", "-p", help="Extra Debian package (repeatable).")
    ] = [],  # noqa: B006
    force: Annotated[bool, typer.Option(help="Rebuild even if the tag exists.")] = False,
) -> None:
    """Build a base image from Debian's archive with debootstrap (no registry needed)."""
    from ttgen.sandbox.bootstrap import bootstrap_base_image
    from ttgen.sandbox.docker import DockerBackend

    async def go() -> None:
        async with DockerBackend() as backend:
            await backend.ping()
            if not force and await backend.image_exists(tag):
                console.print(f"{tag} already exists (use --force to rebuild)", markup=False)
                return
            with console.status(escape(f"debootstrap {suite} → {tag} ...")) as status:
                result = await bootstrap_base_image(
                    backend.docker,
                    tag=tag,
                    suite=suite,
                    mirror=mirror,
                    extra_packages=tuple(package),
                    on_line=lambda line: status.update(escape(f"debootstrap: {line[:100]}")),
                )
            console.print(
                f"[green]built[/] {escape(result.tag)} ({result.image_id[:19]}) "
                f"in {result.seconds:.0f} s"
            )

    _run(go())


@images_app.command("build")
def images_build(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Tasks or folders of tasks.", show_default=False)
    ] = None,
    domain: Annotated[
        list[str] | None,
        typer.Option(
            "--domain",
            "-d",
            help="Build this pre-built domain image (ttgen/domain:ID): an id, a comma list or "
            "'all'; repeatable. See `ttgen images domains`.",
            show_default=False,
        ),
    ] = None,
    base: Annotated[
        str | None,
        typer.Option(
            "--base",
            help="Base image of the domain images (default: [images] domain_base, else the "
            "Dockerfiles' ubuntu:24.04; image aliases apply).",
            show_default=False,
        ),
    ] = None,
    force_build: ForceBuild = False,
    concurrency: Annotated[int, typer.Option("-n", "--concurrency", help="Builds at once.")] = 2,
) -> None:
    """Build the environment images of tasks (each distinct environment once), and/or the
    shared domain images (--domain). Exits 1 when any build failed."""
    from ttgen.sandbox.docker import DockerBackend
    from ttgen.sandbox.domains import parse_domain_list
    from ttgen.task import Task, find_tasks

    if not paths and not domain:
        raise _fail("give tasks to build, or --domain ID (or --domain all)")
    try:
        domains = parse_domain_list(domain or [])
    except TtgenError as exc:
        raise _fail(str(exc)) from None
    failed_domains = _build_domains(domains, base, force_build) if domains else 0
    if not paths:
        raise typer.Exit(1 if failed_domains else 0)

    async def go() -> int:
        sem = asyncio.Semaphore(max(1, concurrency))
        table = Table(title="Images")
        for col in ("task", "image", "source", "seconds", "error"):
            table.add_column(col, overflow="fold")
        failures = 0
        async with DockerBackend() as backend:
            await backend.ping()

            async def one(path: Path) -> tuple[bool, tuple[str, str, str, str, str]]:
                async with sem:
                    try:
                        task = Task.load(path)
                        ref = await backend.ensure_image(task, force_build=force_build)
                        row = (task.name, ref.tag, ref.source, f"{ref.seconds:.1f}", "")
                        return True, tuple(escape(x) for x in row)
                    except TtgenError as exc:
                        failed = (escape(path.name), "", "[red]failed[/]", "", escape(str(exc)))
                        return False, failed

            with console.status("building images ..."):
                rows = await asyncio.gather(*(one(p) for p in find_tasks(paths)))
        for ok, row in rows:
            failures += not ok
            table.add_row(*row)
        console.print(table)
        return failures

    raise typer.Exit(1 if _run(go()) or failed_domains else 0)


def _build_domains(domains: list[str], base: str | None, force: bool) -> int:
    """Build domain images one after another (general first); print a table; return failures."""
    from ttgen.sandbox.docker import DockerBackend
    from ttgen.sandbox.domains import build_domain_image, image_ref

    async def go() -> int:
        table = Table(title="Domain images")
        for col in ("domain", "tag", "result", "seconds", "size MB"):
            table.add_column(col, overflow="fold")
        failures: list[tuple[str, TtgenError]] = []
        async with DockerBackend() as backend:
            await backend.ping()
            for i, d in enumerate(domains, 1):
                t0 = time.monotonic()
                try:
                    with console.status(f"building {image_ref(d)} ({i}/{len(domains)}) ..."):
                        ref = await build_domain_image(backend, d, base=base, force=force)
                    info = await backend.image_exists(ref.tag) or {}
                except TtgenError as exc:
                    failures.append((d, exc))
                    row = (d, image_ref(d), "[red]failed[/]", f"{time.monotonic() - t0:.1f}", "")
                    table.add_row(*row)
                    continue
                size = f"{info['Size'] / 1e6:.0f}" if "Size" in info else ""
                colour = "green" if ref.source == "built" else "dim"
                table.add_row(
                    d, ref.tag, f"[{colour}]{ref.source}[/]", f"{time.monotonic() - t0:.1f}", size
                )
        console.print(table)
        for d, exc in failures:
            err_console.print(
                f"[bold red]{escape(d)} failed:[/] {escape(str(exc))}",
                highlight=False,
                soft_wrap=True,
            )
        return len(failures)

    return _run(go())


@images_app.command("domains")
def images_domains(
    dockerfile: Annotated[
        str | None,
        typer.Option(
            "--dockerfile",
            help="Print the Dockerfile of this domain (what task generation is shown) and exit.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """List the pre-built domain images: tag, whether built, what each installs."""
    from ttgen.errors import DockerUnavailableError
    from ttgen.sandbox.docker import DockerBackend
    from ttgen.sandbox.domains import (
        DOMAIN_IMAGES,
        dockerfile_text,
        domain_description,
        domain_image_state,
        domain_packages,
        image_ref,
    )

    if dockerfile is not None:
        try:
            sys.stdout.write(dockerfile_text(dockerfile))
        except TtgenError as exc:
            raise _fail(str(exc)) from None
        raise typer.Exit(0)

    async def states() -> dict[str, tuple[str, float | None]]:
        out: dict[str, tuple[str, float | None]] = {}
        try:
            async with DockerBackend() as backend:
                await backend.ping()
                for d in DOMAIN_IMAGES:
                    info = await backend.image_exists(image_ref(d))
                    size = info["Size"] / 1e6 if info and "Size" in info else None
                    out[d] = (await domain_image_state(backend, d), size)
        except DockerUnavailableError as exc:
            err_console.print(
                f"[yellow]warning:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
            )
        return out

    found = _run(states())
    rows = []
    for d in DOMAIN_IMAGES:
        state, size = found.get(d, ("unknown", None))
        rows.append(
            {
                "domain": d,
                "tag": image_ref(d),
                "state": state,
                "size_mb": None if size is None else round(size),
                "description": domain_description(d),
                "packages": domain_packages(d),
            }
        )
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        raise typer.Exit(0)
    table = Table(title="Domain images (ttgen images build --domain ID|all)")
    for col in ("domain", "tag", "state", "size MB", "installs (besides the common set)"):
        table.add_column(col, overflow="fold")
    colours = {"built": "green", "outdated": "yellow", "missing": "red"}
    for r in rows:
        pk = r["packages"]
        installs = "\n".join(
            f"{k}: {' '.join(v)}" for k, v in (("apt", pk["apt"]), ("pip", pk["pip"])) if v
        )
        state = f"[{colours.get(r['state'], 'dim')}]{r['state']}[/]"
        size = "" if r["size_mb"] is None else str(r["size_mb"])
        table.add_row(escape(r["domain"]), escape(r["tag"]), state, size, escape(installs))
    console.print(table)
    common = domain_packages(DOMAIN_IMAGES[0], "common")
    console.print(
        f"common set: apt {' '.join(common['apt'])}; pip {' '.join(common['pip'])}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


@images_app.command("aliases")
def images_aliases() -> None:
    """Show the image aliases and CA bundle in effect, and where they come from."""
    from ttgen.settings import load_settings

    try:
        settings = load_settings()
    except TtgenError as exc:
        raise _fail(str(exc)) from None
    table = Table(title="Image aliases (first match wins)")
    table.add_column("pattern")
    table.add_column("image")
    table.add_column("from", overflow="fold")
    for a in settings.aliases:
        table.add_row(escape(a.pattern), escape(a.image), escape(a.source))
    console.print(table)
    console.print(f"extra CA bundle: {settings.extra_ca_cert or 'none'}", markup=False)
    console.print(f"config sources: {', '.join(settings.sources) or 'defaults only'}", markup=False)


# -- env --------------------------------------------------------------------------------------


def _load_task(path: Path):  # -> Task
    from ttgen.task import Task

    try:
        return Task.load(path)
    except TtgenError as exc:
        raise _fail(str(exc)) from None


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
) -> None:
    """Start the task's environment, run CMD in its working directory, print the output, exit with its code.

    The container is removed afterwards. Example: ttgen env exec examples/tasks/hello-world -- ls -la
    """
    from ttgen.sandbox.docker import DockerBackend

    task = _load_task(task_path)

    async def go() -> int:
        async with DockerBackend() as backend:
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
) -> None:
    """Open an interactive shell in a fresh environment of the task; it is removed on exit."""
    from ttgen.sandbox.docker import DockerBackend

    task = _load_task(task_path)
    docker_cli = shutil.which("docker")
    if docker_cli is None:
        raise _fail(
            "`ttgen env shell` needs the docker command-line client for the interactive terminal"
        )

    async def start() -> tuple[str, str]:
        async with DockerBackend() as backend:
            await backend.ping()
            sandbox = await backend.start(task, job="env-shell", force_build=force_build)
            assert task.path is not None
            if with_tests:
                await sandbox.upload_dir(task.path / "tests", "/tests")
            if with_solution and (task.path / "solution").is_dir():
                await sandbox.upload_dir(task.path / "solution", "/solution")
            return sandbox.id, sandbox.name

    async def remove(cid: str) -> None:
        import aiodocker

        async with aiodocker.Docker() as docker:
            with suppress(aiodocker.DockerError):
                await docker.containers.container(cid).delete(force=True)

    cid, name = _run(start())
    # A closed terminal (SIGHUP) or a kill (SIGTERM) still removes the container.
    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, _exit_on_signal)
    console.print(f"[dim]container {escape(name)}; exit the shell to remove it[/]")
    try:
        shell = "if command -v bash >/dev/null; then exec bash; else exec sh; fi"
        rc = subprocess.call([docker_cli, "exec", "-it", cid, "sh", "-c", shell])
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
) -> None:
    """Remove containers and networks left by crashed runs (found by their ttgen labels).

    By default only containers whose starting process has exited are removed, so running jobs are safe.
    """
    from ttgen.sandbox.docker import DockerBackend

    async def go() -> dict[str, list[str]]:
        async with DockerBackend() as backend:
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
    paths: Annotated[list[Path], typer.Argument(help="Tasks or folders of tasks.")],
    command: Annotated[
        str, typer.Option(help="Shell command to run in each environment.")
    ] = 'echo "$(uname -m) $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")"; pwd',
    concurrency: Annotated[int, typer.Option("-n", "--concurrency", help="Tasks at once.")] = 2,
    force_build: ForceBuild = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON lines instead of a table.")
    ] = False,
) -> None:
    """Check, build, start and run a command in every task's environment; print a summary.

    Exits 1 when any task fails a step.
    """
    from ttgen.smoke import smoke_tasks
    from ttgen.task import find_tasks

    try:
        found = find_tasks(paths)
    except TtgenError as exc:
        raise _fail(str(exc)) from None
    with console.status(f"smoke-testing {len(found)} tasks ...") if not as_json else nullcontext():
        rows = _run(
            smoke_tasks(found, command=command, concurrency=concurrency, force_build=force_build)
        )
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


# -- adapt ------------------------------------------------------------------------------------


@app.command("adapt")
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
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder of tasks (re-run to resume).")
    ],
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
    raise typer.Exit(1 if summary.n_bad else 0)


# -- trials and jobs ----------------------------------------------------------------------------

Concurrency = Annotated[
    int, typer.Option("-n", "--concurrency", min=1, help="Trials running at once.")
]
Retries = Annotated[
    int,
    typer.Option(
        min=0,
        help="Extra runs (with backoff) of a trial that ends in an infrastructure error "
        "(build/environment/agent/LLM).",
    ),
]
KeepErrors = Annotated[
    bool,
    typer.Option(
        "--keep-errors",
        help="On resume, keep trials that ended in an infrastructure error instead of "
        "running them again.",
    ),
]
TimeoutMultiplier = Annotated[
    float, typer.Option(min=0.01, help="Multiplies every timeout (build, setup, agent, verifier).")
]
PhaseMultiplier = Annotated[float | None, typer.Option(min=0.01, show_default=False)]
JsonOut = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON (no progress bar).")
]
VerifierIsolation = Annotated[
    str,
    typer.Option(
        "--verifier-isolation",
        help="snapshot (default): tests run in a copy of the agent's container that nothing the "
        "agent left running can reach (its services still answer on localhost), so rewards "
        "cannot be forged; shared: in the agent's container itself, as Harbor does (for tests "
        "that inspect the agent's processes).",
    ),
]
Executor = Annotated[
    str,
    typer.Option(
        "--executor",
        help="Where trials run: local (this machine's Docker engine) or ray (the nodes of a Ray "
        "cluster, each with its own Docker engine; see --address, --per-node).",
    ),
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="--executor ray: the cluster (HEAD:6379, ray://HEAD:10001 or auto). Default: "
        "$RAY_ADDRESS, else a cluster started on this machine, else a new local Ray.",
        show_default=False,
    ),
]
PerNode = Annotated[
    int | None,
    typer.Option(
        "--per-node",
        min=1,
        help="--executor ray: trials at once on each node (default: its CPUs / 2, at least 1); "
        "replaces -n.",
        show_default=False,
    ),
]


def _kv(pairs: list[str] | None, what: str, *, parse_json: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise _fail(f"{what} {pair!r}: expected KEY=VALUE")
        if parse_json:
            try:
                out[key] = json.loads(value)
            except ValueError:
                out[key] = value
        else:
            out[key] = value
    return out


def _check_executor(executor: str, address: str | None, per_node: int | None) -> None:
    from ttgen.rollout.job import check_executor

    try:
        check_executor(executor, address, per_node)
    except ConfigError as exc:
        raise _fail(str(exc)) from None


def _job_options(
    concurrency: int,
    retries: int,
    keep_errors: bool,
    timeout_multiplier: float,
    build_timeout_multiplier: float | None,
    agent_setup_timeout_multiplier: float | None,
    agent_timeout_multiplier: float | None,
    verifier_timeout_multiplier: float | None,
    agent_timeout: float | None,
    verifier_timeout: float | None,
    force_build: bool,
    verifier_env: list[str] | None,
    *,
    executor: str = "local",
    address: str | None = None,
    per_node: int | None = None,
    verifier_isolation: str = "snapshot",
):  # -> JobOptions
    from ttgen.rollout.job import job_options

    try:
        return job_options(
            concurrency=concurrency, retries=retries, keep_errors=keep_errors,
            timeout_multiplier=timeout_multiplier,
            build_timeout_multiplier=build_timeout_multiplier,
            agent_setup_timeout_multiplier=agent_setup_timeout_multiplier,
            agent_timeout_multiplier=agent_timeout_multiplier,
            verifier_timeout_multiplier=verifier_timeout_multiplier,
            agent_timeout=agent_timeout, verifier_timeout=verifier_timeout,
            force_build=force_build, verifier_env=_kv(verifier_env, "--ve", parse_json=False),
            executor=executor, address=address, per_node=per_node,
            verifier_isolation=verifier_isolation,
        )  # fmt: skip
    except ConfigError as exc:
        raise _fail(str(exc)) from None


def _run_job(coro_factory, as_json: bool, label: str):  # -> (result, JobProgress)
    from ttgen.rollout.progress import JobProgress

    progress = JobProgress(console, label, quiet=as_json)
    try:
        with progress:
            return _run(coro_factory(progress)), progress
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:
        # Ctrl-C arrives as KeyboardInterrupt, SIGTERM (cluster schedulers) as a cancellation.
        err_console.print(
            "[yellow]interrupted[/]: finished trials are kept and containers removed; "
            "run the same command again to resume."
        )
        raise typer.Exit(130 if isinstance(exc, KeyboardInterrupt) else 143) from None


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


def _preflight(check: Any, name: str) -> None:
    """One check before the work starts (`check()`: a coroutine asking the endpoint what the
    work will ask); a failure stops here, with nothing started."""
    err_console.print(f"checking {name}'s model endpoint ...", highlight=False, markup=False)
    try:
        line = asyncio.run(check())
    except LLMError as exc:
        hint = ""
        status = getattr(exc, "status", None)
        if status in (401, 403):
            hint = " Set the key in TTGEN_API_KEY or OPENAI_API_KEY (or --ak api_key=...)."
        elif status == 404:
            hint = " Check --base-url (usually ending in /v1) and --model (the served name)."
        elif status is None or status >= 500 or status == 429:
            hint = " Is the server up and reachable from here?"
        raise _fail(
            f"{name}: the model endpoint failed a test request, so nothing was started: "
            f"{str(exc).rstrip('.')}.{hint} (--no-preflight skips this check.)"
        ) from None
    err_console.print(f"ok: {line}", highlight=False, markup=False)


@app.command("rollout")
def rollout(
    paths: Annotated[list[Path], typer.Argument(help="Tasks or folders of tasks.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Job folder (re-run the command to resume).")
    ],
    agent: Annotated[
        str, typer.Option("--agent", "-a", help="Agent name (oracle, nop, ...) or module:Class.")
    ],
    attempts: Annotated[
        int, typer.Option("-k", "--attempts", min=1, help="Attempts per task.")
    ] = 1,
    concurrency: Concurrency = 4,
    agent_kwargs: Annotated[
        list[str] | None,
        typer.Option("--ak", help="Agent option KEY=VALUE (VALUE parsed as JSON when it is)."),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model name for LLM agents (terminus-2).")
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1."),
    ] = None,
    strict_timing: Annotated[
        bool,
        typer.Option(
            help="terminus-2: always wait each command's full duration (no early completion)."
        ),
    ] = False,
    retries: Retries = 2,
    keep_errors: KeepErrors = False,
    timeout_multiplier: TimeoutMultiplier = 1.0,
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
    force_build: ForceBuild = False,
    preflight: Annotated[
        bool,
        typer.Option(
            help="LLM agents: send one short request with the model settings before starting "
            "any container, and stop at once if the endpoint refuses it."
        ),
    ] = True,
    executor: Executor = "local",
    verifier_isolation: VerifierIsolation = "snapshot",
    address: RayAddress = None,
    per_node: PerNode = None,
    as_json: JsonOut = False,
) -> None:
    """Run an agent on tasks: tasks x attempts trials, concurrently, into a resumable job folder.

    Each trial gets a fresh container, the agent, then the verifier (tests are copied in only
    after the agent finished). Re-running the same command resumes: finished trials are kept,
    unfinished ones and infrastructure errors are redone, leftover containers removed.
    Exits 1 when trials still end in an infrastructure error, 0 otherwise.
    """
    from ttgen.agents import create_agent
    from ttgen.formats.trial import AgentSpec
    from ttgen.rollout.job import Job, load_tasks, rollout_specs
    from ttgen.task import find_tasks

    try:
        found = find_tasks(paths)
    except TtgenError as exc:
        raise _fail(str(exc)) from None
    kwargs = _kv(agent_kwargs, "--ak", parse_json=True)
    if model is not None:
        kwargs["model"] = model
    if base_url is not None:
        kwargs["base_url"] = base_url
    if strict_timing:
        kwargs["strict_timing"] = True
    try:  # an unknown agent or bad options fail here, not once per trial
        probe = create_agent(agent, **kwargs)
    except (TtgenError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if preflight and hasattr(probe, "preflight"):
        _preflight(probe.preflight, agent)
    spec = AgentSpec(name=agent, kwargs=kwargs)
    options = _job_options(
        concurrency,
        retries,
        keep_errors,
        timeout_multiplier,
        build_timeout_multiplier,
        agent_setup_timeout_multiplier,
        agent_timeout_multiplier,
        verifier_timeout_multiplier,
        agent_timeout,
        verifier_timeout,
        force_build,
        verifier_env,
        executor=executor,
        address=address,
        per_node=per_node,
        verifier_isolation=verifier_isolation,
    )
    tasks, bad = load_tasks(found)
    for b in bad:
        err_console.print(
            f"[yellow]skipped[/] {escape(str(b['file']))}: {escape(str(b['problem']))}",
            highlight=False,
        )
    if not tasks:
        raise _fail("no valid tasks to run")

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
                f"removed {len(result['removed_containers'])} container(s) left by an earlier run"
            )
        console.print(
            f"job folder: {out}  (result.json, trials.jsonl, one folder per trial)", markup=False
        )
    raise typer.Exit(1 if stats["n_infra_errors"] or stats["n_cancelled_trials"] else 0)


@app.command("validate")
def validate(
    paths: Annotated[list[Path], typer.Argument(help="Tasks or folders of tasks.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder (re-run the command to resume).")
    ],
    concurrency: Concurrency = 4,
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
    retries: Retries = 2,
    keep_errors: KeepErrors = False,
    timeout_multiplier: TimeoutMultiplier = 1.0,
    agent_timeout: Annotated[
        float | None, typer.Option(help="Timeout for solve.sh in seconds, instead of the task's.")
    ] = None,
    force_build: ForceBuild = False,
    strict: Annotated[
        bool, typer.Option(help="Exit 1 unless every task is valid, no_solution or no_tests.")
    ] = False,
    executor: Executor = "local",
    verifier_isolation: VerifierIsolation = "snapshot",
    address: RayAddress = None,
    per_node: PerNode = None,
    as_json: JsonOut = False,
) -> None:
    """Validate tasks: the oracle (solution/solve.sh) must score 1 and the nop agent 0.

    Verdicts: valid, no_solution, no_tests, trivial, oracle_failed, verifier_broken, build_failed,
    invalid, infra_error. Writes OUT/validation.jsonl (one object per task) and a job folder.
    """
    from ttgen.rollout.validate import (
        GOOD_VERDICTS,
        VERDICTS,
        keep_tasks,
        summarize,
        validate_tasks,
    )
    from ttgen.task import find_tasks

    keep_set: set[str] = set()
    if keep:
        keep_set = {v.strip() for v in keep.split(",") if v.strip()}
        unknown = keep_set - set(VERDICTS)
        if unknown:
            raise _fail(f"--keep: unknown verdict(s) {sorted(unknown)}; use {', '.join(VERDICTS)}")
    try:
        found = find_tasks(paths)
    except TtgenError as exc:
        raise _fail(str(exc)) from None
    options = _job_options(
        concurrency,
        retries,
        keep_errors,
        timeout_multiplier,
        None,
        None,
        None,
        None,
        agent_timeout,
        None,
        force_build,
        None,
        executor=executor,
        address=address,
        per_node=per_node,
        verifier_isolation=verifier_isolation,
    )

    async def go(progress):
        return await validate_tasks(found, out, options, events=progress)

    verdicts, _ = _run_job(go, as_json, "validate")
    kept = keep_tasks(verdicts, keep_set, keep_dir or out / "kept") if keep_set else []
    if as_json:
        for v in verdicts:
            sys.stdout.write(json.dumps(v.to_dict()) + "\n")
    else:
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
        console.print(
            ", ".join(f"{k} {n}" for k, n in counts.items()) + f"  ({len(verdicts)} tasks)"
        )
        console.print(f"verdicts: {out / 'validation.jsonl'}", markup=False)
        if keep_set:
            console.print(f"kept {len(kept)} task(s) in {keep_dir or out / 'kept'}", markup=False)
    bad = [v for v in verdicts if v.verdict not in GOOD_VERDICTS]
    infra = [v for v in verdicts if v.verdict == "infra_error"]
    raise typer.Exit(1 if infra or (strict and bad) else 0)


# -- synth ------------------------------------------------------------------------------------

synth_app = typer.Typer(
    help="Generate new tasks with an LLM: from seed problems or from the skill taxonomy.",
    no_args_is_help=True,
)
app.add_typer(synth_app, name="synth")

SynthOut = Annotated[
    Path, typer.Option("--out", "-o", help="Output folder of tasks (re-run to resume).")
]
SynthModel = Annotated[str, typer.Option(help="Generator model (the served name).")]
SynthBaseUrl = Annotated[
    str, typer.Option(help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.")
]
SynthTemperature = Annotated[float | None, typer.Option(help="Sampling temperature.")]
SynthMaxTokens = Annotated[
    int | None, typer.Option(help="Max output tokens per answer (a task is long: 8k-32k).")
]
SynthLLM = Annotated[
    list[str] | None,
    typer.Option(
        "--llm",
        help="Other LLM client setting KEY=VALUE (JSON values), e.g. top_p=0.95, "
        'extra_body=\'{"chat_template_kwargs": {"enable_thinking": true}}\', timeout_sec=1200.',
    ),
]
SynthPriceIn = Annotated[float | None, typer.Option(help="USD per million input tokens.")]
SynthPriceOut = Annotated[float | None, typer.Option(help="USD per million output tokens.")]
SynthGates = Annotated[
    str | None,
    typer.Option(
        help="Quality gates, comma-separated: static, leak, files, collect, validate; 'all' or "
        "'none'. Default: static,leak,files,collect."
    ),
]
SynthValidate = Annotated[
    bool,
    typer.Option(help="Also build each task's image and check that a do-nothing agent scores 0."),
]
SynthNovelty = Annotated[
    float, typer.Option(help="Near-duplicate threshold (Jaccard of word 5-grams, same domain).")
]
SynthNoveltyRetries = Annotated[
    int, typer.Option(help="Regenerations of a near-duplicate before it is dropped.")
]
SynthAgentTimeout = Annotated[float, typer.Option(help="task.toml agent timeout (seconds).")]
SynthVerifierTimeout = Annotated[float, typer.Option(help="task.toml verifier timeout (s).")]
SynthPreflight = Annotated[
    bool, typer.Option(help="Send one short request to the endpoint before starting.")
]


SynthExecutor = Annotated[
    str,
    typer.Option(
        "--executor",
        help="Where the Docker gates run: local (this machine's engine) or ray (the nodes of a "
        "Ray cluster, each building images on its own engine; the LLM calls stay here).",
    ),
]
SynthPerNode = Annotated[
    int | None,
    typer.Option(
        "--per-node",
        min=1,
        help="--executor ray: Docker gates at once on each node (default: its CPUs / 2).",
        show_default=False,
    ),
]


class _SynthProgress:
    """A progress bar with written / dropped / errors and the cost so far (lines off-TTY)."""

    def __init__(self, quiet: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self.quiet = quiet
        self.live = console.is_terminal and not quiet
        self.counts = {"written": 0, "dropped": 0, "error": 0}
        self.cost = 0.0
        self.progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not self.live,
        )
        self.bar = self.progress.add_task("synth", total=None)

    def __enter__(self) -> _SynthProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def _describe(self) -> str:
        c = self.counts
        return (
            f"written {c['written']}  dropped {c['dropped']}  errors {c['error']}  ${self.cost:.4f}"
        )

    def started(self, total: int, already_done: int) -> None:
        self.progress.update(self.bar, total=total, completed=already_done)
        if already_done and not self.quiet:
            err_console.print(f"resuming: {already_done} of {total} item(s) already done")

    def finished(self, record: dict[str, Any]) -> None:
        status = record.get("status", "error")
        self.counts[status] = self.counts.get(status, 0) + 1
        self.cost += record.get("cost_usd") or 0.0
        self.progress.update(self.bar, advance=1, description=self._describe())
        if not self.live and not self.quiet:
            reason = f": {record.get('reason')}" if status != "written" else ""
            err_console.print(
                f"{record['id']} {status}{reason}"[:300], highlight=False, markup=False
            )


def _synth_config(
    model: str,
    base_url: str,
    temperature: float | None,
    max_tokens: int | None,
    llm: list[str] | None,
    price_in: float | None,
    price_out: float | None,
    concurrency: int,
):  # -> LLMConfig
    from pydantic import ValidationError

    from ttgen.llm import LLMConfig

    values: dict[str, Any] = {
        "model": model,
        "base_url": base_url,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "price_input_per_mtok": price_in,
        "price_output_per_mtok": price_out,
        "max_concurrency": max(1, concurrency),
        **_kv(llm, "--llm", parse_json=True),
    }
    try:
        return LLMConfig(**values)
    except ValidationError as exc:
        from ttgen.task import format_validation_error

        raise _fail(f"LLM settings: {format_validation_error(exc)}") from None


def _run_synth(
    items: list[Any],
    config: Any,
    out: Path,
    *,
    gates: str | None,
    validate_tasks: bool,
    concurrency: int,
    novelty: float,
    novelty_retries: int,
    agent_timeout: float,
    verifier_timeout: float,
    preflight: bool,
    as_json: bool,
    label: str,
    executor: str = "local",
    address: str | None = None,
    per_node: int | None = None,
) -> None:
    from ttgen.llm import check_endpoint
    from ttgen.sources.synth.engine import SynthOptions, synthesize
    from ttgen.sources.synth.gates import DOCKER_GATES, parse_gate_list

    try:
        gate_list = parse_gate_list(gates, validate=validate_tasks)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    _check_executor(executor, address, per_node)
    if executor == "ray" and not any(g in DOCKER_GATES for g in gate_list):
        raise _fail("--executor ray runs the Docker gates (collect, validate); none is selected")
    if preflight:
        _preflight(lambda: check_endpoint(config), label)
    options = SynthOptions(
        out=out,
        concurrency=concurrency,
        novelty_threshold=novelty,
        novelty_retries=novelty_retries,
        agent_timeout_sec=agent_timeout,
        verifier_timeout_sec=verifier_timeout,
    )
    job = f"synth-{out.name}"

    async def go(progress: _SynthProgress) -> dict[str, Any]:
        return await synthesize(
            config,
            options,
            gate_list,
            items,
            job=job,
            events=progress,
            executor=executor,
            address=address,
            per_node=per_node,
            log=lambda message: err_console.print(message, highlight=False, markup=False),
            preparing=console.status,
        )

    progress = _SynthProgress(quiet=as_json)
    try:
        with progress:
            summary = _run(go(progress))
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:
        err_console.print(
            "[yellow]interrupted[/]: finished tasks and their records are kept; "
            "run the same command again to resume."
        )
        raise typer.Exit(130 if isinstance(exc, KeyboardInterrupt) else 143) from None
    except TtgenError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        table = Table(title=escape(f"{label}: {out}"), show_header=False)
        table.add_column("", style="bold")
        table.add_column("")
        table.add_row("items", str(summary["n_items"]))
        table.add_row("written", str(summary["written"]))
        table.add_row("dropped", str(summary["dropped"]))
        for gate, n in sorted(summary["dropped_by"].items()):
            table.add_row(f"  by {gate}", str(n))
        table.add_row("errors (retried next run)", str(summary["errors"]))
        if summary["gate_failures"]:
            table.add_row(
                "gate failures (rounds)",
                ", ".join(f"{g} {n}" for g, n in sorted(summary["gate_failures"].items())),
            )
        table.add_row("repaired", str(summary["repaired"]))
        table.add_row("format retries", str(summary["format_retries"]))
        table.add_row("novelty regenerations", str(summary["novelty_regenerations"]))
        u = summary["usage"]
        cost = (
            "unknown (set --price-in/--price-out)"
            if summary["cost_usd"] is None
            else (f"${summary['cost_usd']:.4f}")
        )
        table.add_row(
            "LLM", f"{u['calls']} calls, {u['prompt_tokens']} in / {u['completion_tokens']} out"
        )
        table.add_row("cost", cost)
        table.add_row("wall time", f"{summary['wall_sec']:.1f}s")
        console.print(table)
        console.print(
            f"tasks in {out}; one generation record per item in {out / 'generation'}; "
            f"index {out / 'synth.jsonl'}",
            markup=False,
        )
    raise typer.Exit(1 if summary["errors"] else 0)


@synth_app.command("skills")
def synth_skills(
    out: SynthOut,
    model: SynthModel,
    base_url: SynthBaseUrl,
    domain: Annotated[
        str, typer.Option(help="Task domain(s): a name, a comma-separated list, or 'all'.")
    ] = "all",
    n: Annotated[int, typer.Option("--n", min=1, help="Tasks per domain.")] = 10,
    difficulty: Annotated[
        str, typer.Option(help="easy, medium, hard, or mixed (drawn per task).")
    ] = "medium",
    seed: Annotated[int, typer.Option(help="Seed of the skill sampler (reproducible).")] = 0,
    min_skills: Annotated[int, typer.Option(help="Fewest primitive skills per task.")] = 3,
    max_skills: Annotated[int, typer.Option(help="Most primitive skills per task.")] = 5,
    across_types: Annotated[
        bool, typer.Option(help="Draw the skills of a task from different skill types.")
    ] = True,
    taxonomy: Annotated[
        list[Path] | None,
        typer.Option(help="Extra taxonomy YAML file or folder (adds or replaces domains)."),
    ] = None,
    concurrency: Annotated[int, typer.Option("-n", "--concurrency", min=1)] = 8,
    temperature: SynthTemperature = 0.7,
    max_tokens: SynthMaxTokens = None,
    llm: SynthLLM = None,
    price_in: SynthPriceIn = None,
    price_out: SynthPriceOut = None,
    gates: SynthGates = None,
    validate_tasks: SynthValidate = False,
    novelty: SynthNovelty = 0.5,
    novelty_retries: SynthNoveltyRetries = 2,
    agent_timeout: SynthAgentTimeout = 900.0,
    verifier_timeout: SynthVerifierTimeout = 900.0,
    preflight: SynthPreflight = True,
    executor: SynthExecutor = "local",
    address: RayAddress = None,
    per_node: SynthPerNode = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Skill-based synthesis: per domain, N tasks that each combine 3-5 primitive skills drawn
    from the taxonomy, written by the LLM, checked by the quality gates.

    Task i of a domain always gets the same skills (for the same --seed), so a larger --n or a
    re-run extends the set instead of changing it. Exits 1 when items ended in an error
    (endpoint or Docker failures; re-run to retry them)."""
    from ttgen.sources.skills_taxonomy import load_taxonomy
    from ttgen.sources.synth.items import DIFFICULTY_CHOICES, skill_items

    if difficulty not in DIFFICULTY_CHOICES:
        raise _fail(f"--difficulty must be one of {', '.join(DIFFICULTY_CHOICES)}")
    config = _synth_config(
        model, base_url, temperature, max_tokens, llm, price_in, price_out, concurrency
    )
    try:
        tax = load_taxonomy(taxonomy or ())
        domains = tax.resolve(domain)
        items = skill_items(
            domains,
            n=n,
            difficulty=difficulty,
            seed=seed,
            k_min=min_skills,
            k_max=max_skills,
            across_types=across_types,
            model=model,
        )
    except (TtgenError, ValueError) as exc:
        raise _fail(str(exc)) from None
    _run_synth(
        items,
        config,
        out,
        gates=gates,
        validate_tasks=validate_tasks,
        concurrency=concurrency,
        novelty=novelty,
        novelty_retries=novelty_retries,
        agent_timeout=agent_timeout,
        verifier_timeout=verifier_timeout,
        preflight=preflight,
        as_json=as_json,
        label="synth skills",
        executor=executor,
        address=address,
        per_node=per_node,
    )


@synth_app.command("seeds")
def synth_seeds(
    seeds: Annotated[
        str,
        typer.Option(
            help="Seed problems: JSONL, parquet, a save_to_disk folder or a hub dataset, with "
            "problem, optional domain and reference_solution fields."
        ),
    ],
    out: SynthOut,
    model: SynthModel,
    base_url: SynthBaseUrl,
    field: Annotated[
        list[str] | None,
        typer.Option(
            "--field", help="Field mapping CANONICAL=SOURCE, e.g. problem=question (repeatable)."
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Use at most this many seeds.")] = None,
    config_name: Annotated[str | None, typer.Option("--config", help="Hub dataset config.")] = None,
    split: Annotated[str | None, typer.Option(help="Dataset split.")] = None,
    image_domain: Annotated[
        str,
        typer.Option(help="Domain image for seeds whose domain is not a task domain."),
    ] = "scientific_computing",
    concurrency: Annotated[int, typer.Option("-n", "--concurrency", min=1)] = 8,
    temperature: SynthTemperature = 0.7,
    max_tokens: SynthMaxTokens = None,
    llm: SynthLLM = None,
    price_in: SynthPriceIn = None,
    price_out: SynthPriceOut = None,
    gates: SynthGates = None,
    validate_tasks: SynthValidate = False,
    novelty: SynthNovelty = 0.5,
    novelty_retries: SynthNoveltyRetries = 2,
    agent_timeout: SynthAgentTimeout = 900.0,
    verifier_timeout: SynthVerifierTimeout = 900.0,
    preflight: SynthPreflight = True,
    executor: SynthExecutor = "local",
    address: RayAddress = None,
    per_node: SynthPerNode = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Seed-based synthesis: the LLM adapts each seed problem into a terminal task with input
    files, output locations and weighted pytest tests; a reference solution informs the tests
    and never appears in the instruction. Bad seed records are listed and skipped."""
    from ttgen.sources.skills_taxonomy import load_taxonomy
    from ttgen.sources.synth.items import load_seeds, seed_items

    config = _synth_config(
        model, base_url, temperature, max_tokens, llm, price_in, price_out, concurrency
    )
    try:
        loaded = load_seeds(
            seeds,
            fields=_kv(field, "--field", parse_json=False),
            limit=limit,
            config=config_name,
            split=split,
        )
        items = seed_items(
            loaded.seeds, taxonomy=load_taxonomy(), image_domain=image_domain, model=model
        )
    except (TtgenError, ValueError) as exc:
        raise _fail(str(exc)) from None
    for bad in loaded.bad[:20]:
        err_console.print(f"[yellow]skipped[/] {escape(str(bad))}", highlight=False)
    if len(loaded.bad) > 20:
        err_console.print(f"... and {len(loaded.bad) - 20} more bad seed records")
    if loaded.duplicates:
        err_console.print(f"dropped {loaded.duplicates} duplicate seed problem(s)")
    if not items:
        raise _fail(f"{seeds}: no usable seed records")
    _run_synth(
        items,
        config,
        out,
        gates=gates,
        validate_tasks=validate_tasks,
        concurrency=concurrency,
        novelty=novelty,
        novelty_retries=novelty_retries,
        agent_timeout=agent_timeout,
        verifier_timeout=verifier_timeout,
        preflight=preflight,
        as_json=as_json,
        label="synth seeds",
        executor=executor,
        address=address,
        per_node=per_node,
    )


@synth_app.command("taxonomy")
def synth_taxonomy(
    domain: Annotated[
        str | None, typer.Option(help="Show the primitive skills of this domain.")
    ] = None,
    taxonomy: Annotated[
        list[Path] | None, typer.Option(help="Extra taxonomy YAML file or folder.")
    ] = None,
) -> None:
    """List the task domains of the skill taxonomy, or one domain's primitive skills."""
    from ttgen.sources.skills_taxonomy import describe, load_taxonomy

    try:
        tax = load_taxonomy(taxonomy or ())
        picked = tax.get(domain) if domain else None
    except TtgenError as exc:
        raise _fail(str(exc)) from None
    if picked is None:
        table = Table(title="Task domains")
        for col in ("domain", "title", "primitives", "skill types", "image"):
            table.add_column(col, overflow="fold")
        for row in describe(tax):
            table.add_row(
                escape(row["id"]),
                escape(row["title"]),
                str(row["n_primitives"]),
                escape(", ".join(row["skill_types"])),
                escape(row["image"]),
            )
        console.print(table)
        return
    table = Table(title=escape(f"{picked.title}: {len(picked.primitives)} primitive skills"))
    for col in ("id", "type", "skill"):
        table.add_column(col, overflow="fold")
    for p in picked.primitives:
        table.add_row(escape(p.id), escape(p.type), escape(p.skill))
    console.print(table)


# -- curate / export / stats ------------------------------------------------------------------


def _benchmark_specs(values: list[str] | None) -> list[Any]:
    from ttgen.curate.curator import BenchmarkSpec

    specs = []
    for v in values or []:
        name, sep, path = v.partition("=")
        if sep and name and "/" not in name:
            specs.append(BenchmarkSpec(Path(path), name))
        else:
            specs.append(BenchmarkSpec(Path(v)))
    return specs


@app.command("curate")
def curate_cmd(
    jobs: Annotated[
        list[Path],
        typer.Argument(
            metavar="JOB...", help="Rollout job folders (or trials, or folders of jobs)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output data folder.")],
    benchmark: Annotated[
        list[str] | None,
        typer.Option(
            "--benchmark",
            "-b",
            help="Benchmark to decontaminate against: a folder of Harbor/TB1 tasks or a JSONL of "
            "texts, optionally NAME=PATH (repeatable).",
        ),
    ] = None,
    no_decontam: Annotated[
        bool, typer.Option("--no-decontam", help="Skip decontamination.")
    ] = False,
    bench_fields: Annotated[
        str,
        typer.Option(help="Benchmark texts to match: instruction, tests, solution (comma list)."),
    ] = "instruction",
    ngram: Annotated[int, typer.Option(min=1, help="Shared words that count as overlap.")] = 14,
    identity: Annotated[
        bool, typer.Option("--identity/--no-identity", help="Drop identity leaks.")
    ] = True,
    identity_pattern: Annotated[
        list[str] | None,
        typer.Option(help="Extra identity-leak regex on assistant turns (repeatable)."),
    ] = None,
    cjk: Annotated[
        bool, typer.Option("--cjk/--no-cjk", help="Drop trajectories with CJK in assistant turns.")
    ] = True,
    cjk_allow_echo: Annotated[
        bool,
        typer.Option(help="Allow CJK characters that also occur in the user turns (task text)."),
    ] = False,
    complete_only: Annotated[
        bool, typer.Option(help="Keep only trajectories the teacher marked complete.")
    ] = False,
    success_only: Annotated[
        bool, typer.Option(help="Keep only trajectories with reward 1 (where tests exist).")
    ] = False,
    max_turns: Annotated[int | None, typer.Option(min=1, help="Drop longer trajectories.")] = None,
    max_tokens: Annotated[
        int | None, typer.Option(min=1, help="Drop trajectories with more tokens (estimate).")
    ] = None,
    keep_tampered: Annotated[
        bool,
        typer.Option(help="Keep trajectories of trials flagged `tampered` (dropped by default)."),
    ] = False,
    dedup: Annotated[
        bool, typer.Option("--dedup/--no-dedup", help="Remove near-duplicate tasks.")
    ] = True,
    dedup_threshold: Annotated[
        float,
        typer.Option(min=0.05, max=1.0, help="Jaccard of word 5-grams that makes a duplicate."),
    ] = 0.8,
    dedup_adapters: Annotated[
        bool,
        typer.Option(
            help="Also remove near-duplicates among dataset-adapter tasks (the paper does not: "
            "their prompt sets were deduplicated upstream)."
        ),
    ] = False,
    as_json: JsonOut = False,
) -> None:
    """Gather trajectories from rollout folders into a curated data folder: decontaminate
    against benchmarks, filter (identity leaks, CJK; optional complete-only, success-only, caps),
    remove near-duplicate tasks.

    Writes OUT/records.jsonl (kept), OUT/dropped.jsonl (every drop and why) and OUT/curate.json.
    Infrastructure outcomes are always dropped. Defaults are the paper's adopted setting."""
    from ttgen.curate.curator import CurateError, CurateOptions, curate
    from ttgen.curate.filters import DEFAULT_IDENTITY_PATTERNS, FilterOptions

    fields = tuple(f.strip() for f in bench_fields.split(",") if f.strip())
    options = CurateOptions(
        benchmarks=_benchmark_specs(benchmark),
        decontaminate=not no_decontam,
        bench_fields=fields,
        ngram=ngram,
        filters=FilterOptions(
            identity=identity,
            identity_patterns=[*DEFAULT_IDENTITY_PATTERNS, *(identity_pattern or [])],
            cjk=cjk,
            cjk_allow_echo=cjk_allow_echo,
            complete_only=complete_only,
            success_only=success_only,
            max_turns=max_turns,
            max_tokens=max_tokens,
            keep_tampered=keep_tampered,
        ),
        dedup=dedup,
        dedup_threshold=dedup_threshold,
        dedup_adapters=dedup_adapters,
    )
    from ttgen.curate.curator import NothingKeptError

    ticker = _Ticker(quiet=as_json)
    try:
        with ticker:
            manifest = curate(
                jobs, out, options,
                progress=lambda c: ticker.tick(
                    f"{c['trials']} trials: {c['kept']} kept, {c['dropped']} dropped"
                ),
            )  # fmt: skip
    except NothingKeptError as exc:
        raise _fail(str(exc), code=1) from None
    except (CurateError, ValueError, OSError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        console.print_json(json.dumps(manifest))
        return
    c = manifest["counts"]
    table = Table(title=escape(f"curated {out}"))
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_row("trials", str(c["trials"]))
    table.add_row("records read", str(c["records_in"]))
    for reason, n in manifest["dropped"].items():
        table.add_row(escape(f"dropped: {reason}"), str(n))
    table.add_row("[bold]kept[/]", f"[bold]{c['kept']}[/]")
    console.print(table)
    if manifest["kept_by_source"]:
        console.print(
            "kept by source: "
            + ", ".join(f"{k} {v}" for k, v in manifest["kept_by_source"].items()),
            highlight=False,
            markup=False,
        )
    decon = manifest["decontamination"]
    if decon.get("enabled"):
        console.print(
            f"decontamination: {decon.get('tasks_matched', 0)} task(s) share a {decon['ngram']}-gram "
            f"with the benchmark ({decon.get('records_dropped', 0)} record(s) dropped); "
            f"see {out / 'dropped.jsonl'}",
            highlight=False,
            markup=False,
        )
        for bad in decon.get("bad_items", [])[:10]:
            err_console.print(f"[yellow]benchmark item skipped[/] {escape(str(bad['origin']))}: "
                              f"{escape(str(bad['problem']))}", highlight=False)  # fmt: skip


@app.command("export")
def export_cmd(
    data: Annotated[
        list[Path],
        typer.Argument(metavar="DATA...", help="Curated folders (or their records.jsonl)."),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Output file: .parquet, .jsonl or .jsonl.gz."),
    ],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="corpus (Terminal-Corpus rows: one per trajectory), harbor (the rows `harbor "
            "traces export` makes of the same trials: one per episode, tool-call blocks, a "
            "result column) or sft.",
        ),
    ] = "corpus",
    episodes: Annotated[
        str | None,
        typer.Option(
            help="harbor: all (default: a row per episode) or last (each trial's last episode), "
            "as `harbor traces export --episodes`."
        ),
    ] = None,
    tokenizer: Annotated[
        str | None,
        typer.Option(help="sft: tokenizer with a chat template: a local folder or a hub name."),
    ] = None,
    chat_template: Annotated[
        str | None, typer.Option(help="sft: a chat template file overriding the tokenizer's.")
    ] = None,
    revision: Annotated[
        str | None, typer.Option(help="sft: hub revision of the tokenizer.")
    ] = None,
    template_arg: Annotated[
        list[str] | None,
        typer.Option(
            help="sft: KEY=VALUE passed to the chat template (JSON values), e.g. "
            "enable_thinking=false (repeatable)."
        ),
    ] = None,
    max_len: Annotated[
        int, typer.Option(min=1, help="sft: tokens per row; longer rows are truncated.")
    ] = 32768,
    reasoning: Annotated[
        str,
        typer.Option(
            help="sft: the <think> part of assistant turns. template (default): as the chat "
            "template renders the conversation (Qwen3's keeps it only after the last user "
            "message, as at inference); keep: verbatim and trained in every turn; drop: in none; "
            "per-turn: one row per assistant turn, its own context and reasoning rendered as at "
            "inference, only that turn trained."
        ),
    ] = "template",
    overlong: Annotated[
        str, typer.Option(help="sft: truncate (default) or drop rows longer than --max-len.")
    ] = "truncate",
    ids: Annotated[
        bool,
        typer.Option("--ids/--no-ids", help="sft: include input_ids and loss_mask columns."),
    ] = True,
    target: Annotated[
        str,
        typer.Option(
            help="sft: the columns, for a trainer. ttgen (default): messages, metadata, input_ids, "
            "loss_mask (our rule); trl: input_ids + assistant_masks for TRL's SFTTrainer; verl: "
            "messages for veRL's multi-turn SFT dataset, with input_ids/loss_mask under veRL's "
            "rule; sharegpt: conversations + system for LLaMA-Factory (no tokens; writes "
            "dataset_info.json beside the file)."
        ),
    ] = "ttgen",
    workers: Annotated[
        int | None, typer.Option(min=1, help="sft: tokenizer processes (default: all cores).")
    ] = None,
    mix: Annotated[
        str, typer.Option(help="mixed (one file) or curriculum (stage1: adapters, stage2: rest).")
    ] = "mixed",
    stage1: Annotated[
        str, typer.Option(help="curriculum: subsets of stage 1 (comma list).")
    ] = "dataset_adapters",
    fraction: Annotated[
        list[float] | None,
        typer.Option(help="Scaling subset of this fraction, stratified by source (repeatable)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the scaling subsets.")] = 0,
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source",
            help="Only records of this source or source prefix, e.g. dataset_adapters/math, "
            "skill_based, seed_based (repeatable: any of them). For the paper's per-source "
            "ablations.",
        ),
    ] = None,
    exclude_source: Annotated[
        list[str] | None,
        typer.Option(help="Leave out records of this source or source prefix (repeatable)."),
    ] = None,
    save_to_disk: Annotated[
        Path | None, typer.Option(help="Also save with datasets' save_to_disk to this folder.")
    ] = None,
    push_to_hub: Annotated[
        str | None, typer.Option(metavar="REPO", help="Also push to the Hugging Face Hub.")
    ] = None,
    private: Annotated[bool, typer.Option(help="push-to-hub: a private dataset.")] = False,
    as_json: JsonOut = False,
) -> None:
    """Write curated records as Terminal-Corpus rows (the released schema), as Harbor-style rows
    (what `harbor traces export` writes for their trials) or as SFT rows (messages, token counts,
    assistant-only loss masks, truncation), as one file, a two-stage curriculum, or stratified
    scaling subsets.

    Exits 1 when records were skipped (they are listed), 2 on usage errors."""
    import os

    from ttgen.export.exporter import ExportError, ExportOptions, export
    from ttgen.export.harbor import EPISODES, HarborOptions
    from ttgen.export.targets import check_target

    if episodes is not None and fmt != "harbor":
        raise _fail("--episodes is for --format harbor")
    if episodes is not None and episodes not in EPISODES:
        raise _fail(f"--episodes must be all or last, got {episodes!r}")

    try:
        check_target(target, fmt=fmt, with_ids=ids, reasoning=reasoning, overlong=overlong,
                     out=out)  # fmt: skip
    except ValueError as exc:
        raise _fail(str(exc)) from None
    spec = None
    if fmt == "sft":
        from ttgen.export.chat import REASONING_MODES
        from ttgen.export.sft import TokenizerSpec

        if reasoning not in REASONING_MODES:
            raise _fail(f"--reasoning must be one of {', '.join(REASONING_MODES)}")
    if fmt == "sft" and (tokenizer is not None or target != "sharegpt"):
        if tokenizer is None:
            raise _fail("--format sft needs --tokenizer (a local folder or a hub name)")
        spec = TokenizerSpec(
            tokenizer,
            chat_template=chat_template,
            revision=revision,
            template_kwargs=_kv(template_arg, "--template-arg", parse_json=True),
            reasoning=reasoning,
        )
    elif tokenizer is not None:
        raise _fail("--tokenizer is for --format sft")
    options = ExportOptions(
        format=fmt,
        target=target,
        reasoning=reasoning if fmt == "sft" else None,
        mix=mix,
        stage1_subsets=tuple(x.strip() for x in stage1.split(",") if x.strip()),
        fractions=list(fraction or []),
        seed=seed,
        include_sources=tuple(source or ()),
        exclude_sources=tuple(exclude_source or ()),
        tokenizer=spec,
        max_len=max_len,
        overlong=overlong,
        with_ids=ids,
        workers=workers or max(1, os.cpu_count() or 1),
        save_to_disk=save_to_disk,
        push_to_hub=push_to_hub,
        hub_private=private,
        hub_token=os.environ.get("HF_TOKEN"),
        harbor=HarborOptions(episodes=episodes or "all"),
    )

    def print_target(t: dict[str, Any]) -> None:
        """The summary's target: columns, training rule, reasoning, the trainer's settings."""

        def say(text: str) -> None:
            console.print(text, highlight=False, markup=False, soft_wrap=True)

        say(f"target: {t['name']} (columns: {', '.join(t['columns'])})")
        say(f"rule: {t['rule'] or 'none'} ({t['rule_text']})")
        say(f"reasoning: {t['reasoning']} ({t['reasoning_text']})")
        if t["name"] == "verl":
            say(f"rows that veRL renders differently from the whole conversation: "
                f"{t['rows_rendering_differs']}; data.ignore_input_ids_mismatch="
                f"{t['ignore_input_ids_mismatch']}")  # fmt: skip
        trainer = t.get("trainer")
        if trainer:
            say(f"{trainer['trainer']} reads: {trainer['reads']}")
            if len(trainer.get("train_files") or ()) > 1:
                say("train files: " + ", ".join(f"{k}={v}" for k, v in trainer["train_files"].items()))
            if trainer.get("overrides"):
                say("veRL overrides: " + " ".join(shlex.quote(o) for o in trainer["overrides"]))
            elif trainer.get("config"):
                say("settings: " + ", ".join(f"{k}={v}" for k, v in trainer["config"].items()))
            for path in trainer.get("dataset_info") or []:
                say(f"dataset_info: {path}")
            for note in trainer.get("notes", []):
                say(f"note: {note}")

    ticker = _Ticker(quiet=as_json)
    try:
        with ticker:
            summary = export(data, out, options, progress=lambda n: ticker.tick(f"{n} rows ..."))
    except (ExportError, ValueError, OSError) as exc:
        raise _fail(str(exc)) from None
    for w in summary.get("warnings", []):
        err_console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)
    if as_json:
        console.print_json(json.dumps(summary))
    else:
        title = f"export ({fmt}" + (f", target {target}" if fmt == "sft" else "") + (
            f", episodes {episodes or 'all'}" if fmt == "harbor" else "") + ")"  # fmt: skip
        table = Table(title=escape(f"{title}: {summary['records']} record(s) read"))
        tokens = fmt == "sft" and target != "sharegpt"
        cols = ["file", "rows"] + (["tokens", "trained", "truncated"] if tokens else [])
        for col in cols:
            table.add_column(col, justify="left" if col == "file" else "right")
        for o in summary["outputs"].values():
            row = [escape(str(o["path"])), str(o["rows"])]
            if tokens:
                row += [str(o["tokens"]), str(o["trained_tokens"]), str(o["truncated"])]
            table.add_row(*row)
        console.print(table)
        if fmt == "sft":
            print_target(summary["target"])
        if summary["dropped_overlong"]:
            console.print(f"dropped as longer than {max_len}: {summary['dropped_overlong']}")
        if fmt == "harbor":
            console.print(
                f"{summary['trials']} trial(s) exported"
                + (f"; {summary['partly_curated_trials']} left out: curation dropped part of "
                   "their conversations (Harbor's episodes span the whole trajectory)"
                   if summary["partly_curated_trials"] else ""),
                highlight=False,
            )  # fmt: skip
        if source or exclude_source:
            console.print(
                f"source selection: {summary['records'] - summary['not_selected']} of "
                f"{summary['records']} record(s) selected",
                highlight=False,
            )
        for name, d in (summary.get("datasets") or {}).items():
            console.print(
                f"{name}: " + ", ".join(f"{k} {v}" for k, v in d.items()),
                highlight=False,
                markup=False,
            )
    for p in summary["problems"][:20]:
        err_console.print(f"[yellow]skipped[/] {escape(str(p))}", highlight=False, soft_wrap=True)
    if summary["skipped"]:
        err_console.print(f"{summary['skipped']} record(s) skipped", highlight=False)
        raise typer.Exit(1)


@app.command("stats")
def stats_cmd(
    data: Annotated[
        Path,
        typer.Argument(
            metavar="DATA",
            help="A curated folder, its records.jsonl, an exported SFT file, or a rollout job "
            "folder (ttgen's or Harbor's).",
        ),
    ],
    as_json: JsonOut = False,
) -> None:
    """Counts per subset/domain/difficulty, token and turn distributions (the paper's bins),
    completion and success rates, and what curation dropped."""
    from ttgen.curate.data_stats import compute_stats

    try:
        st = compute_stats(data)
    except (OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        console.print_json(json.dumps(st))
        return
    console.print(f"[bold]{st['records']}[/] record(s) in {escape(str(data))}", highlight=False)
    for key in ("by_subset", "by_source", "by_domain", "by_difficulty"):
        if st[key]:
            console.print(
                f"{key[3:]}: " + ", ".join(f"{k} {v}" for k, v in st[key].items()),
                highlight=False,
                markup=False,
            )
    dist = Table(title="distributions")
    for col in ("subset", "n", "tokens mean", "tokens median", "turns mean", "turns median",
                "completed", "passed (verified)"):  # fmt: skip
        dist.add_column(col, justify="right" if col != "subset" else "left")

    def _row(name: str, tokens: dict, turns: dict, comp: Any, succ: Any, verified: int) -> None:
        dist.add_row(
            escape(name),
            str(turns.get("n", 0)),
            str(tokens.get("mean", "-")),
            str(tokens.get("median", "-")),
            str(turns.get("mean", "-")),
            str(turns.get("median", "-")),
            f"{comp:.1%}" if comp is not None else "-",
            f"{succ:.1%} ({verified})" if succ is not None else "-",
        )

    for name, s in st["per_subset"].items():
        _row(name, s["tokens"], s["turns"], s["completion_rate"], s["success_rate"], s["verified"])
    _row(
        "all", st["tokens"], st["turns"], st["completion_rate"], st["success_rate"], st["verified"]
    )
    console.print(dist)
    for what, labels in (("tokens", st["token_bins"]), ("turns", st["turn_bins"])):
        hist = st[what].get("histogram")
        if not hist:
            continue
        table = Table(title=escape(f"{what} histogram" + (
            f" (counted by: {', '.join(st['tokens_counted_by'])})" if what == "tokens" else "")))  # fmt: skip
        table.add_column("bin")
        table.add_column("count", justify="right")
        table.add_column("")
        top = max(hist) or 1
        for label, count in zip(labels, hist, strict=True):
            table.add_row(label, str(count), "#" * round(30 * count / top))
        console.print(table)
    if st["truncated"]:
        console.print(f"truncated at export: {st['truncated']}", highlight=False, markup=False)
    if st.get("tampered"):
        console.print(
            f"tampered (kept with --keep-tampered; rewards not trusted): {st['tampered']}",
            highlight=False,
            markup=False,
        )
    cur = st.get("curation")
    if cur:
        console.print(
            f"curation: {cur['trials']} trials, {cur['records_in']} records read, {cur['kept']} kept; "
            "dropped: " + (", ".join(f"{k} {v}" for k, v in cur["dropped"].items()) or "none"),
            highlight=False,
            markup=False,
        )
        d = cur["decontamination"]
        if d.get("enabled"):
            console.print(
                f"decontamination ({d.get('ngram')}-gram): {d.get('tasks_matched')} task(s), "
                f"{d.get('records_dropped')} record(s) dropped",
                highlight=False,
            )
    for p in st["problems"][:20]:
        err_console.print(f"[yellow]skipped[/] {escape(str(p))}", highlight=False)


@app.command("eval")
def eval_cmd(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Tasks or folders of tasks (e.g. a Terminal-Bench 2.0 checkout); or one "
            "finished job folder (ttgen's or Harbor's) to summarize without running anything."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Writes OUT/eval.json and the job folder OUT/job (re-run to resume).",
        ),
    ],
    agent: Annotated[
        str,
        typer.Option("--agent", "-a", help="Agent name (terminus-2, oracle, ...) or module:Class."),
    ] = "terminus-2",
    attempts: Annotated[
        int, typer.Option("-k", "--attempts", min=1, help="Trials per task (= runs).")
    ] = 5,
    concurrency: Concurrency = 4,
    agent_kwargs: Annotated[
        list[str] | None,
        typer.Option("--ak", help="Agent option KEY=VALUE (VALUE parsed as JSON when it is)."),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model name (terminus-2).")] = None,
    base_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.")
    ] = None,
    retries: Retries = 2,
    keep_errors: KeepErrors = False,
    timeout_multiplier: TimeoutMultiplier = 1.0,
    force_build: ForceBuild = False,
    preflight: Annotated[
        bool, typer.Option(help="Test the model endpoint with one request before starting.")
    ] = True,
    executor: Executor = "local",
    verifier_isolation: VerifierIsolation = "snapshot",
    address: RayAddress = None,
    per_node: PerNode = None,
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
    from ttgen.task import find_tasks

    if paths and all(is_job_folder(p) for p in paths):
        if len(paths) > 1:
            raise _fail("give one job folder to summarize")
        _eval_summary_of_job(paths[0], out, as_json)
        return
    try:
        found = find_tasks(paths)
    except TtgenError as exc:
        raise _fail(str(exc)) from None
    kwargs = _kv(agent_kwargs, "--ak", parse_json=True)
    kwargs.update({k: v for k, v in (("model", model), ("base_url", base_url)) if v is not None})
    server = None
    if serve is not None:
        if model is not None or base_url is not None:
            raise _fail("--serve sets the model and the base URL: drop --model and --base-url")
        server = _start_eval_server(serve, serve_engine, serve_port, out, agent)
        kwargs.update(model=server.model, base_url=server.base_url)
    try:
        _eval_with(
            kwargs, found, out, agent, attempts, concurrency, retries, keep_errors,
            timeout_multiplier, force_build, preflight, executor, verifier_isolation, address,
            per_node, as_json, server,
        )  # fmt: skip
    finally:
        if server is not None:
            server.stop()
            if not as_json:
                err_console.print("model server stopped", highlight=False, markup=False)


def _eval_summary_of_job(job_dir: Path, out: Path, as_json: bool) -> None:
    """`ttgen eval JOB --out OUT`: the evaluation summary of a finished job folder (ttgen's, or
    one that Harbor ran), without running anything: OUT/eval.json and the same tables."""
    from ttgen.formats.trial import write_json_atomic
    from ttgen.rollout.evaluate import category_table, evaluate, report_lines, summarize_job

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
    write_json_atomic(out / "eval.json", report)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        title = f"eval: {report['agent']}" + (f" / {report['model']}" if report["model"] else "")
        console.print(category_table(summary, title))
        for line in report_lines(summary):
            console.print(line, highlight=False)
        console.print(f"eval.json: {out / 'eval.json'}", highlight=False, markup=False)
    raise typer.Exit(1 if summary["n_missing"] else 0)


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
    err_console.print(
        f"serving {server.folder} with {server.engine} (log: {server.log_path}) ...",
        highlight=False,
        markup=False,
    )
    try:
        server.start()
    except ServerError as exc:
        raise _fail(str(exc)) from None
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
    concurrency: int,
    retries: int,
    keep_errors: bool,
    timeout_multiplier: float,
    force_build: bool,
    preflight: bool,
    executor: str,
    verifier_isolation: str,
    address: str | None,
    per_node: int | None,
    as_json: bool,
    server: Any,
) -> None:
    """The eval itself (`eval_cmd`), against kwargs' model; `server`: the --serve server."""
    from ttgen.agents import create_agent
    from ttgen.formats.trial import AgentSpec, write_json_atomic
    from ttgen.rollout.evaluate import category_table, evaluate, report_lines, task_category
    from ttgen.rollout.job import Job, load_tasks, rollout_specs

    try:
        probe = create_agent(agent, **kwargs)
    except (TtgenError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if preflight and hasattr(probe, "preflight"):
        _preflight(probe.preflight, agent)
    options = _job_options(
        concurrency,
        retries,
        keep_errors,
        timeout_multiplier,
        None,
        None,
        None,
        None,
        None,
        None,
        force_build,
        None,
        executor=executor,
        address=address,
        per_node=per_node,
        verifier_isolation=verifier_isolation,
    )
    tasks, bad = load_tasks(found)
    for b in bad:
        err_console.print(
            f"[yellow]skipped[/] {escape(str(b['file']))}: {escape(str(b['problem']))}",
            highlight=False,
        )
    if not tasks:
        raise _fail("no valid tasks to evaluate")
    specs = rollout_specs(tasks, AgentSpec(name=agent, kwargs=kwargs), attempts)

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
    write_json_atomic(out / "eval.json", report)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        title = f"eval: {agent}" + (f" / {report['model']}" if report["model"] else "")
        console.print(category_table(summary, title))
        for line in report_lines(summary):
            console.print(line, highlight=False)
        console.print(
            f"eval.json: {out / 'eval.json'}  job folder: {out / 'job'}",
            highlight=False,
            markup=False,
        )
    raise typer.Exit(1 if summary["n_missing"] else 0)


_TRAIN_NEEDS = {
    "trl": ("torch", "transformers", "trl", "datasets", "accelerate"),
    "verl": ("torch", "transformers", "verl", "hydra"),
}


@app.command("train")
def train_cmd(
    data: Annotated[
        list[Path],
        typer.Argument(
            help="SFT files from `ttgen export --format sft --tokenizer T` (parquet or JSONL, "
            "or folders of them): input_ids + loss_mask, or TRL's input_ids + assistant_masks."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Run folder: train.json, train.log, metrics.jsonl, checkpoints/, model/. "
            "Re-run the same command to resume it.",
        ),
    ] = None,
    preset: Annotated[
        str,
        typer.Option(
            help="The recipe: qwen3-8b, qwen3-14b, qwen3-32b (the paper's) or cpu-tiny (a "
            "model built from a config, trained on CPU)."
        ),
    ] = "cpu-tiny",
    backend: Annotated[
        str,
        typer.Option(
            help="trl: TRL's SFTTrainer on this machine (CPU or one GPU); verl: "
            "veRL's SFT trainer (config + launch scripts; runs on this node's GPUs)."
        ),
    ] = "trl",
    model: Annotated[
        str | None,
        typer.Option(
            help="Model to train: Hub id, local folder or init:qwen3-<size> (tiny, "
            "small, 300m); default: the preset's."
        ),
    ] = None,
    tokenizer: Annotated[
        str | None,
        typer.Option(
            help="Tokenizer folder the data was exported with (default: the model's; "
            "for init:... the one the export summary names)."
        ),
    ] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override a recipe value: KEY=VALUE (repeatable), e.g. "
            "learning_rate=1e-5, epochs=1, max_steps=100, global_batch_size=64.",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the plan (examples, tokens, steps, GPU-hours) and write nothing.",
        ),
    ] = False,
    as_json: JsonOut = False,
) -> None:
    """Fine-tune a model on exported SFT rows with the paper's recipe (§5.1): loss on the
    trained tokens of our masks, checkpoints in Hugging Face format, resumable after a kill.

    The plan comes first: examples, tokens (total, trained, after truncation), optimizer
    steps, warmup and a GPU-hours estimate (6·N·D + attention FLOPs over peak x MFU). With
    --backend trl the run trains here and prints progress, then the final loss, tokens/s and
    the model folder (RUN/model). With --backend verl it writes veRL's hydra config and
    single-node, multi-node and Slurm launch scripts into RUN/verl and runs the single-node one
    on this machine's GPUs.
    """
    from importlib.util import find_spec

    from ttgen.train.data import TrainDataError, export_tokenizer, resolve_files
    from ttgen.train.plan import format_plan, make_plan
    from ttgen.train.recipe import RecipeError, parse_sets, resolve

    if backend not in _TRAIN_NEEDS:
        raise _fail(f"--backend {backend!r}: one of {', '.join(_TRAIN_NEEDS)}")
    try:
        overrides: dict[str, Any] = parse_sets(sets)
        if model is not None:
            overrides["model"] = model
        if tokenizer is not None:
            overrides["tokenizer"] = tokenizer
        cfg = resolve(preset, overrides)
        files = resolve_files(data)
        plan = make_plan(files, cfg, cfg.tokenizer or export_tokenizer(files))
    except (RecipeError, TrainDataError) as exc:
        raise _fail(str(exc)) from None
    report: dict[str, Any] = {"config": cfg.to_dict(), "plan": plan.to_dict()}
    if not as_json:
        console.print(format_plan(plan), highlight=False, markup=False, soft_wrap=True)
    if dry_run:
        if as_json:
            sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    if out is None:
        raise _fail("--out RUN is needed to train (or give --dry-run)")
    missing = [m for m in _TRAIN_NEEDS[backend] if find_spec(m) is None]
    if missing:
        raise _fail(
            f"`ttgen train --backend {backend}` needs the train extra ({', '.join(missing)} not "
            "installed): pip install 'terminal-task-gen[train]'"
        )
    from ttgen.train.runfolder import TrainError

    def echo(line: str) -> None:
        if not as_json:
            err_console.print(line, highlight=False, markup=False, soft_wrap=True)

    for sig in (signal.SIGTERM, signal.SIGHUP):  # a stopped run is marked so in train.json
        signal.signal(sig, _exit_on_signal)
    try:
        if backend == "trl":
            from ttgen.train.trl_backend import train_trl

            result = train_trl(out, cfg, files, echo=echo)
        else:
            from ttgen.train.verl_backend import run_verl

            result = run_verl(out, cfg, files, echo=echo)
    except (TrainError, RecipeError, TrainDataError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        sys.stdout.write(json.dumps({**report, "result": result}, indent=2) + "\n")
        return
    if result.get("already_done"):
        console.print(f"{out} is already trained (train.json status done).", highlight=False,
                      markup=False)  # fmt: skip
    if backend == "trl":
        tps = result.get("tokens_per_s")
        console.print(
            f"final loss {result.get('final_loss', float('nan')):.4f} (mean of the last 10 steps "
            f"{result.get('final_loss_mean10', float('nan')):.4f}) after {result.get('steps')} "
            f"steps; {tps:,.0f} tokens/s; model: {result.get('model_dir')}"
            if tps
            else f"{result.get('steps')} steps; model: {result.get('model_dir')}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    else:
        console.print(
            f"veRL finished {result.get('steps')} logged steps; checkpoints (HF copies in "
            f"global_step_N/huggingface): {result.get('checkpoints_dir')}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


@app.command("serve")
def serve_cmd(
    model_dir: Annotated[
        Path,
        typer.Argument(
            metavar="MODEL_DIR",
            help="A model folder in Hugging Face format (config.json, weights, tokenizer), e.g. "
            "the RUN/model of `ttgen train`.",
        ),
    ],
    port: Annotated[
        int | None,
        typer.Option(help="Port to listen on (default: a free one).", show_default=False),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            help="transformers (`transformers serve`, CPU or GPU), vllm (`vllm serve`, GPU), or "
            "auto (vllm when installed and a GPU is present, else transformers)."
        ),
    ] = "auto",
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on. The terminus-2 agent calls the model from the machine "
            "that runs `ttgen eval`/`rollout` (not from the task containers), so 127.0.0.1 "
            "serves a local eval; 0.0.0.0 serves other machines (e.g. Ray nodes)."
        ),
    ] = "127.0.0.1",
    device: Annotated[
        str | None,
        typer.Option(
            help="transformers: cpu, cuda:0, auto (default: cpu without a GPU, else auto).",
            show_default=False,
        ),
    ] = None,
    dtype: Annotated[
        str | None,
        typer.Option(
            help="float32, bfloat16, float16 or auto (default: float32 on CPU, else auto).",
            show_default=False,
        ),
    ] = None,
    max_model_len: Annotated[
        int | None,
        typer.Option(help="vllm: --max-model-len (the context length).", show_default=False),
    ] = None,
    engine_args: Annotated[
        list[str] | None,
        typer.Option(
            "--arg", help="An extra argument for the engine's command line (repeat the option)."
        ),
    ] = None,
    log: Annotated[
        Path | None,
        typer.Option(help="The server's log file (default: a temporary file).", show_default=False),
    ] = None,
    startup_timeout: Annotated[
        float, typer.Option(min=1, help="Seconds to wait for the server to be ready.")
    ] = 600.0,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Do not copy the server's log to stderr.")
    ] = False,
) -> None:
    """Serve a model folder with an OpenAI-compatible API in the foreground until Ctrl-C, and
    print the --model and --base-url to give `ttgen eval` (or `ttgen rollout`)."""
    from ttgen.train.serve import ENGINES, ModelServer, ServerError

    if engine not in ENGINES:
        raise _fail(f"--engine {engine!r}: use one of {', '.join(ENGINES)}")
    try:
        server = ModelServer(
            model_dir, engine, port, host=host, device=device, dtype=dtype,
            max_model_len=max_model_len, extra_args=engine_args or (), log_path=log,
            startup_timeout_sec=startup_timeout,
        )  # fmt: skip
    except ServerError as exc:
        raise _fail(str(exc)) from None
    # A closed terminal (SIGHUP) or a kill (SIGTERM) still stops the server.
    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, _exit_on_signal)
    err_console.print(
        f"starting {server.engine} for {server.folder} ...",
        highlight=False,
        markup=False,
    )
    try:
        server.start()
    except ServerError as exc:
        raise _fail(str(exc)) from None
    code: int | None = None
    try:
        console.print(f"base URL: {server.base_url}", highlight=False, markup=False, soft_wrap=True)
        console.print(f"model:    {server.model}", highlight=False, markup=False, soft_wrap=True)
        console.print(
            f"ttgen eval TASKS -o OUT --model {shlex.quote(server.model)} "
            f"--base-url {server.base_url}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        err_console.print(
            f"serving (log: {server.log_path}); Ctrl-C stops the server",
            highlight=False,
            markup=False,
        )
        offset = server.log_path.stat().st_size if server.log_path else 0
        while code is None:
            code = server.wait(0.5)
            if not quiet and server.log_path is not None:
                offset = _copy_new_bytes(server.log_path, offset)
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C; SIGTERM/SIGHUP (_exit_on_signal)
        pass
    finally:
        server.stop()
    if code is not None:
        raise _fail(f"the server exited with code {code}; log {server.log_path}:\n"
                    f"{server.log_tail()}")  # fmt: skip
    err_console.print("server stopped", highlight=False, markup=False)


def _copy_new_bytes(path: Path, offset: int) -> int:
    """Write what `path` gained after `offset` to stderr; the new offset."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return offset
    if data:
        sys.stderr.buffer.write(data)
        sys.stderr.flush()
    return offset + len(data)


@app.command("run")
def run_cmd(
    pipeline: Annotated[Path, typer.Argument(metavar="PIPELINE.yaml", help="The pipeline file.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run folder (default: the file's `out`).")
    ] = None,
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


@app.command("report")
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


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
