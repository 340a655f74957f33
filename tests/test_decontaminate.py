"""Decontamination: normalization, exact n-gram matching and the benchmark readers."""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import string
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from ttgen.curate.decontaminate import (
    BENCH_FIELDS,
    DEFAULT_NGRAM,
    FILE_SEP,
    BenchmarkItem,
    Match,
    NGramIndex,
    load_benchmark,
    normalize_words,
)

# 24 words; the instruction of the benchmark task "tb2/fix-server"
BENCH_INSTRUCTION = (
    "Your job is to repair the broken nginx configuration so that the web server answers "
    "every request on port 8080 with the status page."
)
SECRET = (  # 17 words that occur only in the tests of the Harbor benchmark task
    "assert the quarterly ledger totals match the archived reconciliation report produced "
    "by the legacy accounting batch job"
)


def index_of(*texts: str, n: int = DEFAULT_NGRAM, field: str = "instruction") -> NGramIndex:
    index = NGramIndex(n)
    for i, text in enumerate(texts):
        index.add(BenchmarkItem("tb2", f"task-{i}", {field: text}))
    return index


def fourteen(text: str, start: int = 0, n: int = 14) -> str:
    return " ".join(normalize_words(text)[start : start + n])


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# -- normalization --------------------------------------------------------------------------


def test_normalize_words_drops_case_punctuation_and_whitespace() -> None:
    assert normalize_words("Write the result to /app/out.txt,\tthen  STOP!") == [
        "write",
        "the",
        "result",
        "to",
        "app",
        "out",
        "txt",
        "then",
        "stop",
    ]
    assert normalize_words("snake_case-and.dots") == ["snake", "case", "and", "dots"]
    assert normalize_words("") == []
    assert normalize_words("... --- ___") == []


def test_normalize_words_unicode() -> None:
    # full-width letters and the "fi" ligature fold to plain ones (NFKC), casefold lowers
    assert normalize_words("ＷＲＩＴＥ the ﬁle") == ["write", "the", "file"]  # noqa: RUF001
    assert normalize_words("Straße STRASSE") == ["strasse", "strasse"]
    # non-Latin words stay words; their punctuation separates them
    assert normalize_words("Привет, Мир！ 数据。テスト") == [  # noqa: RUF001
        "привет",
        "мир",
        "数据",
        "テスト",
    ]
    # composed and decomposed accents are the same word
    assert normalize_words("Café") == normalize_words("Cafe\u0301") == ["café"]


def reference_words(text: str) -> list[str]:
    """The definition of the normalization, without the shortcuts `normalize_words` takes."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return re.findall(r"[^\W_]+", folded)


def test_normalize_words_equals_its_definition() -> None:
    rng = random.Random(7)
    # every character up to U+2FFF (Latin, Greek, Cyrillic, combining marks, Indic, Hangul
    # jamo, ...) and a sample of the rest, beside and after ASCII letters of both cases
    points = [*range(0x80, 0x3000), *rng.sample(range(0x3000, 0x110000), 10_000)]
    points += [0xD800, 0xDC00, 0xDFFF]  # lone surrogates (JSON can carry them)
    for cp in points:
        c = chr(cp)
        text = f"a{c}b {c} x{c}_ 9{c} " + " ".join(u + c for u in string.ascii_uppercase)
        assert normalize_words(text) == reference_words(text), hex(cp)
    alphabet = "aZ9_ -./,:;!?'\"\t\n\x1c\x1f#`|~" + "".join(chr(cp) for cp in points[::10])
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(40)))
        assert normalize_words(text) == reference_words(text), repr(text)


def test_unicode_benchmark_matches_ascii_spelling() -> None:
    bench = (
        "ｃｏｎｆｉｇｕｒｅ the ﬁrewall"  # noqa: RUF001 (full-width letters)
        " so only port 22 and 443 accept traffic from the office network"
    )
    index = index_of(bench)
    match = index.check(
        "Please configure the FIREWALL so only port 22 and 443 accept traffic from the office "
        "network!"
    )
    assert match is not None
    assert match.ngram.startswith("configure the firewall so only port 22")

    russian = (  # 14 words
        "Напишите скрипт который читает файл журнала и выводит количество ошибок "
        "за каждый день недели"
    )
    index = index_of(russian)
    match = index.check(
        "СКРИПТ: напишите, скрипт который читает файл журнала и выводит "
        "КОЛИЧЕСТВО ошибок — за каждый день недели."
    )
    assert match is not None
    assert match.ngram == " ".join(normalize_words(russian))
    assert index.check(russian.rsplit(" ", 1)[0]) is None


# -- matching -------------------------------------------------------------------------------


def test_planted_ngram_is_caught_despite_case_punctuation_and_whitespace() -> None:
    index = NGramIndex()
    index.add(BenchmarkItem("tb2", "fix-server", {"instruction": BENCH_INSTRUCTION}))
    text = (
        "You are working in a container. First, read the docs.\n\n"
        "REPAIR the BROKEN nginx-configuration, so that the web_server answers every\n"
        "   request on port 8080 -- with the status page; then commit your changes."
    )
    match = index.check(text)
    assert match == Match(
        benchmark="tb2",
        item_id="fix-server",
        field="instruction",
        ngram="repair the broken nginx configuration so that the web server answers every "
        "request on",
    )
    assert len(match.ngram.split()) == 14


def test_first_shared_ngram_in_text_order() -> None:
    index = index_of(BENCH_INSTRUCTION)
    words = normalize_words(BENCH_INSTRUCTION)
    # the later 14 words come first in the text: they are reported, not the earlier window
    text = " ".join(words[6:20]) + " and also " + " ".join(words[0:14])
    assert index.check(text).ngram == " ".join(words[6:20])


def test_thirteen_words_do_not_match() -> None:
    index = index_of(BENCH_INSTRUCTION)
    words = normalize_words(BENCH_INSTRUCTION)
    assert index.check("Please " + " ".join(words[:13]) + " quickly.") is None
    assert index.check("Please " + " ".join(words[:14]) + " quickly.") is not None
    # every 13-word window, each on its own, with a gap between them
    for i in range(len(words) - 12):
        assert index.check("x " + " ".join(words[i : i + 13]) + " y") is None


def test_same_words_in_another_order_do_not_match() -> None:
    index = index_of(BENCH_INSTRUCTION)
    words = normalize_words(BENCH_INSTRUCTION)
    assert index.check(" ".join(reversed(words))) is None
    shuffled = words[:]
    random.Random(3).shuffle(shuffled)
    assert index.check(" ".join(shuffled)) is None


def test_common_words_without_a_shared_sequence_do_not_match() -> None:
    bench = (
        "the file in the directory is the one that the script in the folder reads and the "
        "output of the program is written to the file in the directory of the user"
    )
    index = index_of(bench)
    text = (
        "the program in the folder is the one that the user reads and the file of the "
        "directory is written to the output in the script of the file in the directory"
    )
    assert set(normalize_words(text)) <= set(normalize_words(bench))
    assert index.check(text) is None


def test_short_texts_never_match() -> None:
    short = "Fix the broken server."
    index = index_of(short, BENCH_INSTRUCTION)
    assert index.short_items == 1
    assert index.check(short) is None
    assert index.check(short * 10) is None
    assert index.check("") is None
    assert (
        index_of(BENCH_INSTRUCTION).check(" ".join(normalize_words(BENCH_INSTRUCTION)[:5])) is None
    )


def test_first_item_added_is_reported_for_a_shared_ngram() -> None:
    index = NGramIndex()
    index.add(BenchmarkItem("tb2", "first", {"instruction": BENCH_INSTRUCTION}))
    index.add(BenchmarkItem("other", "second", {"instruction": BENCH_INSTRUCTION}))
    match = index.check(BENCH_INSTRUCTION)
    assert (match.benchmark, match.item_id) == ("tb2", "first")
    # identical n-grams are stored once
    assert index.n_ngrams == len(normalize_words(BENCH_INSTRUCTION)) - 13
    # adding after a check still works, and the first item stays first
    index.add(BenchmarkItem("late", "third", {"instruction": SECRET}))
    assert index.check(BENCH_INSTRUCTION).item_id == "first"
    assert index.check("see: " + SECRET).item_id == "third"


def test_n_is_configurable() -> None:
    words = normalize_words(BENCH_INSTRUCTION)
    index = index_of(BENCH_INSTRUCTION, n=8)
    assert index.check("so: " + " ".join(words[3:11]) + " done").ngram == " ".join(words[3:11])
    assert index.check("so: " + " ".join(words[3:10]) + " done") is None
    one = index_of("alpha beta", n=1)
    assert one.check("gamma BETA").ngram == "beta"
    assert one.check("gamma delta") is None
    two = index_of("alpha beta gamma", n=2)
    assert two.check("x beta gamma").ngram == "beta gamma"
    assert two.check("gamma beta alpha") is None
    with pytest.raises(ValueError, match="at least 1"):
        NGramIndex(0)


def test_file_boundaries_do_not_make_ngrams() -> None:
    a = "one two three four five six seven"
    b = "eight nine ten eleven twelve thirteen fourteen"
    index = NGramIndex()
    index.add(BenchmarkItem("tb2", "t", {"tests": a + FILE_SEP + b}))
    assert index.check(a + " " + b) is None
    index.add(BenchmarkItem("tb2", "u", {"tests": a + "\n" + b}))
    assert index.check(a + " " + b).item_id == "u"


def test_many_near_misses_before_the_match() -> None:
    """Hundreds of 13-word copies (each passes the block filter, none is a 14-gram) before
    the one real 14-gram: every candidate window is checked, in order, across chunks."""
    words = [f"w{i}" for i in range(3000)]
    index = index_of(" ".join(words))
    parts = []
    for i in range(0, 2800, 13):
        parts += [*words[i : i + 13], f"gap{i}"]
    text = " ".join([*parts, *words[100:114], "end"])
    assert index.check(" ".join(parts)) is None
    assert index.check(text).ngram == " ".join(words[100:114])


def test_pickled_index_works_in_a_process_with_other_str_hashes(tmp_path: Path) -> None:
    index = index_of("too short", BENCH_INSTRUCTION, SECRET)
    index.check("warm up")  # builds the sorted arrays before pickling
    path = tmp_path / "index.pickle"
    path.write_bytes(pickle.dumps(index))
    code = (
        "import pickle, sys\n"
        "index = pickle.loads(open(sys.argv[1], 'rb').read())\n"
        "m = index.check(sys.argv[2])\n"
        "print(m.item_id, m.field, index.summary()['ngrams'], index.short_items)\n"
    )
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code, str(path), "so: " + SECRET.upper()],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.split() == ["task-2", "instruction", str(index.n_ngrams), "1"]


def test_duplicate_task_names_are_told_apart(tmp_path: Path) -> None:
    make_harbor_task(tmp_path / "b" / "v1", "fix-server", BENCH_INSTRUCTION, "x")
    make_harbor_task(tmp_path / "b" / "v2", "fix-server", SECRET, "x")
    items, _ = load_benchmark(tmp_path / "b")
    assert [i.item_id for i in items] == ["fix-server", "v2/fix-server"]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 6, 7, 14])
def test_agrees_with_brute_force(n: int) -> None:
    """Random texts over a tiny vocabulary (so long partial overlaps are common) against a
    reference that keeps every n-gram as a tuple: same verdict, item and n-gram."""
    rng = random.Random(11 + n)
    vocab = ["a", "b", "c", "d"] if n <= 6 else ["a", "b"]
    bench = [" ".join(rng.choices(vocab, k=rng.randrange(3, 60))) for _ in range(20)]
    index = index_of(*bench, n=n)
    first: dict[tuple[str, ...], str] = {}
    for i, text in enumerate(bench):
        w = normalize_words(text)
        for j in range(len(w) - n + 1):
            first.setdefault(tuple(w[j : j + n]), f"task-{i}")
    hits = 0
    for _ in range(500):
        w = rng.choices(vocab, k=rng.randrange(0, 60))
        expected = next(
            (
                (g, first[g])
                for g in (tuple(w[j : j + n]) for j in range(len(w) - n + 1))
                if g in first
            ),
            None,
        )
        match = index.check(" ".join(w))
        got = None if match is None else (tuple(match.ngram.split()), match.item_id)
        assert got == expected
        hits += match is not None
    assert 20 < hits < 500  # both verdicts are well represented


def test_summary() -> None:
    index = NGramIndex()
    index.add(BenchmarkItem("tb2", "a", {"instruction": BENCH_INSTRUCTION}))
    index.add(BenchmarkItem("tb2", "b", {"instruction": "too short"}))
    index.add(BenchmarkItem("mini", "c", {"instruction": SECRET}))
    summary = index.summary()
    assert summary["items"] == index.n_items == 3
    assert summary["short_items"] == 1
    assert summary["ngrams"] == index.n_ngrams == (24 - 13) + (17 - 13)
    assert summary["benchmarks"] == index.benchmarks == {"tb2": 2, "mini": 1}
    assert summary["n"] == 14


# -- benchmark readers ----------------------------------------------------------------------


def make_harbor_task(root: Path, name: str, instruction: str, test_text: str) -> Path:
    task = root / name
    write(task / "instruction.md", instruction)
    write(task / "task.toml", f'schema_version = "1.1"\n[task]\nname = "{name}"\n')
    write(task / "environment" / "Dockerfile", "FROM ubuntu:24.04\n")
    write(task / "tests" / "test.sh", "#!/bin/bash\npytest /tests/test_outputs.py\n")
    write(task / "tests" / "test_outputs.py", f'def test_ledger():\n    """{test_text}"""\n')
    (task / "tests" / "fixture.bin").write_bytes(b"\x00\x01" + SECRET.encode() + b"\x00")
    write(task / "solution" / "solve.sh", "#!/bin/bash\necho fixed the ledger totals\n")
    return task


def test_harbor_folder_fields(tmp_path: Path) -> None:
    root = tmp_path / "tb2"
    make_harbor_task(root / "group", "fix-server", BENCH_INSTRUCTION, SECRET)
    make_harbor_task(root, "other-task", "Count the lines of every log file in /var/log.", "x")

    items, bad = load_benchmark(root)
    assert bad == []
    assert sorted(i.item_id for i in items) == ["fix-server", "other-task"]
    assert {i.benchmark for i in items} == {"tb2"}
    assert all(set(i.texts) == {"instruction"} for i in items)
    index = NGramIndex()
    index.add_all(items)
    contaminated = f"Write unit tests: {SECRET.upper()}."
    assert index.check(contaminated) is None
    assert index.check(BENCH_INSTRUCTION).item_id == "fix-server"

    items, bad = load_benchmark(root, name="bench", fields=("instruction", "tests"))
    index = NGramIndex()
    index.add_all(items)
    match = index.check(contaminated)
    assert match == Match("bench", "fix-server", "tests", fourteen(SECRET))
    assert "solution" not in items[0].texts

    items, _ = load_benchmark(root, fields=("solution",))
    by_id = {i.item_id: i for i in items}
    assert set(by_id["fix-server"].texts) == {"solution"}
    assert "fixed the ledger totals" in by_id["fix-server"].texts["solution"]


def test_harbor_task_that_task_load_rejects_still_gives_its_instruction(tmp_path: Path) -> None:
    root = tmp_path / "bench"
    write(root / "odd" / "instruction.md", BENCH_INSTRUCTION)
    write(root / "odd" / "task.toml", "this is [not toml\n")
    write(root / "no-toml" / "instruction.md", SECRET)
    write(root / "empty" / "instruction.md", "  \n")
    write(root / "broken" / "task.toml", 'schema_version = "1.1"\n')
    items, bad = load_benchmark(root)
    assert sorted(i.item_id for i in items) == ["no-toml", "odd"]
    assert sorted((Path(b.origin).parent.name, b.problem) for b in bad) == [
        ("broken", "missing"),
        ("empty", "empty"),
    ]


def test_tb1_folder(tmp_path: Path) -> None:
    root = tmp_path / "terminal-bench" / "tasks"
    task = root / "fix-server"
    write(
        task / "task.yaml",
        "instruction: |-\n  " + BENCH_INSTRUCTION + "\nauthor_email: a@b.c\ndifficulty: easy\n",
    )
    write(task / "tests" / "test_outputs.py", f"# {SECRET}\n")
    write(
        task / "run-tests.sh",
        "#!/bin/bash\n# run the suite against the live nginx server on port 8080 and report\n",
    )
    write(
        task / "solution.sh",
        "#!/bin/bash\nsed -i 's/listen 80/listen 8080/' /etc/nginx/nginx.conf\n",
    )
    old = root / "old-style"
    write(
        old / "task.yaml",
        "descriptions:\n  - key: hard\n    description: ignore me\n"
        "  - key: base\n    description: Compress every file in the data folder with gzip.\n",
    )
    write(
        old / "solution.yaml",
        "- command: gzip -r /data\n  min_timeout_sec: 5\n- command: ls /data\n",
    )
    write(root / "bad-yaml" / "task.yaml", "instruction: [unclosed\n")

    items, bad = load_benchmark(tmp_path / "terminal-bench", fields=BENCH_FIELDS)
    assert [b.problem.split(" at ")[0] for b in bad] == ["YAML syntax error"]
    assert bad[0].origin.endswith("bad-yaml/task.yaml")
    by_id = {i.item_id: i for i in items}
    assert set(by_id) == {"fix-server", "old-style"}
    assert by_id["fix-server"].benchmark == "terminal-bench"
    assert by_id["fix-server"].texts["instruction"] == BENCH_INSTRUCTION
    assert SECRET in by_id["fix-server"].texts["tests"]
    assert "live nginx server" in by_id["fix-server"].texts["tests"]
    assert "listen 8080" in by_id["fix-server"].texts["solution"]
    assert (
        by_id["old-style"].texts["instruction"]
        == "Compress every file in the data folder with gzip."
    )
    assert by_id["old-style"].texts["solution"] == "gzip -r /data\nls /data"

    index = NGramIndex()
    index.add_all(items)
    assert index.check("Task: " + SECRET).field == "tests"
    assert index.check(BENCH_INSTRUCTION).field == "instruction"


def test_jsonl_default_and_custom_text_field(tmp_path: Path) -> None:
    path = tmp_path / "mini-bench.jsonl"
    lines = [
        json.dumps({"id": "q1", "prompt": BENCH_INSTRUCTION}),
        "",
        "{not json",
        json.dumps({"task_id": 7, "body": "no usual text field here"}),
        json.dumps({"question": SECRET, "body": "alternative body text"}),
        json.dumps(["an", "array"]),
    ]
    write(path, "\n".join(lines) + "\n")
    items, bad = load_benchmark(path)
    assert [(i.benchmark, i.item_id) for i in items] == [
        ("mini-bench", "q1"),
        ("mini-bench", "mini-bench.jsonl:5"),
    ]
    assert items[0].texts == {"instruction": BENCH_INSTRUCTION}
    assert [b.origin for b in bad] == [f"{path}:3", f"{path}:4", f"{path}:6"]
    assert bad[0].problem.startswith("not JSON")
    assert bad[1].problem.startswith("no text")
    assert "array" in bad[2].problem
    index = NGramIndex()
    index.add_all(items)
    assert index.check(SECRET).item_id == "mini-bench.jsonl:5"

    items, bad = load_benchmark(path, text_field="body", name="custom")
    assert [(i.item_id, i.texts["instruction"]) for i in items] == [
        ("7", "no usual text field here"),
        ("mini-bench.jsonl:5", "alternative body text"),
    ]
    assert {i.benchmark for i in items} == {"custom"}
    assert any("'body'" in b.problem for b in bad)


def test_json_array_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "b.json", json.dumps([{"name": "a", "text": SECRET}, {"text": ""}], indent=2)
    )
    items, bad = load_benchmark(path)
    assert [i.item_id for i in items] == ["a"]
    assert [b.origin for b in bad] == [f"{path}:2"]


def test_missing_empty_and_unknown_paths_raise(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ValueError, match=re.escape(str(missing))):
        load_benchmark(missing)
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    with pytest.raises(ValueError, match=re.escape(str(empty)) + ".*no benchmark tasks"):
        load_benchmark(empty)
    blank = write(tmp_path / "blank.jsonl", "\n\n")
    with pytest.raises(ValueError, match=re.escape(str(blank))):
        load_benchmark(blank)
    all_bad = write(tmp_path / "bad.jsonl", "nope\n")
    with pytest.raises(ValueError, match=re.escape(str(all_bad)) + ".*1 bad"):
        load_benchmark(all_bad)
    other = write(tmp_path / "notes.txt", "hello")
    with pytest.raises(ValueError, match="not a benchmark"):
        load_benchmark(other)
    write(tmp_path / "ok" / "t" / "instruction.md", "hello")
    with pytest.raises(ValueError, match="fields"):
        load_benchmark(tmp_path / "ok", fields=("instructions",))


def test_binary_undecodable_and_huge_files_are_skipped(tmp_path: Path) -> None:
    task = tmp_path / "bench" / "t1"
    write(task / "instruction.md", BENCH_INSTRUCTION)
    (task / "tests").mkdir()
    (task / "tests" / "latin1.txt").write_bytes(("café " + SECRET).encode("latin-1"))
    (task / "tests" / "huge.txt").write_text(SECRET + " pad" * 600_000)
    write(task / "tests" / "ok.txt", "the tests folder holds this one readable text file only")
    items, bad = load_benchmark(tmp_path / "bench", fields=("instruction", "tests"))
    assert bad == []
    assert items[0].texts["tests"] == "the tests folder holds this one readable text file only"
