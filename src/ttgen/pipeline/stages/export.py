"""The export stage: `ttgen export` of RUN/curated/ into RUN/export/: the corpus, Harbor-style
rows and SFT rows, each when its `export` key is set. `sft.tokenizer: toy` trains a small BPE on
the run's own data first (to try the pipeline; real data uses the student's tokenizer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ttgen.curate.curator import read_records
from ttgen.export.exporter import ExportOptions, export
from ttgen.export.harbor import HarborOptions
from ttgen.export.sft import TokenizerSpec
from ttgen.export.toy_tokenizer import sample_texts, train_toy_tokenizer
from ttgen.pipeline.stages import Context, StageResult


def run(ctx: Context) -> StageResult:
    e = ctx.config.export
    data = ctx.run / "curated"
    out_dir = ctx.run / "export"
    outputs: dict[str, str] = {}
    counts: dict[str, Any] = {}
    note = ""
    common = {"mix": e.mix, "fractions": list(e.fractions), "seed": e.seed,
              "include_sources": tuple(e.include_sources),
              "exclude_sources": tuple(e.exclude_sources)}  # fmt: skip
    if e.corpus:
        s = export([data], out_dir / e.corpus, ExportOptions(format="corpus", **common))
        outputs["corpus"] = f"export/{e.corpus}"
        counts["corpus_rows"] = sum(o["rows"] for o in s["outputs"].values())
    if e.harbor is not None:
        s = export([data], out_dir / e.harbor.file,
                   ExportOptions(format="harbor",
                                 harbor=HarborOptions(episodes=e.harbor.episodes), **common))  # fmt: skip
        outputs["harbor"] = f"export/{e.harbor.file}"
        counts["harbor_rows"] = sum(o["rows"] for o in s["outputs"].values())
        if s["skipped"]:
            counts["harbor_skipped"] = s["skipped"]
    if e.sft is not None:
        tok = e.sft.tokenizer
        spec = None  # none with target sharegpt and no tokenizer: the trainer tokenizes
        if tok == "toy":
            tok = str(_toy_tokenizer(data, out_dir / "toy-tokenizer"))
            note = (
                "the SFT rows use a toy tokenizer trained on this run (to try the "
                "pipeline; real data uses the student's tokenizer)"
            )
        elif tok and not tok.startswith(("/", ".")) and ctx.config.path(tok).exists():
            tok = str(ctx.config.path(tok))
        if tok is not None:
            spec = TokenizerSpec(tok, chat_template=e.sft.chat_template,
                                 template_kwargs=dict(e.sft.template_args),
                                 reasoning=e.sft.reasoning)  # fmt: skip
        s = export([data], out_dir / e.sft.file,
                   ExportOptions(format="sft", tokenizer=spec, max_len=e.sft.max_len,
                                 target=e.sft.target, reasoning=e.sft.reasoning,
                                 **common))  # fmt: skip
        outputs["sft"] = f"export/{e.sft.file}"
        counts["sft_rows"] = sum(o["rows"] for o in s["outputs"].values())
        counts["sft_tokens"] = sum(o.get("tokens", 0) for o in s["outputs"].values())
        counts["sft_truncated"] = sum(o.get("truncated", 0) for o in s["outputs"].values())
        if s["skipped"]:
            counts["sft_skipped"] = s["skipped"]
    return StageResult("done", outputs, counts, note)


def _toy_tokenizer(data: Path, dest: Path) -> Path:
    if (dest / "tokenizer.json").exists():
        return dest
    texts = [m["content"] for i, r in enumerate(read_records(data, [])) if i < 500
             for m in r["messages"]]  # fmt: skip
    return train_toy_tokenizer(dest, vocab_size=4000, texts=[*texts, *sample_texts(500)])
