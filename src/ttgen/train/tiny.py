"""Models built from a config, for tests, demos and benchmarks (no weights can be downloaded).

`init_model` writes a Hugging Face model folder (config.json, model.safetensors,
generation_config.json and the tokenizer's files) for a Qwen3-architecture model of the named
size, its vocabulary sized to the tokenizer, its weights initialised the way transformers
initialises a new model (seeded). Such a folder is what a trainer, `transformers serve` or vLLM
loads like any released checkpoint.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ttgen.errors import TtgenError


@dataclass(frozen=True)
class ModelSize:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int


# Named sizes of the Qwen3 architecture. tiny: the CPU loop in CI (~0.3M parameters besides the
# embeddings); small: a CPU benchmark; 300m: a GPU check of the loop (hundreds of millions).
SIZES: dict[str, ModelSize] = {
    "tiny": ModelSize(64, 192, 2, 4, 2, 16),
    "small": ModelSize(256, 768, 4, 8, 4, 32),
    "300m": ModelSize(1024, 3072, 16, 16, 8, 64),
}
INIT_PREFIX = "init:qwen3-"  # a model given as init:qwen3-<size> is built from a config


class ModelInitError(TtgenError, ValueError):
    """A model cannot be built from the given config or tokenizer."""


def _tokenizer_specials(folder: Path) -> dict[str, Any]:
    tok = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    vocab = dict(tok.get("model", {}).get("vocab") or {})
    for added in tok.get("added_tokens") or []:
        vocab[added["content"]] = added["id"]

    def token_id(name: str) -> int | None:
        value = config.get(name)
        if isinstance(value, dict):
            value = value.get("content")
        return vocab.get(value) if isinstance(value, str) else None

    return {
        "vocab_size": max(vocab.values()) + 1 if vocab else 0,
        "eos_token_id": token_id("eos_token"),
        "pad_token_id": token_id("pad_token"),
        "bos_token_id": token_id("bos_token"),
    }


def init_model(
    tokenizer: str | Path,
    out: str | Path,
    *,
    size: str = "tiny",
    seed: int = 0,
    max_position_embeddings: int = 32768,
    dtype: str = "float32",
) -> Path:
    """Build a Qwen3-architecture model of ``size`` for ``tokenizer`` (a folder with
    tokenizer.json) and save it with the tokenizer's files into ``out``; returns ``out``."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    if size not in SIZES:
        raise ModelInitError(f"unknown model size {size!r}; one of {', '.join(SIZES)}")
    folder = Path(tokenizer)
    if not (folder / "tokenizer.json").is_file():
        raise ModelInitError(f"{folder}: no tokenizer.json (a tokenizer folder is needed)")
    specials = _tokenizer_specials(folder)
    if specials["vocab_size"] <= 0:
        raise ModelInitError(f"{folder}/tokenizer.json: an empty vocabulary")
    config = Qwen3Config(
        **asdict(SIZES[size]),
        vocab_size=specials["vocab_size"],
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        eos_token_id=specials["eos_token_id"],
        pad_token_id=specials["pad_token_id"],
        bos_token_id=specials["bos_token_id"],
        torch_dtype=dtype,
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config).to(getattr(torch, dtype))
    # Sampling, as Qwen3's released generation_config.json sets it: a server that follows the
    # checkpoint's defaults (transformers serve) then honours a request's temperature, and k
    # attempts of an eval differ.
    gen = model.generation_config
    gen.do_sample, gen.temperature, gen.top_p, gen.top_k = True, 0.6, 0.95, 20
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "chat_template.jinja", "chat_template.json"):  # fmt: skip
        if (folder / name).is_file():
            shutil.copy2(folder / name, tmp / name)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
