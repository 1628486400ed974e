"""Where incremental reads resume: byte offsets (JSONL) and watermarks (Postgres).

Keyed by (workflow_id, source key). A specialist sets a new position only after its
output was written, so a failed run re-reads the same rows next time. ``set`` can be
made conditional (``expected=``) so two runs racing on one source cannot both advance.
"""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from airflow_provider_orchestra.core.errors import SourceError
from airflow_provider_orchestra.core.models import StorageConfig

_MISSING: Any = object()


class OffsetConflictError(SourceError):
    """The stored position moved since it was read: another run advanced it."""


def encode_position(value: Any) -> str:
    if isinstance(value, datetime):
        return json.dumps({"t": "datetime", "v": value.isoformat()})
    if isinstance(value, date):
        return json.dumps({"t": "date", "v": value.isoformat()})
    if isinstance(value, Decimal):
        return json.dumps({"t": "decimal", "v": str(value)})
    if value is None or isinstance(value, (bool, int, float, str)):
        return json.dumps({"t": "json", "v": value})
    raise TypeError(f"cannot store a position of type {type(value).__name__}")


def decode_position(text: str | None) -> Any:
    if text is None:
        return None
    data = json.loads(text)
    kind, value = data["t"], data["v"]
    if kind == "datetime":
        return datetime.fromisoformat(value)
    if kind == "date":
        return date.fromisoformat(value)
    if kind == "decimal":
        return Decimal(value)
    return value


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class OffsetStore:
    """A tiny transactional key-value store in SQLite (a file path) or Postgres (a URL)."""

    def __init__(self, path_or_url: str | Path, *, table: str = "orchestra_offsets") -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", table):
            raise ValueError(f"offset table name {table!r} is not a plain identifier")
        text = str(path_or_url)
        self._is_postgres = text.startswith(("postgresql://", "postgres://"))
        self._target = text
        self._table = table
        if not self._is_postgres:
            Path(text).parent.mkdir(parents=True, exist_ok=True)
        self._ensure_table()

    @classmethod
    def for_storage(cls, storage: StorageConfig) -> OffsetStore:
        """The default store: ``<output_root>/_state/offsets.sqlite``."""
        from airflow_provider_orchestra.specialists.io.paths import state_path

        return cls(state_path(storage.output_root, "offsets.sqlite"))

    def __repr__(self) -> str:
        return f"OffsetStore({'postgres' if self._is_postgres else self._target!r})"

    # -- backends

    def _sqlite(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._target, timeout=30, isolation_level=None)
        conn.execute("pragma journal_mode=wal")
        return conn

    def _postgres(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(self._target, connect_timeout=10, application_name="orchestra-offsets")
        except psycopg.Error as exc:
            raise SourceError(f"offset store unreachable: {type(exc).__name__}") from None

    def _ensure_table(self) -> None:
        if self._is_postgres:
            from psycopg import sql

            with self._postgres() as conn:
                conn.execute("select pg_advisory_xact_lock(hashtext(%s))", (self._table,))
                conn.execute(
                    sql.SQL(
                        "create table if not exists {} (workflow_id text not null, source_key text not null, "
                        "position text not null, updated_at timestamptz not null default now(), "
                        "primary key (workflow_id, source_key))"
                    ).format(sql.Identifier(self._table))
                )
            return
        with self._sqlite() as conn:
            conn.execute(
                f'create table if not exists "{self._table}" (workflow_id text not null, '
                "source_key text not null, position text not null, updated_at text not null, "
                "primary key (workflow_id, source_key))"
            )

    # -- api

    def get(self, workflow_id: str, source_key: str, default: Any = None) -> Any:
        if self._is_postgres:
            from psycopg import sql

            with self._postgres() as conn:
                row = conn.execute(
                    sql.SQL("select position from {} where workflow_id = %s and source_key = %s").format(
                        sql.Identifier(self._table)
                    ),
                    (workflow_id, source_key),
                ).fetchone()
        else:
            conn = self._sqlite()
            try:
                row = conn.execute(
                    f'select position from "{self._table}" where workflow_id = ? and source_key = ?',
                    (workflow_id, source_key),
                ).fetchone()
            finally:
                conn.close()
        return default if row is None else decode_position(row[0])

    def set(self, workflow_id: str, source_key: str, value: Any, *, expected: Any = _MISSING) -> None:
        """Store ``value`` atomically. With ``expected`` the write happens only if the
        stored position still equals it (None: nothing stored yet); otherwise
        OffsetConflictError."""
        encoded = encode_position(value)
        if self._is_postgres:
            self._set_postgres(workflow_id, source_key, encoded, expected)
        else:
            self._set_sqlite(workflow_id, source_key, encoded, expected)

    def delete(self, workflow_id: str, source_key: str) -> None:
        """Forget a position: the next incremental read starts from the beginning."""
        if self._is_postgres:
            from psycopg import sql

            with self._postgres() as conn:
                conn.execute(
                    sql.SQL("delete from {} where workflow_id = %s and source_key = %s").format(
                        sql.Identifier(self._table)
                    ),
                    (workflow_id, source_key),
                )
            return
        conn = self._sqlite()
        try:
            conn.execute(
                f'delete from "{self._table}" where workflow_id = ? and source_key = ?',
                (workflow_id, source_key),
            )
        finally:
            conn.close()

    def _conflict(self, workflow_id: str, source_key: str, expected: Any, current: Any) -> OffsetConflictError:
        return OffsetConflictError(
            f"position of {source_key!r} in workflow {workflow_id!r} is {current!r}, expected {expected!r}: "
            "another run advanced it"
        )

    def _set_sqlite(self, workflow_id: str, source_key: str, encoded: str, expected: Any) -> None:
        conn = self._sqlite()
        try:
            conn.execute("begin immediate")  # one writer at a time across processes
            row = conn.execute(
                f'select position from "{self._table}" where workflow_id = ? and source_key = ?',
                (workflow_id, source_key),
            ).fetchone()
            current = None if row is None else decode_position(row[0])
            if expected is not _MISSING and current != expected:
                conn.execute("rollback")
                raise self._conflict(workflow_id, source_key, expected, current)
            conn.execute(
                f'insert into "{self._table}" (workflow_id, source_key, position, updated_at) '
                "values (?, ?, ?, ?) on conflict (workflow_id, source_key) do update set "
                "position = excluded.position, updated_at = excluded.updated_at",
                (workflow_id, source_key, encoded, _now()),
            )
            conn.execute("commit")
        except BaseException:
            if conn.in_transaction:
                conn.execute("rollback")
            raise
        finally:
            conn.close()

    def _set_postgres(self, workflow_id: str, source_key: str, encoded: str, expected: Any) -> None:
        from psycopg import sql

        table = sql.Identifier(self._table)
        with self._postgres() as conn:
            with conn.transaction():
                # Lock the key (even when no row exists yet) for the read-compare-write.
                conn.execute(
                    "select pg_advisory_xact_lock(hashtext(%s))", (f"{self._table}/{workflow_id}/{source_key}",)
                )
                row = conn.execute(
                    sql.SQL("select position from {} where workflow_id = %s and source_key = %s").format(table),
                    (workflow_id, source_key),
                ).fetchone()
                current = None if row is None else decode_position(row[0])
                if expected is not _MISSING and current != expected:
                    raise self._conflict(workflow_id, source_key, expected, current)
                conn.execute(
                    sql.SQL(
                        "insert into {} (workflow_id, source_key, position, updated_at) values (%s, %s, %s, now()) "
                        "on conflict (workflow_id, source_key) do update set position = excluded.position, "
                        "updated_at = excluded.updated_at"
                    ).format(table),
                    (workflow_id, source_key, encoded),
                )
