"""Checkpoint savers for the specialist subgraphs.

``make_saver(url)`` turns a URL into a LangGraph checkpointer:

- ``None``, ``""`` or ``"memory"`` -> ``InMemorySaver`` (lives as long as the process);
- a file path, ``sqlite:///relative/path`` or ``sqlite:////absolute/path`` -> ``SqliteSaver``;
- ``postgresql://...`` / ``postgres://...`` -> ``PostgresSaver`` (its tables are created
  once per process and URL, under an advisory lock so parallel workers do not race).

A saver that cannot be opened raises :class:`OrchestraError` naming the target without
its password. ``close_saver`` releases the connection a SQLite or Postgres saver holds.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver

from airflow_provider_orchestra.core.errors import OrchestraError
from airflow_provider_orchestra.core.secrets import redact_url, scrub

_POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")
# Arbitrary constant: every process setting up checkpoint tables takes the same lock.
_SETUP_LOCK_KEY = 0x0C4E57A
_setup_done: set[str] = set()
_setup_guard = threading.Lock()


class CheckpointStoreError(OrchestraError):
    """The checkpoint store named by a URL cannot be opened."""


def _sqlite_path(url: str) -> Path:
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :]).expanduser()
    if url.startswith("sqlite://"):
        raise CheckpointStoreError(
            f"checkpoint URL {url!r} has a host part; use sqlite:///relative/path or sqlite:////absolute/path"
        )
    return Path(url).expanduser()


def _sqlite_saver(url: str) -> BaseCheckpointSaver:
    from langgraph.checkpoint.sqlite import SqliteSaver

    path = _sqlite_path(url)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False)
        # WAL lets a resumed process read what a killed one committed without lock waits.
        conn.execute("pragma journal_mode=wal")
        saver = SqliteSaver(conn)
        saver.setup()
    except (OSError, sqlite3.Error) as exc:
        raise CheckpointStoreError(f"cannot open the SQLite checkpoint store {str(path)!r}: {exc}") from None
    return saver


def _postgres_saver(url: str) -> BaseCheckpointSaver:
    import psycopg
    from psycopg.rows import dict_row
    from langgraph.checkpoint.postgres import PostgresSaver

    if url.startswith("postgresql+psycopg://"):
        url = "postgresql://" + url[len("postgresql+psycopg://") :]
    try:
        conn = psycopg.connect(
            url, autocommit=True, prepare_threshold=0, row_factory=dict_row, connect_timeout=10
        )
    except psycopg.Error as exc:
        reason = scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, url)
        raise CheckpointStoreError(
            f"cannot reach the checkpoint database {redact_url(url)}: {reason}"
        ) from None
    saver = PostgresSaver(conn)
    key = redact_url(url)
    with _setup_guard:
        if key not in _setup_done:
            try:
                conn.execute("select pg_advisory_lock(%s)", (_SETUP_LOCK_KEY,))
                try:
                    saver.setup()
                finally:
                    conn.execute("select pg_advisory_unlock(%s)", (_SETUP_LOCK_KEY,))
            except psycopg.Error as exc:
                conn.close()
                raise CheckpointStoreError(
                    f"cannot create checkpoint tables in {key}: {scrub(str(exc), url)}"
                ) from None
            _setup_done.add(key)
    return saver


def make_saver(url: str | None = None) -> BaseCheckpointSaver:
    """A checkpointer for ``url`` (see the module docstring for accepted forms)."""
    if url is None or not str(url).strip() or str(url).strip().lower() == "memory":
        return InMemorySaver()
    text = str(url).strip()
    if text.lower().startswith(_POSTGRES_SCHEMES):
        return _postgres_saver(text)
    if "://" in text and not text.lower().startswith("sqlite:"):
        raise CheckpointStoreError(
            f"unsupported checkpoint URL scheme in {redact_url(text)}; "
            "use a file path, sqlite:///path or postgresql://..."
        )
    return _sqlite_saver(text)


def close_saver(saver: BaseCheckpointSaver) -> None:
    """Close the database connection behind a SQLite or Postgres saver (no-op otherwise)."""
    conn = getattr(saver, "conn", None)
    if conn is not None:
        conn.close()
