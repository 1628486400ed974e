"""Shared machinery of the specialists: which exceptions are data problems, a meter that
counts record batches and reports progress, DuckDB connections bounded by the agent's
resource lease, and the publishing of an attempt's outputs."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import psycopg
import pyarrow as pa

from airflow_provider_orchestra.core.errors import OrchestraError
from airflow_provider_orchestra.core.models import OutputDescriptor

DATA_ERRORS: tuple[type[BaseException], ...] = (
    OrchestraError,
    pa.ArrowException,
    duckdb.Error,
    psycopg.Error,
    OSError,
    UnicodeError,
    MemoryError,
)
"""Problems of the data, the sources or the sinks. A specialist turns these into a failed
result; anything else is a programming error and propagates."""

ProgressCallback = Callable[[dict[str, Any]], None]
T = TypeVar("T")


def describe_error(exc: BaseException) -> str:
    """One line naming the cause: the exception type and its first message line."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    # DuckDB reports an error raised while it read a record batch stream with the Python
    # traceback glued to the message; the message is enough.
    first = first.split(". Detail: Python exception")[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def root_cause(exc: BaseException) -> BaseException:
    """The data error a sink wrapped (a sink reports a failing input stream as its own
    SinkError; the cause names what really went wrong)."""
    from airflow_provider_orchestra.core.errors import SinkError

    while isinstance(exc, SinkError) and isinstance(exc.__cause__, DATA_ERRORS):
        exc = exc.__cause__
    return exc


def is_out_of_memory(error_kind: str | None, error: str | None = None) -> bool:
    """Whether an attempt failed for want of memory (also when DuckDB reports a
    MemoryError raised while it read the record batch stream)."""
    if error_kind in {"MemoryError", "OutOfMemoryException", "ArrowMemoryError"}:
        return True
    text = (error or "").lower()
    return any(sign in text for sign in ("memoryerror", "out of memory", "malloc of size", "failed to allocate"))


@dataclass
class Meter:
    """Counts record batches and rows of one attempt, samples Arrow's allocation at each
    batch boundary (its peak is reported as ``peak_memory_bytes``) and calls the progress
    callback once per record batch."""

    base_event: dict[str, Any]
    on_progress: ProgressCallback | None = None
    batches: int = 0
    rows: int = 0
    peak_arrow_bytes: int = field(default_factory=pa.total_allocated_bytes)
    stopped_by: BaseException | None = None
    """What the progress callback raised, kept because a consumer of the stream (DuckDB)
    reports it as an error of its own."""

    def tick(self, batch_rows: int, **extra: Any) -> None:
        self.batches += 1
        self.rows += batch_rows
        self.sample()
        self.report(batch=self.batches, rows=self.rows, **extra)

    def report(self, **event: Any) -> None:
        """Tell the progress callback (a record batch read, or a later stage such as a
        sink's load); what it raises stops the attempt."""
        if self.on_progress is not None:
            try:
                self.on_progress({**self.base_event, **event})
            except BaseException as exc:
                self.stopped_by = exc
                raise

    def sample(self) -> None:
        self.peak_arrow_bytes = max(self.peak_arrow_bytes, pa.total_allocated_bytes())

    def counted(self, batches: Iterable[pa.RecordBatch], **extra: Any) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            self.tick(batch.num_rows, **extra)
            yield batch


def duckdb_connection(
    workdir: Path, *, cpu: float | None = None, memory_mb: float | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-process, in-memory DuckDB bounded by the lease: threads from its cpu, a
    memory limit of half its memory (the rest is Arrow's); its tables and intermediates
    spill to ``workdir/duckdb_tmp`` past that limit.

    Expressions from a workflow config run in it (transformation derives), so it gets no
    access to files or the network and its configuration is locked: an expression can
    only see the record batches registered with it.
    """
    spill = workdir / "duckdb_tmp"
    spill.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "temp_directory": str(spill),
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    }
    if cpu:
        config["threads"] = max(1, int(cpu))
    if memory_mb:
        config["memory_limit"] = f"{max(64, int(memory_mb * 0.5))}MB"
    con = duckdb.connect(":memory:", config=config)
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def is_numeric(data_type: pa.DataType) -> bool:
    """Whether range rules and numeric metrics apply to a column of this type. A column
    whose type could not be inferred because it held no value (``null``, e.g. a CSV with
    only a header) takes them too: it has nothing they could fail on."""
    return (
        pa.types.is_integer(data_type)
        or pa.types.is_floating(data_type)
        or pa.types.is_decimal(data_type)
        or pa.types.is_null(data_type)
    )


def quote_ident(name: str) -> str:
    """A DuckDB identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def duckdb_types(con: duckdb.DuckDBPyConnection, schema: pa.Schema) -> dict[str, str]:
    """DuckDB's type name for each column of an Arrow schema."""
    con.register("__schema_probe", schema.empty_table())
    try:
        return {row[0]: row[1] for row in con.sql("describe __schema_probe").fetchall()}
    finally:
        con.unregister("__schema_probe")


def resolver_for(connections: Any) -> Any:
    """A ConnectionResolver from what the caller passed: a resolver, a mapping of
    connection id to URL, or None (environment variables)."""
    from airflow_provider_orchestra.specialists.io import ConnectionResolver

    if connections is None:
        return ConnectionResolver()
    if isinstance(connections, Mapping):
        return ConnectionResolver(connections)
    return connections


def open_task_source(task: Any, connections: Any, *, batch_rows: int | None = None, **options: Any) -> Any:
    """The branch's source (a BranchTask's batch), kept under its data roots, read in
    record batches of the task's size unless ``batch_rows`` says otherwise."""
    from airflow_provider_orchestra.specialists.io import open_source

    return open_source(
        task.batch.source,
        roots=task.storage.data_roots,
        batch_rows=batch_rows or task.record_batch_rows,
        connections=resolver_for(connections),
        **options,
    )


def stream(schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> pa.RecordBatchReader:
    return pa.RecordBatchReader.from_batches(schema, iter(batches))


_DONE = object()


def read_ahead(items: Iterable[T]) -> Iterator[T]:
    """The items of ``items``, the next one produced in a second thread while the caller
    works on the current one: reading and decoding a record batch overlaps with computing
    and writing the previous one. One item is read ahead, so memory grows by one batch.

    The producer runs nothing of the caller's (progress callbacks stay in the caller's
    thread); its errors are raised here, and a caller that stops early waits for the read
    in flight before the producer is closed."""
    iterator = iter(items)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead")
    try:
        pending = pool.submit(next, iterator, _DONE)
        while True:
            item = pending.result()
            if item is _DONE:
                return
            pending = pool.submit(next, iterator, _DONE)
            yield item
    finally:
        pool.shutdown(wait=True)
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def pipeline_threads(lease_cpu: float | None) -> int:
    """Threads a specialist may keep busy: its lease's cpu, or every core without one."""
    if lease_cpu:
        return max(1, int(lease_cpu))
    return os.cpu_count() or 1


# --------------------------------------------------------------------------- side outputs


class ParquetSideWriter:
    """A second Parquet output written while the main output streams (quarantined or late
    rows). It writes straight into the attempt's staging directory, which is published or
    discarded as a whole, so it needs no swap of its own. The file is created on the first
    non-empty batch; ``close()`` returns None when nothing was written."""

    def __init__(self, dest_dir: Path, schema: pa.Schema, *, role: str):
        self.dest_dir = dest_dir
        self.schema = schema
        self.role = role
        self.rows = 0
        self._writer: Any = None

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        if batch.num_rows == 0:
            return
        from airflow_provider_orchestra.specialists.io.sinks import parquet_writer

        if self._writer is None:
            self.dest_dir.mkdir(parents=True, exist_ok=True)
            self._writer = parquet_writer(self.dest_dir / "part-0.parquet", self.schema)
        if isinstance(batch, pa.Table):
            self._writer.write_table(batch.cast(self.schema))
        else:
            self._writer.write_batch(batch.cast(self.schema) if not batch.schema.equals(self.schema) else batch)
        self.rows += batch.num_rows

    def close(self) -> OutputDescriptor | None:
        from airflow_provider_orchestra.specialists.io.types import columns_of

        if self._writer is None:
            return None
        self._writer.close()
        self._writer = None
        checksum, size = directory_checksum(self.dest_dir)
        return OutputDescriptor(
            uri=self.dest_dir.as_uri(),
            format="parquet",
            rows=self.rows,
            checksum=checksum,
            size_bytes=size,
            role=self.role,
            columns=columns_of(self.schema),
        )

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def directory_checksum(root: Path) -> tuple[str, int]:
    """sha256 over (relative path, bytes) of every file under ``root``, and their size."""
    digest = hashlib.sha256()
    total = 0
    files = sorted((p for p in root.rglob("*") if p.is_file()), key=lambda p: p.relative_to(root).as_posix())
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode("utf-8") + b"\x00")
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
                total += len(chunk)
    return f"sha256:{digest.hexdigest()}", total


# --------------------------------------------------------------------------- publishing


def attempt_dir(branch_root: Path) -> Path:
    """A fresh staging directory beside the branch's output directory."""
    branch_root.parent.mkdir(parents=True, exist_ok=True)
    path = branch_root.parent / f".{branch_root.name}.attempt-{uuid.uuid4().hex[:12]}"
    path.mkdir()
    return path


def clear_stale_attempts(branch_root: Path) -> None:
    """Remove staging directories a killed attempt left behind."""
    parent = branch_root.parent
    if not parent.is_dir():
        return
    for stale in parent.glob(f".{branch_root.name}.attempt-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in parent.glob(f".{branch_root.name}.replaced-*"):
        shutil.rmtree(stale, ignore_errors=True)


def discard(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def publish(staging: Path, branch_root: Path, outputs: list[OutputDescriptor]) -> list[OutputDescriptor]:
    """Swap the attempt's staging directory in as the branch's output directory and point
    the descriptors at their final place. The previous output (an earlier attempt or
    round) is replaced as a whole, so readers never see a mix of two attempts."""
    shutil.rmtree(staging / "duckdb_tmp", ignore_errors=True)
    replaced = None
    if branch_root.exists():
        replaced = branch_root.parent / f".{branch_root.name}.replaced-{uuid.uuid4().hex[:12]}"
        os.replace(branch_root, replaced)
    os.replace(staging, branch_root)
    if replaced is not None:
        shutil.rmtree(replaced, ignore_errors=True)
    moves = [(staging.as_uri(), branch_root.as_uri()), (str(staging), str(branch_root))]

    def moved(uri: str) -> str:
        for old, new in moves:
            if uri.startswith(old):
                return new + uri[len(old) :]
        return uri

    return [d.model_copy(update={"uri": moved(d.uri)}) for d in outputs]
