"""The train stage: `ttgen train` on the export's SFT files into RUN/train/ (needs the train
extra). The TRL backend trains here and resumes an interrupted run; a RUN/train/ made with other
settings or data is set aside as train.<time>/. The veRL backend writes its config and launch
scripts for a GPU cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ttgen.errors import TtgenError
from ttgen.pipeline.config import PipelineConfig
from ttgen.pipeline.stages import Context, PipelineError, StageResult
from ttgen.train.data import fingerprint
from ttgen.train.recipe import resolve
from ttgen.train.runfolder import MANIFEST as TRAIN_MANIFEST
from ttgen.train.runfolder import identity
from ttgen.train.verl_backend import write_verl


def run(ctx: Context) -> StageResult:
    c = ctx.config.train
    assert c is not None  # (the stage is off without the section)
    try:  # the one import that needs the train extra (torch, transformers, TRL)
        from ttgen.train.trl_backend import train_trl
    except ImportError as exc:
        raise PipelineError(f"train: needs the train extra ({exc}); install it with "
                            "pip install 'terminal-task-gen[train]'") from None  # fmt: skip
    files = _sft_files(ctx.config, ctx.run)
    if not files:
        raise PipelineError("train: the export stage wrote no SFT file (export.sft)")
    overrides = dict(c.set)
    if c.model is not None:
        overrides["model"] = c.model
    try:
        cfg = resolve(c.preset, overrides)
    except TtgenError as exc:
        raise PipelineError(f"train: {exc}") from None
    if c.backend == "verl":
        written = write_verl(ctx.run / "train", cfg, files, cfg.model, cfg.tokenizer)
        return StageResult("done", {"train": "train"}, {"backend": "verl"},
                           f"veRL config and launch scripts written to {written.folder}; "
                           "run them on a GPU cluster")  # fmt: skip
    _set_aside_other_training(ctx, cfg, files)
    result = train_trl(ctx.run / "train", cfg, files, echo=ctx.log)
    counts = {k: result.get(k) for k in ("steps", "first_loss_mean10", "final_loss_mean10",
                                         "trained_tokens", "tokens_per_s")}  # fmt: skip
    counts = {k: round(v, 4) if isinstance(v, float) else v for k, v in counts.items()}
    return StageResult("done", {"train": "train", "model": "train/model"},
                       {k: v for k, v in counts.items() if v is not None})  # fmt: skip


def _sft_files(config: PipelineConfig, run: Path) -> list[Path]:
    """The SFT files the export stage wrote (a mix writes one file per stage/fraction)."""
    sft = config.export.sft
    summary = run / "export" / f"{sft.file}.export.json" if sft else None
    files: list[Path] = []
    if summary is not None and summary.is_file():
        outputs = json.loads(summary.read_text(encoding="utf-8")).get("outputs") or {}
        files = [Path(str(o.get("path") or name)) for name, o in outputs.items()]
        files = [f if f.is_absolute() else run / "export" / f.name for f in files]
    if not files and sft is not None:
        files = [run / "export" / sft.file]
    return [f for f in files if f.is_file()]


def _set_aside_other_training(ctx: Context, cfg: Any, files: list[Path]) -> None:
    """A train folder made with other settings or data (the file or the export changed) is
    set aside, not deleted, and training starts afresh; one made with the same ones (an
    interrupted run) is resumed. (The train folder's own identity decides, not the stage
    fingerprint: an export that changed nothing the trainer reads keeps the model.)"""
    try:
        old = json.loads((ctx.run / "train" / TRAIN_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if old.get("identity") == identity(cfg, "trl", fingerprint(files)):
        return
    ctx.set_aside("train", "settings or data changed", "the earlier training")
