"""What every source shares: the record-batch stream, its counters and the file checks.

Every source yields ``pyarrow.RecordBatch`` objects of at most ``batch_rows`` rows and
holds at most one read block plus one batch in memory, whatever the size of the data.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_orchestra.core.errors import SourceError
from airflow_provider_orchestra.specialists.io.types import INVALID_UTF8_REASON, RejectedLine

MIN_BLOCK = 64 * 1024
MAX_BLOCK = 16 * 1024 * 1024
SNIFF_BYTES = 4096
RAW_LIMIT = 2000  # characters of a rejected line kept for the quarantine file


def block_bytes(batch_rows: int, sample: bytes) -> int:
    """Read-block size giving roughly ``batch_rows`` rows, clamped to sane bounds."""
    lines = max(sample.count(b"\n"), 1)
    row_bytes = max(len(sample) // lines, 16)
    return max(MIN_BLOCK, min(MAX_BLOCK, batch_rows * row_bytes))


def _slices(batch: pa.RecordBatch, batch_rows: int) -> Iterator[pa.RecordBatch]:
    if batch.num_rows <= batch_rows:
        if batch.num_rows:
            yield batch
        return
    for start in range(0, batch.num_rows, batch_rows):
        yield batch.slice(start, batch_rows)


def failing_positions(values: pa.Array, target: pa.DataType, base: int = 0, fanout: int = 8) -> Iterator[int]:
    """Positions of the values that cannot be cast to ``target``: one cast when all
    convert, and a few more per failing value (split and retry) when some do not."""
    try:
        pc.cast(values, target)
        return
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        if len(values) == 1:
            yield base
            return
    step = -(-len(values) // fanout)
    for begin in range(0, len(values), step):
        yield from failing_positions(values.slice(begin, step), target, base + begin, fanout)


def is_utf8(data: bytes) -> bool:
    """Whether ``data`` is valid UTF-8, checked by Arrow without copying it."""
    offsets = pa.array([0, len(data)], pa.int64()).buffers()[1]
    try:
        pa.Array.from_buffers(pa.large_string(), 1, [None, offsets, pa.py_buffer(data)]).validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _is_text(data_type: pa.DataType) -> bool:
    return pa.types.is_string(data_type) or pa.types.is_large_string(data_type)


def _as_bytes(column: pa.Array) -> pa.Array:
    """A text column's bytes as they are (a view: nothing is copied or checked)."""
    return column.view(pa.large_binary() if pa.types.is_large_string(column.type) else pa.binary())


def row_value(column: pa.Array, index: int) -> Any:
    """One value as Python; text that is not UTF-8 shows its bad bytes as U+FFFD."""
    if _is_text(column.type):
        raw = _as_bytes(column)[index].as_py()
        return None if raw is None else raw.decode("utf-8", "replace")
    return column[index].as_py()


def row_text(batch: pa.RecordBatch, index: int) -> str:
    """A CSV-like rendering of one row, for the quarantine file."""
    values = (row_value(column, index) for column in batch.columns)
    return ",".join("" if v is None else str(v) for v in values)


def invalid_utf8_reasons(batch: pa.RecordBatch, rows_before: int, where: str) -> dict[int, str]:
    """Row index -> reason, for the rows of ``batch`` holding text that is not UTF-8
    (rows numbered as data rows, ``rows_before`` rows came earlier).

    Arrow's readers copy text bytes as they are; a string column holding invalid UTF-8
    makes a table that fails validation, so such rows must not go further."""
    try:
        batch.validate(full=True)
        return {}
    except pa.ArrowInvalid as exc:
        problem = str(exc)
    found: dict[int, str] = {}
    for field, column in zip(batch.schema, batch.columns):
        if _is_text(field.type):
            for index in failing_positions(_as_bytes(column), field.type):
                found.setdefault(
                    index, f"{INVALID_UTF8_REASON}: data row {rows_before + index + 1}: column {field.name!r}"
                )
    if not found:  # invalid text nested in a list or struct: no row to single out
        raise SourceError(f"{where}: the data does not validate: {problem}")
    return found


def without_rows(batch: pa.RecordBatch, indexes: Iterable[int]) -> pa.RecordBatch:
    drop = pa.array(sorted(indexes), pa.int64())
    if not len(drop):
        return batch
    return batch.filter(pc.invert(pc.is_in(pa.array(range(batch.num_rows), pa.int64()), drop)))


class RecordBatchSource:
    """A readable source. ``iter_batches()`` streams; call it again to re-read.

    ``rejected`` holds the lines or rows quarantined by the last iteration,
    ``pending_rows`` (and ``pending_bytes``) what a tail read held back for the next read
    (JSONL), ``end_offset`` the byte offset reached (JSONL) and ``max_watermark`` the
    largest watermark value seen (Postgres), each valid once iteration has finished.
    """

    kind: str = ""

    def __init__(self, uri: str, batch_rows: int) -> None:
        if batch_rows < 1:
            raise SourceError(f"batch_rows must be positive, got {batch_rows}")
        self.uri = uri
        self.batch_rows = batch_rows
        self.schema: pa.Schema = pa.schema([])
        self.rejected: list[RejectedLine] = []
        self.end_offset: int | None = None
        self.max_watermark: Any = None
        self.pending_rows = 0
        self.pending_bytes = 0
        self.rows_read = 0
        self.batches_read = 0

    def _batches(self) -> Iterator[pa.RecordBatch]:  # pragma: no cover - abstract
        raise NotImplementedError

    def count_rows(self) -> int:  # pragma: no cover - abstract
        """The rows a full read would give, measured cheaply (for the analyzer)."""
        raise NotImplementedError

    def size_bytes(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def iter_batches(self) -> Iterator[pa.RecordBatch]:
        self.rejected = []
        self.rows_read = 0
        self.batches_read = 0
        for batch in self._batches():
            for piece in _slices(batch, self.batch_rows):
                self.rows_read += piece.num_rows
                self.batches_read += 1
                yield piece

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return self.iter_batches()

    def read_all(self) -> pa.Table:
        """Everything at once: for tests and small inputs only."""
        return pa.Table.from_batches(list(self.iter_batches()), schema=self.schema)

    def rejected_as_dicts(self) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self.rejected]

    def _reject_rows(self, batch: pa.RecordBatch, reasons: dict[int, str]) -> pa.RecordBatch:
        """``batch`` without the rows named in ``reasons``; those go to ``rejected``."""
        for index, reason in sorted(reasons.items()):
            self.rejected.append(
                RejectedLine(line=None, offset=None, reason=reason, raw=row_text(batch, index)[:RAW_LIMIT])
            )
        return without_rows(batch, reasons)


class FileSource(RecordBatchSource):
    """A source reading one file under the data roots."""

    def __init__(self, path: Path, batch_rows: int) -> None:
        super().__init__(path.as_uri(), batch_rows)
        self.path = path

    def size_bytes(self) -> int:
        return self.path.stat().st_size


def check_file(path: Path, kind: str) -> bytes:
    """Existence, emptiness and a look at the first bytes; returns those bytes."""
    if not path.exists():
        raise SourceError(f"{kind} source {str(path)!r} does not exist")
    if not path.is_file():
        raise SourceError(f"{kind} source {str(path)!r} is not a regular file")
    if path.stat().st_size == 0:
        raise SourceError(f"{kind} source {str(path)!r} is empty")
    with path.open("rb") as fh:
        head = fh.read(SNIFF_BYTES)
    if kind == "parquet":
        if not head.startswith(b"PAR1"):
            raise SourceError(f"{str(path)!r} is not a Parquet file (no PAR1 magic)")
    elif head.startswith(b"PAR1") or b"\x00" in head:
        raise SourceError(f"{str(path)!r} is not a {kind.upper()} text file (binary content)")
    return head
