"""`ttgen train --dry-run`: what a run would do, from the data's counts; writes nothing.

`make_plan` reads the data's count columns (`ttgen.train.data.scan`: the token columns are read
only where counts are missing or rows exceed the maximum length) and works out:

* examples, tokens (total and trained), tokens after truncation at ``max_length``;
* optimizer steps = ceil(examples / global batch) x epochs (capped by ``max_steps``), the
  rule of the TRL backend (transformers' Trainer keeps the last partial batch); veRL drops the
  last partial batch of each epoch: floor(examples / global batch) x epochs, shown beside it;
* warmup steps = ceil(warmup_ratio x steps) (transformers); veRL takes int(ratio x steps);
* a GPU-hours estimate:

      FLOPs     = 6·N·D + 6·L·d·Σn² · epochs
      GPU-hours = FLOPs / (peak x MFU) / 3600,  wall-clock hours = GPU-hours / GPUs

  N = parameters, D = tokens processed = tokens after truncation x epochs (every token costs a
  forward and a backward pass, trained or not: the mask only selects the loss terms), 6·N·D
  the dense matmuls (2·N forward + 4·N backward per token); the second term is causal
  attention's scores and weighted sum (forward 2·L·d·n² for a sequence of n tokens, L layers,
  d = heads x head dim; x3 with the backward), from the per-example lengths. Peak = dense
  bf16 FLOP/s of one GPU (H100/H200 SXM: 989 TFLOP/s), MFU = the fraction of it reached
  (assumed 0.35 with CPU offload and sequence parallelism; recomputation for gradient
  checkpointing is not counted as useful FLOPs, so MFU absorbs it). Parameter counts: Qwen3-8B
  8.2B, 14B 14.8B, 32B 32.8B (L, d: 36/4096, 40/5120, 64/8192); a local model's from its
  config.json; ``--set n_params=...`` overrides N.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ttgen.train.data import DataScan, scan
from ttgen.train.recipe import TrainConfig, describe

# parameters, layers, attention width (heads x head_dim)
KNOWN_MODELS: dict[str, tuple[float, int, int]] = {
    "qwen3-8b": (8.2e9, 36, 4096),
    "qwen3-14b": (14.8e9, 40, 5120),
    "qwen3-32b": (32.8e9, 64, 8192),
}


@dataclass
class ModelShape:
    n_params: float
    layers: int | None
    attn_dim: int | None
    source: str  # where the figures come from


def count_params(config: dict[str, Any]) -> float:
    """Parameters of a Qwen3/Llama-style decoder from its config.json values."""
    h = int(config["hidden_size"])
    layers = int(config["num_hidden_layers"])
    heads = int(config["num_attention_heads"])
    kv = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or h // heads)
    inter = int(config["intermediate_size"])
    vocab = int(config["vocab_size"])
    attn = h * heads * head_dim * 2 + h * kv * head_dim * 2  # q, o; k, v
    if config.get("attention_bias"):
        attn += heads * head_dim + 2 * kv * head_dim + h
    qk_norm = 2 * head_dim if config.get("model_type") == "qwen3" else 0
    per_layer = attn + 3 * h * inter + 2 * h + qk_norm
    embed = vocab * h * (1 if config.get("tie_word_embeddings") else 2)
    return float(layers * per_layer + embed + h)


def _attn_dim(config: dict[str, Any]) -> int:
    heads = int(config["num_attention_heads"])
    return heads * int(config.get("head_dim") or int(config["hidden_size"]) // heads)


def model_shape(cfg: TrainConfig, tokenizer: str | None = None) -> ModelShape | None:
    """N, L and d for the estimate, or None when nothing tells them (set ``n_params``)."""
    from ttgen.train.tiny import INIT_PREFIX, SIZES, _tokenizer_specials

    shape: ModelShape | None = None
    name = cfg.model.rstrip("/").rsplit("/", 1)[-1].lower()
    folder = Path(cfg.model).expanduser()
    if cfg.model.startswith(INIT_PREFIX) and cfg.model[len(INIT_PREFIX) :] in SIZES:
        size = SIZES[cfg.model[len(INIT_PREFIX) :]]
        vocab = 0
        if tokenizer and (Path(tokenizer) / "tokenizer.json").is_file():
            vocab = _tokenizer_specials(Path(tokenizer))["vocab_size"]
        conf = {**asdict(size), "vocab_size": vocab, "tie_word_embeddings": True,
                "model_type": "qwen3"}  # fmt: skip
        source = f"{cfg.model}, vocabulary {vocab}" if vocab else f"{cfg.model} without embeddings"
        shape = ModelShape(count_params(conf), size.num_hidden_layers, _attn_dim(conf), source)
    elif (folder / "config.json").is_file():
        try:
            conf = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            conf = conf.get("text_config", conf)
            shape = ModelShape(count_params(conf), int(conf["num_hidden_layers"]),
                               _attn_dim(conf), f"{folder}/config.json")  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError):
            shape = None
    elif name in KNOWN_MODELS:
        n, layers, d = KNOWN_MODELS[name]
        shape = ModelShape(n, layers, d, f"{cfg.model} (published size)")
    if cfg.n_params is not None:
        layers, d = (shape.layers, shape.attn_dim) if shape else (None, None)
        shape = ModelShape(float(cfg.n_params), layers, d, "n_params (set)")
    return shape


@dataclass
class Plan:
    config: TrainConfig
    data: DataScan
    examples: int  # rows with a trained token after truncation
    steps_per_epoch: int
    steps: int
    warmup_steps: int
    verl_steps: int
    verl_warmup_steps: int
    grad_accum_trl: int  # one process: global batch / micro-batch
    grad_accum_verl: int  # per data-parallel rank
    tokens_processed: float  # D
    shape: ModelShape | None
    flops_dense: float | None
    flops_attn: float | None
    gpu_hours: float | None
    wall_hours: float | None

    def to_dict(self) -> dict[str, Any]:
        d = self.data
        return {
            "examples": d.examples,
            "examples_trained": self.examples,
            "examples_truncated": d.truncated_examples,
            "examples_without_trained_tokens": d.no_trained_examples,
            "tokens": d.tokens,
            "trained_tokens": d.trained_tokens,
            "tokens_before_export_truncation": d.tokens_full,
            "tokens_after_truncation": d.tokens_truncated,
            "trained_tokens_after_truncation": d.trained_tokens_truncated,
            "steps_per_epoch": self.steps_per_epoch,
            "optimizer_steps": self.steps,
            "warmup_steps": self.warmup_steps,
            "verl_optimizer_steps": self.verl_steps,
            "verl_warmup_steps": self.verl_warmup_steps,
            "tokens_processed": self.tokens_processed,
            "n_params": self.shape.n_params if self.shape else None,
            "flops": (self.flops_dense or 0) + (self.flops_attn or 0) if self.shape else None,
            "gpu_hours": self.gpu_hours,
            "wall_hours": self.wall_hours,
            "files": [f.__dict__ for f in d.files],
        }


def make_plan(paths: list[Path | str], cfg: TrainConfig, tokenizer: str | None = None) -> Plan:
    data = scan(paths, cfg.max_length)
    examples = data.examples - data.no_trained_examples
    per_epoch = math.ceil(examples / cfg.global_batch_size)
    steps = per_epoch * cfg.epochs
    if cfg.max_steps > 0:
        steps = min(steps, cfg.max_steps)
    verl_steps = (examples // cfg.global_batch_size) * cfg.epochs
    if cfg.max_steps > 0:
        verl_steps = min(verl_steps, cfg.max_steps)
    warmup = math.ceil(cfg.warmup_ratio * steps)
    verl_warmup = int(cfg.warmup_ratio * verl_steps)
    # the share of the epochs a max_steps cap leaves
    share = steps / (per_epoch * cfg.epochs) if per_epoch else 0.0
    epochs_done = cfg.epochs * share
    d_tokens = data.tokens_truncated * epochs_done
    shape = model_shape(cfg, tokenizer)
    dense = attn = hours = wall = None
    if shape is not None:
        dense = 6.0 * shape.n_params * d_tokens
        attn = 0.0
        if shape.layers and shape.attn_dim:
            attn = 6.0 * shape.layers * shape.attn_dim * data.sum_sq_tokens_truncated * epochs_done
        hours = (dense + attn) / (cfg.peak_tflops * 1e12 * cfg.mfu) / 3600.0
        wall = hours / cfg.n_gpus
    return Plan(
        config=cfg, data=data, examples=examples, steps_per_epoch=per_epoch, steps=steps,
        warmup_steps=warmup, verl_steps=verl_steps, verl_warmup_steps=verl_warmup,
        grad_accum_trl=cfg.global_batch_size // cfg.micro_batch_size,
        grad_accum_verl=cfg.global_batch_size // (cfg.data_parallel_size * cfg.micro_batch_size),
        tokens_processed=d_tokens, shape=shape, flops_dense=dense, flops_attn=attn,
        gpu_hours=hours, wall_hours=wall,
    )  # fmt: skip


def _n(x: float | int) -> str:
    return f"{x:,.0f}"


def _h(x: float) -> str:
    return f"{x:,.1f}" if x >= 10 else f"{x:.3g}"


def _e(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.3e}".replace("e+", "e")


FORMULA = (
    "FLOPs = 6·N·D + 6·L·d·Σn²·epochs;  GPU-hours = FLOPs / (peak x MFU) / 3600;  "
    "wall-clock hours = GPU-hours / GPUs"
)


def format_plan(plan: Plan) -> str:
    """The plan as text lines (what `ttgen train --dry-run` prints)."""
    cfg, d = plan.config, plan.data
    lines = ["config"] + [f"  {x}" for x in describe(cfg)]
    lines.append(f"data: {len(d.files)} file(s)")
    for f in d.files:
        lines.append(f"  {f.path}: {_n(f.rows)} rows, {_n(f.tokens)} tokens ({f.mask_column})")
    extra = []
    if d.truncated_examples:
        extra.append(f"{_n(d.truncated_examples)} longer than {_n(cfg.max_length)}: truncated")
    if d.no_trained_examples:
        extra.append(f"{_n(d.no_trained_examples)} without a trained token: skipped")
    lines.append(f"examples: {_n(d.examples)}" + (f" ({'; '.join(extra)})" if extra else ""))
    full = f" ({_n(d.tokens_full)} before the export's truncation)" if d.tokens_full else ""
    lines.append(f"tokens: {_n(d.tokens)} total, {_n(d.trained_tokens)} trained{full}")
    lines.append(
        f"after truncation at {_n(cfg.max_length)}: {_n(d.tokens_truncated)} tokens, "
        f"{_n(d.trained_tokens_truncated)} trained"
    )
    cap = f", capped by max_steps={cfg.max_steps}" if cfg.max_steps > 0 else ""
    lines.append(
        f"optimizer steps: {_n(plan.steps)} = ceil({_n(plan.examples)} / "
        f"{cfg.global_batch_size}) x {cfg.epochs} epoch(s){cap}  (veRL drops each epoch's "
        f"last partial batch: {_n(plan.verl_steps)})"
    )
    if plan.examples < cfg.global_batch_size:
        lines.append(
            f"  note: fewer examples than one global batch ({cfg.global_batch_size}): veRL would "
            "train no step; lower global_batch_size"
        )
    lines.append(
        f"warmup steps: {_n(plan.warmup_steps)} = ceil({cfg.warmup_ratio:g} x {plan.steps})  "
        f"(veRL: int({cfg.warmup_ratio:g} x {plan.verl_steps}) = {plan.verl_warmup_steps})"
    )
    lines.append(
        f"gradient accumulation: {plan.grad_accum_verl} micro-batches per step per data-parallel "
        f"rank on {cfg.n_gpus} GPU(s) (veRL, {cfg.data_parallel_size} rank(s)); "
        f"{plan.grad_accum_trl} in the TRL backend's one process"
    )
    lines.append(f"GPU-hours estimate: {FORMULA}")
    if plan.shape is None or plan.gpu_hours is None:
        lines.append(
            f"  N unknown for {cfg.model}: give --set n_params=<parameters> (or a local model "
            "folder with config.json)"
        )
    else:
        s = plan.shape
        lines.append(f"  N = {_e(s.n_params)} parameters ({s.source})")
        lines.append(
            f"  D = {_e(plan.tokens_processed)} tokens processed (tokens after truncation x "
            f"{plan.steps / max(plan.steps_per_epoch, 1):g} epoch(s); masked tokens cost the "
            "same forward/backward)"
        )
        if s.layers and s.attn_dim:
            lines.append(
                f"  L = {s.layers} layers, d = {s.attn_dim}, Σn² = {_e(d.sum_sq_tokens_truncated)}"
                " (per-example lengths after truncation)"
            )
        else:
            lines.append("  attention term left out (layers/width unknown)")
        total = (plan.flops_dense or 0) + (plan.flops_attn or 0)
        lines.append(
            f"  FLOPs = {_e(plan.flops_dense or 0)} + {_e(plan.flops_attn or 0)} = {_e(total)}"
        )
        lines.append(
            f"  GPU-hours = {_e(total)} / ({cfg.peak_tflops:g} TFLOP/s x MFU {cfg.mfu:g}) / 3600"
            f" = {_h(plan.gpu_hours)} GPU-h; {_h(plan.wall_hours or 0)} h on {cfg.n_gpus} GPU(s)"
        )
        lines.append(
            "  assumptions: peak = dense bf16 of one H100/H200 SXM (set peak_tflops), MFU "
            "assumed (set mfu; CPU offload and sequence parallelism lower it), recomputation "
            "not counted, no packing (one example per sequence)"
        )
    return "\n".join(lines)
