"""The `ttgen` command line: one sub-command group per stage, kept thin (parse, call, print)."""

from __future__ import annotations

import asyncio
import json
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
from rich.table import Table

from ttgen import __version__
from ttgen.errors import LLMError, TtgenError

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
            f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True
        )
        raise typer.Exit(2) from None


def _fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


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
            table.add_row(r.path, status, reasons[0] if reasons else "")
            for extra in reasons[1:]:
                table.add_row("", "", extra)
            if verbose and r.problems:
                for w in r.warnings:
                    table.add_row("", "[yellow]warning[/]", w)
        console.print(table)
    n_warn = sum(1 for r in results if r.warnings)
    summary = Table.grid(padding=(0, 2))
    summary.add_row("tasks", str(len(results)))
    summary.add_row("valid", f"[green]{len(results) - len(invalid)}[/]")
    summary.add_row("invalid", f"[red]{len(invalid)}[/]" if invalid else "0")
    summary.add_row("with warnings", str(n_warn))
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
    table = Table(title=f"Terminal-Bench 1 → Harbor ({dest})")
    table.add_column("task", overflow="fold")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    for item in report:
        colour = {"converted": "green", "skipped": "yellow"}.get(item.status, "red")
        table.add_row(item.name, f"[{colour}]{item.status}[/]", item.detail)
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
                console.print(f"{tag} already exists (use --force to rebuild)")
                return
            with console.status(f"debootstrap {suite} → {tag} ...") as status:
                result = await bootstrap_base_image(
                    backend.docker,
                    tag=tag,
                    suite=suite,
                    mirror=mirror,
                    extra_packages=tuple(package),
                    on_line=lambda line: status.update(f"debootstrap: {line[:100]}"),
                )
            console.print(
                f"[green]built[/] {result.tag} ({result.image_id[:19]}) in {result.seconds:.0f} s"
            )

    _run(go())


@images_app.command("build")
def images_build(
    paths: Annotated[list[Path], typer.Argument(help="Tasks or folders of tasks.")],
    force_build: ForceBuild = False,
    concurrency: Annotated[int, typer.Option("-n", "--concurrency", help="Builds at once.")] = 2,
) -> None:
    """Build the environment images of tasks (each distinct environment once)."""
    from ttgen.sandbox.docker import DockerBackend
    from ttgen.task import Task, find_tasks

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
                        return True, (task.name, ref.tag, ref.source, f"{ref.seconds:.1f}", "")
                    except TtgenError as exc:
                        return False, (path.name, "", "[red]failed[/]", "", str(exc))

            with console.status("building images ..."):
                rows = await asyncio.gather(*(one(p) for p in find_tasks(paths)))
        for ok, row in rows:
            failures += not ok
            table.add_row(*row)
        console.print(table)
        return failures

    raise typer.Exit(1 if _run(go()) else 0)


@images_app.command("aliases")
def images_aliases() -> None:
    """Show the image aliases and CA bundle in effect, and where they come from."""
    from ttgen.config import load_settings

    try:
        settings = load_settings()
    except TtgenError as exc:
        raise _fail(str(exc)) from None
    table = Table(title="Image aliases (first match wins)")
    table.add_column("pattern")
    table.add_column("image")
    table.add_column("from", overflow="fold")
    for a in settings.aliases:
        table.add_row(a.pattern, a.image, a.source)
    console.print(table)
    console.print(f"extra CA bundle: {settings.extra_ca_cert or 'none'}")
    console.print(f"config sources: {', '.join(settings.sources) or 'defaults only'}")


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
    console.print(f"[dim]container {name}; exit the shell to remove it[/]")
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
        console.print(f"removed container {name}")
    for name in removed["networks"]:
        console.print(f"removed network {name}")
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
                r.task,
                "[green]ok[/]" if r.check_ok else "[red]invalid[/]",
                f"{r.image_source or '-'}",
                f"{r.build_sec:.1f}" if r.build_sec is not None else "-",
                f"{r.start_to_exec_ms:.0f}" if r.start_to_exec_ms is not None else "-",
                "-" if r.exit_code is None else str(r.exit_code),
                r.error or r.output_head,
            )
        console.print(table)
        ok = sum(r.ok for r in rows)
        console.print(f"{ok}/{len(rows)} tasks passed the smoke test")
    raise typer.Exit(0 if all(r.ok for r in rows) else 1)


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
):  # -> JobOptions
    from ttgen.rollout.job import JobOptions
    from ttgen.rollout.trial import TimeoutPolicy

    return JobOptions(
        n_concurrent=concurrency,
        retries=retries,
        rerun_errors=not keep_errors,
        timeouts=TimeoutPolicy(
            multiplier=timeout_multiplier,
            build_multiplier=build_timeout_multiplier,
            agent_setup_multiplier=agent_setup_timeout_multiplier,
            agent_multiplier=agent_timeout_multiplier,
            verifier_multiplier=verifier_timeout_multiplier,
            agent_override_sec=agent_timeout,
            verifier_override_sec=verifier_timeout,
        ),
        force_build=force_build,
        verifier_env=_kv(verifier_env, "--ve", parse_json=False),
    )


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
        "-" if mr is None else f"{mr:.3f} over {stats['n_completed_trials']} scored trials",
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


def _preflight(agent_obj: Any, name: str) -> None:
    """The agent's one check before the job (its endpoint answers the request trials will
    send); a failure stops here, with nothing started."""
    err_console.print(f"checking {name}'s model endpoint ...", highlight=False)
    try:
        line = asyncio.run(agent_obj.preflight())
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
            f"{name}: the model endpoint failed a test request, so no trial was started: "
            f"{str(exc).rstrip('.')}.{hint} (--no-preflight skips this check.)"
        ) from None
    err_console.print(f"ok: {line}", highlight=False)


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
    as_json: JsonOut = False,
) -> None:
    """Run an agent on tasks: tasks x attempts trials, concurrently, into a resumable job folder.

    Each trial gets a fresh container, the agent, then the verifier (tests are copied in only
    after the agent finished). Re-running the same command resumes: finished trials are kept,
    unfinished ones and infrastructure errors are redone, leftover containers removed.
    Exits 1 when trials still end in an infrastructure error, 0 otherwise.
    """
    from ttgen.agents import create_agent
    from ttgen.rollout.job import Job, load_tasks, rollout_specs
    from ttgen.rollout.models import AgentSpec
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
        _preflight(probe, agent)
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
    )
    tasks, bad = load_tasks(found)
    for b in bad:
        err_console.print(f"[yellow]skipped[/] {b['file']}: {b['problem']}", highlight=False)
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
        console.print(_stats_table(stats, f"rollout: {out}"))
        if result["removed_containers"]:
            console.print(
                f"removed {len(result['removed_containers'])} container(s) left by an earlier run"
            )
        console.print(f"job folder: {out}  (result.json, trials.jsonl, one folder per trial)")
    raise typer.Exit(1 if stats["n_errored_trials"] or stats["n_cancelled_trials"] else 0)


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
        bool, typer.Option(help="Exit 1 unless every task is valid or no_solution.")
    ] = False,
    as_json: JsonOut = False,
) -> None:
    """Validate tasks: the oracle (solution/solve.sh) must score 1 and the nop agent 0.

    Verdicts: valid, no_solution, trivial, oracle_failed, verifier_broken, build_failed,
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
    )

    async def go(progress):
        return await validate_tasks(found, out, options, events=progress)

    verdicts, _ = _run_job(go, as_json, "validate")
    kept = keep_tasks(verdicts, keep_set, keep_dir or out / "kept") if keep_set else []
    if as_json:
        for v in verdicts:
            sys.stdout.write(json.dumps(v.to_dict()) + "\n")
    else:
        table = Table(title=f"validation: {out}")
        for col in ("task", "verdict", "oracle", "nop", "reasons"):
            table.add_column(col, overflow="fold")
        colors = {"valid": "green", "no_solution": "cyan"}
        for v in verdicts:
            fmt = lambda r: "-" if r is None else f"{r:g}"  # noqa: E731
            color = colors.get(v.verdict, "red")
            table.add_row(
                v.task,
                f"[{color}]{v.verdict}[/]",
                fmt(v.rewards.get("oracle")) if "oracle" in v.rewards else "n/a",
                fmt(v.rewards.get("nop")),
                "; ".join(v.reasons),
            )
        console.print(table)
        counts = summarize(verdicts)
        console.print(
            ", ".join(f"{k} {n}" for k, n in counts.items()) + f"  ({len(verdicts)} tasks)"
        )
        console.print(f"verdicts: {out / 'validation.jsonl'}")
        if keep_set:
            console.print(f"kept {len(kept)} task(s) in {keep_dir or out / 'kept'}")
    bad = [v for v in verdicts if v.verdict not in GOOD_VERDICTS]
    infra = [v for v in verdicts if v.verdict == "infra_error"]
    raise typer.Exit(1 if infra or (strict and bad) else 0)


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
