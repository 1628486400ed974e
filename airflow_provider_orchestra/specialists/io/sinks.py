"""Idempotent file sinks: Parquet directories swapped in atomically and a quarantine JSONL
file replaced atomically (the Postgres load is in ``postgres_load``). A failed write leaves
the previous state untouched.

Any exception cleans up before it leaves a sink, but only a failure to write or load
becomes a :class:`SinkError`. Whatever else the input iterator raises (a source's own
error, a caller stopping the stream from its progress callback) propagates unchanged, so
the caller sees why the stream ended rather than a write failure."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from airflow_provider_orchestra.core.errors import SinkError
from airflow_provider_orchestra.core.models import OutputDescriptor
from airflow_provider_orchestra.specialists.io.types import RejectedLine, columns_of

_STALE_SECONDS = 3600.0
_HASH_CHUNK = 1 << 20
# What a failing write raises (psycopg.Error too, for the Postgres load).
WRITE_ERRORS: tuple[type[BaseException], ...] = (OSError, pa.ArrowException)


# --------------------------------------------------------------------------- helpers


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def files_under(root: Path) -> list[Path]:
    return sorted((p for p in root.rglob("*") if p.is_file()), key=lambda p: p.relative_to(root).as_posix())


def digest_files(root: Path, files: list[Path]) -> tuple[str, int]:
    """sha256 over (relative path, bytes) of every file in a stable order; total size."""
    digest = hashlib.sha256()
    total = 0
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode("utf-8") + b"\x00")
        with path.open("rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                digest.update(chunk)
                total += len(chunk)
    return f"sha256:{digest.hexdigest()}", total


_RENAME_EXCHANGE = 2
_libc: Any = None


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directory entries (Linux renameat2); False if unsupported."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            _libc.renameat2  # noqa: B018 - probe the symbol
        except (OSError, AttributeError):
            _libc = False
    if not _libc:
        return False
    at_fdcwd = -100
    result = _libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if result != 0:
        errno = ctypes.get_errno()
        if errno in (22, 38, 95):  # EINVAL / ENOSYS / EOPNOTSUPP: filesystem cannot exchange
            return False
        raise OSError(errno, os.strerror(errno), str(b))
    return True


def swap_in(staged: Path, dest: Path) -> None:
    """Put ``staged`` at ``dest``; a previous ``dest`` is replaced and removed."""
    if not dest.exists():
        try:
            os.rename(staged, dest)
            return
        except OSError:
            if not dest.exists():
                raise
    if _exchange(staged, dest):
        shutil.rmtree(staged, ignore_errors=True)  # ``staged`` now holds the old copy
        return
    old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(dest, old)
    os.rename(staged, dest)
    shutil.rmtree(old, ignore_errors=True)


def clear_leftovers(dest: Path) -> None:
    """Remove temp/old siblings an interrupted earlier attempt left behind."""
    now = time.time()
    for sibling in dest.parent.glob(f".{dest.name}.*"):
        is_old = ".old-" in sibling.name
        is_stale_tmp = ".tmp-" in sibling.name and now - sibling.stat().st_mtime > _STALE_SECONDS
        if is_old or is_stale_tmp:
            if sibling.is_dir():
                shutil.rmtree(sibling, ignore_errors=True)
            else:
                sibling.unlink(missing_ok=True)


def plain_schema(schema: pa.Schema) -> pa.Schema:
    """Dictionary columns become their value type (CSV and Postgres want plain values)."""
    fields = [
        f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in schema
    ]
    return pa.schema(fields, metadata=schema.metadata)


def conformed(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        if isinstance(batch, pa.Table):
            yield from (_cast(b, schema) for b in batch.to_batches())
        else:
            yield _cast(batch, schema)


def _cast(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    if batch.schema.equals(schema, check_metadata=False):
        return batch
    try:
        return batch.select(schema.names).cast(schema)
    except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SinkError(f"a record batch does not match the output schema: {exc}") from None


# --------------------------------------------------------------------------- parquet


def _partition_column(schema: pa.Schema, column: str) -> tuple[str, pa.DataType, bool]:
    """(directory column, its type, derived?) for ``partition_by``.

    Dates and strings partition as they are; a timestamp column keeps its values and
    partitions by its date under ``<column>_date``.
    """
    index = schema.get_field_index(column)
    if index < 0:
        raise SinkError(f"partition column {column!r} is not in the output columns {schema.names}")
    data_type = schema.field(index).type
    if pa.types.is_date(data_type) or pa.types.is_string(data_type) or pa.types.is_integer(data_type):
        return column, data_type, False
    if pa.types.is_timestamp(data_type):
        return f"{column}_date", pa.date32(), True
    raise SinkError(f"cannot partition by {column!r} of type {data_type}; use a date column")


def parquet_writer(path: Path, schema: pa.Schema, compression: str = "snappy") -> pq.ParquetWriter:
    """A Parquet writer that dictionary-encodes text columns only: numbers and times
    rarely repeat enough for a dictionary to pay, and trying one first costs about a third
    of the encoding time (the values and the file size stay the same)."""
    text = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type) or pa.types.is_binary(f.type)]
    return pq.ParquetWriter(path, schema, compression=compression, use_dictionary=text or False)


MAX_OPEN_PARTITIONS = 64
"""Partition files a partitioned write keeps open at once; the least recently written is
closed when another is needed (a partition seen again later gets a new file)."""
MAX_PARTITIONS_PER_BATCH = 1024
"""More distinct partition values than this in one record batch is refused: the column
is almost certainly not a date."""
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def _hive_value(value: Any) -> str:
    """A partition value as a Hive directory segment, as pyarrow's hive partitioning
    writes and reads it (URI-escaped; null is Hive's default partition)."""
    if value is None:
        return _HIVE_NULL
    return quote(value.isoformat() if hasattr(value, "isoformat") else str(value), safe="")


class _PartitionFiles:
    """Hive-style partitioned Parquet written as the batches arrive.

    Each record batch is split by its partition values and every slice is written at once
    to its partition's file as a row group of its own: nothing is held back per
    partition, so memory is bounded by one batch and ``MAX_OPEN_PARTITIONS`` open writers
    whatever the number of partitions or rows. Row order within a partition is the input
    order; file names are ``<basename>-<n>.parquet``, ``n`` counting the files opened in that
    partition, so a rerun over the same input writes the same bytes.
    """

    def __init__(self, root: Path, schema: pa.Schema, column: str, *, basename: str, compression: str, row_group_rows: int):
        self.root = root
        self.column = column
        self.file_schema = schema.remove(schema.get_field_index(column))
        self.basename = basename
        self.compression = compression
        self.row_group_rows = row_group_rows
        self._open: OrderedDict[str, pq.ParquetWriter] = OrderedDict()
        self._files_opened: dict[str, int] = {}

    def _writer(self, segment: str) -> pq.ParquetWriter:
        writer = self._open.get(segment)
        if writer is not None:
            self._open.move_to_end(segment)
            return writer
        if len(self._open) >= MAX_OPEN_PARTITIONS:
            _, oldest = self._open.popitem(last=False)
            oldest.close()
        number = self._files_opened.get(segment, 0)
        self._files_opened[segment] = number + 1
        directory = self.root / f"{self.column}={segment}"
        directory.mkdir(parents=True, exist_ok=True)
        writer = parquet_writer(directory / f"{self.basename}-{number}.parquet", self.file_schema, self.compression)
        self._open[segment] = writer
        return writer

    def _write(self, segment: str, rows: pa.RecordBatch) -> None:
        self._writer(segment).write_batch(rows.drop_columns([self.column]), row_group_size=self.row_group_rows)

    def write(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        keys = batch.column(self.column)
        values = pc.unique(keys)
        if len(values) > MAX_PARTITIONS_PER_BATCH:
            raise pa.ArrowInvalid(
                f"a record batch holds {len(values)} partitions of {self.column!r}, more than {MAX_PARTITIONS_PER_BATCH}"
            )
        if len(values) == 1:
            self._write(_hive_value(values[0].as_py()), batch)
            return
        # Group the rows by partition without reordering them within a partition: a
        # stable sort on the key, then one slice per run of equal keys.
        order = pc.array_sort_indices(keys, null_placement="at_end")
        grouped = batch.take(order)
        runs = pc.run_end_encode(grouped.column(self.column))
        start = 0
        for value, end in zip(runs.values.to_pylist(), runs.run_ends.to_pylist()):
            self._write(_hive_value(value), grouped.slice(start, end - start))
            start = end

    def close(self) -> None:
        while self._open:
            _, writer = self._open.popitem(last=False)
            writer.close()


def _written_behind(write: Callable[[pa.RecordBatch], None], batches: Iterable[pa.RecordBatch]) -> None:
    """``write`` every batch in a second thread while this one produces the next: Parquet
    encoding and compression overlap with reading and computing the following batch.
    One write is in flight at a time, so writes stay in order and memory grows by one
    batch. A failed write stops the stream at the next batch; an error of the stream
    waits for the write in flight, then propagates."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-write") as pool:
        pending: Future | None = None
        for batch in batches:
            if pending is not None:
                pending.result()
            pending = pool.submit(write, batch)
        if pending is not None:
            pending.result()


def write_parquet(
    batches: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    dest_dir: Path,
    *,
    partition_by: str | None = None,
    basename: str = "part",
    compression: str = "snappy",
    row_group_rows: int = 1 << 17,
    write_behind: bool = False,
) -> OutputDescriptor:
    """Stream ``batches`` into Parquet under ``dest_dir``, replacing any previous copy.

    Files are written into a temp directory beside ``dest_dir`` and swapped in with one
    rename, so readers see either the old or the new directory, never a mix, and a rerun
    leaves exactly one copy. ``partition_by`` gives Hive-style ``col=YYYY-MM-DD/``
    directories, written as the batches stream (see :class:`_PartitionFiles`). Rows are
    counted as they stream; the checksum covers every written file. ``write_behind``
    encodes in a second thread (for callers whose resource lease allows two).
    """
    dest = Path(dest_dir)
    schema = plain_schema(schema)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        clear_leftovers(dest)
        staged = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    except OSError as exc:
        raise SinkError(f"cannot prepare {str(dest)!r}: {exc}") from None
    rows = 0

    def counted(source: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        nonlocal rows
        for batch in source:
            rows += batch.num_rows
            yield batch

    try:
        stream = counted(conformed(batches, schema))
        if partition_by is None:
            with parquet_writer(staged / f"{basename}-0.parquet", schema, compression) as writer:
                _write_all(lambda b: writer.write_batch(b, row_group_size=row_group_rows), stream, write_behind)
        else:
            column, part_type, derived = _partition_column(schema, partition_by)
            if derived:
                stream = (
                    b.append_column(column, pc.cast(b.column(partition_by), pa.date32()))
                    for b in stream
                )
            out_schema = schema.append(pa.field(column, part_type)) if derived else schema
            files = _PartitionFiles(
                staged, out_schema, column, basename=basename, compression=compression, row_group_rows=row_group_rows
            )
            try:
                _write_all(files.write, stream, write_behind)
            finally:
                files.close()
        files = files_under(staged)
        for path in files:
            fsync_path(path)
        checksum, size = digest_files(staged, files)
        swap_in(staged, dest)
        fsync_path(dest.parent)
    except BaseException as exc:
        shutil.rmtree(staged, ignore_errors=True)
        if isinstance(exc, WRITE_ERRORS):
            raise SinkError(
                f"writing {str(dest)!r} failed, nothing was replaced: {type(exc).__name__}: {exc}"
            ) from exc
        raise
    return OutputDescriptor(
        uri=dest.as_uri(), format="parquet", rows=rows, checksum=checksum, size_bytes=size, columns=columns_of(schema)
    )


def _write_all(write: Callable[[pa.RecordBatch], None], batches: Iterable[pa.RecordBatch], behind: bool) -> None:
    if behind:
        _written_behind(write, batches)
    else:
        for batch in batches:
            write(batch)


# --------------------------------------------------------------------------- quarantine


def _rejected_rows(rejected: Any) -> Iterator[dict[str, Any]]:
    if isinstance(rejected, (pa.Table, pa.RecordBatch)):
        yield from rejected.to_pylist()
        return
    for item in rejected:
        yield item.as_dict() if isinstance(item, RejectedLine) else dict(item)


def write_jsonl_quarantine(
    rejected: Sequence[RejectedLine | dict[str, Any]] | pa.Table, dest: Path
) -> OutputDescriptor:
    """Write quarantined lines as JSONL, replacing ``dest`` atomically."""
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}")
    digest = hashlib.sha256()
    rows = 0
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as fh:
            for row in _rejected_rows(rejected):
                line = (json.dumps(row, ensure_ascii=False, default=str) + "\n").encode("utf-8")
                fh.write(line)
                digest.update(line)
                rows += 1
            fh.flush()
            os.fsync(fh.fileno())
        size = tmp.stat().st_size
        os.replace(tmp, dest)
    except BaseException as exc:
        # A failing cleanup (e.g. the parent is not a directory) must not hide the cause.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, WRITE_ERRORS):
            raise SinkError(f"writing quarantine {str(dest)!r} failed: {type(exc).__name__}: {exc}") from exc
        raise
    return OutputDescriptor(
        uri=dest.as_uri(),
        format="jsonl",
        rows=rows,
        checksum=f"sha256:{digest.hexdigest()}",
        size_bytes=size,
        role="quarantine",
    )
