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
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

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


def _shingle_hash(s: str) -> int:
    return int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=4).digest(), "little")


@dataclass(frozen=True)
class MinHasher:
    """MinHash with `num_perm` universal hash functions ``(a*x + b) mod p`` (seeded)."""

    num_perm: int = 128
    seed: int = 1

    def __post_init__(self) -> None:
        params = []
        for i in range(self.num_perm):
            digest = hashlib.blake2b(f"{self.seed}:{i}".encode(), digest_size=16).digest()
            a = int.from_bytes(digest[:8], "little") % (_MERSENNE - 1) + 1
            b = int.from_bytes(digest[8:], "little") % _MERSENNE
            params.append((a, b))
        object.__setattr__(self, "_params", tuple(params))

    def signature(self, items: Iterable[str]) -> tuple[int, ...]:
        hashes = [_shingle_hash(s) for s in items]
        if not hashes:
            return tuple([_MAX_HASH] * self.num_perm)
        out = []
        for a, b in self._params:  # type: ignore[attr-defined]
            out.append(min(((a * h + b) % _MERSENNE) & _MAX_HASH for h in hashes))
        return tuple(out)


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
    _buckets: list[dict[tuple[int, ...], list[Hashable]]] = field(init=False, repr=False)
    _sets: dict[Hashable, set[str]] = field(init=False, repr=False)
    _bands_of: dict[Hashable, list[tuple[int, ...]]] = field(init=False, repr=False)

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

    def _band_keys(self, sig: tuple[int, ...]) -> list[tuple[int, ...]]:
        r = self._rows
        return [sig[i * r : (i + 1) * r] for i in range(self._bands)]

    def add(self, key: Hashable, text: str) -> None:
        """Store `text` under `key` (a key added again replaces nothing; the first text stays)."""
        if key in self._sets:
            return
        sh = shingles(text, self.shingle_words)
        bands = self._band_keys(self._hasher.signature(sh))
        self._sets[key] = sh
        self._bands_of[key] = bands
        for bucket, band in zip(self._buckets, bands, strict=True):
            bucket.setdefault(band, []).append(key)

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
        sh = shingles(text, self.shingle_words)
        candidates: set[Hashable] = set()
        for bucket, band in zip(
            self._buckets, self._band_keys(self._hasher.signature(sh)), strict=True
        ):
            candidates.update(bucket.get(band, ()))
        candidates.discard(exclude)
        hits = [(k, jaccard(sh, self._sets[k])) for k in candidates]
        hits = [(k, s) for k, s in hits if s >= self.threshold]
        hits.sort(key=lambda kv: (-kv[1], str(kv[0])))
        return hits
