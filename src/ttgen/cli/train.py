"""`ttgen train` (fine-tune on exported SFT rows with the paper's recipe) and `ttgen serve` (a
model folder behind an OpenAI-compatible API)."""

from __future__ import annotations

import json
import shlex
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ttgen.cli.common import _exit_on_signal, _fail, console, err_console
from ttgen.cli.options import JsonOut, out_option

_TRAIN_NEEDS = {
    "trl": ("torch", "transformers", "trl", "datasets", "accelerate"),
    "verl": ("torch", "transformers", "verl", "hydra"),
}


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
        out_option(
            "Run folder: train.json, train.log, metrics.jsonl, checkpoints/, model/. "
            "Re-run the same command to resume it."
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
    _start_server(server, f"starting {server.engine} for {server.folder} ...")
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


def _start_server(server: Any, message: str) -> None:
    """Say `message` and start `server` (a ModelServer), ready; a failure stops the command."""
    from ttgen.train.serve import ServerError

    err_console.print(message, highlight=False, markup=False)
    try:
        server.start()
    except ServerError as exc:
        raise _fail(str(exc)) from None


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
