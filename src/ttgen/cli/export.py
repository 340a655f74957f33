"""`ttgen export`: curated records as Terminal-Corpus rows, Harbor-style rows or SFT rows for a
trainer (one file, a curriculum, or scaling subsets)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ttgen.cli.common import _fail, _kv, _Ticker, console, err_console
from ttgen.cli.options import JsonOut, out_option


def export_cmd(
    data: Annotated[
        list[Path],
        typer.Argument(metavar="DATA...", help="Curated folders (or their records.jsonl)."),
    ],
    out: Annotated[Path, out_option("Output file: .parquet, .jsonl or .jsonl.gz.")],
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
                say(
                    "train files: "
                    + ", ".join(f"{k}={v}" for k, v in trainer["train_files"].items())
                )
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
