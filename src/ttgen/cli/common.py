"""What every command module shares: the consoles, error exits, KEY=VALUE parsing, the
progress of long steps, the model endpoint's preflight check and running a job."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ttgen.errors import ConfigError, LLMError, TtgenError

T = TypeVar("T")

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


def _find_tasks(paths: list[Path]) -> list[Path]:
    """The task directories under `paths`; a bad path stops the command (exit 2)."""
    from ttgen.task import find_tasks

    try:
        return find_tasks(paths)
    except TtgenError as exc:
        raise _fail(str(exc)) from None


def _load_task(path: Path):  # -> Task
    from ttgen.task import Task

    try:
        return Task.load(path)
    except TtgenError as exc:
        raise _fail(str(exc)) from None


def _check_executor(executor: str, address: str | None, per_node: int | None) -> None:
    from ttgen.rollout.job import check_executor

    try:
        check_executor(executor, address, per_node)
    except ConfigError as exc:
        raise _fail(str(exc)) from None


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


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


def _run_resumable(progress: Any, go: Callable[[Any], Coroutine[Any, Any, T]], kept: str) -> T:
    """Run `go(progress)` inside `progress` (a context manager); an interrupt says what `kept`
    (what a re-run resumes from) and exits 130 (Ctrl-C) or 143 (SIGTERM)."""
    try:
        with progress:
            return _run(go(progress))
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:
        # Ctrl-C arrives as KeyboardInterrupt, SIGTERM (cluster schedulers) as a cancellation.
        err_console.print(f"[yellow]interrupted[/]: {kept}; run the same command again to resume.")
        raise typer.Exit(130 if isinstance(exc, KeyboardInterrupt) else 143) from None


def _run_job(coro_factory, as_json: bool, label: str):  # -> (result, JobProgress)
    from ttgen.rollout.progress import JobProgress

    progress = JobProgress(console, label, quiet=as_json)
    kept = "finished trials are kept and containers removed"
    return _run_resumable(progress, coro_factory, kept), progress


def _open_backend(name: str | None):  # -> SandboxBackend
    """The sandbox backend `name` (--backend; None: the configured one); a bad name or an engine
    that does not answer stops the command (exit 2) saying what to do."""
    from ttgen.errors import ConfigError
    from ttgen.sandbox import open_backend

    try:
        return open_backend(name)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
