"""What every source shares: the record-batch stream, its counters and the file checks.

Every source yields ``pyarrow.RecordBatch`` objects of at most ``batch_rows`` rows and
holds at most one read block plus one batch in memory, whatever the size of the data.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from airflow_provider_orchestra.core.errors import SourceError
from airflow_provider_orchestra.specialists.io.types import RejectedLine

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


class RecordBatchSource:
    """A readable source. ``iter_batches()`` streams; call it again to re-read.

    ``rejected`` holds the lines quarantined by the last iteration (CSV/JSONL),
    ``end_offset`` the byte offset reached (JSONL) and ``max_watermark`` the largest
    watermark value seen (Postgres), each valid once iteration has finished.
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
