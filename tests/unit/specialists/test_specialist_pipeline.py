"""Reading ahead and writing behind: the same results on one core and on two, errors and
early stops carried through, and the duplicate-key lookup alike in Arrow and in DuckDB."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_orchestra.specialists import validation
from airflow_provider_orchestra.specialists.engine import pipeline_threads, read_ahead
from airflow_provider_orchestra.specialists.templates import run_specialist_directly
from specialist_test_support import make_task, output, read_parquet
from test_specialist_validation import orders, validation_batch


def test_read_ahead_keeps_order_and_produces_in_another_thread():
    producers: set[str] = set()

    def numbers() -> Iterator[int]:
        for i in range(5):
            producers.add(threading.current_thread().name)
            yield i

    assert list(read_ahead(numbers())) == [0, 1, 2, 3, 4]
    assert producers and threading.current_thread().name not in producers


class Broken(Exception):
    pass


def test_read_ahead_raises_what_the_producer_raised_after_what_it_produced():
    def breaks() -> Iterator[int]:
        yield 1
        yield 2
        raise Broken("line 9 is not JSON")

    got = []
    with pytest.raises(Broken, match="line 9"):
        for item in read_ahead(breaks()):
            got.append(item)
    assert got == [1, 2]


def test_a_consumer_stopping_early_closes_the_producer_after_its_read_in_flight():
    events: list[str] = []

    def produces() -> Iterator[int]:
        try:
            for i in range(100):
                events.append(f"made {i}")
                yield i
        finally:
            events.append("closed")

    stream = read_ahead(produces())
    assert next(stream) == 0
    stream.close()
    assert events[-1] == "closed"
    assert len([e for e in events if e.startswith("made")]) <= 3  # one item ahead, never the whole source


def test_pipeline_threads_follow_the_lease():
    assert pipeline_threads(1.0) == 1
    assert pipeline_threads(2.5) == 2
    assert pipeline_threads(None) >= 1


@pytest.mark.parametrize(
    "batch",
    [
        validation_batch(),
        {
            "batch_id": "shape",
            "type": "data_ingestion",
            "source_type": "realtime",
            "source": {"kind": "parquet", "path": "orders.parquet"},
            "transformation": {"derive": {"day": "DATE '2024-05-01' + CAST(row % 3 AS INTEGER)"}, "partition_date_column": "day"},
        },
        {
            "batch_id": "sums",
            "type": "data_aggregation",
            "priority": "normal",
            "source": {"kind": "parquet", "path": "orders.parquet"},
            "aggregation": {"group_by": ["region"], "metrics": [{"column": "amount", "fn": "sum"}]},
        },
    ],
    ids=["validation", "transformation", "aggregation"],
)
def test_one_core_and_two_cores_write_the_same_outputs(tmp_path, data_dir, batch):
    pq.write_table(orders(), data_dir / "orders.parquet")
    one = run_specialist_directly(
        make_task(tmp_path, batch, record_batch_rows=8, run_id="one"), lease=SimpleNamespace(cpu=1.0, memory_mb=512.0)
    )
    two = run_specialist_directly(
        make_task(tmp_path, batch, record_batch_rows=8, run_id="two"), lease=SimpleNamespace(cpu=2.0, memory_mb=512.0)
    )
    assert one.status == two.status == "success", (one.error, two.error)
    assert [(o.role, o.rows, o.checksum) for o in one.outputs] == [(o.role, o.rows, o.checksum) for o in two.outputs]
    assert (one.metrics.rows_in, one.metrics.rows_out, one.metrics.quality) == (
        two.metrics.rows_in,
        two.metrics.rows_out,
        two.metrics.quality,
    )


def test_duplicate_keys_probed_in_duckdb_fail_the_same_rows_as_in_arrow(tmp_path, data_dir, monkeypatch):
    pq.write_table(orders(), data_dir / "orders.parquet")
    in_arrow = run_specialist_directly(make_task(tmp_path, validation_batch(), record_batch_rows=8, run_id="arrow"))
    monkeypatch.setattr(validation, "IN_MEMORY_DUPLICATE_KEYS", 0)
    in_duckdb = run_specialist_directly(make_task(tmp_path, validation_batch(), record_batch_rows=8, run_id="duckdb"))

    assert in_arrow.details["rule_failures"]["id.unique"] > 0
    assert in_duckdb.details["rule_failures"] == in_arrow.details["rule_failures"]
    assert [(o.role, o.checksum) for o in in_duckdb.outputs] == [(o.role, o.checksum) for o in in_arrow.outputs]
    assert read_parquet(output(in_duckdb, "quarantine")).equals(read_parquet(output(in_arrow, "quarantine")))


def test_a_duplicate_key_set_of_every_type_is_looked_up(tmp_path):
    import duckdb

    con = duckdb.connect()
    con.execute("CREATE TABLE dup_k AS SELECT * FROM (VALUES ('a'), ('c')) t(key)")
    keys = validation._DuplicateKeys(con, "k")
    assert keys.hits(pa.array(["a", "b", None, "c"])).to_pylist() == [True, False, False, True]
    con.close()


def test_validation_reads_its_source_once_for_both_passes(tmp_path, data_dir, monkeypatch):
    from airflow_provider_orchestra.specialists.io.sources.parquet import ParquetSource

    pq.write_table(orders(), data_dir / "orders.parquet")
    reads = []
    real = ParquetSource._batches

    def counted(self):
        reads.append(self.path.name)
        yield from real(self)

    monkeypatch.setattr(ParquetSource, "_batches", counted)
    result = run_specialist_directly(make_task(tmp_path, validation_batch(), record_batch_rows=8))

    assert result.status == "success", result.error
    assert reads == ["orders.parquet"] * result.metrics.iterations  # once per attempt, not once per pass
    assert result.metrics.record_batches == 8  # the second pass still checks every batch
    assert not list(tmp_path.rglob("*.arrow"))  # the scan file leaves with the attempt's scratch space
