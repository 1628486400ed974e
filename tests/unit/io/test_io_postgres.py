"""Postgres source and load against a real server (fresh database per test)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal

import psycopg
import pyarrow as pa
import pytest
from io_test_support import numbers_table

from airflow_provider_orchestra.core.errors import SinkError, SourceError
from airflow_provider_orchestra.core.models import BatchSpec, SourceRef
from airflow_provider_orchestra.specialists.io import (
    ConnectionResolver,
    describe_source,
    load_postgres,
    open_source,
)

pytestmark = pytest.mark.postgres


def _resolver(url: str) -> ConnectionResolver:
    return ConnectionResolver({"warehouse": url})


def _ref(table: str, schema: str = "public") -> SourceRef:
    return SourceRef(kind="postgres", table=table, schema=schema, conn_id="warehouse")


def _make_events(url: str, rows: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "create table events (id bigint primary key, label text, price numeric(10, 2), "
            "score double precision, ok boolean, day date, seen timestamptz)"
        )
        conn.execute(
            "insert into events select g, case when g %% 5 = 0 then null when g %% 7 = 0 then '' "
            "else 'l,\"' || g end, g * 1.25, g / 3.0, g %% 2 = 0, date '2024-05-01' + (g %% 3), "
            "timestamptz '2024-05-01 00:00:00+00' + g * interval '1 minute' from generate_series(1, %s) g",
            (rows,),
        )


def _rows(url: str, table: str = "target") -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(f"select * from {table} order by run_id, branch_id, id").fetchall()


def test_table_streams_in_bounded_batches_with_types(postgres_url: str):
    _make_events(postgres_url, 1_000)
    source = open_source(_ref("events"), roots=[], batch_rows=128, connections=_resolver(postgres_url))
    assert source.schema.field("price").type == pa.decimal128(10, 2)
    assert source.schema.field("seen").type == pa.timestamp("us", tz="UTC")
    sizes, ids = [], []
    first: dict | None = None
    for batch in source.iter_batches():
        sizes.append(batch.num_rows)
        ids.extend(batch.column("id").to_pylist())
        first = first or batch.to_pylist()[0]
    assert max(sizes) <= 128 and sum(sizes) == 1_000
    assert sorted(ids) == list(range(1, 1_001))
    table = source.read_all()
    by_id = {row["id"]: row for row in table.to_pylist()}
    assert by_id[3]["label"] == 'l,"3'
    assert by_id[5]["label"] is None and by_id[7]["label"] == ""
    assert by_id[4]["price"] == Decimal("5.00") and by_id[4]["ok"] is True
    assert by_id[60]["seen"] == datetime(2024, 5, 1, 1, 0, tzinfo=timezone.utc)


def test_watermark_read_returns_only_newer_rows(postgres_url: str):
    _make_events(postgres_url, 100)
    resolver = _resolver(postgres_url)
    full = open_source(_ref("events"), roots=[], batch_rows=30, connections=resolver, watermark_column="seen")
    assert full.read_all().num_rows == 100
    mark = full.max_watermark
    assert mark == datetime(2024, 5, 1, 1, 40, tzinfo=timezone.utc)

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("insert into events (id, seen) values (101, '2024-05-02'), (102, '2024-05-03')")
    newer = open_source(
        _ref("events"), roots=[], batch_rows=30, connections=resolver, watermark_column="seen", watermark=mark
    )
    assert newer.read_all().column("id").to_pylist() == [101, 102]
    assert newer.max_watermark == datetime(2024, 5, 3, tzinfo=timezone.utc)
    unchanged = open_source(
        _ref("events"), roots=[], batch_rows=30, connections=resolver, watermark_column="seen",
        watermark=newer.max_watermark,
    )
    assert unchanged.read_all().num_rows == 0
    assert unchanged.max_watermark is None


def test_injection_like_table_name_is_just_a_missing_table(postgres_url: str):
    _make_events(postgres_url, 3)
    with pytest.raises(SourceError, match=r"events; drop table events.*does not exist"):
        open_source(_ref("events; drop table events"), roots=[], batch_rows=10, connections=_resolver(postgres_url))
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("select count(*) from events").fetchone()[0] == 3


def test_wrong_schema_and_watermark_column(postgres_url: str):
    _make_events(postgres_url, 3)
    resolver = _resolver(postgres_url)
    with pytest.raises(SourceError, match=r"missing expected column\(s\) \['amount'\]"):
        open_source(_ref("events"), roots=[], batch_rows=10, connections=resolver, expected_columns=["id", "amount"])
    with pytest.raises(SourceError, match="watermark column 'updated'"):
        open_source(_ref("events"), roots=[], batch_rows=10, connections=resolver, watermark_column="updated")


def test_unknown_connection_is_refused():
    with pytest.raises(SourceError, match="unknown connection 'warehouse'"):
        open_source(_ref("events"), roots=[], batch_rows=10, connections=ConnectionResolver(environ={}))


def test_describe_postgres_counts_rows(postgres_url: str):
    _make_events(postgres_url, 250)
    batch = BatchSpec(batch_id="events", type="data_aggregation", source=_ref("events"))
    described = describe_source(batch, roots=[], connections=_resolver(postgres_url))
    assert described.rows == 250
    assert described.size_bytes > 0
    assert described.uri == "postgres://warehouse/public.events"
    assert [c.name for c in described.columns][:3] == ["id", "label", "price"]
    assert postgres_url.rsplit("/", 1)[-1] not in described.uri


def test_load_is_idempotent_per_run_and_branch(postgres_url: str):
    table = numbers_table(500)
    kwargs = dict(url=postgres_url, table="target", run_id="run_1", branch_id="beta")
    first = load_postgres(table.to_batches(max_chunksize=64), table.schema, **kwargs)
    second = load_postgres(table.to_batches(max_chunksize=64), table.schema, **kwargs)
    other = load_postgres(table.slice(0, 10).to_batches(), table.schema, **{**kwargs, "branch_id": "gamma"})
    assert first.rows == second.rows == 500 and other.rows == 10
    assert first.checksum == second.checksum
    assert first.format == "postgres" and "run_id=run_1" in first.uri
    rows = _rows(postgres_url)
    assert len(rows) == 510
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute(
            "select count(*), count(distinct id) from target where run_id = 'run_1' and branch_id = 'beta'"
        ).fetchone() == (500, 500)
        assert conn.execute("select name, amount from target where id = 7 and branch_id = 'beta'").fetchone() == ("n7", 3.5)


def test_load_round_trips_nulls_empty_strings_and_times(postgres_url: str):
    table = pa.table(
        {
            "id": [1, 2, 3],
            "label": ["a,\"b\"", "", None],
            "score": [float("nan"), None, 1e9],
            "at": pa.array([0, None, 1_714_521_600_000_000], pa.timestamp("us", tz="UTC")),
            "day": pa.array([19844, None, 0], pa.date32()),
            "flag": [True, None, False],
            "price": pa.array([Decimal("1.10"), None, Decimal("-2.50")], pa.decimal128(8, 2)),
        }
    )
    load_postgres(table.to_batches(), table.schema, url=postgres_url, table="mixed", run_id="r", branch_id="b")
    source = open_source(_ref("mixed"), roots=[], batch_rows=10, connections=_resolver(postgres_url))
    back = source.read_all().sort_by("id").drop_columns(["run_id", "branch_id"])
    assert back.column("label").to_pylist() == ["a,\"b\"", "", None]
    assert back.column("at").to_pylist() == table.column("at").to_pylist()
    assert back.column("day").to_pylist() == table.column("day").to_pylist()
    assert back.column("flag").to_pylist() == [True, None, False]
    assert back.column("price").to_pylist() == [Decimal("1.10"), None, Decimal("-2.50")]
    scores = back.column("score").to_pylist()
    assert scores[0] != scores[0] and scores[1:] == [None, 1e9]  # NaN survives


def _staging_leftovers(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("select count(*) from pg_class where relname like 'orchestra_stage_%%'").fetchone()[0]


def test_iterator_failure_mid_load_propagates_unchanged_and_leaves_target_unchanged(postgres_url: str):
    table = numbers_table(300)
    kwargs = dict(url=postgres_url, table="target", run_id="run_1", branch_id="beta")
    load_postgres(table.to_batches(max_chunksize=100), table.schema, **kwargs)
    before = _rows(postgres_url)
    raised = RuntimeError("upstream went away")

    def breaks() -> Iterator[pa.RecordBatch]:
        yield numbers_table(50).to_batches()[0]
        raise raised

    with pytest.raises(RuntimeError) as caught:
        load_postgres(breaks(), table.schema, **kwargs)
    assert caught.value is raised  # not wrapped into a SinkError
    assert _rows(postgres_url) == before
    assert _staging_leftovers(postgres_url) == 0


def test_source_error_mid_load_propagates_and_leaves_target_unchanged(postgres_url: str):
    table = numbers_table(30)
    kwargs = dict(url=postgres_url, table="target", run_id="run_1", branch_id="beta")
    load_postgres(table.to_batches(), table.schema, **kwargs)
    before = _rows(postgres_url)

    def breaks() -> Iterator[pa.RecordBatch]:
        yield numbers_table(5).to_batches()[0]
        raise SourceError("bad value in line 9")

    with pytest.raises(SourceError, match="line 9"):
        load_postgres(breaks(), table.schema, **kwargs)
    assert _rows(postgres_url) == before
    assert _staging_leftovers(postgres_url) == 0


def test_connection_killed_mid_load_leaves_target_unchanged(postgres_url: str):
    table = numbers_table(300)
    kwargs = dict(url=postgres_url, table="target", run_id="run_1", branch_id="beta")
    load_postgres(table.to_batches(max_chunksize=100), table.schema, **kwargs)
    before = _rows(postgres_url)
    killed = threading.Event()

    def kill_loader_after_first_batch() -> Iterator[pa.RecordBatch]:
        big = numbers_table(20_000)
        yield big.slice(0, 5_000).to_batches()[0]
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            pids = admin.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity "
                "where application_name = 'orchestra-load' and datname = current_database()"
            ).fetchall()
        assert pids, "the loader's backend was not found"
        killed.set()
        for batch in big.slice(5_000).to_batches(max_chunksize=1_000):
            yield batch

    with pytest.raises(SinkError, match="failed, target unchanged: (AdminShutdown|OperationalError)"):
        load_postgres(kill_loader_after_first_batch(), table.schema, **kwargs)
    assert killed.is_set()
    assert _rows(postgres_url) == before


def test_existing_table_without_a_column_is_refused(postgres_url: str):
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("create table target (id bigint, run_id text, branch_id text)")
    table = numbers_table(3)
    with pytest.raises(SinkError, match=r"without column\(s\) \['name', 'amount'\]"):
        load_postgres(table.to_batches(), table.schema, url=postgres_url, table="target", run_id="r", branch_id="b")


def test_odd_table_names_stay_identifiers(postgres_url: str):
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("create table victim (x int)")
    table = numbers_table(2)
    name = 'odd"; drop table victim; --'
    out = load_postgres(table.to_batches(), table.schema, url=postgres_url, table=name, run_id="r", branch_id="b")
    assert out.rows == 2
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("select to_regclass('public.victim') is not null").fetchone()[0]
    with pytest.raises(SinkError, match="not a valid Postgres identifier"):
        load_postgres(table.to_batches(), table.schema, url=postgres_url, table="x" * 64, run_id="r", branch_id="b")


def test_reserved_columns_and_unknown_types_are_refused(postgres_url: str):
    clash = pa.table({"run_id": ["x"]})
    with pytest.raises(SinkError, match="clash"):
        load_postgres(clash.to_batches(), clash.schema, url=postgres_url, table="t", run_id="r", branch_id="b")
    nested = pa.table({"tags": [[1, 2]]})
    with pytest.raises(SinkError, match="no Postgres column type"):
        load_postgres(nested.to_batches(), nested.schema, url=postgres_url, table="t", run_id="r", branch_id="b")


class _Interrupted(Exception):
    """Stands for an interrupt such as Airflow's execution timeout (raised by SIGALRM)."""


def test_an_interrupted_load_cancels_its_waiting_statement(postgres_url: str):
    import signal
    import time

    table = numbers_table(10)
    blocker = psycopg.connect(postgres_url)
    blocker.execute("create schema warehouse")  # uncommitted: the load's CREATE SCHEMA waits on it

    def interrupt(signum, frame):
        raise _Interrupted("execution timeout")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    try:
        with pytest.raises(_Interrupted):
            load_postgres(
                iter(table.to_batches()), table.schema, url=postgres_url, table="target",
                db_schema="warehouse", run_id="r1", branch_id="b1",
            )
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    def loads_left() -> int:
        with psycopg.connect(postgres_url) as conn:
            return conn.execute(
                "select count(*) from pg_stat_activity where application_name = 'orchestra-load' and datname = current_database()"
            ).fetchone()[0]

    deadline = time.monotonic() + 10
    while loads_left() and time.monotonic() < deadline:
        time.sleep(0.1)  # the server ends the cancelled session asynchronously
    left = loads_left()
    blocker.rollback()
    blocker.close()
    assert left == 0, "the interrupted load's statement is still waiting on the server"
