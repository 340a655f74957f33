"""Reading prompt datasets: one record at a time, from any of the forms datasets come in.

`iter_records(source)` yields a `Record` (its data and a stable `origin` naming where it came
from) or a `BadRecord` (origin + problem) for every entry, and never stops at a bad one. Sources:

==============================  =========================================================
source                          origin of an entry
==============================  =========================================================
JSONL file (.jsonl, .json,      ``math.jsonl:12`` (line number, from 1); a .json file
.ndjson; .gz too)               holding one JSON array: ``data.json:item 3`` (from 0)
parquet file                    ``data.parquet:row 40`` (row number, from 0)
``save_to_disk`` folder         ``ds:row 7`` (Dataset) or ``ds/train:row 7`` (DatasetDict)
folder of parquet/JSONL files   ``data/train-00000.parquet:row 40`` (path inside the folder)
hub dataset ``owner/name``      ``hub owner/name[config]/train:row 7``
==============================  =========================================================

Files are read in batches (parquet row batches, Arrow record batches, JSONL lines), so memory
stays flat however large the input is. ``save_to_disk`` folders are read with pyarrow directly
(their shards are Arrow IPC streams), so they need no `datasets` install; hub datasets do, and
are streamed.

`FieldMap` finds canonical fields (``prompt``, ``answer``, ...) in a record: a user mapping
(``--field prompt=question``, dotted paths such as ``meta.answer`` or ``messages.0.content``)
or default aliases; chat records (``messages`` / ``conversations``) give their first user turn.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttgen.errors import TtgenError

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz", ".json.gz")
PARQUET_SUFFIXES = (".parquet",)
BATCH_ROWS = 1024
_HUB_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class SourceError(TtgenError):
    """The input as a whole cannot be read (names the file or dataset and the problem)."""


@dataclass(frozen=True)
class Record:
    """One entry of a dataset: where it came from and its fields."""

    origin: str
    data: dict[str, Any]


@dataclass(frozen=True)
class BadRecord:
    """An entry that could not be used: where it is and what is wrong with it."""

    origin: str
    problem: str

    def __str__(self) -> str:
        return f"{self.origin}: {self.problem}"


Entry = Record | BadRecord


# -- sources --------------------------------------------------------------------------------------


def iter_records(
    source: str | os.PathLike[str],
    *,
    config: str | None = None,
    split: str | None = None,
    limit: int | None = None,
) -> Iterator[Entry]:
    """Yield every entry of `source` as a `Record` or a `BadRecord`, in the source's order.

    `source` is a file, a folder or a hub dataset name (``owner/name``, read with
    ``datasets.load_dataset(..., streaming=True)``). `config` names a hub configuration;
    `split` picks a split of a DatasetDict, a hub dataset or a folder of split files.
    `limit` stops after that many entries (good or bad). Raises `SourceError` when the
    source itself cannot be opened; a bad entry (or a bad file inside a folder) is yielded
    as a `BadRecord` and reading goes on.
    """
    # Not a generator itself: the source is opened here, so errors come before any record.
    entries = _open(source, config=config, split=split)
    if limit is None:
        return entries
    return itertools.islice(entries, max(0, limit))


def _open(
    source: str | os.PathLike[str], *, config: str | None, split: str | None
) -> Iterator[Entry]:
    text = os.fspath(source)
    path = Path(text)
    if path.exists():
        if config is not None:
            raise SourceError(f"{text}: --config applies only to hub datasets, not to local files")
        if path.is_dir():
            return _read_folder(path, split)
        if split is not None:
            raise SourceError(
                f"{text}: --split applies to folders and hub datasets, not to one file"
            )
        reader = _file_reader(path)
        if reader is None:
            raise SourceError(
                f"{text}: unsupported file type; expected .jsonl, .json, .ndjson (optionally .gz), "
                ".parquet, a save_to_disk folder or a folder of such files"
            )
        # Open it now, so an unreadable file fails before the first record is asked for.
        return reader(path, path.name)
    if _HUB_RE.match(text) and not text.lower().endswith(JSONL_SUFFIXES + PARQUET_SUFFIXES):
        return _read_hub(text, config, split)
    raise SourceError(f"{text}: no such file or directory")


def _file_reader(path: Path):  # -> reader function or None
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return _read_parquet
    if name.endswith(JSONL_SUFFIXES):
        return _read_jsonl
    if name.endswith(".arrow"):
        return _read_arrow
    return None


def _as_object(value: Any, origin: str) -> Entry:
    if not isinstance(value, dict):
        return BadRecord(origin, f"expected a JSON object, got {type(value).__name__}")
    return Record(origin, value)


def _open_text(path: Path):
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def _read_jsonl(path: Path, label: str, start: int = 0) -> Iterator[Entry]:
    try:
        f = _open_text(path)
        head = f.read(4096)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return _jsonl_entries(f, head, path, label)


def _jsonl_entries(f, head: bytes, path: Path, label: str) -> Iterator[Entry]:
    with f:
        stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        if path.name.lower().endswith((".json", ".json.gz")) and stripped.startswith(b"["):
            # One JSON document holding an array of objects (the other common .json form).
            data = head + f.read()
            try:
                items = json.loads(data.decode("utf-8-sig"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise SourceError(f"{path}: not valid JSON: {exc}") from None
            for i, item in enumerate(items):
                yield _as_object(item, f"{label}:item {i}")
            return
        f.seek(0)
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            origin = f"{label}:{lineno}"
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield BadRecord(origin, f"not valid UTF-8 (byte {exc.start})")
                continue
            try:
                value = json.loads(text)
            except ValueError as exc:
                yield BadRecord(origin, f"invalid JSON: {exc}")
                continue
            yield _as_object(value, origin)


def _read_parquet(path: Path, label: str, start: int = 0) -> Iterator[Entry]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"{path}: not a readable parquet file: {exc}") from None
    return _batch_entries(pf.iter_batches(batch_size=BATCH_ROWS), path, label, start)


def _read_arrow(path: Path, label: str, start: int = 0) -> Iterator[Entry]:
    """An Arrow IPC file or stream (the shards `save_to_disk` writes are streams)."""
    import pyarrow as pa

    try:
        source = pa.memory_map(str(path))
        try:
            reader: Any = pa.ipc.open_stream(source)
            batches: Iterable[Any] = reader
        except pa.ArrowInvalid:
            source.seek(0)
            file_reader = pa.ipc.open_file(source)
            batches = (file_reader.get_batch(i) for i in range(file_reader.num_record_batches))
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"{path}: not a readable Arrow file: {exc}") from None
    return _batch_entries(batches, path, label, start)


def _batch_entries(
    batches: Iterable[Any], path: Path, label: str, start: int = 0
) -> Iterator[Entry]:
    import pyarrow as pa

    row = start
    it = iter(batches)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except (OSError, pa.ArrowException) as exc:
            yield BadRecord(f"{label}:row {row}", f"cannot read the rest of {path.name}: {exc}")
            return
        for data in batch.to_pylist():
            yield Record(f"{label}:row {row}", data)
            row += 1


# -- folders ----------------------------------------------------------------------------------


def _read_folder(path: Path, split: str | None) -> Iterator[Entry]:
    if (path / "dataset_dict.json").is_file():
        return _read_dataset_dict(path, split)
    if (path / "state.json").is_file():
        if split is not None:
            raise SourceError(f"{path}: a single saved Dataset has no splits (got --split {split})")
        return _read_saved_dataset(path, path.name)
    return _read_file_folder(path, split)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SourceError(f"{path}: cannot read: {exc}") from None


def _read_dataset_dict(path: Path, split: str | None) -> Iterator[Entry]:
    info = _read_json(path / "dataset_dict.json")
    splits = info.get("splits") if isinstance(info, dict) else None
    if not isinstance(splits, list) or not splits:
        raise SourceError(f"{path / 'dataset_dict.json'}: no 'splits' list")
    if split is None:
        if len(splits) > 1:
            raise SourceError(
                f"{path}: a DatasetDict with splits {', '.join(splits)}; pick one with --split"
            )
        split = splits[0]
    elif split not in splits:
        raise SourceError(f"{path}: no split {split!r}; the splits are {', '.join(splits)}")
    return _read_saved_dataset(path / split, f"{path.name}/{split}")


def _read_saved_dataset(path: Path, label: str) -> Iterator[Entry]:
    state = _read_json(path / "state.json")
    files = [f.get("filename") for f in state.get("_data_files", []) if isinstance(f, dict)]
    if not files or not all(isinstance(f, str) for f in files):
        raise SourceError(f"{path / 'state.json'}: lists no data files (_data_files)")
    for name in files:
        if not (path / name).is_file():
            raise SourceError(f"{path / name}: missing (listed in state.json)")

    def entries() -> Iterator[Entry]:
        row = 0
        for name in files:
            shard = path / name
            try:
                # Rows count across the shards, as the dataset's index does.
                it = _read_arrow(shard, label, start=row)
            except SourceError as exc:
                yield BadRecord(f"{label}:row {row}", str(exc))
                return
            for entry in it:
                yield entry
                if isinstance(entry, Record):
                    row += 1

    return entries()


def _read_file_folder(path: Path, split: str | None) -> Iterator[Entry]:
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and _file_reader(p) is not None
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not files:
        raise SourceError(f"{path}: no .jsonl, .json, .parquet or .arrow files in this folder")
    if split is not None:
        chosen = [p for p in files if _in_split(p.relative_to(path), split)]
        if not chosen:
            found = sorted({s for p in files for s in _split_names(p.relative_to(path))})
            hint = f"; splits seen: {', '.join(found)}" if found else ""
            raise SourceError(f"{path}: no files for split {split!r}{hint}")
        files = chosen

    def entries() -> Iterator[Entry]:
        for p in files:
            rel = p.relative_to(path).as_posix()
            reader = _file_reader(p)
            assert reader is not None
            try:
                yield from reader(p, rel)
            except SourceError as exc:
                yield BadRecord(rel, str(exc))

    return entries()


_SPLIT_FILE_RE = re.compile(r"^([A-Za-z]+)(?:[-_.]|$)")


def _split_names(rel: Path) -> set[str]:
    names = {part for part in rel.parts[:-1]}
    m = _SPLIT_FILE_RE.match(rel.name)
    if m:
        names.add(m.group(1))
    return names


def _in_split(rel: Path, split: str) -> bool:
    """``train/x.parquet``, ``data/train-00000-of-00002.parquet`` and ``train.jsonl`` are train."""
    return split in _split_names(rel)


# -- hub --------------------------------------------------------------------------------------


def _read_hub(name: str, config: str | None, split: str | None) -> Iterator[Entry]:
    try:
        import datasets
    except ImportError:
        raise SourceError(
            f"{name}: reading a hub dataset needs the `datasets` package: "
            "pip install 'terminal-task-gen[hf]'"
        ) from None
    try:
        loaded = datasets.load_dataset(name, config, split=split, streaming=True)
    except Exception as exc:  # the hub client raises many types; all mean "cannot open it"
        raise SourceError(f"hub dataset {name}: cannot load: {exc}") from None
    if isinstance(loaded, Mapping):
        splits = list(loaded)
        if len(splits) != 1:
            raise SourceError(
                f"hub dataset {name}: splits {', '.join(splits)}; pick one with --split"
            )
        split = splits[0]
        loaded = loaded[split]
    label = f"hub {name}{f'[{config}]' if config else ''}/{split}"

    def entries() -> Iterator[Entry]:
        it = iter(loaded)
        row = 0
        while True:
            try:
                data = next(it)
            except StopIteration:
                return
            except Exception as exc:  # a broken shard or a dropped connection mid-stream
                yield BadRecord(f"{label}:row {row}", f"cannot read the rest of the stream: {exc}")
                return
            yield _as_object(data, f"{label}:row {row}")
            row += 1

    return entries()


# -- fields -----------------------------------------------------------------------------------

MISSING: Any = object()


def get_path(data: Any, path: str) -> Any:
    """The value at a dotted path (``meta.answer``, ``messages.0.content``), or MISSING.

    A key containing dots is found as a whole first. A JSON string met on the way is parsed
    when the path goes on into it (datasets often store nested objects as JSON text).
    """
    if isinstance(data, Mapping) and path in data:
        return data[path]
    head, dot, rest = path.partition(".")
    if not dot:
        return _step(data, head)
    value = _step(data, head)
    if value is MISSING:
        return MISSING
    if isinstance(value, str) and value.lstrip().startswith(("{", "[")):
        try:
            value = json.loads(value)
        except ValueError:
            return MISSING
    return get_path(value, rest)


def _step(data: Any, key: str) -> Any:
    if isinstance(data, Mapping):
        return data.get(key, MISSING)
    if isinstance(data, list) and re.fullmatch(r"-?\d+", key):
        i = int(key)
        return data[i] if -len(data) <= i < len(data) else MISSING
    return MISSING


def first_user_turn(messages: Any) -> str | None:
    """The text of the first user turn of a chat (``messages`` or ShareGPT ``conversations``)."""
    if not isinstance(messages, list):
        return None
    for turn in messages:
        if not isinstance(turn, Mapping):
            continue
        role = turn.get("role", turn.get("from"))
        if role not in ("user", "human"):
            continue
        content = turn.get("content", turn.get("value"))
        if isinstance(content, list):  # OpenAI content parts
            content = "".join(
                p.get("text", "")
                for p in content
                if isinstance(p, Mapping) and p.get("type") == "text"
            )
        return content if isinstance(content, str) else None
    return None


class FieldMap:
    """Where each canonical field of an adapter is found in a record.

    `aliases` gives, per canonical field, the source fields tried in order; `overrides`
    (from ``--field canonical=source``) replaces that list with one dotted path.
    """

    def __init__(
        self, aliases: Mapping[str, tuple[str, ...]], overrides: Mapping[str, str] | None = None
    ):
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(aliases))
        if unknown:
            raise SourceError(
                f"--field {unknown[0]}=...: unknown field {unknown[0]!r}; "
                f"this adapter reads {', '.join(aliases)}"
            )
        for key, value in overrides.items():
            if not value:
                raise SourceError(f"--field {key}=: the source field name is empty")
        self.aliases = dict(aliases)
        self.overrides = overrides

    def describe(self, name: str) -> str:
        if name in self.overrides:
            return repr(self.overrides[name])
        return ", ".join(self.aliases[name])

    def get(self, data: Mapping[str, Any], name: str) -> Any:
        """The value of canonical field `name`, or MISSING (None and "" count as missing)."""
        paths = (self.overrides[name],) if name in self.overrides else self.aliases[name]
        for path in paths:
            value = get_path(data, path)
            if value is not MISSING and value is not None and value != "":
                return value
        return MISSING

    def prompt(self, data: Mapping[str, Any]) -> Any:
        """The prompt: the mapped field, a default alias, or a chat's first user turn.

        None when there is none; a value that is not text is returned as it is, for the
        caller to report.
        """
        value = self.get(data, "prompt")
        if value is MISSING and "prompt" not in self.overrides:
            for key in ("messages", "conversations", "conversation"):
                if key in data:
                    value = data[key]
                    break
        if isinstance(value, list):
            return first_user_turn(value)
        return None if value is MISSING else value


def normalized_key(prompt: str) -> bytes:
    """The duplicate key of a prompt: runs of whitespace collapsed, ends stripped, hashed."""
    return hashlib.blake2b(" ".join(prompt.split()).encode("utf-8"), digest_size=16).digest()
