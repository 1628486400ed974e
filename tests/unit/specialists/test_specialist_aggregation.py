"""Priority and quality-monitored aggregation on real files and a real Postgres sink;
expected groups computed with pyarrow's own group_by."""

from __future__ import annotations

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_orchestra.specialists.templates import run_specialist_directly
from specialist_test_support import make_task, output, published_files, read_jsonl, read_parquet

METRICS = [
    {"column": "amount", "fn": "sum", "name": "revenue"},
    {"column": "price", "fn": "mean", "name": "avg_price"},
    {"column": "order_id", "fn": "count", "name": "orders"},
    {"column": "customer", "fn": "count_distinct", "name": "customers"},
    {"column": "price", "fn": "max"},
]


def sales(n: int = 40) -> pa.Table:
    regions = [["north", "south", "east"][i % 3] for i in range(n)]
    regions[4] = regions[9] = None
    return pa.table(
        {
            "order_id": pa.array(range(n), pa.int64()),
            "region": regions,
            "customer": [f"c{i % 7}" for i in range(n)],
            "amount": pa.array([10 * (i % 5) + 1 for i in range(n)], pa.int64()),
            "price": [1.5 * (i % 4) if i % 6 else None for i in range(n)],
        }
    )


def expected_groups(table: pa.Table) -> list[dict]:
    grouped = table.group_by("region").aggregate(
        [
            ("amount", "sum"),
            ("price", "mean"),
            ("order_id", "count"),
            ("customer", "count_distinct"),
            ("price", "max"),
        ]
    )
    rows = [
        {
            "region": r["region"],
            "revenue": r["amount_sum"],
            "avg_price": r["price_mean"],
            "orders": r["order_id_count"],
            "customers": r["customer_count_distinct"],
            "max_price": r["price_max"],
        }
        for r in grouped.to_pylist()
    ]
    return sorted(rows, key=lambda r: (r["region"] is None, r["region"] or ""))


def aggregation_batch(priority: str = "high", path: str = "sales.parquet", kind: str = "parquet", **aggregation) -> dict:
    return {
        "batch_id": "revenue",
        "type": "data_aggregation",
        "priority": priority,
        "source": {"kind": kind, "path": path},
        "aggregation": {"group_by": ["region"], "metrics": METRICS, **aggregation},
    }


def assert_same_groups(actual: list[dict], expected: list[dict]) -> None:
    assert [r["region"] for r in actual] == [r["region"] for r in expected]
    for got, want in zip(actual, expected):
        assert got["revenue"] == want["revenue"] and got["orders"] == want["orders"]
        assert got["customers"] == want["customers"] and got["max_price"] == want["max_price"]
        assert got["avg_price"] == pytest.approx(want["avg_price"])


def test_priority_aggregation_matches_pyarrow_group_by(tmp_path, data_dir):
    table = sales()
    pq.write_table(table, data_dir / "sales.parquet")

    result = run_specialist_directly(make_task(tmp_path, aggregation_batch(), record_batch_rows=6))

    assert result.status == "success", result.error
    assert result.specialist == "data_aggregation_branch_primary"
    assert result.agent_type == "priority_aggregation_specialist"
    assert result.category == "aggregation"
    expected = expected_groups(table)
    m = result.metrics
    assert (m.rows_in, m.rows_out, m.rows_rejected, m.record_batches) == (40, len(expected), 0, 7)
    assert m.quality == 1.0
    written = read_parquet(output(result))
    assert written.schema.field("revenue").type == pa.int64()
    assert_same_groups(written.to_pylist(), expected)


def test_quality_aggregation_measures_nulls_and_rejected_lines(tmp_path, data_dir):
    lines = ["order_id,region,customer,amount,price"]
    lines += [f"{i},{'north' if i % 2 else ''},c{i},{i},{'' if i % 3 == 0 else 2.5}" for i in range(12)]
    lines.insert(5, "99,south")  # wrong number of fields
    (data_dir / "sales.csv").write_text("\n".join(lines) + "\n")
    spec = aggregation_batch("normal", "sales.csv", "csv", metrics=[{"column": "price", "fn": "mean"}, {"column": "amount", "fn": "sum"}])

    result = run_specialist_directly(make_task(tmp_path, spec))

    assert result.status == "success", result.error
    assert result.specialist == "data_quality_branch_secondary"
    assert result.agent_type == "quality_aggregation_specialist"
    region_nulls = sum(1 for i in range(12) if i % 2 == 0)  # empty CSV strings read as null
    price_nulls = sum(1 for i in range(12) if i % 3 == 0)
    complete = sum(1 for i in range(12) if i % 2 and i % 3)
    assert (result.metrics.rows_in, result.metrics.rows_rejected) == (13, 1)
    assert result.metrics.quality == pytest.approx(complete / 13)
    assert result.details["complete_rows"] == complete
    assert result.details["null_share"] == pytest.approx({"region": region_nulls / 12, "price": price_nulls / 12, "amount": 0.0})
    assert result.details["rejected_rows"] == 1
    assert [r["raw"] for r in read_jsonl(output(result, "rejected_lines"))] == ["99,south"]


def test_without_group_by_or_metrics(tmp_path, data_dir):
    pq.write_table(sales(), data_dir / "sales.parquet")
    spec = aggregation_batch(group_by=[], metrics=[])

    result = run_specialist_directly(make_task(tmp_path, spec))

    assert result.status == "success", result.error
    assert read_parquet(output(result)).to_pylist() == [{"row_count": 40}]


def test_postgres_sink_is_idempotent_by_run_and_branch(tmp_path, data_dir, postgres_url):
    table = sales()
    pq.write_table(table, data_dir / "sales.parquet")
    spec = aggregation_batch(sink_table="analytics.revenue_by_region", sink_conn_id="warehouse")
    connections = {"warehouse": postgres_url}
    expected = expected_groups(table)

    def slice_rows(run_id: str) -> list[dict]:
        with psycopg.connect(postgres_url) as conn:
            cur = conn.execute(
                "select region, revenue, avg_price, orders, customers, max_price from analytics.revenue_by_region "
                "where run_id = %s and branch_id = %s order by region nulls last",
                (run_id, "revenue"),
            )
            names = [d.name for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    first = run_specialist_directly(make_task(tmp_path, spec), connections=connections)
    assert first.status == "success", first.error
    sink = output(first, fmt="postgres")
    assert sink.rows == len(expected)
    assert sink.uri.startswith("postgres://warehouse/analytics.revenue_by_region")
    assert_same_groups(slice_rows("run-1"), expected)

    again = run_specialist_directly(make_task(tmp_path, spec), connections=connections)  # a retry
    assert again.status == "success", again.error
    assert_same_groups(slice_rows("run-1"), expected)  # replaced, not duplicated

    other = run_specialist_directly(make_task(tmp_path, spec, run_id="run-2"), connections=connections)
    assert other.status == "success", other.error
    with psycopg.connect(postgres_url) as conn:
        counts = conn.execute(
            "select run_id, count(*) from analytics.revenue_by_region group by run_id order by run_id"
        ).fetchall()
    assert counts == [("run-1", len(expected)), ("run-2", len(expected))]


def test_unreachable_sink_fails_and_leaves_no_parquet_behind(tmp_path, data_dir):
    pq.write_table(sales(), data_dir / "sales.parquet")
    spec = aggregation_batch(sink_table="revenue_by_region", sink_conn_id="warehouse")
    connections = {"warehouse": "postgresql://loader:s3cret-pass@127.0.0.1:1/nowhere"}

    result = run_specialist_directly(make_task(tmp_path, spec), connections=connections)

    assert result.status == "failed"
    assert "revenue_by_region" in result.error
    assert "s3cret-pass" not in result.model_dump_json()
    assert published_files(tmp_path) == []


@pytest.mark.parametrize(
    "change, message",
    [
        ({"metrics": [{"column": "discount", "fn": "sum"}]}, "metric 'sum_discount' reads unknown column 'discount'"),
        ({"metrics": [{"column": "customer", "fn": "mean"}]}, "mean of non-numeric column 'customer'"),
        ({"group_by": ["country"]}, "group_by column 'country' is not in the source"),
        ({"sink_table": "revenue"}, "neither aggregation.sink_conn_id nor storage.sink_conn_id"),
    ],
)
def test_bad_configs_fail_and_write_nothing(tmp_path, data_dir, change, message):
    pq.write_table(sales(), data_dir / "sales.parquet")

    result = run_specialist_directly(make_task(tmp_path, aggregation_batch(**change)))

    assert result.status == "failed"
    assert message in result.error
    assert published_files(tmp_path) == []


def test_only_running_out_of_memory_leads_to_smaller_batches(tmp_path):
    from airflow_provider_orchestra.specialists.templates import specialist_for

    specialist = specialist_for(make_task(tmp_path, aggregation_batch()))
    oom = {"strategy": "standard", "ok": False, "error_kind": "OutOfMemoryException", "error": "Out of Memory Error"}
    wrapped = {
        "strategy": "standard",
        "ok": False,
        "error_kind": "InvalidInputException",
        "error": "reading the stream registered as '__source' failed: malloc of size 1048576 failed",
    }
    other = {"strategy": "standard", "ok": False, "error_kind": "SinkError", "error": "connection refused"}
    low_quality = {"strategy": "standard", "ok": True, "error_kind": None, "error": None}
    assert specialist.next_strategy({}, [oom]) == "small_batches"
    assert specialist.next_strategy({}, [wrapped]) == "small_batches"
    assert specialist.next_strategy({}, [other]) is None
    assert specialist.next_strategy({}, [low_quality]) is None
    assert specialist.next_strategy({}, [oom, {**oom, "strategy": "small_batches"}]) is None


def test_running_out_of_memory_retries_with_smaller_batches(tmp_path, data_dir, monkeypatch):
    from airflow_provider_orchestra.specialists import aggregation

    table = sales()
    pq.write_table(table, data_dir / "sales.parquet")
    real_write = aggregation.write_parquet
    calls = []

    def write_once_out_of_memory(batches, schema, dest, **kwargs):
        calls.append(dest)
        if len(calls) == 1:
            raise MemoryError()
        return real_write(batches, schema, dest, **kwargs)

    monkeypatch.setattr(aggregation, "write_parquet", write_once_out_of_memory)

    result = run_specialist_directly(make_task(tmp_path, aggregation_batch(), record_batch_rows=16))

    assert result.status == "success", result.error
    assert [a["strategy"] for a in result.details["attempts"]] == ["standard", "small_batches"]
    assert result.details["record_batch_rows"] == 2
    assert result.metrics.record_batches == 20
    assert_same_groups(read_parquet(output(result)).to_pylist(), expected_groups(table))
