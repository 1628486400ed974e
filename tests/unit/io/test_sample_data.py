"""The sample data: deterministic, realistic, with the promised defects."""

from __future__ import annotations

import hashlib
from pathlib import Path

import psycopg
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from airflow_provider_orchestra.core.models import SPECIALISTS, SourceRef, parse_config
from airflow_provider_orchestra.core.routing import route
from airflow_provider_orchestra.runtime import describe_batches
from airflow_provider_orchestra.sample import (
    ORDERS_SCHEMA,
    append_events,
    generate_sample_data,
    load_sample_orders,
    sample_config,
)
from airflow_provider_orchestra.specialists.io import OffsetStore, open_source, source_key

SMALL = dict(orders=2_000, events=5_000)


def _digests(paths: dict[str, Path]) -> dict[str, str]:
    return {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in paths.items()}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return generate_sample_data(tmp_path_factory.mktemp("sample"), **SMALL)


def test_same_seed_gives_identical_files(sample: dict[str, Path], tmp_path: Path):
    again = generate_sample_data(tmp_path / "again", **SMALL)
    assert _digests(again) == _digests(sample)
    other = generate_sample_data(tmp_path / "other", seed=8, **SMALL)
    assert _digests(other)["events_jsonl"] != _digests(sample)["events_jsonl"]
    assert set(sample) == {"orders_csv", "orders_parquet", "events_jsonl"}


def test_orders_are_realistic_and_carry_the_defects(sample: dict[str, Path]):
    orders = pq.read_table(sample["orders_parquet"])
    assert orders.schema.names == ORDERS_SCHEMA.names
    assert orders.schema.field("order_ts").type.tz == "UTC"  # Parquet keeps ms, not s
    assert orders.num_rows == SMALL["orders"]
    assert orders.column("customer_id").null_count > 0
    assert orders.column("region").null_count > 0
    assert orders.num_rows - pc.count_distinct(orders.column("order_id")).as_py() > 0
    assert pc.sum(pc.less(orders.column("quantity"), 0)).as_py() > 0
    assert pc.sum(pc.equal(orders.column("unit_price"), 1e9)).as_py() > 0
    valid = orders.filter(pc.and_(pc.greater(orders.column("quantity"), 0), pc.less(orders.column("unit_price"), 1e6)))
    assert valid.num_rows > 0.95 * orders.num_rows
    ts = orders.column("order_ts")
    assert pc.min(ts).as_py().year == 2024


def test_csv_matches_parquet_plus_malformed_lines(sample: dict[str, Path]):
    source = open_source(SourceRef(kind="csv", path=sample["orders_csv"].name), roots=[str(sample["orders_csv"].parent)], batch_rows=500)
    table = source.read_all()
    parquet = pq.read_table(sample["orders_parquet"])
    assert table.cast(parquet.schema).equals(parquet)
    assert len(source.rejected) == 2


def test_events_have_malformed_late_duplicate_and_out_of_range(sample: dict[str, Path]):
    source = open_source(SourceRef(kind="jsonl", path="events.jsonl"), roots=[str(sample["events_jsonl"].parent)], batch_rows=1_000)
    events = source.read_all()
    assert events.schema.names == ["event_id", "user_id", "event_type", "ts", "value"]
    assert len(source.rejected) > 0
    assert events.num_rows + len(source.rejected) == SMALL["events"]
    assert events.column("user_id").null_count > 0 and events.column("value").null_count > 0
    assert events.num_rows - pc.count_distinct(events.column("event_id")).as_py() > 0
    values = events.column("value")
    assert pc.sum(pc.less(values, 0)).as_py() > 0 and pc.max(values).as_py() == 1e9
    seconds = events.column("ts").cast("int64")
    gaps = pc.subtract(seconds.slice(1), seconds.slice(0, events.num_rows - 1))
    assert pc.min(gaps).as_py() < -86_400  # some events arrive days behind their neighbours


def test_appended_events_are_read_incrementally(tmp_path: Path):
    paths = generate_sample_data(tmp_path / "data", orders=10, events=300)
    roots = [str(tmp_path / "data")]
    ref = SourceRef(kind="jsonl", path="events.jsonl")
    store = OffsetStore(tmp_path / "offsets.sqlite")
    key = source_key(ref, roots)

    first = open_source(ref, roots=roots, batch_rows=64, start_offset=store.get("wf", key))
    first_rows = first.read_all().num_rows
    store.set("wf", key, first.end_offset)

    appended = append_events(paths["events_jsonl"], 120, seed=99)
    assert appended > 0
    second = open_source(ref, roots=roots, batch_rows=64, start_offset=store.get("wf", key))
    new = second.read_all()
    assert new.num_rows + len(second.rejected) == 120
    assert pc.min(new.column("event_id")).as_py() >= 301
    assert first_rows + len(first.rejected) == 300


def test_sample_config_is_valid_and_covers_every_route(tmp_path: Path, sample: dict[str, Path]):
    config = parse_config(sample_config(sample["events_jsonl"].parent, tmp_path / "out"))
    routes = {route(b.type, b.source_type, b.priority) for b in config.batches}
    assert routes == set(SPECIALISTS)
    descriptors = describe_batches(config)
    assert [d.rows > 0 for d in descriptors] == [True] * 5
    with_sink = parse_config(sample_config("data", "out", postgres_conn_id="warehouse"))
    assert with_sink.batch("revenue_by_region").aggregation.sink_conn_id == "warehouse"


def test_batches_over_one_source_are_measured_once_with_their_own_ids(tmp_path: Path, sample: dict[str, Path], monkeypatch):
    from airflow_provider_orchestra.specialists import io as specialist_io

    config = parse_config(sample_config(sample["events_jsonl"].parent, tmp_path / "out"))
    orders_batches = [b.batch_id for b in config.batches if b.source.path == "orders.csv"]
    assert len(orders_batches) > 1
    measured = []
    real = specialist_io.describe_source

    def counted(batch, **kwargs):
        measured.append(batch.source.path)
        return real(batch, **kwargs)

    monkeypatch.setattr(specialist_io, "describe_source", counted)
    descriptors = describe_batches(config)

    assert sorted(measured) == sorted({b.source.path for b in config.batches})
    assert [d.batch_id for d in descriptors] == [b.batch_id for b in config.batches]
    by_id = {d.batch_id: d for d in descriptors}
    first, *rest = orders_batches
    assert all(by_id[b].rows == by_id[first].rows and by_id[b].uri == by_id[first].uri for b in rest)


def test_orders_load_into_postgres(postgres_url: str, sample: dict[str, Path]):
    out = load_sample_orders(postgres_url, sample["orders_parquet"])
    again = load_sample_orders(postgres_url, sample["orders_parquet"])
    assert out.rows == again.rows == SMALL["orders"]
    with psycopg.connect(postgres_url) as conn:
        count, total = conn.execute("select count(*), round(sum(amount)::numeric, 2) from orders").fetchone()
    assert count == SMALL["orders"]
    expected = pc.sum(pq.read_table(sample["orders_parquet"]).column("amount")).as_py()
    assert float(total) == pytest.approx(expected, rel=1e-9)
