"""The paper's SFT recipe as named presets, and the validated config every backend reads.

The paper (§5.1) trains Qwen3-8B/14B/32B with veRL: learning rate 2e-5, weight decay 1e-4,
2 epochs, at most 32,768 tokens per sequence, global batch 128, micro-batch 1 per GPU, AdamW
betas (0.9, 0.95), a cosine schedule with 10% warmup, gradient clipping 1.0, Ulysses sequence
parallelism 2 and CPU offload of parameters and optimizer state; 4 nodes x 8 GPUs for 8B and
14B, 16 nodes x 8 for 32B. `PRESETS` holds those three and ``cpu-tiny``: a model built from a
config (``init:qwen3-tiny``, `ttgen.train.tiny`) trained on one CPU, with a learning rate at
which a random tiny model's loss falls within a few hundred steps.

`TrainConfig` is a flat dataclass; `resolve` starts from a preset and applies overrides
(``--set key=value`` text or typed values), then `TrainConfig.validate` checks every value and
the batch arithmetic, raising `RecipeError` naming the key and the value.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any

from ttgen.errors import TtgenError


class RecipeError(TtgenError, ValueError):
    """A training config value is invalid (the message names the key and the value)."""


SCHEDULERS = ("cosine", "constant")
DTYPES = ("bfloat16", "float32")
TRUNCATIONS = ("right", "error")  # right: keep the first max_length tokens (veRL's name)


@dataclass
class TrainConfig:
    """One training run's settings (every field can be overridden with ``--set key=value``)."""

    preset: str = "qwen3-8b"
    # what is trained: a Hub id, a local Hugging Face folder, or init:qwen3-<size> (built here)
    model: str = "Qwen/Qwen3-8B"
    # the tokenizer folder; None: the model's (for init:..., the data's export tokenizer)
    tokenizer: str | None = None
    # optimisation
    learning_rate: float = 2e-5
    weight_decay: float = 1e-4
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    epochs: int = 2
    max_steps: int = -1  # > 0: stop after this many optimizer steps (the schedule spans them)
    # batches and sequences
    global_batch_size: int = 128
    micro_batch_size: int = 1  # per GPU (per process)
    max_length: int = 32768
    truncation: str = "right"
    # parallelism and memory (veRL; the TRL backend runs one process and records these only)
    sequence_parallel_size: int = 2
    param_offload: bool = True
    optimizer_offload: bool = True
    gradient_checkpointing: bool = True
    dtype: str = "bfloat16"  # mixed-precision compute dtype; master weights stay float32
    nnodes: int = 4
    gpus_per_node: int = 8
    # reproducibility, checkpoints, progress
    seed: int = 0
    save_steps: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    # the GPU-hours estimate of the plan (never changes training)
    n_params: float | None = None  # None: known ids, local config.json or init:qwen3-<size>
    peak_tflops: float = 989.0  # H100/H200 SXM dense bf16
    mfu: float = 0.35

    # Keys that change neither the trained weights nor the data order: a run folder made with
    # other values of these resumes all the same.
    NON_SEMANTIC: typing.ClassVar[tuple[str, ...]] = (
        "log_every", "keep_checkpoints", "save_steps", "n_params", "peak_tflops", "mfu",
    )  # fmt: skip

    @property
    def n_gpus(self) -> int:
        return self.nnodes * self.gpus_per_node

    @property
    def data_parallel_size(self) -> int:
        """veRL's data-parallel size: the GPUs over the sequence-parallel group size."""
        return self.n_gpus // self.sequence_parallel_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def semantic(self) -> dict[str, Any]:
        """The values a resumed run must share with the run folder it continues."""
        return {k: v for k, v in self.to_dict().items() if k not in self.NON_SEMANTIC}

    def validate(self) -> TrainConfig:
        """Check every value; raises `RecipeError` naming the key and the value."""

        def bad(key: str, why: str) -> RecipeError:
            return RecipeError(f"train config {key}={getattr(self, key)!r}: {why}")

        if not isinstance(self.model, str) or not self.model.strip():
            raise bad("model", "a Hub id, a model folder or init:qwen3-<size> is needed")
        for key in ("learning_rate", "max_grad_norm", "peak_tflops"):
            if not math.isfinite(getattr(self, key)) or getattr(self, key) <= 0:
                raise bad(key, "must be a number > 0")
        if not math.isfinite(self.weight_decay) or self.weight_decay < 0:
            raise bad("weight_decay", "must be >= 0")
        for key in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, key) < 1:
                raise bad(key, "must be in [0, 1)")
        if not 0 <= self.warmup_ratio < 1:
            raise bad("warmup_ratio", "must be in [0, 1)")
        if not 0 < self.mfu <= 1:
            raise bad("mfu", "must be in (0, 1]")
        if self.lr_scheduler not in SCHEDULERS:
            raise bad("lr_scheduler", f"one of {', '.join(SCHEDULERS)}")
        if self.dtype not in DTYPES:
            raise bad("dtype", f"one of {', '.join(DTYPES)}")
        if self.truncation not in TRUNCATIONS:
            raise bad("truncation", f"one of {', '.join(TRUNCATIONS)} (right keeps the start)")
        for key in ("epochs", "global_batch_size", "micro_batch_size", "max_length",
                    "sequence_parallel_size", "nnodes", "gpus_per_node", "save_steps",
                    "keep_checkpoints", "log_every"):  # fmt: skip
            if getattr(self, key) < 1:
                raise bad(key, "must be an integer >= 1")
        if self.max_steps == 0 or self.max_steps < -1:
            raise bad("max_steps", "must be -1 (the epochs decide) or an integer >= 1")
        if self.n_params is not None and not self.n_params > 0:
            raise bad("n_params", "must be > 0 (or none)")
        if self.global_batch_size % self.micro_batch_size:
            raise bad(
                "global_batch_size",
                f"must be a multiple of micro_batch_size={self.micro_batch_size}",
            )
        if self.n_gpus % self.sequence_parallel_size:
            raise bad(
                "sequence_parallel_size",
                f"must divide the GPU count nnodes x gpus_per_node = {self.n_gpus}",
            )
        step = self.data_parallel_size * self.micro_batch_size
        if self.global_batch_size % step:
            raise bad(
                "global_batch_size",
                f"must be a multiple of (GPUs / sequence_parallel_size) x micro_batch_size = "
                f"{self.data_parallel_size} x {self.micro_batch_size} = {step} (veRL splits "
                "each batch evenly over the data-parallel ranks)",
            )
        return self


_PAPER = dict(
    learning_rate=2e-5, weight_decay=1e-4, epochs=2, max_length=32768, global_batch_size=128,
    micro_batch_size=1, adam_beta1=0.9, adam_beta2=0.95, lr_scheduler="cosine", warmup_ratio=0.1,
    max_grad_norm=1.0, sequence_parallel_size=2, param_offload=True, optimizer_offload=True,
    gradient_checkpointing=True, dtype="bfloat16", gpus_per_node=8,
)  # fmt: skip

# The CPU loop: a random Qwen3-architecture model of ~0.3M parameters besides the embeddings
# learns the structure of a few dozen conversations in ~100 steps at 3e-3.
_CPU_TINY = dict(
    model="init:qwen3-tiny", learning_rate=3e-3, weight_decay=1e-4, epochs=2, max_steps=300,
    max_length=4096, global_batch_size=8, micro_batch_size=4, adam_beta1=0.9, adam_beta2=0.95,
    lr_scheduler="cosine", warmup_ratio=0.1, max_grad_norm=1.0, sequence_parallel_size=1,
    param_offload=False, optimizer_offload=False, gradient_checkpointing=False, dtype="float32",
    nnodes=1, gpus_per_node=1, save_steps=25, log_every=10,
)  # fmt: skip

PRESETS: dict[str, dict[str, Any]] = {
    "qwen3-8b": {**_PAPER, "model": "Qwen/Qwen3-8B", "nnodes": 4},
    "qwen3-14b": {**_PAPER, "model": "Qwen/Qwen3-14B", "nnodes": 4},
    "qwen3-32b": {**_PAPER, "model": "Qwen/Qwen3-32B", "nnodes": 16},
    "cpu-tiny": _CPU_TINY,
}

_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _field_types(name: str) -> tuple[type, bool]:
    """(base type, optional) of a TrainConfig field."""
    hint = typing.get_type_hints(TrainConfig)[name]
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        return next(a for a in args if a is not type(None)), True
    return hint, False


def parse_value(key: str, value: Any) -> Any:
    """``value`` (text from ``--set`` or a typed value) converted to ``key``'s type."""
    if key not in _FIELDS or key == "preset":
        known = ", ".join(k for k in _FIELDS if k != "preset")
        raise RecipeError(f"unknown train config key {key!r}; known keys: {known}")
    kind, optional = _field_types(key)
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
        if optional:
            return None
        raise RecipeError(f"train config {key}={value!r}: a value is required")
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE | _FALSE:
                return text in _TRUE
            raise ValueError
        if kind is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                return int(value)
            text = str(value).strip()
            number = float(text)  # 1e3 is accepted for an integer when it is whole
            if not number.is_integer():
                raise ValueError
            return int(number)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        name = {bool: "true/false", int: "an integer", float: "a number"}.get(kind, "text")
        raise RecipeError(f"train config {key}={value!r}: expected {name}") from None


def parse_sets(pairs: list[str] | None) -> dict[str, str]:
    """``["key=value", ...]`` (``--set``) as a dict; a pair without '=' is an error."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"--set {pair!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def resolve(preset: str = "qwen3-8b", overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The preset's config with ``overrides`` applied (text or typed values), validated."""
    if preset not in PRESETS:
        raise RecipeError(f"unknown preset {preset!r}; one of {', '.join(PRESETS)}")
    values: dict[str, Any] = {"preset": preset, **PRESETS[preset]}
    for key, value in (overrides or {}).items():
        values[key] = parse_value(key, value)
    return TrainConfig(**values).validate()


def describe(cfg: TrainConfig) -> list[str]:
    """The config as short lines for the plan (what the paper fixes, then the run's own)."""
    sched = f"{cfg.lr_scheduler}, {cfg.warmup_ratio:g} warmup"
    return [
        f"model {cfg.model}  (preset {cfg.preset})",
        f"lr {cfg.learning_rate:g}, weight decay {cfg.weight_decay:g}, AdamW betas "
        f"({cfg.adam_beta1:g}, {cfg.adam_beta2:g}), {sched}, clip {cfg.max_grad_norm:g}",
        f"{cfg.epochs} epoch(s)"
        + (f", at most {cfg.max_steps} steps" if cfg.max_steps > 0 else "")
        + f", global batch {cfg.global_batch_size}, micro-batch {cfg.micro_batch_size}, "
        f"max length {cfg.max_length}",
        f"{cfg.nnodes} node(s) x {cfg.gpus_per_node} GPU(s), sequence parallel "
        f"{cfg.sequence_parallel_size}, offload params={cfg.param_offload} "
        f"optimizer={cfg.optimizer_offload}, {cfg.dtype}",
    ]


__all__ = [
    "PRESETS",
    "RecipeError",
    "TrainConfig",
    "describe",
    "parse_sets",
    "parse_value",
    "resolve",
]
