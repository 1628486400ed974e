"""Realtime transformation on real Parquet files, expected rows computed by DuckDB over the
whole file in one query."""

from __future__ import annotations

from datetime import datetime

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_orchestra.specialists.templates import run_specialist_directly
from specialist_test_support import make_task, output, path_of, published_files, read_parquet


def orders(amounts: list[str] | None = None, codes: list[str] | None = None) -> pa.Table:
    n = 10
    return pa.table(
        {
            "order_id": pa.array(range(n), pa.int64()),
            "amount_text": amounts or [f"{i}.25" for i in range(n)],
            "qty": pa.array([1 + i % 4 for i in range(n)], pa.int64()),
            "code": codes or [str(100 + i) for i in range(n)],
            "order_ts": pa.array([datetime(2024, 3, 1 + i % 3, 8 + i) for i in range(n)], pa.timestamp("s")),
        }
    )


def transform_batch(**transformation) -> dict:
    options = {
        "rename": {"amount_text": "amount"},
        "cast": {"amount": "DOUBLE", "qty": "int32"},
        "derive": {"total": "amount * qty", "order_date": "CAST(order_ts AS DATE)"},
        "partition_date_column": "order_date",
    }
    options.update(transformation)
    return {
        "batch_id": "orders_shape",
        "type": "data_ingestion",
        "source_type": "realtime",
        "source": {"kind": "parquet", "path": "orders.parquet"},
        "transformation": options,
    }


def rows_by_id(table: pa.Table) -> dict[int, dict]:
    return {r["order_id"]: r for r in table.to_pylist()}


def test_rename_cast_derive_and_date_partitions_match_duckdb(tmp_path, data_dir):
    pq.write_table(orders(), data_dir / "orders.parquet")
    expected = duckdb.sql(
        f"""SELECT order_id, CAST(amount_text AS DOUBLE) AS amount, CAST(qty AS INTEGER) AS qty, code, order_ts,
                   CAST(amount_text AS DOUBLE) * CAST(qty AS INTEGER) AS total, CAST(order_ts AS DATE) AS order_date
            FROM '{data_dir / "orders.parquet"}'"""
    ).to_arrow_table()

    result = run_specialist_directly(make_task(tmp_path, transform_batch(), record_batch_rows=3))

    assert result.status == "success", result.error
    assert result.category == "transformation"
    assert (result.metrics.rows_in, result.metrics.rows_out, result.metrics.rows_rejected) == (10, 10, 0)
    assert result.metrics.record_batches == 4
    assert result.metrics.quality == 1.0
    written = read_parquet(output(result))
    got = rows_by_id(written)
    for row in expected.to_pylist():
        actual = got[row["order_id"]]
        assert actual["amount"] == row["amount"] and actual["qty"] == row["qty"]
        assert actual["total"] == pytest.approx(row["total"])
        assert str(actual["order_date"]) == str(row["order_date"])
    partitions = sorted(p.name for p in path_of(output(result)).iterdir())
    assert partitions == ["order_date=2024-03-01", "order_date=2024-03-02", "order_date=2024-03-03"]
    assert pq.read_schema(next(path_of(output(result)).rglob("*.parquet"))).field("qty").type == pa.int32()


def test_values_that_do_not_cast_make_the_lenient_retry_null_them(tmp_path, data_dir):
    amounts = [f"{i}.25" for i in range(10)]
    amounts[2], amounts[7] = "abc", "n/a"
    pq.write_table(orders(amounts=amounts), data_dir / "orders.parquet")

    result = run_specialist_directly(make_task(tmp_path, transform_batch(), record_batch_rows=4))

    assert result.status == "success", result.error
    attempts = result.details["attempts"]
    assert [a["strategy"] for a in attempts] == ["strict", "lenient_casts"]
    assert "a cast failed" in attempts[0]["error"] and "Could not convert string 'abc' to DOUBLE" in attempts[0]["error"]
    assert result.metrics.iterations == 2
    assert result.details["failed_casts"] == 2
    columns = 7  # order_id, amount, qty, code, order_ts, total, order_date
    assert result.metrics.quality == pytest.approx(1 - 2 / (10 * columns))
    got = rows_by_id(read_parquet(output(result)))
    assert got[2]["amount"] is None and got[2]["total"] is None and got[3]["amount"] == 3.25


def test_a_derive_failing_at_run_time_is_dropped(tmp_path, data_dir):
    codes = [str(100 + i) for i in range(10)]
    codes[6] = "X1"
    pq.write_table(orders(codes=codes), data_dir / "orders.parquet")
    spec = transform_batch(derive={"code_num": "CAST(code AS INTEGER)", "total": "amount * qty"}, partition_date_column=None)

    result = run_specialist_directly(make_task(tmp_path, spec))

    assert result.status == "success", result.error
    assert [a["strategy"] for a in result.details["attempts"]] == ["strict", "drop_failing_derives"]
    assert result.details["dropped_derives"] == ["code_num"]
    written = read_parquet(output(result))
    assert "code_num" not in written.column_names and "total" in written.column_names
    assert result.metrics.quality == pytest.approx(1 - 10 / (10 * 7))
    # Without a date column named, the first timestamp column partitions the output.
    assert result.details["partition_column"] == "order_ts"


def test_every_rung_of_the_ladder_and_the_iteration_limit(tmp_path, data_dir):
    amounts = [f"{i}.25" for i in range(10)]
    amounts[1] = "abc"
    codes = [str(100 + i) for i in range(10)]
    codes[8] = "X1"
    pq.write_table(orders(amounts=amounts, codes=codes), data_dir / "orders.parquet")
    spec = transform_batch(derive={"code_num": "CAST(code AS INTEGER)"}, partition_date_column=None)

    full = run_specialist_directly(make_task(tmp_path, spec))
    assert full.status == "success", full.error
    assert [a["strategy"] for a in full.details["attempts"]] == ["strict", "lenient_casts", "drop_failing_derives"]
    assert full.metrics.iterations == 3

    limited = run_specialist_directly(make_task(tmp_path, spec, run_id="run-limited"), iteration_limit=2)
    assert limited.status == "failed"
    assert limited.metrics.iterations == 2
    assert "derive(s) ['code_num'] failed" in limited.error
    assert not (tmp_path / "out" / "wf" / "run-limited").exists() or not any(
        (tmp_path / "out" / "wf" / "run-limited").rglob("*.parquet")
    )


@pytest.mark.parametrize(
    "change, message",
    [
        ({"derive": {"bad": "amount * missing_col"}}, "derive 'bad' = 'amount * missing_col' is invalid: Binder Error"),
        ({"derive": {"peek": "(SELECT count(*) FROM read_csv('/etc/passwd'))"}}, "file system operations are disabled"),
        ({"derive": {"two": "1 AS x FROM batch; DROP TABLE batch; SELECT (1"}}, "derive 'two'"),
        ({"cast": {"qty": "NOT_A_TYPE"}}, "cast of 'qty' to 'NOT_A_TYPE'"),
        ({"rename": {"nope": "x"}}, "rename of unknown column 'nope'"),
        ({"partition_date_column": "code"}, "partition_date_column 'code' has type string"),
    ],
)
def test_bad_configs_fail_before_reading_and_write_nothing(tmp_path, data_dir, change, message):
    pq.write_table(orders(), data_dir / "orders.parquet")

    result = run_specialist_directly(make_task(tmp_path, transform_batch(**change)))

    assert result.status == "failed"
    assert message in result.error
    assert result.metrics.iterations == 0
    assert published_files(tmp_path) == []
