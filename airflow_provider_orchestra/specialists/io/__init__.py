"""Sources and sinks of the specialists: streaming Arrow record batches in and out of
CSV, JSONL, Parquet files (kept under configured roots) and Postgres tables."""

from airflow_provider_orchestra.specialists.io.connections import ConnectionResolver, to_postgres_url
from airflow_provider_orchestra.specialists.io.offsets import OffsetConflictError, OffsetStore
from airflow_provider_orchestra.specialists.io.paths import (
    dataset_root_for,
    ensure_under,
    output_root_for,
    resolve_under_roots,
    safe_name,
)
from airflow_provider_orchestra.specialists.io.postgres_load import load_postgres, postgres_type
from airflow_provider_orchestra.specialists.io.sinks import write_jsonl_quarantine, write_parquet
from airflow_provider_orchestra.specialists.io.write_modes import commit_dataset
from airflow_provider_orchestra.specialists.io.sources import (
    CsvSource,
    JsonlSource,
    ParquetSource,
    PostgresSource,
    RecordBatchSource,
    describe_source,
    open_source,
    postgres_uri,
    source_key,
)
from airflow_provider_orchestra.specialists.io.types import (
    MISFIT_REASON,
    REJECTED_SCHEMA,
    RejectedLine,
    arrow_type,
    rejected_table,
)

__all__ = [
    "MISFIT_REASON",
    "REJECTED_SCHEMA",
    "ConnectionResolver",
    "CsvSource",
    "JsonlSource",
    "OffsetConflictError",
    "OffsetStore",
    "ParquetSource",
    "PostgresSource",
    "RecordBatchSource",
    "RejectedLine",
    "arrow_type",
    "commit_dataset",
    "dataset_root_for",
    "describe_source",
    "ensure_under",
    "load_postgres",
    "open_source",
    "output_root_for",
    "postgres_type",
    "postgres_uri",
    "rejected_table",
    "resolve_under_roots",
    "safe_name",
    "source_key",
    "to_postgres_url",
    "write_jsonl_quarantine",
    "write_parquet",
]
