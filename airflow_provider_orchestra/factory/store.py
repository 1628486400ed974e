"""The factory's shared store: a SQLite file (default) or a Postgres database.

The resource ledger, the performance history and the run claims live here, in tables named
``<namespace>_capacity``, ``<namespace>_leases``, ``<namespace>_template_stats`` and
``<namespace>_run_claims``. Queries are written once with ``{capacity}``/``{leases}``/
``{stats}``/``{runs}`` for the tables and
``%s`` for parameters; each dialect renders them (Postgres through ``psycopg.sql``).
Tables are created on first use, idempotently, also when several processes start at once.

Connections are opened per operation: ledger operations are few and short, and nothing
then needs care across fork, threads or a dropped server connection.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from airflow_provider_orchestra.core.errors import LedgerUnavailableError
from airflow_provider_orchestra.core.secrets import redact_url, scrub

DEFAULT_NAMESPACE = "orchestra"
_NAMESPACE_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
TABLES = ("capacity", "leases", "stats", "runs")
_TABLE_SUFFIX = {"capacity": "capacity", "leases": "leases", "stats": "template_stats", "runs": "run_claims"}

# How long a writer waits for another process's transaction before the store counts as
# unavailable.
BUSY_TIMEOUT_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 5


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Sequence[Any] | None: ...
    def fetchall(self) -> list[Sequence[Any]]: ...


class Executor(Protocol):
    def __call__(self, query: str, params: Sequence[Any] = ()) -> Cursor: ...


class Store(ABC):
    """Where the ledger and the history keep their rows."""

    dialect: str

    def __init__(self, namespace: str = DEFAULT_NAMESPACE):
        if not _NAMESPACE_PATTERN.match(namespace):
            raise LedgerUnavailableError(
                f"invalid ledger namespace {namespace!r}: use a letter followed by up to 39 "
                "letters, digits or underscores"
            )
        self.namespace = namespace.lower()
        self.tables = {key: f"{self.namespace}_{_TABLE_SUFFIX[key]}" for key in TABLES}
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    @property
    @abstractmethod
    def display_url(self) -> str:
        """Where the store is, safe to log (no password)."""

    @abstractmethod
    def _transaction(self, *, write: bool, lock: bool) -> Any:
        """Context manager yielding an Executor inside one transaction."""

    @abstractmethod
    def _create_schema(self, execute: Executor) -> None: ...

    @abstractmethod
    def now(self, execute: Executor) -> float:
        """Current time in epoch seconds, from the clock every holder shares."""

    @contextmanager
    def transaction(self, *, write: bool = True, lock: bool = False) -> Iterator[Executor]:
        """One transaction. ``lock=True`` serialises it against every other locking
        transaction on the store (allocation check + insert)."""
        self.ensure_schema()
        with self._transaction(write=write, lock=lock) as execute:
            yield execute

    def ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._schema_lock:
            if not self._schema_ready:
                self._prepare()
                with self._transaction(write=True, lock=False) as execute:
                    self._create_schema(execute)
                self._schema_ready = True

    def _prepare(self) -> None:
        """Anything needed once before the first transaction."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.display_url!r}, namespace={self.namespace!r})"


_PORTABLE_DDL = (
    """CREATE TABLE IF NOT EXISTS {capacity} (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        cpu {real} NOT NULL,
        memory_mb {real} NOT NULL,
        max_agents INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS {leases} (
        holder TEXT PRIMARY KEY,
        lease_id TEXT NOT NULL UNIQUE,
        agent_type TEXT,
        cpu {real} NOT NULL,
        memory_mb {real} NOT NULL,
        ttl_seconds {real} NOT NULL,
        acquired_at {real} NOT NULL,
        expires_at {real} NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS {leases_expiry} ON {leases} (expires_at)",
    """CREATE TABLE IF NOT EXISTS {stats} (
        agent_type TEXT PRIMARY KEY,
        runs BIGINT NOT NULL,
        successes BIGINT NOT NULL,
        total_seconds {real} NOT NULL,
        quality_samples BIGINT NOT NULL,
        total_quality {real} NOT NULL,
        last_run_at {real} NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS {runs} (
        thread_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        acquired_at {real} NOT NULL,
        expires_at {real} NOT NULL
    )""",
)


class SQLiteStore(Store):
    """A SQLite file in WAL mode. Writers take the database lock up front
    (``BEGIN IMMEDIATE``), so an allocation's check and insert cannot interleave with
    another process's."""

    dialect = "sqlite"

    def __init__(self, path: str | Path, namespace: str = DEFAULT_NAMESPACE):
        super().__init__(namespace)
        self.path = Path(path)

    @property
    def display_url(self) -> str:
        return f"sqlite:///{self.path}"

    def _render(self, query: str) -> str:
        names = {key: f'"{table}"' for key, table in self.tables.items()}
        names["leases_expiry"] = f'"{self.tables["leases"]}_expiry"'
        names["real"] = "REAL"
        return query.format(**names).replace("%s", "?")

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None
            )
            conn.execute("PRAGMA synchronous=NORMAL")
            return conn
        except sqlite3.Error as exc:
            raise LedgerUnavailableError(
                f"cannot open the SQLite ledger at {self.path}: {exc}"
            ) from None

    def _prepare(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerUnavailableError(
                f"cannot create the directory of the SQLite ledger {self.path}: {exc}"
            ) from None
        conn = self._connect()
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()
        except sqlite3.Error as exc:
            raise LedgerUnavailableError(f"cannot use the SQLite ledger at {self.path}: {exc}") from None
        finally:
            conn.close()
        if not mode or str(mode[0]).lower() != "wal":
            raise LedgerUnavailableError(
                f"the SQLite ledger at {self.path} cannot use WAL journaling (got {mode})"
            )

    @contextmanager
    def _transaction(self, *, write: bool, lock: bool) -> Iterator[Executor]:
        conn = self._connect()
        try:
            try:
                conn.execute("BEGIN IMMEDIATE" if write or lock else "BEGIN")
            except sqlite3.Error as exc:
                raise LedgerUnavailableError(
                    f"the SQLite ledger at {self.path} is unavailable: {exc}"
                ) from None

            def execute(query: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
                try:
                    return conn.execute(self._render(query), tuple(params))
                except sqlite3.OperationalError as exc:
                    raise LedgerUnavailableError(
                        f"the SQLite ledger at {self.path} is unavailable: {exc}"
                    ) from None

            try:
                yield execute
            except BaseException:
                conn.rollback()
                raise
            try:
                conn.commit()
            except sqlite3.Error as exc:
                raise LedgerUnavailableError(
                    f"the SQLite ledger at {self.path} could not commit: {exc}"
                ) from None
        finally:
            conn.close()

    def _create_schema(self, execute: Executor) -> None:
        for statement in _PORTABLE_DDL:
            execute(statement)

    def now(self, execute: Executor) -> float:
        # A SQLite file is shared by processes of one machine: its clock is everyone's.
        return time.time()


class PostgresStore(Store):
    """A Postgres database (psycopg 3). Allocations serialise on the capacity row
    (``SELECT ... FOR UPDATE``); times come from the server's clock so holders on several
    machines agree on expiry."""

    dialect = "postgresql"

    def __init__(self, url: str, namespace: str = DEFAULT_NAMESPACE):
        super().__init__(namespace)
        self._url = url

    @property
    def display_url(self) -> str:
        return redact_url(self._url)

    def _render(self, query: str) -> Any:
        from psycopg import sql

        names: dict[str, Any] = {key: sql.Identifier(t) for key, t in self.tables.items()}
        names["leases_expiry"] = sql.Identifier(f"{self.tables['leases']}_expiry")
        names["real"] = sql.SQL("DOUBLE PRECISION")
        return sql.SQL(query).format(**names)

    def _unavailable(self, action: str, exc: BaseException) -> LedgerUnavailableError:
        detail = scrub(" ".join(str(exc).split()) or type(exc).__name__, self._url)
        return LedgerUnavailableError(
            f"the Postgres ledger at {self.display_url} is unavailable ({action}): {detail}"
        )

    @contextmanager
    def _transaction(self, *, write: bool, lock: bool) -> Iterator[Executor]:
        import psycopg

        try:
            conn = psycopg.connect(self._url, connect_timeout=CONNECT_TIMEOUT_SECONDS)
        except (psycopg.Error, ValueError) as exc:
            raise self._unavailable("connect", exc) from None
        try:

            def execute(query: str, params: Sequence[Any] = ()) -> psycopg.Cursor:
                try:
                    return conn.execute(self._render(query), tuple(params))
                except psycopg.OperationalError as exc:
                    raise self._unavailable("query", exc) from None

            try:
                with conn.transaction():
                    if lock:
                        execute("SELECT id FROM {capacity} WHERE id = 1 FOR UPDATE")
                    yield execute
            except psycopg.OperationalError as exc:
                raise self._unavailable("commit", exc) from None
        finally:
            conn.close()

    def _create_schema(self, execute: Executor) -> None:
        # Concurrent CREATE TABLE IF NOT EXISTS can still collide in the catalog, so the
        # first users of a namespace take turns.
        execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"orchestra-factory:{self.namespace}",))
        for statement in _PORTABLE_DDL:
            execute(statement)

    def now(self, execute: Executor) -> float:
        row = execute("SELECT extract(epoch FROM clock_timestamp())::double precision").fetchone()
        assert row is not None
        return float(row[0])


def open_store(url_or_path: str | Path | None = None, namespace: str = DEFAULT_NAMESPACE) -> Store:
    """A store from a path, ``sqlite:///path`` or ``postgresql://`` URL.

    ``None`` means ``orchestra_factory.db`` in the working directory. Anything else raises
    LedgerUnavailableError without echoing a password.
    """
    if url_or_path is None:
        return SQLiteStore(Path("orchestra_factory.db"), namespace)
    if isinstance(url_or_path, Path):
        return SQLiteStore(url_or_path, namespace)
    text = str(url_or_path).strip()
    if not text:
        raise LedgerUnavailableError("empty ledger location: give a file path or a URL")
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        if scheme != "postgresql":
            text = "postgresql://" + text.split("://", 1)[1]
        return PostgresStore(text, namespace)
    if scheme == "sqlite":
        path = text.split("://", 1)[1]
        # sqlite:///relative.db and sqlite:////abs/path.db, as SQLAlchemy writes them
        path = path[1:] if path.startswith("/") else path
        if not path:
            raise LedgerUnavailableError("a sqlite:/// ledger URL needs a file path")
        return SQLiteStore(Path(path), namespace)
    if scheme:
        raise LedgerUnavailableError(
            f"unsupported ledger URL scheme {scheme!r} in {redact_url(text)}: use a file path, "
            "sqlite:///path or postgresql://"
        )
    return SQLiteStore(Path(text), namespace)
