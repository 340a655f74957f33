"""Near-duplicate detection: MinHash LSH finds texts above the threshold and never reports one
below it."""

from __future__ import annotations

import random

from ttgen.textsim import NearDuplicateIndex, jaccard, lsh_layout, shingles

WORDS = [
    "sensor",
    "reading",
    "hourly",
    "mean",
    "csv",
    "json",
    "output",
    "token",
    "registry",
    "expired",
    "log",
    "audit",
    "file",
    "path",
    "report",
    "summary",
    "column",
    "value",
    "edge",
    "case",
    "timestamp",
    "zone",
    "offset",
    "parse",
    "sort",
    "group",
    "merge",
    "join",
]


def _text(rng: random.Random, n: int = 120) -> str:
    return " ".join(rng.choice(WORDS) + str(rng.randrange(50)) for _ in range(n))


def _perturb(rng: random.Random, text: str, fraction: float) -> str:
    words = text.split()
    for _ in range(int(len(words) * fraction)):
        words[rng.randrange(len(words))] = "changed" + str(rng.randrange(10_000))
    return " ".join(words)


def test_shingles_ignore_case_punctuation_and_spacing():
    assert shingles("Hello,   World! Foo bar baz.", 2) == shingles("hello world foo   bar baz", 2)
    assert shingles("two words", 5) == {"two words"}
    assert shingles("", 5) == set()


def test_near_copies_are_found_and_unrelated_texts_are_not():
    rng = random.Random(3)
    index = NearDuplicateIndex(threshold=0.5)
    originals = [_text(rng) for _ in range(200)]
    for i, text in enumerate(originals):
        index.add(i, text)
    found = 0
    for i, text in enumerate(originals[:100]):
        near = _perturb(rng, text, 0.04)  # Jaccard of 5-grams ~0.7-0.8
        hits = index.query(near)
        assert all(s >= 0.5 for _, s in hits)
        found += any(k == i for k, _ in hits)
    assert found >= 97  # LSH may miss a rare one; the threshold is above the S-curve midpoint
    for _ in range(50):
        assert index.query(_text(rng)) == []  # unrelated texts share no 5-gram


def test_nothing_below_the_threshold_is_reported_and_discard_forgets():
    rng = random.Random(5)
    base = _text(rng)
    index = NearDuplicateIndex(threshold=0.8)
    index.add("a", base)
    far = _perturb(rng, base, 0.15)
    sim = jaccard(shingles(base), shingles(far))
    assert sim < 0.8
    assert index.query(far) == []
    assert index.query(base) == [("a", 1.0)]
    assert index.query(base, exclude="a") == []
    index.discard("a")
    assert index.query(base) == [] and len(index) == 0
    index.discard("a")  # twice is fine


def test_the_band_layout_puts_the_s_curve_below_the_threshold():
    for threshold in (0.3, 0.5, 0.7, 0.9):
        bands, rows = lsh_layout(threshold, 128)
        assert bands * rows <= 128
        assert (1 / bands) ** (1 / rows) < threshold
