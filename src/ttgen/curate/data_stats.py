"""`ttgen stats`: what a curated folder (or an exported SFT file) holds, in the paper's terms.

Counts per subset / source / domain / difficulty; token and turn distributions (mean, median and
histograms in the bins of the paper's Figures 5 and 6: tokens in 5K bins up to ">40K", turns in
bins of 5 up to "50+"), overall and per subset; completion rate (the teacher confirmed the task
complete) and success rate (reward 1, among trajectories that were verified); and from
curate.json what decontamination and each filter dropped.

Token counts come from where the data has them: exact counts of an SFT export (``n_tokens`` as
the tokenizer and chat template gave them, after truncation, with ``n_tokens_full`` before), or
the curation estimate (UTF-8 bytes / 3.6) labelled as such.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ttgen.formats.trial import is_job_folder

TOKEN_BIN = 5_000
TOKEN_BINS = 8  # 0-5K ... 35-40K, then >40K
TURN_BIN = 5
TURN_BINS = 10  # 0-4 ... 45-49, then 50+
DECON_KEYS = ("enabled", "ngram", "tasks_matched", "records_dropped", "matches_by_item")


def no_difficulty(subset: str | None) -> str:
    """What is shown for a task or record without a difficulty (never a "-" bucket): adapter
    tasks carry none by design (their prompt datasets have no such field)."""
    return "n/a (adapter)" if subset == "dataset_adapters" else "not set"


def token_bin_labels() -> list[str]:
    labels = [f"{i * 5}-{(i + 1) * 5}K" for i in range(TOKEN_BINS)]
    return [*labels, f">{TOKEN_BINS * 5}K"]


def turn_bin_labels() -> list[str]:
    labels = [f"{i * TURN_BIN}-{(i + 1) * TURN_BIN - 1}" for i in range(TURN_BINS)]
    return [*labels, f"{TURN_BINS * TURN_BIN}+"]


def histogram(values: np.ndarray, width: int, n_bins: int) -> list[int]:
    """Counts in bins [0, w), [w, 2w) … and a last bin for everything from n_bins*w up."""
    idx = np.minimum(values // width, n_bins).astype(np.int64)
    return np.bincount(idx, minlength=n_bins + 1).tolist()


def distribution(values: list[int], width: int, n_bins: int) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    arr = np.asarray(values, dtype=np.int64)
    return {
        "n": int(arr.size),
        "mean": round(float(arr.mean()), 1),
        "median": float(np.median(arr)),
        "min": int(arr.min()),
        "max": int(arr.max()),
        "histogram": histogram(arr, width, n_bins),
    }


def _rows(path: Path, problems: list[str]) -> Iterator[dict[str, Any]]:
    if is_job_folder(path):
        # a rollout job (ttgen's or Harbor's), as curate reads it before any filter
        from ttgen.curate.trials import find_trials, read_trial

        for trial in find_trials([path]):
            records, _ = read_trial(trial)
            yield from records
        return
    if path.is_dir():
        from ttgen.curate.curator import read_records

        yield from read_records(path, problems)
        return
    name = path.name.lower()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        wanted = [c for c in pf.schema_arrow.names if c not in ("input_ids", "loss_mask")]
        for batch in pf.iter_batches(batch_size=256, columns=wanted):
            yield from batch.to_pylist()
        return
    opener = open
    if name.endswith(".gz"):
        import gzip

        opener = gzip.open  # type: ignore[assignment]
    with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    problems.append(f"{path}:{n}: {exc}")


def compute_stats(path: Path) -> dict[str, Any]:
    """Statistics of a curated folder, a records JSONL, an exported SFT/corpus file, or a
    rollout job folder (ttgen's or Harbor's: its trials' records before curation's filters)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    problems: list[str] = []
    by: dict[str, Counter[str]] = {
        k: Counter() for k in ("subset", "source", "domain", "difficulty")
    }
    tokens: dict[str, list[int]] = {}
    turns: dict[str, list[int]] = {}
    completed: Counter[str] = Counter()
    verified: Counter[str] = Counter()
    passed: Counter[str] = Counter()
    n_with_completion: Counter[str] = Counter()
    truncated = 0
    tampered = 0  # records of trials flagged `tampered` (kept only with --keep-tampered)
    token_kind: Counter[str] = Counter()
    n = 0
    for row in _rows(path, problems):
        n += 1
        subset = str(row.get("subset") or _subset_of_source(row.get("source")) or "other")
        for key in by:
            value = row.get(key) if key != "subset" else subset
            if value in (None, ""):
                value = no_difficulty(subset) if key == "difficulty" else "-"
            by[key][str(value)] += 1
        messages = row.get("messages") or row.get("conversations") or []
        n_turns = row.get("n_assistant_turns") or row.get("n_turns")
        if n_turns is None:
            n_turns = sum(1 for m in messages if m.get("role") == "assistant")
        turns.setdefault(subset, []).append(int(n_turns))
        if row.get("n_tokens") is not None:
            tokens.setdefault(subset, []).append(int(row["n_tokens"]))
            token_kind[
                str(
                    row.get("n_tokens_by")
                    or ("tokenizer" if "n_trained_tokens" in row else "unknown")
                )
            ] += 1
        if row.get("truncated"):
            truncated += 1
        if row.get("outcome") == "tampered":
            tampered += 1
        if "completed" in row:
            n_with_completion[subset] += 1
            completed[subset] += bool(row["completed"])
        if row.get("reward") is not None:
            verified[subset] += 1
            passed[subset] += float(row["reward"]) >= 1
    subsets = sorted(turns)
    per_subset = {}
    for s in subsets:
        per_subset[s] = {
            "records": len(turns[s]),
            "tokens": distribution(tokens.get(s, []), TOKEN_BIN, TOKEN_BINS),
            "turns": distribution(turns[s], TURN_BIN, TURN_BINS),
            "completion_rate": _rate(completed[s], n_with_completion[s]),
            "success_rate": _rate(passed[s], verified[s]),
            "verified": verified[s],
        }
    all_tokens = [v for s in subsets for v in tokens.get(s, [])]
    all_turns = [v for s in subsets for v in turns[s]]
    out: dict[str, Any] = {
        "path": str(path),
        "records": n,
        "by_subset": dict(by["subset"].most_common()),
        "by_source": dict(sorted(by["source"].items())),
        "by_domain": dict(by["domain"].most_common()),
        "by_difficulty": dict(by["difficulty"].most_common()),
        "tokens": distribution(all_tokens, TOKEN_BIN, TOKEN_BINS),
        "tokens_counted_by": dict(token_kind),
        "turns": distribution(all_turns, TURN_BIN, TURN_BINS),
        "token_bins": token_bin_labels(),
        "turn_bins": turn_bin_labels(),
        "completion_rate": _rate(sum(completed.values()), sum(n_with_completion.values())),
        "success_rate": _rate(sum(passed.values()), sum(verified.values())),
        "verified": sum(verified.values()),
        "truncated": truncated,
        "tampered": tampered,
        "per_subset": per_subset,
        "problems": problems,
    }
    if path.is_dir():
        from ttgen.curate.curator import read_manifest

        manifest = read_manifest(path)
        if manifest:
            out["curation"] = {
                "trials": manifest.get("counts", {}).get("trials"),
                "records_in": manifest.get("counts", {}).get("records_in"),
                "kept": manifest.get("counts", {}).get("kept"),
                "dropped": manifest.get("dropped", {}),
                "decontamination": {
                    k: manifest.get("decontamination", {}).get(k) for k in DECON_KEYS
                },
                "dedup": manifest.get("dedup", {}),
            }
    return out


def _rate(k: int, n: int) -> float | None:
    return round(k / n, 4) if n else None


def _subset_of_source(source: Any) -> str | None:
    if isinstance(source, str) and source:
        return source.split("/", 1)[0]
    return None
