"""Postgres tables, streamed with ``COPY (SELECT ...) TO STDOUT`` into Arrow's CSV reader."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from airflow_provider_orchestra.core.errors import SourceError
from airflow_provider_orchestra.core.models import SourceRef
from airflow_provider_orchestra.core.secrets import redact_text
from airflow_provider_orchestra.specialists.io.sources.base import MAX_BLOCK, MIN_BLOCK, RecordBatchSource
from airflow_provider_orchestra.specialists.io.types import ExpectedColumns, check_schema, conform, normalise_expected

_PG_TYPES: dict[str, pa.DataType] = {
    "int2": pa.int16(),
    "int4": pa.int32(),
    "int8": pa.int64(),
    "float4": pa.float32(),
    "float8": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
}


def _pg_arrow_type(udt_name: str, precision: int | None, scale: int | None) -> pa.DataType:
    if udt_name == "numeric":
        if precision and precision <= 38:
            return pa.decimal128(precision, scale or 0)
        return pa.float64()
    return _PG_TYPES.get(udt_name, pa.string())


class _CopyStream(io.RawIOBase):
    """A read-only file over the chunks of a psycopg ``COPY ... TO STDOUT``."""

    def __init__(self, copy: Any) -> None:
        self._copy = copy
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = self._copy.read()
            if not chunk:
                return 0
            self._pending = memoryview(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


class PostgresSource(RecordBatchSource):
    """A table streamed with ``COPY (SELECT ...) TO STDOUT`` into Arrow's CSV reader.

    Identifiers are quoted with psycopg.sql; a watermark read selects rows whose
    ``watermark_column`` is greater than ``watermark`` and records the largest value seen.
    """

    kind = "postgres"

    def __init__(
        self,
        ref: SourceRef,
        url: str,
        batch_rows: int,
        *,
        watermark: Any = None,
        watermark_column: str | None = None,
        expected: ExpectedColumns = None,
    ) -> None:
        super().__init__(postgres_uri(ref), batch_rows)
        self.ref = ref
        self._url = url
        self._watermark = watermark
        self._watermark_column = watermark_column
        self._columns = self._describe_columns()
        names = [name for name, _ in self._columns]
        if watermark_column and watermark_column not in names:
            raise SourceError(
                f"{self._where()}: watermark column {watermark_column!r} not found; columns {names}"
            )
        self.schema = check_schema(pa.schema(self._columns), normalise_expected(expected), self._where())

    def _where(self) -> str:
        return f"table {self.ref.db_schema}.{self.ref.table} (connection {redact_text(self.ref.conn_id or '')!r})"

    def _connect(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(self._url, connect_timeout=10, application_name="orchestra-source")
        except psycopg.Error as exc:
            raise SourceError(
                f"cannot connect through connection {redact_text(self.ref.conn_id or '')!r}: {type(exc).__name__}"
            ) from None

    def _describe_columns(self) -> list[tuple[str, pa.DataType]]:
        import psycopg

        with self._connect() as conn:
            try:
                rows = conn.execute(
                    "select column_name, udt_name, numeric_precision, numeric_scale "
                    "from information_schema.columns where table_schema = %s and table_name = %s "
                    "order by ordinal_position",
                    (self.ref.db_schema, self.ref.table),
                ).fetchall()
            except psycopg.Error as exc:
                raise SourceError(f"{self._where()}: {exc}") from None
        if not rows:
            raise SourceError(f"{self._where()} does not exist or has no visible columns")
        return [(name, _pg_arrow_type(udt, prec, scale)) for name, udt, prec, scale in rows]

    def _query(self) -> Any:
        from psycopg import sql

        columns = sql.SQL(", ").join(sql.Identifier(name) for name, _ in self._columns)
        target = sql.Identifier(self.ref.db_schema, self.ref.table)
        select = sql.SQL("select {} from {}").format(columns, target)
        if self._watermark_column:
            column = sql.Identifier(self._watermark_column)
            if self._watermark is not None:
                # COPY takes no bind parameters; Literal quotes the value safely.
                select += sql.SQL(" where {} > {}").format(column, sql.Literal(self._watermark))
            select += sql.SQL(" order by {}").format(column)
        return sql.SQL("copy ({}) to stdout (format csv)").format(select)

    def _batches(self) -> Iterator[pa.RecordBatch]:
        import psycopg

        names = [name for name, _ in self._columns]
        read_options = pacsv.ReadOptions(
            column_names=names, block_size=max(MIN_BLOCK, min(MAX_BLOCK, self.batch_rows * 128))
        )
        convert = pacsv.ConvertOptions(
            column_types=dict(self._columns),
            true_values=["t"],
            false_values=["f"],
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,  # COPY writes '' as "" and NULL as nothing
        )
        parse = pacsv.ParseOptions(newlines_in_values=True)
        where = self._where()
        conn = self._connect()
        try:
            with conn:
                conn.execute("set datestyle to 'ISO, YMD'")
                conn.execute("set intervalstyle to 'iso_8601'")
                with conn.cursor() as cur, cur.copy(self._query()) as copy:
                    stream = io.BufferedReader(_CopyStream(copy), buffer_size=1 << 20)
                    if not stream.peek(1):
                        return
                    reader = pacsv.open_csv(
                        stream, read_options=read_options, parse_options=parse, convert_options=convert
                    )
                    for batch in reader:
                        batch = conform(batch, self.schema, where)
                        if self._watermark_column and batch.num_rows:
                            top = pc.max(batch.column(self._watermark_column)).as_py()
                            if top is not None and (self.max_watermark is None or top > self.max_watermark):
                                self.max_watermark = top
                        yield batch
        except psycopg.Error as exc:
            raise SourceError(f"{where}: read failed: {type(exc).__name__}: {exc}") from None
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise SourceError(f"{where}: cannot convert the copied rows: {exc}") from None
        finally:
            conn.close()

    def iter_batches(self) -> Iterator[pa.RecordBatch]:
        self.max_watermark = None
        return super().iter_batches()

    def _measure(self, query: Any, params: tuple[Any, ...] = ()) -> int:
        import psycopg

        with self._connect() as conn:
            try:
                value = conn.execute(query, params).fetchone()[0]
            except psycopg.Error as exc:
                raise SourceError(f"{self._where()}: cannot be measured: {exc}") from None
        return int(value or 0)

    def count_rows(self) -> int:
        from psycopg import sql

        return self._measure(
            sql.SQL("select count(*) from {}").format(sql.Identifier(self.ref.db_schema, self.ref.table))
        )

    def size_bytes(self) -> int:
        return self._measure(
            "select pg_total_relation_size(format('%%I.%%I', %s::text, %s::text)::regclass)",
            (self.ref.db_schema, self.ref.table),
        )


def postgres_uri(ref: SourceRef) -> str:
    """A credential-free URI naming a table by connection id."""
    return f"postgres://{redact_text(ref.conn_id or '')}/{ref.db_schema}.{ref.table}"
