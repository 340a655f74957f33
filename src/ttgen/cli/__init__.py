"""The `ttgen` command line: one sub-command group per stage, kept thin (parse, call, print).

One module per group of commands (tasks, images, env, synth, jobs, eval, data, export, train,
pipeline); `common` holds what they share (consoles, errors, progress, preflight) and `options`
the options several commands take, declared once.

`ttgen NAME ...` imports only the module of command NAME (a whole process of `ttgen rollout`
does not pay for the code of `train`, `synth` or `report`); `ttgen --help`, a name that is not
a command and `from ttgen.cli import app` get every command."""

from __future__ import annotations

import gc
import sys
from importlib import import_module
from typing import Annotated, Any

import typer

from ttgen import __version__

__all__ = ["COMMANDS", "_Ticker", "_run", "app", "build_app", "main"]  # _Ticker, _run: tests

# name -> (module under ttgen.cli, attribute, is a group of sub-commands); in `--help`'s order
COMMANDS: dict[str, tuple[str, str, bool]] = {
    "tasks": ("tasks", "tasks_app", True),
    "images": ("images", "images_app", True),
    "env": ("env", "env_app", True),
    "adapt": ("tasks", "adapt_cmd", False),
    "rollout": ("jobs", "rollout", False),
    "validate": ("jobs", "validate", False),
    "synth": ("synth", "synth_app", True),
    "curate": ("data", "curate_cmd", False),
    "export": ("export", "export_cmd", False),
    "stats": ("data", "stats_cmd", False),
    "eval": ("evaluation", "eval_cmd", False),
    "train": ("train", "train_cmd", False),
    "serve": ("train", "serve_cmd", False),
    "run": ("pipeline", "run_cmd", False),
    "report": ("pipeline", "report_cmd", False),
}


def _version(value: bool) -> None:
    if value:
        from ttgen.cli.common import console

        console.print(f"ttgen {__version__}")
        raise typer.Exit()


def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """ttgen: Terminal-Task-Gen."""


def build_app(names: list[str] | None = None) -> typer.Typer:
    """The `ttgen` app with the commands `names` (all of them when None), importing only
    their modules."""
    cli = typer.Typer(
        name="ttgen",
        help="ttgen: Terminal-Task-Gen. Make, validate and run terminal tasks to produce agent "
        "training data.",
        no_args_is_help=True,
        rich_markup_mode="rich",
        pretty_exceptions_enable=False,
    )
    cli.callback()(_main)
    for name, (module, attribute, group) in COMMANDS.items():
        if names is not None and name not in names:
            continue
        target = getattr(import_module(f"ttgen.cli.{module}"), attribute)
        if group:
            cli.add_typer(target, name=name)
        else:
            cli.command(name)(target)
    return cli


def _command_named(argv: list[str]) -> str | None:
    """The command `argv` names, when it names one: the first word that is not an option (the
    top-level options take no value)."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
        if word == "--":
            return None
    return None


def main() -> None:
    """The `ttgen` process. What importing the command's modules made lives as long as the
    process, so it is frozen out of the cyclic garbage collector (later collections, also in a
    long job, no longer walk it: ~25 ms less in a one-trial rollout), and so is everything at the
    end: the interpreter's exit then skips its last walk over every object (~50 ms)."""
    argv = sys.argv[1:]
    name = _command_named(argv)
    app = build_app([] if name is None and argv[:1] == ["--version"] else
                    [name] if name else None)  # fmt: skip
    gc.freeze()
    try:
        app()
    finally:
        gc.freeze()  # the process ends here: nothing left needs collecting


_full_app: typer.Typer | None = None


def __getattr__(name: str) -> Any:
    global _full_app
    if name == "app":
        if _full_app is None:
            _full_app = build_app()
        return _full_app
    if name in ("_Ticker", "_run", "console"):
        return getattr(import_module("ttgen.cli.common"), name)
    raise AttributeError(f"module 'ttgen.cli' has no attribute {name!r}")
