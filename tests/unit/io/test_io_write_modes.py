"""Write modes against a real Postgres and real Parquet folders: append keeps a slice per
run, replace keeps the latest run, upsert merges by key; a repeated key is refused with
its values named and nothing written; every mode gives the same rows when run twice."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_orchestra.core.errors import ConfigError, SinkError
from airflow_provider_orchestra.core.models import BatchSpec, OutputDescriptor, parse_config
from airflow_provider_orchestra.specialists.io import commit_dataset, load_postgres, write_parquet


def regions(rows: dict[str, int]) -> pa.Table:
    return pa.table({"region": list(rows), "orders": pa.array(list(rows.values()), pa.int64())})


@pytest.fixture(scope="module")
def shared_db(module_databases) -> str:
    return module_databases()


class Sink:
    """The table ``sales`` in a schema of its own."""

    def __init__(self, url: str):
        self.url = url
        self.schema = f"s_{uuid.uuid4().hex[:10]}"

    def rows(self) -> list[tuple]:
        with psycopg.connect(self.url) as conn:
            return conn.execute(f"select region, orders, run_id from {self.schema}.sales order by region, run_id").fetchall()


@pytest.fixture
def sink(shared_db: str) -> Sink:
    return Sink(shared_db)


def load(sink: Sink, data: pa.Table, run_id: str, mode: str = "append", branch_id: str = "b", **kwargs):
    return load_postgres(
        data.to_batches(max_chunksize=2), data.schema, url=sink.url, table="sales", db_schema=sink.schema,
        run_id=run_id, branch_id=branch_id, write_mode=mode, **kwargs,
    )


@pytest.mark.postgres
def test_postgres_append_keeps_a_slice_per_run_and_a_rerun_replaces_its_own(sink: Sink):
    load(sink, regions({"eu": 1, "us": 2}), "r1")
    load(sink, regions({"eu": 5}), "r2")
    load(sink, regions({"eu": 6}), "r2")  # a retry of r2
    assert sink.rows() == [("eu", 1, "r1"), ("eu", 6, "r2"), ("us", 2, "r1")]


@pytest.mark.postgres
def test_postgres_replace_keeps_the_latest_run_with_all_its_branches(sink: Sink):
    load(sink, regions({"eu": 1, "us": 2}), "r1", "replace")
    load(sink, regions({"eu": 5}), "r2", "replace", branch_id="a")
    load(sink, regions({"apac": 7}), "r2", "replace", branch_id="b")
    out = load(sink, regions({"apac": 8}), "r2", "replace", branch_id="b")  # retry of branch b
    assert sink.rows() == [("apac", 8, "r2"), ("eu", 5, "r2")]
    assert out.rows == 1 and [c.name for c in out.columns] == ["region", "orders"]


@pytest.mark.postgres
def test_postgres_upsert_merges_by_key_and_is_idempotent(sink: Sink):
    load(sink, regions({"eu": 1, "us": 2}), "r1", "upsert", key=["region"])
    for _ in range(2):
        load(sink, regions({"eu": 5, "apac": 7}), "r2", "upsert", key=["region"])
    assert sink.rows() == [("apac", 7, "r2"), ("eu", 5, "r2"), ("us", 2, "r1")]


@pytest.mark.postgres
def test_postgres_upsert_names_repeated_and_null_keys_and_writes_nothing(sink: Sink):
    load(sink, regions({"eu": 1}), "r1", "upsert", key=["region"])
    twice = pa.table({"region": ["us", "eu", "us", "us"], "orders": pa.array([1, 2, 3, 4], pa.int64())})
    with pytest.raises(SinkError, match=r"key \['region'\] is not unique.*'region': 'us', 'rows': 3.*nothing was written"):
        load(sink, twice, "r2", "upsert", key=["region"])
    nulls = pa.table({"region": ["us", None], "orders": pa.array([1, 2], pa.int64())})
    with pytest.raises(SinkError, match=r"1 row\(s\) .* null in key \['region'\]"):
        load(sink, nulls, "r2", "upsert", key=["region"])
    assert sink.rows() == [("eu", 1, "r1")]


@pytest.mark.postgres
def test_postgres_upsert_into_a_table_whose_rows_repeat_the_key_is_refused(sink: Sink):
    load(sink, regions({"eu": 1}), "r1")
    load(sink, regions({"eu": 2}), "r2")
    with pytest.raises(SinkError, match=r"rows already in the table repeat that key.*'region': 'eu', 'rows': 2"):
        load(sink, regions({"eu": 3}), "r3", "upsert", key=["region"])
    assert sink.rows() == [("eu", 1, "r1"), ("eu", 2, "r2")]


@pytest.mark.postgres
def test_postgres_upsert_key_must_be_an_output_column(sink: Sink):
    with pytest.raises(SinkError, match=r"key column\(s\) \['day'\] are not among the output columns"):
        load(sink, regions({"eu": 1}), "r1", "upsert", key=["day"])


# --------------------------------------------------------------------------- parquet


def published(tmp_path: Path, run: str, data: pa.Table) -> OutputDescriptor:
    return write_parquet(data.to_batches(max_chunksize=2), data.schema, tmp_path / run / "data")


def dataset(path: Path) -> list[dict]:
    return pq.read_table(path).sort_by("region").to_pylist()


def test_parquet_replace_swaps_the_folder_and_keeps_the_run_copy(tmp_path: Path):
    dest = tmp_path / "_tables" / "sales"
    first = commit_dataset(published(tmp_path, "r1", regions({"eu": 1, "us": 2})), dest, write_mode="replace")
    second_run = published(tmp_path, "r2", regions({"eu": 5}))
    second = commit_dataset(second_run, dest, write_mode="replace")
    again = commit_dataset(second_run, dest, write_mode="replace")
    assert dataset(dest) == [{"region": "eu", "orders": 5}]
    assert second.uri == dest.as_uri() and second.rows == 1
    assert second.checksum == again.checksum == second_run.checksum != first.checksum
    assert dataset(tmp_path / "r1" / "data") == [{"region": "eu", "orders": 1}, {"region": "us", "orders": 2}]
    assert sorted(p.name for p in dest.parent.iterdir()) == [".sales.lock", "sales"]


def test_parquet_upsert_merges_by_key_idempotently(tmp_path: Path):
    tmp_path = tmp_path / "a run id with spaces"  # output URIs escape them
    dest = tmp_path / "_tables" / "sales"
    commit_dataset(published(tmp_path, "r1", regions({"eu": 1, "us": 2})), dest, write_mode="upsert", key=["region"])
    run2 = published(tmp_path, "r2", regions({"eu": 5, "apac": 7}))
    first = commit_dataset(run2, dest, write_mode="upsert", key=["region"])
    again = commit_dataset(run2, dest, write_mode="upsert", key=["region"])
    assert dataset(dest) == [{"region": "apac", "orders": 7}, {"region": "eu", "orders": 5}, {"region": "us", "orders": 2}]
    assert first.checksum == again.checksum and first.rows == 2


def test_parquet_upsert_refuses_repeated_keys_and_other_columns(tmp_path: Path):
    dest = tmp_path / "_tables" / "sales"
    commit_dataset(published(tmp_path, "r1", regions({"eu": 1})), dest, write_mode="upsert", key=["region"])
    before = dataset(dest)
    twice = pa.table({"region": ["us", "us"], "orders": pa.array([1, 2], pa.int64())})
    with pytest.raises(SinkError, match=r"not unique in this run's output, e\.g\. \[\{'region': 'us', 'rows': 2\}\]"):
        commit_dataset(published(tmp_path, "r2", twice), dest, write_mode="upsert", key=["region"])
    other = pa.table({"region": ["us"], "orders": [1.5]})
    with pytest.raises(SinkError, match=r"the dataset has columns \['region string', 'orders int64'\]"):
        commit_dataset(published(tmp_path, "r3", other), dest, write_mode="upsert", key=["region"])
    assert dataset(dest) == before


def test_write_mode_config_is_checked_at_the_door():
    spec = {"batch_id": "s", "type": "data_aggregation", "source": {"kind": "csv", "path": "s.csv"}}
    assert BatchSpec.model_validate(spec).write_mode == "append"
    for bad, message in [
        ({"write_mode": "upsert"}, "write_mode 'upsert' needs 'key'"),
        ({"write_mode": "replace", "key": ["region"]}, "'key' is only used by write_mode 'upsert'"),
        ({"write_mode": "upsert", "key": ["run_id"]}, "cannot use \\['run_id'\\]"),
        ({"write_mode": "merge"}, "batches.0.write_mode"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_config({"batches": [{**spec, **bad}]})
