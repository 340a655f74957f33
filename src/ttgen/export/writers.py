"""Row writers for exported datasets: parquet (row groups, zstd) and JSON Lines, both atomic.

    with RowWriter(path, schema=SCHEMA) as w:
        w.write(row)

The format follows the suffix: ``.parquet`` or ``.jsonl`` (``.jsonl.gz`` compressed). Rows are
buffered up to one row group and written as it fills, so memory stays bounded however many rows
go through. Output goes to a temporary file beside ``path`` and is renamed into place when the
writer closes without an error: a crash or Ctrl-C never leaves a half-written file where a
finished one is expected (and never clobbers the previous one).
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from ttgen.fileio import temp_beside


def format_of(path: Path) -> str:
    """`parquet` or `jsonl` from the file name; anything else is a usage error."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        return "jsonl"
    raise ValueError(
        f"{path}: unknown output format (use a .parquet, .jsonl or .jsonl.gz file name)"
    )


class RowWriter:
    """Writes dict rows to a parquet or JSONL file; see the module docstring."""

    def __init__(
        self,
        path: Path,
        *,
        schema: pa.Schema | None = None,
        rows_per_group: int = 256,
        compression: str = "zstd",
        batch_builder: Callable[[list[dict[str, Any]]], pa.RecordBatch] | None = None,
    ) -> None:
        self.path = Path(path)
        self.format = format_of(self.path)
        if self.format == "parquet" and schema is None:
            raise ValueError("a parquet writer needs a schema")
        self.schema = schema
        self.rows_per_group = max(1, rows_per_group)
        self.compression = compression
        # rows -> RecordBatch; the default converts generically (`Table.from_pylist`), a
        # builder that knows the columns (numpy token arrays) is much faster
        self.batch_builder = batch_builder
        self.n_rows = 0
        self._buffer: list[dict[str, Any]] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = temp_beside(self.path)
        os.close(fd)
        self._parquet: pq.ParquetWriter | None = None
        self._text: IO[str] | None = None
        if self.format == "parquet":
            assert schema is not None
            self._parquet = pq.ParquetWriter(str(self._tmp), schema, compression=compression)
        elif self.path.name.lower().endswith(".gz"):
            self._text = gzip.open(self._tmp, "wt", encoding="utf-8", compresslevel=3)  # noqa: SIM115
        else:
            self._text = self._tmp.open("w", encoding="utf-8")
        self._closed = False

    def write(self, row: dict[str, Any]) -> None:
        self.n_rows += 1
        if self._text is not None:
            self._text.write(json.dumps(row, ensure_ascii=False, default=_jsonable))
            self._text.write("\n")
            return
        self._buffer.append(row)
        if len(self._buffer) >= self.rows_per_group:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer or self._parquet is None:
            return
        if self.batch_builder is not None:
            table = pa.Table.from_batches([self.batch_builder(self._buffer)])
        else:
            table = pa.Table.from_pylist(self._buffer, schema=self.schema)
        self._parquet.write_table(table, row_group_size=len(self._buffer))
        self._buffer = []

    def close(self) -> None:
        """Finish the file and move it into place."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._parquet is not None:
                self._flush()
                self._parquet.close()
            if self._text is not None:
                self._text.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise

    def abort(self) -> None:
        """Drop the partial file (the previous file at `path`, if any, stays)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._parquet is not None:
                self._parquet.close()
            if self._text is not None:
                self._text.close()
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _jsonable(value: Any) -> Any:
    # numpy arrays and scalars (token ids, masks) without importing numpy here
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
