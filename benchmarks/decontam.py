"""Decontamination speed: `NGramIndex.check` against a benchmark, with the floor in the same run.

    python benchmarks/decontam.py [--n-instructions 50000] [--bench-tasks 100] [--planted 500]

All data is generated here with a fixed seed (nothing is downloaded):
  * the benchmark: N Harbor task folders in a temp dir, instructions of 150-500 words, tests/
    files of 80-300 words of Python-ish text; words drawn from a vocabulary of a few thousand
    (common English words first, then made-up ones) with Zipf-like frequencies, plus shared
    boilerplate phrases, so common words and short phrases recur everywhere as in real data;
  * the instructions: 45% math-style prompts (60-150 words), 54% task instructions (200-600
    words), 1% SWE-style prompts (2,000-6,000 words, half of them code); ~15% hold some
    non-ASCII punctuation or letters; `--planted` of them carry a 14-gram copied from a
    benchmark text, re-cased and re-punctuated.
The index is built once (load and build times printed apart). Then, for `--rounds` rounds,
one core, the same texts: the floor = `normalize_words(text)` alone, the bare minimum of reading
every instruction (and `re.findall` over `text.lower()` for reference), and `index.check(text)`.
Prints instructions/s (best round), the ratio to the floor and the verdict against the target
(>= 10,000 instructions/s per core). Checks in the same run that every planted instruction is
caught and nothing else is, and that a slow reference (every n-gram as a tuple in a dict) agrees
on a sample, down to the reported item and n-gram.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import sys
import tempfile
import time
import tracemalloc
import unicodedata
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ttgen.curate.decontaminate import (
    DEFAULT_NGRAM,
    FILE_SEP,
    BenchmarkItem,
    NGramIndex,
    load_benchmark,
    normalize_words,
)

TARGET = 10_000  # instructions per second per core

# the most frequent words; the rest of the vocabulary is made of syllables
_COMMON_TEXT = """the a to of and in is for that with on be it this as are file by or from at your
you should an not each all if output must using use will can when which then into data test
run command directory program script line value string number return function create write
read find list print new only one two first last set make sure also any every more than
given following its their other before after between without result results server port
config configuration user users log logs error errors process system path input json csv
table column row key name type size time date hash count sum total check update"""
_SYLLABLE_TEXT = (
    "ba be bi bo bu ca ce co cu da de di do fa fe fi ga ge go ha he hi ka ke ki ko la le li lo "
    "lu ma me mi mo mu na ne ni no nu pa pe pi po ra re ri ro ru sa se si so su ta te ti to tu "
    "va ve vi vo za ze zo ar er ir or ur an en in on un al el il ol ex ix ox st tr pr gr"
)
COMMON = _COMMON_TEXT.split()
SYLLABLES = _SYLLABLE_TEXT.split()
NON_ASCII = ["\u2019", "\u2014", "\u201c", "\u201d", "caf\u00e9", "na\u00efve", "\u2192", "\u00b0C"]
KINDS = ("math", "task", "swe")


# -- data -----------------------------------------------------------------------------------


class Gen:
    """Zipf-weighted words and the texts made of them (numpy for the bulk draws)."""

    def __init__(self, seed: int, vocab_size: int) -> None:
        self.rng = random.Random(seed)
        self.np = np.random.default_rng(seed)
        made: dict[str, None] = dict.fromkeys(COMMON)
        while len(made) < vocab_size:
            made.setdefault("".join(self.rng.choices(SYLLABLES, k=self.rng.randint(1, 4))))
        self.vocab = np.array(list(made), dtype=object)
        weights = 1.0 / (np.arange(len(self.vocab)) + 2.7) ** 1.05
        self.p = weights / weights.sum()
        self.phrases = [
            " ".join(self.words(self.rng.randint(3, 6))).capitalize() for _ in range(40)
        ]

    def words(self, k: int) -> list[str]:
        return self.vocab[self.np.choice(len(self.vocab), size=k, p=self.p)].tolist()

    def prose(self, n_words: int, non_ascii: bool = False) -> str:
        """Sentences of 6-22 words: capitals, commas, paths, numbers, boilerplate openers."""
        rng = self.rng
        words = self.words(n_words)
        out: list[str] = []
        i = 0
        while i < len(words):
            k = rng.randint(6, 22)
            sent = words[i : i + k]
            i += k
            if rng.random() < 0.3:
                j = rng.randrange(len(sent))
                sent[j] = f"/app/{sent[j]}.txt" if rng.random() < 0.5 else str(rng.randint(0, 999))
            if rng.random() < 0.4 and len(sent) > 4:
                sent[2] += ","
            if non_ascii and rng.random() < 0.3:
                sent.insert(rng.randrange(len(sent) + 1), rng.choice(NON_ASCII))
            text = " ".join(sent)
            if rng.random() < 0.2:
                text = rng.choice(self.phrases) + " " + text
            out.append(text[:1].upper() + text[1:] + rng.choice(".....:?"))
        para = rng.randint(3, 6)
        return "\n\n".join(" ".join(out[j : j + para]) for j in range(0, len(out), para))

    def code(self, n_words: int) -> str:
        """Python-looking lines whose identifiers are vocabulary words."""
        rng = self.rng
        words = self.words(n_words)
        lines = []
        for j in range(0, len(words), 6):
            w = words[j : j + 6] + ["x"] * 6
            lines.append(
                rng.choice(
                    [
                        f"def {w[0]}_{w[1]}({w[2]}, {w[3]}):",
                        f"    {w[0]} = {w[1]}.{w[2]}({w[3]}, {w[4]}={w[5]})",
                        f"    return {w[0]}[{w[1]}] + {w[2]}  # {w[3]} {w[4]} {w[5]}",
                        f'    assert {w[0]}({w[1]}) == "{w[2]} {w[3]}", "{w[4]} {w[5]}"',
                    ]
                )
            )
        return "\n".join(lines)

    def instruction(self, kind: str) -> str:
        rng = self.rng
        non_ascii = rng.random() < 0.15
        if kind == "math":
            return self.prose(rng.randint(60, 150), non_ascii)
        if kind == "task":
            return self.prose(rng.randint(200, 600), non_ascii)
        n = rng.randint(2000, 6000)
        parts = []
        while n > 0:
            k = min(n, rng.randint(100, 400))
            parts.append(self.prose(k, non_ascii) if len(parts) % 2 == 0 else self.code(k))
            n -= k
        return "\n\n```python\n".join(parts)

    def plant(self, text: str, words: list[str]) -> str:
        """`text` with `words` (one benchmark n-gram) inserted at a sentence end, re-cased and
        re-punctuated (the normalized words are unchanged)."""
        rng = self.rng
        seps = [" ", " ", " ", ", ", "\n", " - ", "  ", "/", ": ", "_"]
        cased = [rng.choice([w, w.upper(), w.capitalize()]) for w in words]
        snippet = cased[0] + "".join(rng.choice(seps) + w for w in cased[1:])
        cuts = [m.end() for m in re.finditer(r"[.:?]\s", text)] or [len(text)]
        at = rng.choice(cuts)
        return f"{text[:at]}{snippet}. {text[at:]}"


def write_benchmark(gen: Gen, root: Path, n_tasks: int) -> None:
    rng = gen.rng
    for i in range(n_tasks):
        task = root / f"bench-task-{i:03d}"
        (task / "tests").mkdir(parents=True)
        (task / "solution").mkdir()
        (task / "instruction.md").write_text(gen.prose(rng.randint(150, 500), rng.random() < 0.15))
        (task / "task.toml").write_text(
            f'schema_version = "1.1"\n[task]\nname = "bench/task-{i:03d}"\n'
        )
        (task / "tests" / "test_outputs.py").write_text(gen.code(rng.randint(80, 300)))
        (task / "tests" / "test.sh").write_text("#!/bin/bash\npytest /tests/test_outputs.py\n")
        (task / "solution" / "solve.sh").write_text("#!/bin/bash\n" + gen.code(60))


# -- reference ------------------------------------------------------------------------------

_REF_WORD = re.compile(r"[^\W_]+")


def ref_words(text: str) -> list[str]:
    """The normalization spelled out, without the ASCII shortcut `normalize_words` takes."""
    return _REF_WORD.findall(
        unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    )


class Reference:
    """Every n-gram of the benchmark as a word tuple in a dict: slow, obviously right."""

    def __init__(self, items: list[BenchmarkItem], n: int) -> None:
        self.n = n
        self.first: dict[tuple[str, ...], tuple[str, str]] = {}
        for item in items:
            for field, text in item.texts.items():
                for part in text.split(FILE_SEP):
                    w = ref_words(part)
                    for i in range(len(w) - n + 1):
                        self.first.setdefault(tuple(w[i : i + n]), (item.item_id, field))

    def check(self, text: str) -> tuple[str, str, str] | None:
        w = ref_words(text)
        for i in range(len(w) - self.n + 1):
            hit = self.first.get(tuple(w[i : i + self.n]))
            if hit is not None:
                return (*hit, " ".join(w[i : i + self.n]))
        return None


# -- timing ---------------------------------------------------------------------------------


def timed(fn: Callable[[str], object], texts: list[str]) -> float:
    """Seconds for `fn` over all texts; results are dropped at once (keeping 16 M words alive
    would slow the floor down with memory traffic and GC passes)."""
    t0 = time.perf_counter()
    for t in texts:
        fn(t)
    return time.perf_counter() - t0


def bench(args: argparse.Namespace) -> int:
    n = args.n
    fields = tuple(f.strip() for f in args.fields.split(","))
    gen = Gen(args.seed, args.vocab)
    tmp = Path(tempfile.mkdtemp(prefix="ttgen-decontam-"))
    try:
        t0 = time.perf_counter()
        write_benchmark(gen, tmp / "bench", args.bench_tasks)
        kinds = gen.rng.choices(KINDS, weights=(45, 54, 1), k=args.n_instructions)
        texts = [gen.instruction(k) for k in kinds]
        gen_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        items, bad = load_benchmark(tmp / "bench", fields=fields)
        load_s = time.perf_counter() - t0
        if bad:
            print(f"bad benchmark items: {bad[:3]}", file=sys.stderr)
            return 1
        t0 = time.perf_counter()
        index = NGramIndex(n)
        index.add_all(items)
        summary = index.summary()  # forces the sorted arrays, so the build is all counted
        build_s = time.perf_counter() - t0

        # plant n-grams from the indexed fields of random benchmark items
        planted: set[int] = set()
        sources = [
            (item, f)
            for item in items
            for f in fields
            if f in item.texts and len(normalize_words(item.texts[f])) >= n + 5
        ]
        for idx in gen.rng.sample(range(len(texts)), args.planted):
            item, field = gen.rng.choice(sources)
            part = max(item.texts[field].split(FILE_SEP), key=len)
            w = normalize_words(part)
            start = gen.rng.randrange(len(w) - n + 1)
            texts[idx] = gen.plant(texts[idx], w[start : start + n])
            planted.add(idx)

        n_words = [len(normalize_words(t)) for t in texts]
        tracemalloc.start()
        mem_index = NGramIndex(n)
        mem_index.add_all(items)
        mem_index.summary()
        mem_mb = tracemalloc.get_traced_memory()[0] / 2**20
        tracemalloc.stop()
        del mem_index

        floor_re = re.compile(r"[^\W_]+")
        best = {"floor": float("inf"), "regex": float("inf"), "check": float("inf")}
        for r in range(args.rounds):
            f_s = timed(normalize_words, texts)
            g_s = timed(lambda t: floor_re.findall(t.lower()), texts)
            c_s = timed(index.check, texts)
            best["floor"] = min(best["floor"], f_s)
            best["regex"] = min(best["regex"], g_s)
            best["check"] = min(best["check"], c_s)
            print(
                f"round {r + 1}/{args.rounds}: floor {f_s:6.2f} s   lower+findall {g_s:6.2f} s"
                f"   check {c_s:6.2f} s",
                flush=True,
            )

        # -- correctness ---------------------------------------------------------------------
        results = [index.check(t) for t in texts]
        checks: list[str] = []
        caught = {i for i, m in enumerate(results) if m is not None}
        missed = planted - caught
        extra = caught - planted
        if missed:
            checks.append(f"MISSED {len(missed)} planted instructions, e.g. #{min(missed)}")
        ref = Reference(items, n)
        for i in sorted(extra):  # only an error if the reference disagrees (accidental overlap)
            if ref.check(texts[i]) is None:
                checks.append(f"FALSE MATCH on unplanted #{i}: {results[i]}")
        sample = sorted(
            set(gen.rng.sample(range(len(texts)), min(args.reference_sample, len(texts))))
            | set(gen.rng.sample(sorted(planted), min(200, len(planted))))
        )
        disagree = 0
        for i in sample:
            m = results[i]
            got = None if m is None else (m.item_id, m.field, m.ngram)
            if got != ref.check(texts[i]):
                disagree += 1
                if disagree <= 3:
                    checks.append(f"reference disagrees on #{i}: {got} vs {ref.check(texts[i])}")
        if disagree:
            checks.append(f"reference disagrees on {disagree} of {len(sample)} sampled")

        # -- report --------------------------------------------------------------------------
        total = len(texts)
        rate = total / best["check"]
        by_kind = {k: [w for w, kk in zip(n_words, kinds, strict=True) if kk == k] for k in KINDS}
        print()
        print(
            f"data: {total} instructions ({sum(n_words) / 1e6:.1f} M words; "
            + ", ".join(
                f"{k} {len(v)} x ~{int(np.mean(v)) if v else 0} words" for k, v in by_kind.items()
            )
            + f"), {len(planted)} planted; generated in {gen_s:.1f} s"
        )
        print(
            f"benchmark: {summary['items']} tasks, fields {','.join(fields)}: "
            f"{summary['texts']} texts, {summary['ngrams']:,} distinct {n}-grams, "
            f"{summary['short_items']} short items"
        )
        print(
            f"index: load {load_s * 1000:.0f} ms, build {build_s * 1000:.0f} ms (once), "
            f"{mem_mb:.1f} MiB (tracemalloc)"
        )
        print()
        print(f"one core, best of {args.rounds} rounds       time      instructions/s   vs floor")
        for label, key in (
            ("floor: normalize_words", "floor"),
            ("ref: lower() + re.findall", "regex"),
            ("NGramIndex.check", "check"),
        ):
            s = best[key]
            print(f"  {label:<30} {s:7.2f} s   {total / s:12,.0f}   {s / best['floor']:6.2f}x")
        print(
            f"  per instruction: check {best['check'] / total * 1e6:.1f} us, "
            f"of which normalize {best['floor'] / total * 1e6:.1f} us"
        )
        print()
        verdict = "OK" if rate >= TARGET else "MISSED"
        print(f"target >= {TARGET:,}/s/core: {rate:,.0f}/s   {verdict}")
        print(
            "\n".join(checks)
            or f"checks: {len(planted)}/{len(planted)} planted caught, {len(extra)} others; "
            f"reference agrees on {len(sample)} sampled instructions   OK"
        )
        return 0 if not checks and rate >= TARGET else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n-instructions", type=int, default=50_000)
    ap.add_argument("--bench-tasks", type=int, default=100)
    ap.add_argument("--planted", type=int, default=500, help="instructions with a benchmark n-gram")
    ap.add_argument("-n", type=int, default=DEFAULT_NGRAM, help="n-gram size")
    ap.add_argument(
        "--fields", default="instruction", help="benchmark fields to index, e.g. instruction,tests"
    )
    ap.add_argument("--vocab", type=int, default=4000, help="vocabulary size")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reference-sample", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    sys.exit(bench(args))


if __name__ == "__main__":
    main()
