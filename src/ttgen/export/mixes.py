"""Which exported file each record goes to: training mixes and scaling subsets (paper §5.6-5.7).

* ``mixed`` (default, the paper's adopted recipe): one file with every record.
* ``curriculum``: two stages, stage 1 the dataset-adapter records (``--stage1`` subsets), stage 2
  everything else (synthetic tasks), one file each, trained one after the other.
* ``--fraction F`` (repeatable): a subset of F of the records, stratified by ``source`` (each
  source contributes its share, rounded by largest remainder so the total is round(F x N)) and
  reproducible: a record is in the subset when its rank by ``blake2b(seed:id)`` within its source
  is below the source's quota. Subsets are nested: the 1% subset lies inside the 2% one, and so on.

Fractions need the size of every stratum first, so they cost one extra pass over the records that
reads only ids and sources (`scan_strata`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MIXES = ("mixed", "curriculum")
DEFAULT_STAGE1 = ("dataset_adapters",)


@dataclass(frozen=True)
class OutputPlan:
    """One output file: which stage (None = all) and which fraction (None = all) it holds."""

    name: str  # "default", "stage1", "frac0.01", "stage2.frac0.1", ...
    path: Path
    stage: int | None = None
    fraction: float | None = None


def plan_outputs(out: Path, mix: str, fractions: Sequence[float]) -> list[OutputPlan]:
    """The files an export writes: ``out`` itself, or ``<stem>.stage1<suffix>`` …
    ``<stem>.frac0.01<suffix>`` beside it."""
    if mix not in MIXES:
        raise ValueError(f"unknown mix {mix!r} (choose from {', '.join(MIXES)})")
    for f in fractions:
        if not 0 < f <= 1:
            raise ValueError(f"--fraction must be in (0, 1], got {f}")
    stem, suffix = _split_suffix(out)
    stages: list[int | None] = [1, 2] if mix == "curriculum" else [None]
    fracs: list[float | None] = sorted(set(fractions)) if fractions else [None]  # type: ignore[arg-type]
    plans = []
    for stage in stages:
        for frac in fracs:
            parts = []
            if stage is not None:
                parts.append(f"stage{stage}")
            if frac is not None:
                parts.append(f"frac{_fmt(frac)}")
            name = ".".join(parts) or "default"
            path = out if not parts else out.with_name(f"{stem}.{'.'.join(parts)}{suffix}")
            plans.append(OutputPlan(name, path, stage, frac))
    return plans


def _fmt(f: float) -> str:
    return f"{f:g}"


def _split_suffix(path: Path) -> tuple[str, str]:
    name = path.name
    for suffix in (".jsonl.gz", ".parquet", ".jsonl", ".ndjson"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)], name[-len(suffix) :]
    return path.stem, path.suffix


def record_hash(seed: int, record_id: str) -> int:
    digest = hashlib.blake2b(f"{seed}:{record_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1  # fits in int64


_ID_RE = re.compile(r'^\{"id": ("(?:[^"\\]|\\.)*")')
_SOURCE_RE = re.compile(r'"source": ("(?:[^"\\]|\\.)*")')


def id_and_source(line: str) -> tuple[str, str] | None:
    """(id, source) of a records.jsonl line, read from the line's head where curation writes
    them (no full JSON parse of the messages); None when they are not there."""
    head = line[:4096]
    m_id, m_src = _ID_RE.match(head), _SOURCE_RE.search(head)
    if not m_id or not m_src:
        try:
            rec = json.loads(line)
        except ValueError:
            return None
        if not isinstance(rec, dict) or "id" not in rec:
            return None
        return str(rec["id"]), str(rec.get("source") or "other")
    return json.loads(m_id.group(1)), json.loads(m_src.group(1))


@dataclass
class Strata:
    """Per source: the sorted record hashes, and per fraction the quota (how many to keep)."""

    seed: int
    hashes: dict[str, np.ndarray] = field(default_factory=dict)
    quotas: dict[float, dict[str, int]] = field(default_factory=dict)

    def threshold(self, fraction: float, source: str) -> int:
        """Records of `source` with a hash below this are in the `fraction` subset."""
        k = self.quotas[fraction].get(source, 0)
        arr = self.hashes.get(source)
        if arr is None or k <= 0:
            return -1
        if k >= arr.size:
            return 1 << 63
        return int(arr[k])  # hashes are unique within a source (64-bit)

    def contains(self, fraction: float, source: str, record_id: str) -> bool:
        return record_hash(self.seed, record_id) < self.threshold(fraction, source)


def source_selected(source: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Whether a record of `source` (`dataset_adapters/math`, `skill_based/medium/security`) is
    in the selection: a pattern names a source or any prefix of it on `/` boundaries
    (`dataset_adapters`, `skill_based/medium`). With `include`, a record must match one; it must
    match no `exclude`."""

    def match(p: str) -> bool:
        p = p.strip("/")
        return source == p or source.startswith(p + "/")

    if include and not any(match(p) for p in include):
        return False
    return not any(match(p) for p in exclude)


def scan_strata(
    lines: Iterable[str],
    fractions: Sequence[float],
    seed: int,
    keep: Callable[[str], bool] | None = None,
) -> Strata:
    """One pass over records.jsonl lines: hashes per source and each fraction's quotas (over
    the records whose source `keep` accepts)."""
    buckets: dict[str, list[int]] = {}
    for line in lines:
        if not line.strip():
            continue
        got = id_and_source(line)
        if got is None:
            continue  # reported by the main pass
        rid, source = got
        if keep is not None and not keep(source):
            continue
        buckets.setdefault(source, []).append(record_hash(seed, rid))
    strata = Strata(seed)
    for source, values in buckets.items():
        strata.hashes[source] = np.sort(np.array(values, dtype=np.int64))
    sizes = {s: a.size for s, a in strata.hashes.items()}
    for f in fractions:
        strata.quotas[f] = largest_remainder(sizes, f)
    return strata


def largest_remainder(sizes: dict[str, int], fraction: float) -> dict[str, int]:
    """Per-stratum counts proportional to `sizes` whose total is round(fraction x total)."""
    total = sum(sizes.values())
    target = round(fraction * total)
    exact = {s: fraction * n for s, n in sizes.items()}
    quota = {s: min(sizes[s], math.floor(v)) for s, v in exact.items()}
    rest = target - sum(quota.values())
    order = sorted(exact, key=lambda s: (-(exact[s] - math.floor(exact[s])), s))
    for s in order:
        if rest <= 0:
            break
        if quota[s] < sizes[s]:
            quota[s] += 1
            rest -= 1
    return quota


def stage_of(record: dict[str, Any], stage1_subsets: Sequence[str]) -> int:
    return 1 if record.get("subset") in stage1_subsets else 2


def targets(
    record: dict[str, Any],
    plans: Sequence[OutputPlan],
    strata: Strata | None,
    stage1_subsets: Sequence[str],
) -> list[OutputPlan]:
    """The outputs `record` goes to."""
    stage = stage_of(record, stage1_subsets)
    out = []
    for p in plans:
        if p.stage is not None and p.stage != stage:
            continue
        if p.fraction is not None:
            assert strata is not None
            if not strata.contains(p.fraction, str(record.get("source") or "other"), record["id"]):
                continue
        out.append(p)
    return out
