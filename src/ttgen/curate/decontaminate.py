"""Benchmark decontamination: find training records whose task instruction shares a word n-gram
with a benchmark.

The paper removes "any prompt that has a 14-gram overlap with Terminal-Bench 2.0 test samples";
ttgen drops every record whose task instruction shares an n-gram (default 14 words) with any
benchmark text, and records which benchmark item matched and the shared n-gram.

Normalization (`normalize_words`)
    NFKC, casefold, NFKC again (casefolding a few Greek and Latin letters leaves text that is no
    longer NFKC-normal), then words are the maximal runs of Unicode letters and digits
    (``[^\\W_]+``): punctuation, underscores and whitespace only separate words. So "Write the
    result to /app/out.txt," and "write THE result to app out txt" are the same six words.
    Pure-ASCII text (most of it) takes a shortcut with the same result: one bytes.translate
    that lowercases letters and blanks everything else, then str.split; text whose non-ASCII
    characters need no case folding (curly quotes, dashes, accented lowercase) a similar one.

The index (`NGramIndex`)
    Every n-gram (n consecutive normalized words) of every benchmark text is stored as a 64-bit
    hash of its word tuple, in a sorted numpy array beside its location (text, word offset);
    a hash is only a pointer: every hit is confirmed by comparing the words themselves, so a
    hash collision can never produce a false match, and identical n-grams from later items are
    dropped so that the first item added is the one reported.

    Hashing every window of every instruction in Python would cost ~0.3 us per word, too slow
    for the target (>= 10,000 instructions/s on one core). A filter runs first, on the text
    cut into consecutive blocks of k = ceil(n/2) words (14 -> 7): words [0, k), [k, 2k), ...
    Any n-word window [i, i+n) holds a whole block: the first block start p >= i is at most
    i+k-1, so the block ends at p+k <= i+2k-1 <= i+n. So if the window is a benchmark n-gram,
    that block is a benchmark k-gram. The index keeps the hashes of all benchmark k-grams in a
    set, and a text's blocks are built and looked up at C speed (``zip(*[iter(words)] * k)``
    -> ``map(hash)`` -> ``map(set.__contains__)`` -> bytes), one lookup per k words. Only where
    a block hits (a few in a thousand on ordinary text) are the n-k+1 windows holding it hashed
    and looked up exactly, in text order, so the first match found is the first in the text.
    A check costs about twice the bare normalization of the text (benchmarks/decontam.py:
    ~40,000 instructions/s on one core against 100 tasks), most of the extra being the first
    hashing of its words.

    Memory: 16 bytes per distinct n-gram (numpy), ~70 per distinct k-gram (a set of ints) and
    the benchmark's words: ~4 MiB for 100 task instructions, ~50 MiB for 1,000 tasks with
    their tests.

Benchmark texts made of several files (tests/, solution/) keep the files apart (joined with
`FILE_SEP`), so no n-gram is made up across a file boundary.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ttgen.errors import TaskError
from ttgen.sources.records import BadRecord
from ttgen.sources.tb1 import parse_yaml
from ttgen.task import Task

DEFAULT_NGRAM = 14
BENCH_FIELDS = ("instruction", "tests", "solution")

#: Joins the files of one benchmark field; n-grams never span it.
FILE_SEP = "\x1e"

MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 4
JSON_TEXT_KEYS = ("instruction", "text", "prompt", "problem", "question")
JSON_ID_KEYS = ("id", "task_id", "name")
JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")

_WORD_RE = re.compile(r"[^\W_]+")
# ASCII letters -> lowercase, digits kept, every other ASCII byte -> space; bytes >= 128 (parts of
# UTF-8 sequences) kept as they are.
_TABLE = bytes(
    b if b >= 128 else ord(chr(b).lower()) if chr(b).isalnum() else ord(" ") for b in range(256)
)
_ASCII_BYTES = bytes(range(128))
_SKIP_DIRS = frozenset({"__pycache__", "node_modules"})
_LOOKUP_CHUNK = 256


def normalize_words(text: str) -> list[str]:
    """The words of `text`: NFKC, casefold, NFKC, then maximal runs of Unicode letters/digits.

    Punctuation, underscores and whitespace separate words and are dropped. Both the benchmark
    and the instructions go through this one function, so they are always compared alike.
    Equal to ``_WORD_RE.findall(NFKC(NFKC(text).casefold()))``; the shortcuts below only avoid
    the regex engine (~6 ns per character), which would dominate the cost of a check.
    """
    if text.isascii():
        # NFKC is the identity on ASCII and casefold is lower(): one translate blanks all but
        # [a-z0-9] and split() cuts the runs.
        return text.encode("ascii").translate(_TABLE).decode("ascii").split()
    text = unicodedata.normalize("NFKC", text)
    # (surrogatepass: a lone surrogate, which JSON can carry, is a separator like any non-word)
    raw = text.encode("utf-8", "surrogatepass")
    # the distinct non-ASCII characters (deleting ASCII bytes leaves whole UTF-8 sequences)
    high = set(raw.translate(None, _ASCII_BYTES).decode("utf-8", "surrogatepass"))
    if any(ch.casefold() != ch or unicodedata.combining(ch) for ch in high):
        # Non-ASCII letters to fold, or combining marks that might compose with a lowercased
        # ASCII letter: the general path.
        return _WORD_RE.findall(unicodedata.normalize("NFKC", text.casefold()))
    # Only ASCII letters change case, and nothing can compose with them (tested over every
    # code point): lowercase ASCII by table and blank the few non-ASCII non-word characters
    # (typically curly quotes and dashes).
    spaced = raw.translate(_TABLE).decode("utf-8", "surrogatepass")
    for ch in high:
        if not ch.isalnum():
            spaced = spaced.replace(ch, " ")
    return spaced.split()


# -- benchmark items ------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchmarkItem:
    """One benchmark sample: its texts by field (fields among BENCH_FIELDS)."""

    benchmark: str
    item_id: str
    texts: dict[str, str]


# A benchmark task or line that could not be read (origin, problem); the rest still loads.
BadBenchmarkItem = BadRecord


def load_benchmark(
    path: Path,
    *,
    name: str | None = None,
    fields: Sequence[str] = ("instruction",),
    text_field: str | None = None,
) -> tuple[list[BenchmarkItem], list[BadBenchmarkItem]]:
    """Read a benchmark: a folder of Harbor or Terminal-Bench 1 tasks, or a JSONL/JSON file.

    Folder (searched recursively, down to MAX_DEPTH levels, hidden folders skipped): a folder
    holding instruction.md (or task.toml) is a Harbor task: instruction.md, tests = the text
    files under tests/, solution = the text files under solution/. A folder holding task.yaml is
    a TB1 task: `instruction` (older tasks: `descriptions`, the "base" entry or the first),
    tests = the text files under tests/ plus run-tests.sh, solution = solution.sh or the
    commands of solution.yaml. `fields` picks which of these texts the items hold (the
    instruction is read in any case: a task without one is bad). Binary, non-UTF-8 and huge (> 2 MB) files are
    skipped.

    File (.jsonl/.ndjson, or .json holding JSON lines or one array): each line an object whose
    text is `text_field` or the first present of JSON_TEXT_KEYS, id from JSON_ID_KEYS or
    "file.jsonl:LINE" (for an array, the element number); the text is the item's "instruction".

    `name` defaults to the folder name / file stem. A bad task or line is returned as a
    BadBenchmarkItem (origin + problem) and the rest goes on. Raises ValueError, naming the
    path, when it does not exist, is of an unknown kind or yields no usable item at all: an
    empty benchmark would silently let everything through.
    """
    path = Path(path)
    bad_fields = [f for f in fields if f not in BENCH_FIELDS]
    if bad_fields or not fields:
        raise ValueError(
            f"benchmark fields must be among {', '.join(BENCH_FIELDS)}; got {list(fields)!r}"
        )
    if not path.exists():
        raise ValueError(f"{path}: benchmark not found (no such file or directory)")
    if name is None:
        name = (path.resolve().name if path.is_dir() else path.stem) or str(path)
    if path.is_dir():
        items, bad = _load_folder(path, name, tuple(fields))
        what = "no benchmark tasks (a folder with instruction.md, task.toml or task.yaml)"
    elif path.suffix.lower() in JSON_SUFFIXES:
        items, bad = _load_json_texts(path, name, text_field)
        what = "no benchmark texts (JSON objects with a text field)"
    else:
        raise ValueError(
            f"{path}: not a benchmark (expected a folder of tasks or a "
            f"{'/'.join(JSON_SUFFIXES)} file of texts)"
        )
    if not items:
        if bad:
            first = f"{bad[0].origin}: {bad[0].problem}"
            raise ValueError(
                f"{path}: no usable benchmark item; {len(bad)} bad, the first: {first}"
            )
        raise ValueError(f"{path}: {what} found here or {MAX_DEPTH} levels below")
    return items, bad


def _load_folder(
    root: Path, bench: str, fields: tuple[str, ...]
) -> tuple[list[BenchmarkItem], list[BadBenchmarkItem]]:
    items: list[BenchmarkItem] = []
    bad: list[BadBenchmarkItem] = []
    used: set[str] = set()
    for task_dir, kind in _find_task_dirs(root):
        reader = _harbor_item if kind == "harbor" else _tb1_item
        try:
            item_id, texts = reader(task_dir, fields)
        except TaskError as exc:
            bad.append(BadBenchmarkItem(str(exc.path), exc.problem))
            continue
        if item_id in used:  # two tasks of one name: tell them apart by their place
            item_id = task_dir.relative_to(root).as_posix() if task_dir != root else item_id
        used.add(item_id)
        items.append(BenchmarkItem(bench, item_id, texts))
    return items, bad


def _find_task_dirs(root: Path) -> list[tuple[Path, str]]:
    """Task folders under `root` (itself included) with their kind, "harbor" or "tb1"."""
    found: list[tuple[Path, str]] = []

    def walk(folder: Path, depth: int) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        files = {e.name for e in entries if e.is_file()}
        if "instruction.md" in files or "task.toml" in files:
            found.append((folder, "harbor"))
            return
        if "task.yaml" in files:
            found.append((folder, "tb1"))
            return
        if depth >= MAX_DEPTH:
            return
        for e in entries:
            if e.is_dir() and not e.name.startswith(".") and e.name not in _SKIP_DIRS:
                walk(Path(e.path), depth + 1)

    walk(root, 0)
    return found


def _harbor_item(task_dir: Path, fields: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    try:
        task = Task.load(task_dir)
        item_id, instruction = task.name, task.instruction
    except (TaskError, OSError, ValueError):
        # A benchmark folder only needs its instructions; a task.toml that ttgen rejects (or
        # none at all) must not hide the instruction from decontamination.
        item_id = task_dir.name
        instruction = _read_required(task_dir / "instruction.md")
    texts = {"instruction": instruction} if "instruction" in fields else {}
    if "tests" in fields:
        _put(texts, "tests", _text_files(task_dir / "tests"))
    if "solution" in fields:
        _put(texts, "solution", _text_files(task_dir / "solution"))
    return item_id, texts


def _tb1_item(task_dir: Path, fields: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    yaml_path = task_dir / "task.yaml"
    raw = _load_yaml(yaml_path)
    if not isinstance(raw, dict):
        raise TaskError(yaml_path, f"expected a mapping, got {type(raw).__name__}")
    instruction = raw.get("instruction")
    if instruction is None:
        instruction = _tb1_description(raw.get("descriptions"))
    if not isinstance(instruction, str) or not instruction.strip():
        raise TaskError(yaml_path, "no instruction (nor descriptions[].description) text")
    texts = {"instruction": instruction} if "instruction" in fields else {}
    if "tests" in fields:
        parts = _text_files(task_dir / "tests")
        parts += _text_files(task_dir / "run-tests.sh")
        _put(texts, "tests", parts)
    if "solution" in fields:
        parts = _text_files(task_dir / "solution.sh")
        if not parts and (task_dir / "solution.yaml").is_file():
            parts = _tb1_solution_yaml(task_dir / "solution.yaml")
        _put(texts, "solution", parts)
    return task_dir.name, texts


def _tb1_description(descriptions: Any) -> Any:
    if not isinstance(descriptions, list) or not descriptions:
        return None
    chosen = next(
        (d for d in descriptions if isinstance(d, dict) and d.get("key") == "base"),
        descriptions[0],
    )
    return chosen.get("description") if isinstance(chosen, dict) else None


def _tb1_solution_yaml(path: Path) -> list[str]:
    """The commands of a keystroke solution.yaml (a list of {command: ...}); [] if unreadable."""
    try:
        raw = _load_yaml(path)
    except TaskError:
        return []
    if not isinstance(raw, list):
        return []
    commands = [
        step["command"]
        for step in raw
        if isinstance(step, dict) and isinstance(step.get("command"), str)
    ]
    return ["\n".join(commands)] if commands else []


def _put(texts: dict[str, str], field: str, parts: list[str]) -> None:
    if parts:
        texts[field] = FILE_SEP.join(parts)


def _text_files(path: Path) -> list[str]:
    """The texts of `path` (a file) or of the files under it, sorted; binary, non-UTF-8 and huge
    files are left out (they hold no prose worth matching)."""
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = []
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(
                d for d in dirnames if not d.startswith(".") and d not in _SKIP_DIRS
            )
            files.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
    else:
        return []
    out = []
    for f in files:
        text, _ = _read_text(f)
        if text is not None and text.strip():
            out.append(text)
    return out


def _read_text(path: Path) -> tuple[str | None, str]:
    """(text, "") or (None, why not)."""
    try:
        if not path.is_file():
            return None, "missing"
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return None, f"too large ({size} bytes > {MAX_FILE_BYTES})"
        data = path.read_bytes()
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}"
    if b"\x00" in data:
        return None, "binary (holds NUL bytes)"
    try:
        return data.decode("utf-8"), ""
    except UnicodeDecodeError as exc:
        return None, f"not valid UTF-8 (byte {exc.start})"


def _read_required(path: Path) -> str:
    text, problem = _read_text(path)
    if text is None:
        raise TaskError(path, problem)
    if not text.strip():
        raise TaskError(path, "empty")
    return text


def _load_yaml(path: Path) -> Any:
    return parse_yaml(path, _read_required(path))


def _load_json_texts(
    path: Path, bench: str, text_field: str | None
) -> tuple[list[BenchmarkItem], list[BadBenchmarkItem]]:
    items: list[BenchmarkItem] = []
    bad: list[BadBenchmarkItem] = []
    for number, raw, problem in _json_records(path):
        origin = f"{path}:{number}"
        if problem:
            bad.append(BadBenchmarkItem(origin, problem))
            continue
        if not isinstance(raw, dict):
            bad.append(BadBenchmarkItem(origin, f"expected an object, got {_json_kind(raw)}"))
            continue
        text, problem = _json_text(raw, text_field)
        if text is None:
            bad.append(BadBenchmarkItem(origin, problem))
            continue
        item_id = next(
            (
                str(raw[k])
                for k in JSON_ID_KEYS
                if isinstance(raw.get(k), str | int) and str(raw[k]).strip()
            ),
            f"{path.name}:{number}",
        )
        items.append(BenchmarkItem(bench, item_id, {"instruction": text}))
    return items, bad


def _json_records(path: Path) -> Iterator[tuple[int, Any, str]]:
    """(line or element number, parsed value, problem) for each record of a JSONL/JSON file."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096).lstrip()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if path.suffix.lower() == ".json" and head.startswith(b"["):
        try:
            data = json.loads(path.read_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not valid JSON: {exc}") from None
        if isinstance(data, list):
            for i, value in enumerate(data, 1):
                yield i, value, ""
            return
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line), ""
            except UnicodeDecodeError as exc:
                yield lineno, None, f"not valid UTF-8 (byte {exc.start})"
            except json.JSONDecodeError as exc:
                yield lineno, None, f"not JSON: {exc.msg} (column {exc.colno})"


def _json_text(raw: dict[str, Any], text_field: str | None) -> tuple[str | None, str]:
    if text_field is not None:
        value = raw.get(text_field)
        if isinstance(value, str) and value.strip():
            return value, ""
        if value is None:
            return None, f"no {text_field!r} field"
        return None, f"{text_field!r} is not non-empty text (got {_json_kind(value)})"
    for key in JSON_TEXT_KEYS:
        value = raw.get(key)
        if isinstance(value, str) and value.strip():
            return value, ""
    return None, f"no text: none of {', '.join(JSON_TEXT_KEYS)} holds non-empty text"


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "a number"
    )


# -- the index ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    """A shared n-gram: which benchmark item and field hold it, and its normalized words."""

    benchmark: str
    item_id: str
    field: str
    ngram: str


class NGramIndex:
    """Exact word n-gram lookup against benchmark texts (see the module docstring).

    Build it with `add`/`add_all`, then `check` texts. Adding after checking works (the sorted
    arrays are rebuilt on the next check), but the index is not safe to add to from one thread
    while another checks. It pickles (for worker processes) without its hashes, which are
    rebuilt on loading: str hashes differ from one process to the next (PYTHONHASHSEED).
    """

    def __init__(self, n: int = DEFAULT_NGRAM) -> None:
        if n < 1:
            raise ValueError(f"n-gram size must be at least 1, got {n}")
        self.n = n
        self._k = (n + 1) // 2  # filter block size: every n-word window holds a whole block
        self._items: list[tuple[str, str]] = []  # (benchmark, item_id) per item added
        self._bench_counts: dict[str, int] = {}
        self._short_items = 0
        self._texts: list[tuple[int, str, list[str]]] = []  # (item, field, words) of texts >= n
        self._vocab: dict[str, str] = {}  # interns the benchmark's words (memory)
        self._kgrams: set[int] = set()  # hashes of every benchmark k-gram
        self._pending_hashes: list[int] = []
        self._pending_locs: list[int] = []
        self._hashes = np.empty(0, dtype=np.int64)  # sorted n-gram hashes
        self._locs = np.empty(0, dtype=np.int64)  # text index << 32 | word offset

    # -- building ---------------------------------------------------------------------------

    def add(self, item: BenchmarkItem) -> None:
        """Index every n-gram of every text of `item` (texts shorter than n words add none)."""
        n = self.n
        index = len(self._items)
        self._items.append((item.benchmark, item.item_id))
        self._bench_counts[item.benchmark] = self._bench_counts.get(item.benchmark, 0) + 1
        intern = self._vocab.setdefault
        contributed = False
        for field, text in item.texts.items():
            for part in text.split(FILE_SEP):
                words = normalize_words(part)
                if len(words) < n:
                    continue
                words = [intern(w, w) for w in words]
                self._texts.append((index, field, words))
                self._hash_text(len(self._texts) - 1)
                contributed = True
        if not contributed:
            self._short_items += 1

    def _hash_text(self, t: int) -> None:
        """Queue the n-grams and record the k-grams of text number `t`."""
        n, k = self.n, self._k
        words = self._texts[t][2]
        starts = range(len(words) - n + 1)
        self._pending_hashes.extend(hash(tuple(words[i : i + n])) for i in starts)
        self._pending_locs.extend((t << 32) | i for i in starts)
        # every k-gram of a text of >= n words lies inside one of its n-grams
        kgrams = zip(*(words[j:] for j in range(k)), strict=False)
        self._kgrams.update(map(hash, kgrams))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_kgrams", "_pending_hashes", "_pending_locs", "_hashes", "_locs"):
            del state[key]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._kgrams = set()
        self._pending_hashes, self._pending_locs = [], []
        self._hashes = np.empty(0, dtype=np.int64)
        self._locs = np.empty(0, dtype=np.int64)
        for t in range(len(self._texts)):  # in the order added: the first item stays first
            self._hash_text(t)

    def add_all(self, items: Iterable[BenchmarkItem]) -> None:
        for item in items:
            self.add(item)

    def _finalize(self) -> None:
        """Merge pending n-grams into the sorted arrays, keeping the first of identical ones."""
        hashes = np.concatenate([self._hashes, np.array(self._pending_hashes, dtype=np.int64)])
        locs = np.concatenate([self._locs, np.array(self._pending_locs, dtype=np.int64)])
        self._pending_hashes.clear()
        self._pending_locs.clear()
        order = np.argsort(hashes, kind="stable")  # equal hashes stay in the order added
        hashes, locs = hashes[order], locs[order]
        same = np.flatnonzero(hashes[1:] == hashes[:-1]) + 1  # i: hashes[i] == hashes[i-1]
        if len(same):
            keep = np.ones(len(hashes), dtype=bool)
            locs_list = locs.tolist()
            kept: list[list[str]] = []  # the distinct n-grams of the current group
            prev = -2
            for i in same.tolist():
                if i != prev + 1:  # a new group of equal hashes, starting at i-1
                    kept = [self._ngram_words(locs_list[i - 1])]
                words = self._ngram_words(locs_list[i])
                # a later copy of an n-gram already kept is dropped; a true hash collision
                # (different words) stays, and `_lookup` compares the words to tell them apart
                if words in kept:
                    keep[i] = False
                else:
                    kept.append(words)
                prev = i
            hashes, locs = hashes[keep], locs[keep]
        self._hashes, self._locs = hashes, locs

    def _ngram_words(self, loc: int) -> list[str]:
        words = self._texts[loc >> 32][2]
        start = loc & 0xFFFFFFFF
        return words[start : start + self.n]

    # -- checking ---------------------------------------------------------------------------

    def check(self, text: str) -> Match | None:
        """The first n-gram of `text` (in text order) that a benchmark text holds, or None."""
        return self.check_words(normalize_words(text))

    def check_words(self, words: list[str]) -> Match | None:
        """`check` for a text already split by `normalize_words`."""
        n, k = self.n, self._k
        last = len(words) - n  # the last window start
        if last < 0:
            return None
        if self._pending_hashes:
            self._finalize()
        blocks = zip(*[iter(words)] * k, strict=False)  # words [0, k), [k, 2k), ...
        hits = bytes(map(self._kgrams.__contains__, map(hash, blocks)))
        q = hits.find(1)
        starts: list[int] = []
        next_start = 0
        while q >= 0:
            # the windows holding block q start at p+k-n .. p (p = q*k); keep them in text
            # order and without the ones the previous hit already listed
            p = q * k
            first = max(next_start, p + k - n)
            next_start = min(p, last) + 1
            starts.extend(range(first, next_start))
            q = hits.find(1, q + 1)
            if len(starts) >= _LOOKUP_CHUNK or q < 0:
                match = self._lookup(words, starts)
                if match is not None:
                    return match
                starts = []
        return None

    def _lookup(self, words: list[str], starts: list[int]) -> Match | None:
        """The first benchmark n-gram among the windows of `words` at `starts` (in order)."""
        hashes = self._hashes
        if not starts or not len(hashes):
            return None
        n = self.n
        grams = [tuple(words[i : i + n]) for i in starts]
        wanted = np.array([hash(g) for g in grams], dtype=np.int64)
        at = np.searchsorted(hashes, wanted)
        found = hashes[np.minimum(at, len(hashes) - 1)] == wanted
        for j in np.flatnonzero(found).tolist():
            gram = list(grams[j])
            k = int(at[j])
            while k < len(hashes) and hashes[k] == wanted[j]:
                loc = int(self._locs[k])
                if self._ngram_words(loc) == gram:  # a hash only points; the words decide
                    item, field, _ = self._texts[loc >> 32]
                    benchmark, item_id = self._items[item]
                    return Match(benchmark, item_id, field, " ".join(gram))
                k += 1
        return None

    # -- summary ----------------------------------------------------------------------------

    @property
    def n_items(self) -> int:
        return len(self._items)

    @property
    def n_ngrams(self) -> int:
        """Distinct n-grams indexed."""
        if self._pending_hashes:
            self._finalize()
        return len(self._hashes)

    @property
    def short_items(self) -> int:
        """Items none of whose texts reach n words: they can match nothing."""
        return self._short_items

    @property
    def benchmarks(self) -> dict[str, int]:
        """Benchmark name -> number of items added."""
        return dict(self._bench_counts)

    def summary(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "items": self.n_items,
            "short_items": self.short_items,
            "texts": len(self._texts),
            "ngrams": self.n_ngrams,
            "benchmarks": self.benchmarks,
        }
