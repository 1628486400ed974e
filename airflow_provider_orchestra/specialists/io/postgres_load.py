"""The Postgres sink: record batches COPYed into a staging table, then swapped into the
target in one transaction, in the batch's write mode.

Every loaded row carries ``run_id`` and ``branch_id`` (who wrote it). The modes differ
only in the statement that swaps the staged rows in:

- ``append``: the (run, branch) slice is deleted and the staged rows inserted; other runs'
  rows stay, and a rerun of the same run replaces its own slice.
- ``replace``: every row except those other branches of this run loaded is deleted, then
  the staged rows inserted: the table holds the latest run only.
- ``upsert``: ``INSERT ... ON CONFLICT (key) DO UPDATE`` against a unique index on the
  key; the staged rows are checked first to hold each key once and no null key.

The staging COPY runs outside any lock; the swap takes a per-table advisory lock, so loads
of one table never interleave their swaps. A failure anywhere (dropped connection, bad
batch, duplicate key) rolls the transaction back and leaves the target as it was. SQL
identifiers always go through :mod:`psycopg.sql`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import pyarrow as pa
import pyarrow.csv as pacsv

from airflow_provider_orchestra.core.errors import SinkError
from airflow_provider_orchestra.core.models import WRITE_RESERVED_COLUMNS, OutputDescriptor, WriteMode
from airflow_provider_orchestra.core.secrets import redact_text
from airflow_provider_orchestra.specialists.io.sinks import WRITE_ERRORS, conformed, plain_schema
from airflow_provider_orchestra.specialists.io.types import columns_of
from airflow_provider_orchestra.specialists.io.write_modes import duplicate_key_error, null_key_error

log = logging.getLogger(__name__)

APPLICATION_NAME = "orchestra-load"
"""The load's ``application_name`` in ``pg_stat_activity``."""
_KEY_EXAMPLES = 5

LoadProgress = Callable[[int], None]
"""Called with the rows COPYed so far after each record batch of a load."""


def postgres_type(data_type: pa.DataType) -> str:
    """The Postgres column type for an Arrow type (SinkError when there is none)."""
    t = data_type
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_uint8(t):
        return "smallint"
    if pa.types.is_int32(t) or pa.types.is_uint16(t):
        return "integer"
    if pa.types.is_int64(t) or pa.types.is_uint32(t):
        return "bigint"
    if pa.types.is_uint64(t):
        return "numeric(20, 0)"
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return "real"
    if pa.types.is_float64(t):
        return "double precision"
    if pa.types.is_decimal(t):
        return f"numeric({t.precision}, {t.scale})"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "text"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamptz" if t.tz else "timestamp"
    if pa.types.is_time(t):
        return "time"
    if pa.types.is_dictionary(t):
        return postgres_type(t.value_type)
    raise SinkError(f"no Postgres column type for Arrow type {t}")


def batch_csv(batch: pa.RecordBatch) -> bytes:
    """One batch as CSV text for COPY: nulls unquoted-empty, empty strings quoted."""
    buffer = io.BytesIO()
    pacsv.write_csv(batch, buffer, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    return buffer.getvalue()


def _check_identifier(kind: str, name: str) -> None:
    if not name or len(name.encode("utf-8")) > 63 or "\x00" in name:
        raise SinkError(f"{kind} name {name!r} is not a valid Postgres identifier (1-63 bytes)")


# --------------------------------------------------------------------------- the target


@dataclass(frozen=True)
class LoadTarget:
    """A validated load target: names checked, Arrow columns mapped to Postgres types."""

    db_schema: str
    table: str
    schema: pa.Schema
    column_types: tuple[tuple[str, str], ...]
    write_mode: WriteMode = "append"
    key: tuple[str, ...] = ()
    staging_name: str = field(default_factory=lambda: f"orchestra_stage_{uuid.uuid4().hex[:12]}")

    @property
    def where(self) -> str:
        return f"{self.db_schema}.{self.table}"

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.column_types]

    def index_name(self, purpose: str, *parts: str) -> str:
        """An index name within Postgres' 63 bytes, unique per table and purpose."""
        digest = hashlib.sha256("\x00".join([self.table, *parts]).encode()).hexdigest()[:8]
        return f"{self.table[:40]}_{digest}_{purpose}"


def load_target(
    schema: pa.Schema, *, db_schema: str, table: str, write_mode: WriteMode = "append", key: Sequence[str] = ()
) -> LoadTarget:
    """Check names, reserved columns, the key and column types before connecting."""
    _check_identifier("table", table)
    _check_identifier("schema", db_schema)
    schema = plain_schema(schema)
    clash = [name for name in WRITE_RESERVED_COLUMNS if name in schema.names]
    if clash:
        raise SinkError(f"output columns {clash} clash with the load's own run_id/branch_id columns")
    column_types = tuple((f.name, postgres_type(f.type)) for f in schema)
    for name, _ in column_types:
        _check_identifier("column", name)
    key = tuple(key)
    if write_mode == "upsert":
        if not key:
            raise SinkError(f"upsert into {db_schema}.{table} needs a key")
        unknown = [c for c in key if c not in schema.names]
        if unknown:
            raise SinkError(f"upsert key column(s) {unknown} are not among the output columns {schema.names}")
    elif key:
        raise SinkError(f"a key is only used by write_mode 'upsert', not {write_mode!r}")
    return LoadTarget(db_schema, table, schema, column_types, write_mode, key)


# --------------------------------------------------------------------------- the steps


def _prepare_table(conn: Any, target: LoadTarget) -> None:
    """Create the schema, table and indexes if missing and check the table's columns, in
    a transaction of its own (concurrent first loads must not race on CREATE)."""
    from psycopg import sql

    ident = sql.Identifier(target.db_schema, target.table)
    column_defs = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(pg_type)) for name, pg_type in target.column_types
    )
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtext(%s))", (target.where,))
        if not conn.execute("select 1 from pg_namespace where nspname = %s", (target.db_schema,)).fetchone():
            conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(target.db_schema)))
        conn.execute(
            sql.SQL("create table if not exists {} ({}, run_id text not null, branch_id text not null)").format(
                ident, column_defs
            )
        )
        existing = {
            row[0]
            for row in conn.execute(
                "select column_name from information_schema.columns where table_schema = %s and table_name = %s",
                (target.db_schema, target.table),
            )
        }
        missing = [name for name in [*target.names, *WRITE_RESERVED_COLUMNS] if name not in existing]
        if missing:
            raise SinkError(f"table {target.where} exists without column(s) {missing}")
        conn.execute(
            sql.SQL("create index if not exists {} on {} (run_id, branch_id)").format(
                sql.Identifier(target.index_name("run_branch")), ident
            )
        )
        if target.write_mode == "upsert":
            _create_key_index(conn, target)


def _create_key_index(conn: Any, target: LoadTarget) -> None:
    """The unique index ``ON CONFLICT (key)`` needs; rows already repeating the key (an
    earlier append) are reported instead of the server's bare error."""
    import psycopg
    from psycopg import sql

    keys = sql.SQL(", ").join(sql.Identifier(c) for c in target.key)
    try:
        with conn.transaction():  # a savepoint: the failure is reported below
            conn.execute(
                sql.SQL("create unique index if not exists {} on {} ({})").format(
                    sql.Identifier(target.index_name("key", *target.key)),
                    sql.Identifier(target.db_schema, target.table),
                    keys,
                )
            )
    except psycopg.errors.UniqueViolation:
        examples = _repeated_keys(conn, sql.Identifier(target.db_schema, target.table), target.key)
        raise SinkError(
            f"cannot upsert into {target.where} by key {list(target.key)}: the rows already in the table repeat "
            f"that key, e.g. {examples}; deduplicate the table or load it with write_mode 'replace' once"
        ) from None


def _repeated_keys(conn: Any, relation: Any, key: Sequence[str]) -> list[dict[str, Any]]:
    from psycopg import sql

    keys = sql.SQL(", ").join(sql.Identifier(c) for c in key)
    rows = conn.execute(
        sql.SQL("select {}, count(*) from {} group by {} having count(*) > 1 order by count(*) desc limit {}").format(
            keys, relation, keys, sql.Literal(_KEY_EXAMPLES)
        )
    ).fetchall()
    return [{**dict(zip(key, row[:-1], strict=True)), "rows": row[-1]} for row in rows]


@dataclass
class Staged:
    """What the COPY sent: rows, bytes and the sha256 of the CSV text."""

    rows: int = 0
    size: int = 0
    digest: Any = field(default_factory=hashlib.sha256)


def _stage_rows(
    conn: Any, target: LoadTarget, batches: Iterable[pa.RecordBatch], on_progress: LoadProgress | None
) -> Staged:
    """COPY the batches as CSV into a temporary table dropped at commit."""
    from psycopg import sql

    staging = sql.Identifier(target.staging_name)
    column_defs = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(pg_type)) for name, pg_type in target.column_types
    )
    names = sql.SQL(", ").join(sql.Identifier(name) for name in target.names)
    conn.execute(sql.SQL("create temporary table {} ({}) on commit drop").format(staging, column_defs))
    staged = Staged()
    with conn.cursor() as cur, cur.copy(sql.SQL("copy {} ({}) from stdin (format csv)").format(staging, names)) as copy:
        for batch in conformed(batches, target.schema):
            if not batch.num_rows:
                continue
            data = batch_csv(batch)
            copy.write(data)
            staged.digest.update(data)
            staged.rows += batch.num_rows
            staged.size += len(data)
            if on_progress is not None:
                on_progress(staged.rows)
    return staged


def _check_staged_key(conn: Any, target: LoadTarget) -> None:
    """Upsert only: each key once and never null among the staged rows."""
    from psycopg import sql

    staging = sql.Identifier(target.staging_name)
    nulls = sql.SQL(" or ").join(sql.SQL("{} is null").format(sql.Identifier(c)) for c in target.key)
    null_rows = conn.execute(sql.SQL("select count(*) from {} where {}").format(staging, nulls)).fetchone()[0]
    if null_rows:
        raise null_key_error(target.where, target.key, null_rows)
    repeated = _repeated_keys(conn, staging, target.key)
    if repeated:
        raise duplicate_key_error(target.where, target.key, repeated)


def _swap_in_staged(conn: Any, target: LoadTarget, run_id: str, branch_id: str) -> None:
    """The write mode's statements, under the table's advisory lock."""
    from psycopg import sql

    ident = sql.Identifier(target.db_schema, target.table)
    staging = sql.Identifier(target.staging_name)
    names = sql.SQL(", ").join(sql.Identifier(name) for name in target.names)
    conn.execute("select pg_advisory_xact_lock(hashtext(%s))", (target.where,))
    if target.write_mode == "append":
        conn.execute(sql.SQL("delete from {} where run_id = %s and branch_id = %s").format(ident), (run_id, branch_id))
    elif target.write_mode == "replace":
        conn.execute(
            sql.SQL("delete from {} where not (run_id = %s and branch_id <> %s)").format(ident), (run_id, branch_id)
        )
    insert = sql.SQL("insert into {} ({}, run_id, branch_id) select {}, %s, %s from {}").format(
        ident, names, names, staging
    )
    if target.write_mode == "upsert":
        updated = [sql.Identifier(c) for c in [*target.names, *WRITE_RESERVED_COLUMNS] if c not in target.key]
        insert = sql.SQL("{} on conflict ({}) do update set {}").format(
            insert,
            sql.SQL(", ").join(sql.Identifier(c) for c in target.key),
            sql.SQL(", ").join(sql.SQL("{} = excluded.{}").format(c, c) for c in updated),
        )
    conn.execute(insert, (run_id, branch_id))


@contextlib.contextmanager
def _cancel_on_interrupt(conn: Any) -> Iterator[None]:
    """An exception raised while a statement waits on the server (e.g. a task's execution
    timeout) leaves that statement running after the connection is dropped, holding its
    locks; cancel it so a retry does not queue behind the abandoned session."""
    import psycopg
    from psycopg import pq as libpq

    try:
        yield
    except BaseException as exc:
        if not isinstance(exc, psycopg.Error) and conn.pgconn.transaction_status == libpq.TransactionStatus.ACTIVE:
            try:
                conn.cancel_safe(timeout=5.0)
            except psycopg.Error:
                log.warning("could not cancel the interrupted load's statement", exc_info=True)
        raise


def _table_uri(url: str, conn_id: str | None, target: LoadTarget, run_id: str, branch_id: str) -> str:
    query = urlencode({"run_id": run_id, "branch_id": branch_id})
    if conn_id:
        return f"postgres://{redact_text(conn_id)}/{target.where}?{query}"
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"postgresql://{parts.hostname or ''}{port}{parts.path}/{target.where}?{query}"


def _load_failed(target: LoadTarget, run_id: str, branch_id: str, exc: BaseException) -> SinkError:
    message = str(exc).strip()
    return SinkError(
        f"loading {target.where} ({target.write_mode}) for run {run_id!r} branch {branch_id!r} failed, "
        f"target unchanged: {type(exc).__name__}: {message}"
    )


# --------------------------------------------------------------------------- the load


def load_postgres(
    batches: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    *,
    url: str,
    table: str,
    db_schema: str = "public",
    run_id: str,
    branch_id: str,
    conn_id: str | None = None,
    write_mode: WriteMode = "append",
    key: Sequence[str] = (),
    on_progress: LoadProgress | None = None,
) -> OutputDescriptor:
    """Load ``batches`` into ``db_schema.table`` in ``write_mode`` (see the module doc).

    The target is created if missing (Arrow columns + run_id, branch_id). A rerun of the
    same run and branch gives the same rows in every mode, and a failure at any point
    leaves the target as it was. ``on_progress`` hears the rows COPYed after each batch;
    what it raises stops the load (and is re-raised as is).
    """
    import psycopg

    target = load_target(schema, db_schema=db_schema, table=table, write_mode=write_mode, key=key)
    # Leaving the ``with`` blocks rolls back and closes the connection whatever is raised;
    # only load failures are reported as SinkError.
    try:
        with psycopg.connect(url, connect_timeout=10, application_name=APPLICATION_NAME) as conn, _cancel_on_interrupt(conn):
            _prepare_table(conn, target)
            with conn.transaction():
                staged = _stage_rows(conn, target, batches, on_progress)
                if target.write_mode == "upsert":
                    _check_staged_key(conn, target)
                _swap_in_staged(conn, target, run_id, branch_id)
    except psycopg.Error as exc:
        raise _load_failed(target, run_id, branch_id, exc) from None
    except WRITE_ERRORS as exc:
        raise _load_failed(target, run_id, branch_id, exc) from exc
    log.info("loaded %d rows into %s (%s; run %s, branch %s)", staged.rows, target.where, write_mode, run_id, branch_id)
    return OutputDescriptor(
        uri=_table_uri(url, conn_id, target, run_id, branch_id),
        format="postgres",
        rows=staged.rows,
        checksum=f"sha256:{staged.digest.hexdigest()}",
        size_bytes=staged.size,
        columns=columns_of(target.schema),
    )
