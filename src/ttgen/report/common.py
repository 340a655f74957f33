"""What the report's modules share: the options, the input error, reading JSON that may be
broken, the deterministic sample of trajectories, and cutting long texts."""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttgen.errors import TtgenError
from ttgen.formats.trial import INFRA_OUTCOMES, Outcome

MODEL_OUTCOMES = tuple(o.value for o in Outcome if o not in INFRA_OUTCOMES)
INFRA_OUTCOME_NAMES = tuple(o.value for o in Outcome if o in INFRA_OUTCOMES)


class ReportError(TtgenError):
    """The input is not something a report can be made of."""


@dataclass
class ReportOptions:
    max_trajectories: int = 200
    max_chars: int = 4000  # per text field of a turn (reasoning, analysis, output, ...)
    max_turns: int = 60  # per trajectory (first and last turns kept)
    trajectory_bytes: int = 64_000  # JSON size one trajectory may take


# -- input ----------------------------------------------------------------------------------------


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def json_objects(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSONL file, skipping lines that are not one (a report shows what it
    can read); nothing when the file is missing."""
    if not path.is_file():
        return
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                yield obj


# -- sampling and text --------------------------------------------------------------------------


def sample_key(ident: str) -> int:
    return int.from_bytes(hashlib.blake2b(ident.encode("utf-8"), digest_size=8).digest(), "big")


class Sample:
    """The k items with the smallest keys (deterministic, independent of input order)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self._heap: list[tuple[int, int, Any]] = []
        self._tie = itertools.count()

    def offer(self, key: int, item: Any) -> None:
        if self.k <= 0:
            return
        entry = (-key, next(self._tie), item)
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, entry)
        elif -self._heap[0][0] > key:
            heapq.heapreplace(self._heap, entry)

    def items(self) -> list[Any]:
        return [item for _, _, item in sorted(self._heap, key=lambda e: (-e[0], e[1]))]


def clip(text: str, limit: int) -> tuple[str, int]:
    """`text` cut to about `limit` characters (head and tail kept, a note in the middle) and the
    number of characters cut."""
    if len(text) <= limit:
        return text, 0
    head = limit * 2 // 3
    tail = limit - head
    cut = len(text) - head - tail
    note = f"\n[… {cut:,} characters cut by the report …]\n"
    return text[:head] + note + (text[-tail:] if tail else ""), cut


def top(counter: Counter[str], n: int) -> list[list[Any]]:
    return [[k, v] for k, v in counter.most_common(n)]
