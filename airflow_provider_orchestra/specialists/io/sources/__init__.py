"""Streaming sources, one module per kind: CSV, JSONL (incremental by byte offset),
Parquet and Postgres (incremental by watermark), over a small common base.

``open_source`` opens a source for a ``SourceRef`` (files only under the data roots);
``describe_source`` measures one cheaply for the analyzer.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from airflow_provider_orchestra.core.errors import SourceError
from airflow_provider_orchestra.core.models import BatchDescriptor, BatchSpec, SourceRef
from airflow_provider_orchestra.specialists.io.connections import ConnectionResolver
from airflow_provider_orchestra.specialists.io.paths import resolve_under_roots
from airflow_provider_orchestra.specialists.io.sources.base import RecordBatchSource
from airflow_provider_orchestra.specialists.io.sources.csv import CsvSource
from airflow_provider_orchestra.specialists.io.sources.jsonl import JsonlSource
from airflow_provider_orchestra.specialists.io.sources.parquet import ParquetSource
from airflow_provider_orchestra.specialists.io.sources.postgres import PostgresSource, postgres_uri
from airflow_provider_orchestra.specialists.io.types import ExpectedColumns, columns_of

__all__ = [
    "CsvSource",
    "JsonlSource",
    "ParquetSource",
    "PostgresSource",
    "RecordBatchSource",
    "describe_source",
    "open_source",
    "postgres_uri",
    "source_key",
]


def open_source(
    ref: SourceRef,
    *,
    roots: list[str],
    batch_rows: int,
    connections: ConnectionResolver | None = None,
    start_offset: int | None = None,
    watermark: Any = None,
    watermark_column: str | None = None,
    expected_columns: ExpectedColumns = None,
    tail: bool = False,
) -> RecordBatchSource:
    """Open a source for streaming. Files must resolve under ``roots``.

    ``expected_columns`` (names, or name -> type) makes a wrong schema a SourceError
    and, where types are given, pins those column types. ``tail`` follows a JSONL file
    that is still being written: a last line without its newline is held back as
    pending instead of read.
    """
    if ref.kind == "postgres":
        resolver = connections or ConnectionResolver()
        url = resolver.resolve(ref.conn_id or "")
        return PostgresSource(
            ref,
            url,
            batch_rows,
            watermark=watermark,
            watermark_column=watermark_column,
            expected=expected_columns,
        )
    path = resolve_under_roots(ref.path or "", roots)
    if ref.kind == "csv":
        return CsvSource(path, batch_rows, expected_columns)
    if ref.kind == "parquet":
        return ParquetSource(path, batch_rows, expected_columns)
    if ref.kind == "jsonl":
        return JsonlSource(path, batch_rows, start_offset, expected_columns, tail=tail)
    raise SourceError(f"unsupported source kind {ref.kind!r}")


def describe_source(
    batch: BatchSpec,
    *,
    roots: list[str],
    connections: ConnectionResolver | None = None,
) -> BatchDescriptor:
    """Measure a batch cheaply: rows, bytes and columns, without loading the data."""
    source = open_source(batch.source, roots=roots, batch_rows=1024, connections=connections)
    try:
        rows, size = source.count_rows(), source.size_bytes()
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise SourceError(f"{source.uri} cannot be measured: {exc}") from None
    return BatchDescriptor(
        batch_id=batch.batch_id,
        source_kind=batch.source.kind,
        uri=source.uri,
        rows=rows,
        size_bytes=size,
        columns=columns_of(source.schema),
    )


def source_key(ref: SourceRef, roots: list[str] | None = None) -> str:
    """A stable key for a source in the offset store."""
    if ref.kind == "postgres":
        return postgres_uri(ref)
    if roots:
        return resolve_under_roots(ref.path or "", roots).as_uri()
    return f"{ref.kind}:{ref.path}"
