"""The run folder of `ttgen train`: its manifest, log, metrics and checkpoints.

```
RUN/
  train.json            kind ttgen-train: backend, status, identity (what a resume must match),
                        resolved config, model/tokenizer paths, data fingerprint/files/rows,
                        optimizer steps, versions, attempts (start, resumed_from, end or
                        error), result (final loss, tokens/s, model folder)
  train.log             progress and library warnings, appended by every attempt
  metrics.jsonl         one line per optimizer step (see `METRIC_FIELDS`)
  init-model/           for init:qwen3-<size>: the model built from a config (the start weights)
  checkpoints/checkpoint-N/
                        Hugging Face model + tokenizer + optimizer/scheduler/RNG/trainer state;
                        complete once it holds ttgen-complete.json (written last)
  model/                the final model (Hugging Face format + tokenizer), renamed into place
  verl/                 veRL backend: ttgen_sft.yaml (hydra config) and launch scripts
```

`check_identity` compares a new invocation with the manifest: the same backend, the same
config (`TrainConfig.semantic`) and the same data fingerprint, else `TrainError` says what
differs and nothing in the folder is touched. `prepare_resume` picks the last complete
checkpoint, removes incomplete ones and cuts metrics.jsonl back to the steps that checkpoint
holds, so a resumed run neither repeats nor misses a step.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ttgen.errors import TtgenError
from ttgen.fileio import write_json_atomic
from ttgen.train.recipe import TrainConfig

MANIFEST = "train.json"
LOG = "train.log"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
MODEL = "model"
INIT_MODEL = "init-model"
COMPLETE = "ttgen-complete.json"
KIND = "ttgen-train"
METRIC_FIELDS = (
    "step", "epoch", "loss", "learning_rate", "grad_norm", "tokens", "trained_tokens",
    "tokens_per_s", "step_time_s", "elapsed_s", "mean_token_accuracy", "time",
)  # fmt: skip
_CKPT = re.compile(r"^checkpoint-(\d+)$")


class TrainError(TtgenError):
    """A training run cannot start or continue (the message says why and what to do)."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def versions() -> dict[str, str | None]:
    """Versions of what a run depends on (None: not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    from ttgen import __version__

    out: dict[str, str | None] = {"ttgen": __version__}
    for pkg in ("torch", "transformers", "trl", "accelerate", "datasets", "verl", "pyarrow"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def read_manifest(run: Path) -> dict[str, Any] | None:
    path = run / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TrainError(f"{path}: unreadable ({exc}); use another --out") from exc
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise TrainError(f"{path}: not a ttgen train manifest; use another --out")
    return data


def check_folder(run: Path) -> dict[str, Any] | None:
    """The run folder's manifest, or None for a new run (a missing or empty folder); a folder
    holding other things is refused."""
    manifest = read_manifest(run)
    if manifest is None and run.exists() and (not run.is_dir() or any(run.iterdir())):
        raise TrainError(
            f"{run} is not empty and holds no {KIND} manifest (train.json): give a new or empty "
            "--out"
        )
    return manifest


def write_manifest(run: Path, data: dict[str, Any]) -> None:
    data["updated_at"] = now()
    write_json_atomic(run / MANIFEST, data)


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            out += _diff(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def check_identity(run: Path, manifest: dict[str, Any], ident: dict[str, Any]) -> None:
    """Raise unless ``identity`` (backend, semantic config, data fingerprint) is the manifest's."""
    old = manifest.get("identity") or {}
    diffs = _diff(old, ident)
    if diffs:
        shown = "; ".join(diffs[:8]) + (f"; and {len(diffs) - 8} more" if len(diffs) > 8 else "")
        raise TrainError(
            f"{run} holds a run made with a different config or data ({shown}). Nothing was "
            "changed: re-run with the same options and data to resume it, or give another --out."
        )


class RunLog:
    """train.log (appended) and the progress callback of the caller."""

    def __init__(self, run: Path, echo: Any = None) -> None:
        self.path = run / LOG
        self.echo = echo
        run.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, line: str, *, show: bool = False) -> None:
        self._f.write(f"{now()} {line}\n")
        self._f.flush()
        if show and self.echo is not None:
            self.echo(line)

    def close(self) -> None:
        self._f.close()


def checkpoints(run: Path) -> tuple[list[tuple[int, Path]], list[Path]]:
    """(complete checkpoints by step, incomplete checkpoint folders) of the run."""
    done, partial = [], []
    folder = run / CHECKPOINTS
    if folder.is_dir():
        for p in folder.iterdir():
            m = _CKPT.match(p.name)
            if m and p.is_dir():
                (done.append((int(m.group(1)), p)) if (p / COMPLETE).is_file()
                 else partial.append(p))  # fmt: skip
    return sorted(done), partial


def mark_complete(ckpt: Path, info: dict[str, Any]) -> None:
    """Written last into a checkpoint: from then on it can be resumed from."""
    write_json_atomic(ckpt / COMPLETE, {"completed_at": now(), **info})


def rotate(run: Path, keep: int) -> list[Path]:
    """Remove complete checkpoints beyond the ``keep`` newest (never an incomplete one, which
    is the one being written)."""
    done, _ = checkpoints(run)
    removed = [p for _, p in done[:-keep]] if keep > 0 else []
    for p in removed:
        shutil.rmtree(p, ignore_errors=True)
    return removed


def read_metrics(run: Path) -> list[dict[str, Any]]:
    """metrics.jsonl's rows (a torn last line, left by a kill, is ignored)."""
    path = run / METRICS
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), int):
                rows.append(row)
    return rows


def prepare_resume(run: Path) -> tuple[Path | None, int]:
    """Pick the last complete checkpoint (None: start over), remove incomplete checkpoint
    folders, and keep in metrics.jsonl exactly the steps 1..N that checkpoint holds."""
    done, partial = checkpoints(run)
    for p in partial:
        shutil.rmtree(p, ignore_errors=True)
    ckpt, step = (done[-1][1], done[-1][0]) if done else (None, 0)
    rows = {r["step"]: r for r in read_metrics(run) if 1 <= r["step"] <= step}
    text = "".join(json.dumps(rows[s]) + "\n" for s in sorted(rows))
    if (run / METRICS).exists() or text:
        write_json_atomic(run / METRICS, text)
    return ckpt, step


class MetricsWriter:
    """Appends one JSON line per optimizer step to metrics.jsonl (flushed each line: a kill
    leaves at most a torn last line, which `read_metrics` ignores)."""

    def __init__(self, run: Path) -> None:
        self._f = open(run / METRICS, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, row: dict[str, Any]) -> None:
        self._f.write(json.dumps(row) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def replace_dir(tmp: Path, dest: Path) -> None:
    """Move a finished folder into place (an old one is moved aside first, then removed)."""
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old.{os.getpid()}.{int(time.time())}")
        dest.rename(old)
    tmp.rename(dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def resolve_model(
    run: Path, cfg: TrainConfig, files: list[Path], *, build: bool = True
) -> tuple[str, str]:
    """(model path or Hub id, tokenizer path or Hub id) for the run; with ``build``, builds an
    ``init:qwen3-<size>`` model into RUN/init-model once (from the tokenizer: ``--tokenizer``,
    else the one the data's export summary names). ``build=False`` only checks and names."""
    from ttgen.train.data import export_tokenizer
    from ttgen.train.tiny import INIT_PREFIX, SIZES, init_model

    if cfg.model.startswith(INIT_PREFIX):
        size = cfg.model[len(INIT_PREFIX) :]
        if size not in SIZES:
            raise TrainError(
                f"model {cfg.model!r}: unknown size; one of "
                + ", ".join(INIT_PREFIX + s for s in SIZES)
            )
        tok = cfg.tokenizer or export_tokenizer(files)
        if not tok or not (Path(tok) / "tokenizer.json").is_file():
            raise TrainError(
                f"model {cfg.model} is built for a tokenizer: give --tokenizer FOLDER (the one "
                "the data was exported with)"
                + (f"; {tok} is not a folder with tokenizer.json" if tok else "")
            )
        folder = run / INIT_MODEL
        if build and not (folder / "config.json").is_file():
            init_model(tok, folder, size=size, seed=cfg.seed,
                       max_position_embeddings=max(32768, cfg.max_length))  # fmt: skip
        return str(folder), str(Path(tok).resolve())
    model = cfg.model
    if Path(model).expanduser().is_dir():
        model = str(Path(model).expanduser().resolve())
    tok = cfg.tokenizer or model
    if Path(tok).expanduser().is_dir():
        tok = str(Path(tok).expanduser().resolve())
        if not any((Path(tok) / n).is_file() for n in _TOKENIZER_FILES):
            raise TrainError(
                f"{tok}: no tokenizer files here ({', '.join(_TOKENIZER_FILES)}): give "
                "--tokenizer FOLDER (the one the data was exported with)"
            )
    return model, tok


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def identity(cfg: TrainConfig, backend: str, data: dict[str, Any]) -> dict[str, Any]:
    """What a run folder must share with a command that continues it."""
    return {"backend": backend, "config": cfg.semantic(), "data": data["fingerprint"]}
