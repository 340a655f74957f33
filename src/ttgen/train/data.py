"""Reading `ttgen export --format sft` files for training: counts, token tables, fingerprints.

Two column layouts carry the tokens:

* ttgen's (the default ``--target``): ``input_ids`` (int32 list) + ``loss_mask`` (int8 list,
  1 = the token is a training target), with the counts ``n_tokens`` / ``n_trained_tokens``;
* TRL's (``--target trl``): ``input_ids`` + ``assistant_masks`` (same meaning).

`scan` counts examples and tokens for the plan from the count columns (or the list lengths and
mask sums when the counts are missing) without building Python objects per token; it reads the
masks only of rows longer than the maximum length. `load_token_table` returns the Arrow table a
trainer reads: ``input_ids`` and ``labels`` (the id where the mask is 1, else -100), built with
numpy on whole columns. `fingerprint` hashes the files' bytes (blake2b), so a run folder knows
the data it was trained on.

Files: parquet (``.parquet``) or JSON lines (``.jsonl``/``.json``); a folder means the data files
directly in it, in name order.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ttgen.errors import TtgenError

MASK_COLUMNS = ("loss_mask", "assistant_masks")  # ttgen's, then TRL's
IGNORE_INDEX = -100
_SUFFIXES = (".parquet", ".jsonl", ".json")


class TrainDataError(TtgenError, ValueError):
    """Training data is missing, unreadable or lacks the token columns."""


def resolve_files(paths: list[Path | str]) -> list[Path]:
    """Data files from files and folders (a folder: its data files, sorted by name)."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(x for x in p.iterdir() if x.is_file() and x.suffix in _SUFFIXES)
            if not found:
                raise TrainDataError(f"{p}: no .parquet or .jsonl files in this folder")
            files.extend(found)
        elif p.is_file():
            if p.suffix not in _SUFFIXES:
                raise TrainDataError(f"{p}: not a .parquet or .jsonl file")
            files.append(p)
        else:
            raise TrainDataError(f"{p}: no such file or folder")
    if not files:
        raise TrainDataError("no training data given")
    return files


def _read(path: Path, columns: list[str] | None = None) -> pa.Table:
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path, columns=columns)
        import pyarrow.json as pj

        table = pj.read_json(path)
        return table.select(columns) if columns is not None else table
    except (OSError, pa.ArrowException, KeyError) as exc:
        raise TrainDataError(f"{path}: cannot read it: {exc}") from exc


def _column_names(path: Path) -> list[str]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except (OSError, pa.ArrowException) as exc:
            raise TrainDataError(f"{path}: cannot read it: {exc}") from exc
    return list(_read(path).column_names)


def _mask_column(path: Path, names: list[str]) -> str:
    if "input_ids" not in names:
        raise TrainDataError(
            f"{path}: no input_ids column (columns: {', '.join(names)}). Training reads "
            "pre-tokenized rows: export them with `ttgen export --format sft --tokenizer T` "
            "(with ids)."
        )
    for name in MASK_COLUMNS:
        if name in names:
            return name
    raise TrainDataError(
        f"{path}: input_ids but no loss mask (expected one of {', '.join(MASK_COLUMNS)}); "
        "export with `ttgen export --format sft --tokenizer T`."
    )


def _flat(arr: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, values) of a list column, zero-copy where Arrow allows."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if pa.types.is_large_list(arr.type):
        arr = arr.cast(pa.list_(arr.type.value_type))
    offsets = arr.offsets.to_numpy(zero_copy_only=False)
    values = arr.values.to_numpy(zero_copy_only=False)
    return offsets, values


def _row_sums(offsets: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-row sums of a list column given as (offsets, values)."""
    lengths = np.diff(offsets)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    part = values[offsets[0] : offsets[-1]].astype(np.float64)
    return np.bincount(rows, weights=part, minlength=len(lengths)).astype(np.int64)


@dataclass
class FileScan:
    path: str
    rows: int
    mask_column: str
    tokens: int
    trained_tokens: int
    tokens_full: int | None  # before the export's own truncation (n_tokens_full), if known


@dataclass
class DataScan:
    """What the plan needs, per file and in total, for a maximum length ``max_length``."""

    max_length: int
    files: list[FileScan] = field(default_factory=list)
    examples: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    tokens_full: int | None = None
    truncated_examples: int = 0  # longer than max_length
    tokens_truncated: int = 0  # tokens after truncation at max_length
    trained_tokens_truncated: int = 0
    sum_sq_tokens_truncated: int = 0  # sum of squared lengths (attention FLOPs)
    no_trained_examples: int = 0  # no trained token after truncation: skipped by the trainer


def scan(paths: list[Path | str], max_length: int) -> DataScan:
    """Count examples and tokens of the data files, before and after truncation."""
    out = DataScan(max_length=max_length)
    full_known = True
    for path in resolve_files(paths):
        names = _column_names(path)
        mask = _mask_column(path, names)
        has_counts = "n_tokens" in names and "n_trained_tokens" in names
        cols = ["n_tokens", "n_trained_tokens"] if has_counts else ["input_ids", mask]
        cols += ["n_tokens_full"] if "n_tokens_full" in names else []
        table = _read(path, cols)
        if has_counts:
            n = table.column("n_tokens").to_numpy(zero_copy_only=False).astype(np.int64)
            trained = table.column("n_trained_tokens").to_numpy(zero_copy_only=False)
            trained = trained.astype(np.int64)
        else:
            offsets, _ = _flat(table.column("input_ids"))
            n = np.diff(offsets).astype(np.int64)
            m_off, m_val = _flat(table.column(mask))
            trained = _row_sums(m_off, m_val)
        long_rows = np.nonzero(n > max_length)[0]
        trained_trunc = trained.copy()
        if len(long_rows):
            masks = _read(path, [mask]).column(mask).take(pa.array(long_rows))
            m_off, m_val = _flat(masks)
            for k, row in enumerate(long_rows):
                start = m_off[k]
                trained_trunc[row] = int(m_val[start : start + max_length].sum())
        n_trunc = np.minimum(n, max_length)
        if "n_tokens_full" in names:
            full = int(table.column("n_tokens_full").to_numpy(zero_copy_only=False).sum())
        else:
            full, full_known = None, False
        fs = FileScan(str(path), len(n), mask, int(n.sum()), int(trained.sum()), full)
        out.files.append(fs)
        out.examples += fs.rows
        out.tokens += fs.tokens
        out.trained_tokens += fs.trained_tokens
        out.tokens_full = (out.tokens_full or 0) + full if full is not None else out.tokens_full
        out.truncated_examples += len(long_rows)
        out.tokens_truncated += int(n_trunc.sum())
        out.trained_tokens_truncated += int(trained_trunc.sum())
        out.sum_sq_tokens_truncated += int((n_trunc.astype(np.float64) ** 2).sum())
        out.no_trained_examples += int((trained_trunc == 0).sum())
    if not full_known:
        out.tokens_full = None
    return out


@dataclass
class TokenTable:
    """The rows a trainer reads (``input_ids`` and ``labels``) and what was left out."""

    table: pa.Table
    rows_read: int
    skipped_no_trained: int
    truncated: int
    max_token_id: int


def load_token_table(
    paths: list[Path | str], max_length: int, truncation: str = "right"
) -> TokenTable:
    """``input_ids`` and ``labels`` (int32 lists) of every row, truncated to ``max_length``
    (``truncation="error"``: a longer row is an error); rows without a trained token (after
    truncation) are left out, as a trainer would skip them."""
    ids_parts: list[pa.Array] = []
    label_parts: list[pa.Array] = []
    rows = skipped = truncated = 0
    max_id = -1
    for path in resolve_files(paths):
        mask_col = _mask_column(path, _column_names(path))
        table = _read(path, ["input_ids", mask_col])
        offsets, ids = _flat(table.column("input_ids"))
        m_off, mask = _flat(table.column(mask_col))
        if len(offsets) != len(m_off) or not np.array_equal(np.diff(offsets), np.diff(m_off)):
            lengths = np.diff(offsets), np.diff(m_off)
            bad = (
                int(np.nonzero(lengths[0] != lengths[1])[0][0]) if len(offsets) == len(m_off) else 0
            )
            raise TrainDataError(
                f"{path}: row {bad}: input_ids and {mask_col} have different lengths"
            )
        # the values of both columns, aligned with the ids' offsets
        ids = ids[offsets[0] : offsets[-1]].astype(np.int64)
        mask = mask[m_off[0] : m_off[-1]]
        base = offsets - offsets[0]
        if len(mask) and not np.isin(np.unique(mask), (0, 1)).all():
            raise TrainDataError(f"{path}: {mask_col} holds values other than 0 and 1")
        if len(ids) and (ids.min() < 0 or ids.max() > np.iinfo(np.int32).max):
            raise TrainDataError(f"{path}: input_ids out of range (negative or too large)")
        lengths = np.diff(base)
        keep_len = np.minimum(lengths, max_length)
        over = lengths > max_length
        if over.any() and truncation == "error":
            row = int(np.nonzero(over)[0][0])
            raise TrainDataError(
                f"{path}: row {row} has {int(lengths[row])} tokens, more than max_length="
                f"{max_length} (truncation=error; set truncation=right to keep the start)"
            )
        truncated += int(over.sum())
        # a token is kept when its index within its row is below the row's kept length
        row_of = np.repeat(np.arange(len(lengths)), lengths)
        pos = np.arange(len(ids)) - np.repeat(base[:-1], lengths)
        kept = pos < keep_len[row_of] if len(ids) else np.zeros(0, dtype=bool)
        trained_kept = np.bincount(row_of[kept & (mask == 1)], minlength=len(lengths))
        ok_rows = trained_kept > 0
        skipped += int((~ok_rows).sum())
        rows += len(lengths)
        sel = kept & ok_rows[row_of] if len(ids) else kept
        new_lengths = keep_len[ok_rows]
        new_offsets = np.zeros(len(new_lengths) + 1, dtype=np.int32)
        np.cumsum(new_lengths, out=new_offsets[1:])
        kept_ids = ids[sel].astype(np.int32)
        labels = np.where(mask[sel] == 1, kept_ids, IGNORE_INDEX).astype(np.int32)
        if len(kept_ids):
            max_id = max(max_id, int(kept_ids.max()))
        off = pa.array(new_offsets, type=pa.int32())
        ids_parts.append(pa.ListArray.from_arrays(off, pa.array(kept_ids, type=pa.int32())))
        label_parts.append(pa.ListArray.from_arrays(off, pa.array(labels, type=pa.int32())))
    table = pa.table(
        {
            "input_ids": pa.chunked_array(ids_parts, type=pa.list_(pa.int32())),
            "labels": pa.chunked_array(label_parts, type=pa.list_(pa.int32())),
        }
    )
    if table.num_rows == 0:
        raise TrainDataError(
            f"no row with a trained token ({rows} row(s) read, {skipped} without any trained "
            "token after truncation)"
        )
    return TokenTable(table, rows, skipped, truncated, max_id)


def fingerprint(paths: list[Path | str]) -> dict[str, Any]:
    """blake2b of each data file's bytes and of the whole list (order matters: it is the data
    order before shuffling)."""
    files = []
    whole = hashlib.blake2b(digest_size=16)
    for path in resolve_files(paths):
        h = hashlib.blake2b(digest_size=16)
        size = 0
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
        digest = h.hexdigest()
        files.append({"path": str(path.resolve()), "bytes": size, "blake2b": digest})
        whole.update(digest.encode())
    return {"fingerprint": whole.hexdigest(), "files": files}


def export_tokenizer(paths: list[Path | str]) -> str | None:
    """The tokenizer named by the export summary of the data (``FILE.export.json`` or a summary
    in the same folder listing FILE among its outputs), if any."""
    for path in resolve_files(paths):
        candidates = [path.with_name(path.name + ".export.json")]
        candidates += sorted(path.parent.glob("*.export.json"))
        for summary in candidates:
            try:
                data = json.loads(summary.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            outputs = {str(Path(o.get("path", "")).name) for o in data.get("outputs", {}).values()}
            if summary == candidates[0] or path.name in outputs:
                tok = (data.get("options") or {}).get("tokenizer")
                if isinstance(tok, str) and tok:
                    return tok
    return None
