"""Near-duplicate detection for texts: word shingles, MinHash signatures and an LSH index with
an exact Jaccard check.

    index = NearDuplicateIndex(threshold=0.6)
    index.add("task-1", text1)
    index.query(text2)   # [(key, jaccard)] of stored texts at or above the threshold, best first

Texts are lowercased, punctuation is dropped and runs of whitespace collapse before they are cut
into overlapping word n-grams (shingles, default 5 words; texts shorter than that are one
shingle). MinHash with ``num_perm`` permutations estimates Jaccard similarity; the signature is
cut into ``bands`` bands of ``rows`` rows, and two texts become candidates when one band is equal,
which happens with probability ``1 - (1 - s^rows)^bands`` for similarity ``s``. The band layout is
chosen so that this is about 0.5 at a little below the threshold, so near-duplicates are rarely
missed; every candidate is then checked with the exact Jaccard similarity of the shingle sets,
so nothing below the threshold is ever reported.

Shingles are kept as 64-bit hashes (8 bytes per distinct shingle of a stored text, not the
strings), and hashing and MinHash are vectorized with numpy: ~0.1 ms for a 300-word text.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np

_WORD_RE = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*", re.UNICODE)
_MERSENNE = (1 << 61) - 1
_MAX_HASH = (1 << 32) - 1


def words(text: str) -> list[str]:
    """Lowercased words of `text`, punctuation and whitespace dropped."""
    return _WORD_RE.findall(text.lower())


def shingles(text: str, n: int = 5) -> set[str]:
    """The set of word n-grams of `text` (one shingle for texts shorter than `n` words)."""
    w = words(text)
    if not w:
        return set()
    if len(w) <= n:
        return {" ".join(w)}
    return {" ".join(w[i : i + n]) for i in range(len(w) - n + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


# Shingles are hashed to 64-bit integers: each word through a stable hash (blake2b, cached),
# then the n word hashes of a shingle are combined polynomially, all vectorized with numpy. The
# exact Jaccard check compares these hash sets: exact up to a 64-bit collision (~n^2 / 2^64).
_WORD_HASHES: dict[str, int] = {}
_WORD_CACHE_MAX = 1 << 20
_ROLL = np.uint64(0x9E3779B97F4A7C15)


def _word_hash(word: str) -> int:
    h = _WORD_HASHES.get(word)
    if h is None:
        if len(_WORD_HASHES) >= _WORD_CACHE_MAX:
            _WORD_HASHES.clear()
        h = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")
        _WORD_HASHES[word] = h
    return h


def shingle_hashes(text: str, n: int = 5) -> np.ndarray:
    """The word n-gram shingles of `text` (as `shingles`) as sorted unique uint64 hashes."""
    w = words(text)
    if not w:
        return np.empty(0, dtype=np.uint64)
    wh = np.fromiter((_word_hash(x) for x in w), dtype=np.uint64, count=len(w))
    k = min(n, len(w))  # shorter texts are one shingle of all their words
    m = len(w) - k + 1
    with np.errstate(over="ignore"):
        acc = wh[:m].copy()
        for j in range(1, k):
            acc = acc * _ROLL + wh[j : j + m]
    return np.unique(acc)


def hashed_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity of two sorted unique hash arrays (from `shingle_hashes`)."""
    if a.size == 0 and b.size == 0:
        return 1.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter)


@dataclass(frozen=True)
class MinHasher:
    """MinHash with `num_perm` universal hash functions ``(a*x + b) mod p`` (seeded), over the
    upper 32 bits of the shingle hashes so that ``a*x + b`` fits in 64 bits (vectorized)."""

    num_perm: int = 128
    seed: int = 1

    def __post_init__(self) -> None:
        a, b = [], []
        for i in range(self.num_perm):
            digest = hashlib.blake2b(f"{self.seed}:{i}".encode(), digest_size=16).digest()
            a.append(int.from_bytes(digest[:8], "little") % ((1 << 31) - 1) + 1)
            b.append(int.from_bytes(digest[8:], "little") % _MERSENNE)
        object.__setattr__(self, "_a", np.array(a, dtype=np.uint64)[:, None])
        object.__setattr__(self, "_b", np.array(b, dtype=np.uint64)[:, None])

    def signature(self, hashes: np.ndarray) -> np.ndarray:
        """The signature (uint64, `num_perm` values) of a set of shingle hashes."""
        if hashes.size == 0:
            return np.full(self.num_perm, _MAX_HASH, dtype=np.uint64)
        x = (hashes >> np.uint64(32))[None, :]
        with np.errstate(over="ignore"):
            values = (self._a * x + self._b) % np.uint64(_MERSENNE)  # type: ignore[attr-defined]
        return (values & np.uint64(_MAX_HASH)).min(axis=1)


def lsh_layout(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) with bands*rows <= num_perm whose S-curve midpoint (1/bands)^(1/rows) lies
    just below `threshold` (so that candidates at the threshold are found with high probability)."""
    target = max(0.05, threshold - 0.1)
    best: tuple[float, int, int] | None = None
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        if bands < 1:
            break
        midpoint = (1.0 / bands) ** (1.0 / rows)
        score = abs(midpoint - target)
        if best is None or score < best[0]:
            best = (score, bands, rows)
    assert best is not None
    return best[1], best[2]


@dataclass
class NearDuplicateIndex:
    """Texts added under keys; `query` returns stored keys whose Jaccard similarity (of word
    shingles) with the text is at least `threshold`."""

    threshold: float = 0.6
    shingle_words: int = 5
    num_perm: int = 128
    _hasher: MinHasher = field(init=False, repr=False)
    _bands: int = field(init=False)
    _rows: int = field(init=False)
    _buckets: list[dict[bytes, list[Hashable]]] = field(init=False, repr=False)
    _sets: dict[Hashable, np.ndarray] = field(init=False, repr=False)
    _bands_of: dict[Hashable, list[bytes]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        self._hasher = MinHasher(self.num_perm)
        self._bands, self._rows = lsh_layout(self.threshold, self.num_perm)
        self._buckets = [{} for _ in range(self._bands)]
        self._sets = {}
        self._bands_of = {}

    def __len__(self) -> int:
        return len(self._sets)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._sets

    def _band_keys(self, sig: np.ndarray) -> list[bytes]:
        r = self._rows
        raw = sig[: self._bands * r].astype(np.uint32).tobytes()
        step = 4 * r
        return [raw[i * step : (i + 1) * step] for i in range(self._bands)]

    def add(self, key: Hashable, text: str) -> None:
        """Store `text` under `key` (a key added again replaces nothing; the first text stays)."""
        if key in self._sets:
            return
        sh = shingle_hashes(text, self.shingle_words)
        self._store(key, sh, self._band_keys(self._hasher.signature(sh)))

    def discard(self, key: Hashable) -> None:
        """Forget `key` (nothing happens when it is not stored)."""
        if self._sets.pop(key, None) is None:
            return
        for bucket, band in zip(self._buckets, self._bands_of.pop(key), strict=True):
            keys = bucket.get(band, [])
            if key in keys:
                keys.remove(key)
            if not keys:
                bucket.pop(band, None)

    def query(self, text: str, *, exclude: Hashable | None = None) -> list[tuple[Hashable, float]]:
        """Stored keys at or above the threshold, most similar first, with their similarity."""
        sh = shingle_hashes(text, self.shingle_words)
        return self._query(sh, self._band_keys(self._hasher.signature(sh)), exclude)

    def add_unless_near(self, key: Hashable, text: str) -> list[tuple[Hashable, float]]:
        """`query` then, when nothing is near, `add` (hashing the text once): the matches, or []
        when `text` was stored under `key`."""
        if key in self._sets:
            return []
        sh = shingle_hashes(text, self.shingle_words)
        bands = self._band_keys(self._hasher.signature(sh))
        hits = self._query(sh, bands, None)
        if not hits:
            self._store(key, sh, bands)
        return hits

    def _store(self, key: Hashable, sh: np.ndarray, bands: list[bytes]) -> None:
        self._sets[key] = sh
        self._bands_of[key] = bands
        for bucket, band in zip(self._buckets, bands, strict=True):
            bucket.setdefault(band, []).append(key)

    def _query(
        self, sh: np.ndarray, bands: list[bytes], exclude: Hashable | None
    ) -> list[tuple[Hashable, float]]:
        candidates: set[Hashable] = set()
        for bucket, band in zip(self._buckets, bands, strict=True):
            candidates.update(bucket.get(band, ()))
        candidates.discard(exclude)
        hits = [(k, hashed_jaccard(sh, self._sets[k])) for k in candidates]
        hits = [(k, s) for k, s in hits if s >= self.threshold]
        hits.sort(key=lambda kv: (-kv[1], str(kv[0])))
        return hits
