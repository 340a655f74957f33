"""The `ttgen` command line: one sub-command group per stage, kept thin (parse, call, print).

One module per group of commands (tasks, images, env, synth, jobs, eval, data, export, train,
pipeline); `common` holds what they share (consoles, errors, progress, preflight) and `options`
the options several commands take, declared once."""

from __future__ import annotations

from typing import Annotated

import typer

from ttgen import __version__
from ttgen.cli import data, env, evaluation, export, images, jobs, pipeline, synth, tasks, train
from ttgen.cli.common import _run, _Ticker, console

__all__ = ["_Ticker", "_run", "app", "main"]  # _Ticker, _run: for the tests

app = typer.Typer(
    name="ttgen",
    help="ttgen: Terminal-Task-Gen. Make, validate and run terminal tasks to produce agent training data.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
app.add_typer(tasks.tasks_app, name="tasks")
app.add_typer(images.images_app, name="images")
app.add_typer(env.env_app, name="env")
for _name, _command in (
    ("adapt", tasks.adapt_cmd),
    ("rollout", jobs.rollout),
    ("validate", jobs.validate),
):
    app.command(_name)(_command)
app.add_typer(synth.synth_app, name="synth")
for _name, _command in (
    ("curate", data.curate_cmd),
    ("export", export.export_cmd),
    ("stats", data.stats_cmd),
    ("eval", evaluation.eval_cmd),
    ("train", train.train_cmd),
    ("serve", train.serve_cmd),
    ("run", pipeline.run_cmd),
    ("report", pipeline.report_cmd),
):
    app.command(_name)(_command)


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


def main() -> None:
    app()
