"""Data-plane benchmark: sources, sinks, Postgres load method and the compute engine.

Every figure is printed as a ratio against a baseline measured in the same run on the
same data, so the numbers mean something on a noisy shared machine:

* reading: each source (CSV, JSONL, Parquet) against pyarrow reading the same file whole;
* compute: filter, derived columns and group-by over streamed record batches, pyarrow
  compute (batch by batch / Acero) against DuckDB (one query over the batch stream),
  each against a bare streamed Parquet read;
* end to end: read -> filter/derive -> write_parquet against the bare read;
* Postgres load: COPY fed with Arrow-written CSV text against psycopg ``write_row``
  (text and binary), when a Postgres answers at ORCHESTRA_TEST_POSTGRES_URL.

Usage: python bench/bench_io.py [--scale N]   (N x 20,000 orders; default 10)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.acero as acero
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from airflow_provider_orchestra.core.models import SourceRef
from airflow_provider_orchestra.sample import generate_sample_data
from airflow_provider_orchestra.specialists.io import load_postgres, open_source, write_parquet

BATCH_ROWS = 65_536
REPEAT = 3


def best_of(fn: Callable[[], int], repeat: int = REPEAT) -> tuple[float, int]:
    """(median seconds, rows) over ``repeat`` runs."""
    times, rows = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        rows = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), rows


def report(title: str, results: list[tuple[str, float, int]], baseline: str) -> dict[str, float]:
    base_seconds = dict((name, s) for name, s, _ in results)[baseline]
    print(f"\n{title}  (ratio = time / time of '{baseline}'; lower is faster)")
    print(f"  {'case':<44}{'seconds':>10}{'rows/s':>14}{'ratio':>9}")
    ratios = {}
    for name, seconds, rows in results:
        ratios[name] = seconds / base_seconds
        print(f"  {name:<44}{seconds:>10.3f}{rows / seconds:>14,.0f}{ratios[name]:>9.2f}")
    return ratios


# --------------------------------------------------------------------------- data


def build_data(work: Path, scale: int) -> dict[str, Path]:
    paths = generate_sample_data(work / "seed", orders=20_000, events=50_000, seed=7)
    orders = pq.read_table(paths["orders_parquet"])
    parts = []
    for copy in range(scale):
        parts.append(orders.set_column(0, "order_id", pc.add(orders.column("order_id"), copy * 1_000_000)))
    big = pa.concat_tables(parts)
    data = work / "data"
    data.mkdir()
    pq.write_table(big, data / "orders.parquet", row_group_size=BATCH_ROWS)
    pacsv.write_csv(big, data / "orders.csv")
    events = paths["events_jsonl"].read_bytes()
    with (data / "events.jsonl").open("wb") as fh:
        for _ in range(max(scale // 2, 1)):
            fh.write(events)
    return {"parquet": data / "orders.parquet", "csv": data / "orders.csv", "jsonl": data / "events.jsonl"}


def stream(path: Path) -> Iterator[pa.RecordBatch]:
    return pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS)


# --------------------------------------------------------------------------- reading


def bench_sources(files: dict[str, Path]) -> None:
    roots = [str(files["parquet"].parent)]

    def through_source(kind: str) -> Callable[[], int]:
        def run() -> int:
            source = open_source(SourceRef(kind=kind, path=files[kind].name), roots=roots, batch_rows=BATCH_ROWS)
            return sum(batch.num_rows for batch in source.iter_batches())

        return run

    for kind, whole in [
        ("parquet", lambda: pq.read_table(files["parquet"]).num_rows),
        ("csv", lambda: pacsv.read_csv(files["csv"]).num_rows),
        ("jsonl", lambda: _read_json_whole(files["jsonl"])),
    ]:
        results = [
            (f"pyarrow whole-file read ({kind})", *best_of(whole)),
            (f"open_source streamed ({kind})", *best_of(through_source(kind))),
        ]
        report(f"read {kind}", results, baseline=f"pyarrow whole-file read ({kind})")


def _read_json_whole(path: Path) -> int:
    # pyarrow cannot skip malformed lines; drop them first so it has a chance (not timed separately).
    try:
        return pajson.read_json(path).num_rows
    except pa.ArrowInvalid:
        good = b"\n".join(line for line in path.read_bytes().split(b"\n") if line.startswith(b'{"') and line.endswith(b"}"))
        return pajson.read_json(pa.BufferReader(good), parse_options=pajson.ParseOptions(explicit_schema=None)).num_rows


# --------------------------------------------------------------------------- compute

FILTER_SQL = "quantity > 0 AND unit_price < 1e6 AND status = 'completed'"


def arrow_filter(batch: pa.RecordBatch) -> pa.RecordBatch:
    mask = pc.and_(
        pc.and_(pc.greater(batch["quantity"], 0), pc.less(batch["unit_price"], 1e6)),
        pc.equal(batch["status"], "completed"),
    )
    return batch.filter(mask)


def arrow_derive(batch: pa.RecordBatch) -> pa.RecordBatch:
    batch = batch.append_column("line_total", pc.multiply(batch["quantity"], batch["unit_price"]))
    batch = batch.append_column("order_date", pc.cast(batch["order_ts"], pa.date32()))
    return batch.append_column("is_bulk", pc.greater_equal(batch["quantity"], 5))


def arrow_groupby(path: Path) -> pa.Table:
    """Streaming hash aggregation with Acero over the batch stream."""
    reader = pa.RecordBatchReader.from_batches(pq.ParquetFile(path).schema_arrow, stream(path))
    plan = acero.Declaration.from_sequence(
        [
            acero.Declaration("record_batch_reader_source", acero.RecordBatchReaderSourceNodeOptions(reader)),
            acero.Declaration(
                "aggregate",
                acero.AggregateNodeOptions(
                    [
                        ("amount", "hash_sum", None, "revenue"),
                        ("order_id", "hash_count", pc.CountOptions(mode="all"), "orders"),
                        ("unit_price", "hash_mean", None, "avg_unit_price"),
                        ("customer_id", "hash_count_distinct", pc.CountOptions(mode="only_valid"), "customers"),
                    ],
                    keys=["region"],
                ),
            ),
        ]
    )
    return plan.to_table(use_threads=True)


DUCK_GROUPBY = (
    "select region, sum(amount) as revenue, count(*) as orders, avg(unit_price) as avg_unit_price, "
    "count(distinct customer_id) as customers from src group by region"
)
DUCK_DERIVE = (
    "select *, quantity * unit_price as line_total, cast(order_ts as date) as order_date, "
    "quantity >= 5 as is_bulk from src"
)


def duck_stream(path: Path, query: str) -> int:
    con = duckdb.connect()
    con.execute("set threads to 2")
    src = pa.RecordBatchReader.from_batches(pq.ParquetFile(path).schema_arrow, stream(path))
    con.register("src", src)
    out = con.sql(query).to_arrow_reader(BATCH_ROWS)
    rows = sum(batch.num_rows for batch in out)
    con.close()
    return rows


def duck_per_batch(path: Path, query: str) -> int:
    con = duckdb.connect()
    con.execute("set threads to 2")
    rows = 0
    for batch in stream(path):
        con.register("src", batch)
        rows += con.sql(query).to_arrow_table().num_rows
        con.unregister("src")
    con.close()
    return rows


def bench_compute(files: dict[str, Path]) -> dict[str, float]:
    path = files["parquet"]
    total = pq.ParquetFile(path).metadata.num_rows

    def counted(fn: Callable[[], object]) -> Callable[[], int]:
        def run() -> int:
            fn()
            return total

        return run

    results = [
        ("bare streamed parquet read", *best_of(lambda: sum(b.num_rows for b in stream(path)))),
        ("filter: pyarrow per batch", *best_of(counted(lambda: [arrow_filter(b) for b in stream(path)]))),
        ("filter: duckdb one query over stream", *best_of(counted(lambda: duck_stream(path, f"select * from src where {FILTER_SQL}")))),
        ("filter: duckdb query per batch", *best_of(counted(lambda: duck_per_batch(path, f"select * from src where {FILTER_SQL}")))),
        ("derive: pyarrow per batch", *best_of(counted(lambda: [arrow_derive(b) for b in stream(path)]))),
        ("derive: duckdb one query over stream", *best_of(counted(lambda: duck_stream(path, DUCK_DERIVE)))),
        ("group-by: pyarrow acero over stream", *best_of(counted(lambda: arrow_groupby(path)))),
        ("group-by: duckdb one query over stream", *best_of(counted(lambda: duck_stream(path, DUCK_GROUPBY)))),
    ]
    ratios = report(f"compute over {total:,} rows in {BATCH_ROWS:,}-row batches", results, "bare streamed parquet read")
    # Same answer from both engines, or the comparison is meaningless.
    arrow = arrow_groupby(path).sort_by("region")
    duck = duckdb.sql(DUCK_GROUPBY.replace("from src", f"from read_parquet('{path}')")).to_arrow_table().sort_by("region")
    assert arrow.column("orders").to_pylist() == duck.column("orders").to_pylist()
    assert arrow.column("customers").to_pylist() == duck.column("customers").to_pylist()
    return ratios


def bench_end_to_end(files: dict[str, Path], work: Path) -> None:
    path = files["parquet"]
    schema = pq.ParquetFile(path).schema_arrow
    total = pq.ParquetFile(path).metadata.num_rows
    derived = arrow_derive(next(stream(path)).slice(0, 0)).schema

    def arrow_pipeline() -> int:
        out = write_parquet((arrow_derive(arrow_filter(b)) for b in stream(path)), derived, work / "e2e_arrow")
        return total if out.rows else 0

    def duck_pipeline() -> int:
        con = duckdb.connect()
        con.execute("set threads to 2")
        con.register("src", pa.RecordBatchReader.from_batches(schema, stream(path)))
        reader = con.sql(f"select * from ({DUCK_DERIVE}) where {FILTER_SQL}").to_arrow_reader(BATCH_ROWS)
        out = write_parquet(reader, reader.schema, work / "e2e_duck")
        con.close()
        return total if out.rows else 0

    results = [
        ("bare streamed parquet read", *best_of(lambda: sum(b.num_rows for b in stream(path)))),
        ("read+filter+derive+write_parquet (pyarrow)", *best_of(arrow_pipeline)),
        ("read+filter+derive+write_parquet (duckdb)", *best_of(duck_pipeline)),
        ("read+write_parquet partitioned by date", *best_of(lambda: write_parquet(
            (arrow_derive(b) for b in stream(path)), arrow_derive(next(stream(path)).slice(0, 0)).schema,
            work / "e2e_part", partition_by="order_date").rows)),
    ]
    report("end to end", results, "bare streamed parquet read")


# --------------------------------------------------------------------------- postgres


ORDERS_DDL = (
    "create temporary table feed (order_id bigint, customer_id text, region text, product text, "
    "quantity bigint, unit_price double precision, amount double precision, status text, order_ts timestamptz)"
)
ORDERS_PG_TYPES = ["int8", "text", "text", "text", "int8", "float8", "float8", "text", "timestamptz"]


def bench_postgres(files: dict[str, Path], rows: int) -> None:
    import psycopg

    from airflow_provider_orchestra.specialists.io.postgres_load import batch_csv

    url = os.environ.get("ORCHESTRA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error:
        print("\npostgres load: no server at ORCHESTRA_TEST_POSTGRES_URL; section not run")
        return
    table = pq.read_table(files["parquet"]).slice(0, rows)

    def feed(method: str) -> Callable[[], int]:
        """COPY the rows into a fresh temporary table with one feeding method."""

        def run() -> int:
            with psycopg.connect(url) as conn:
                conn.execute(ORDERS_DDL)
                fmt = " (format binary)" if method == "binary" else " (format csv)" if method == "csv" else ""
                with conn.cursor() as cur, cur.copy(f"copy feed from stdin{fmt}") as copy:
                    if method == "binary":
                        copy.set_types(ORDERS_PG_TYPES)
                    for batch in table.to_batches(BATCH_ROWS):
                        if method == "csv":
                            copy.write(batch_csv(batch))
                            continue
                        columns = [column.to_pylist() for column in batch.columns]
                        for row in zip(*columns):
                            copy.write_row(row)
                conn.rollback()
            return rows

        return run

    def full_load() -> int:
        return load_postgres(
            table.to_batches(BATCH_ROWS), table.schema, url=url, table="bench_orders", run_id="bench", branch_id="b"
        ).rows

    results = [
        ("COPY csv text written by pyarrow", *best_of(feed("csv"))),
        ("COPY text, psycopg write_row", *best_of(feed("text"))),
        ("COPY binary, psycopg write_row", *best_of(feed("binary"))),
        ("load_postgres (csv COPY + staging swap)", *best_of(full_load)),
    ]
    report(f"postgres load of {rows:,} rows", results, "COPY csv text written by pyarrow")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("drop table if exists bench_orders")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=10, help="copies of the 20,000 sample orders")
    parser.add_argument("--pg-rows", type=int, default=100_000)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-io-"))
    try:
        files = build_data(work, args.scale)
        print(f"data: {pq.ParquetFile(files['parquet']).metadata.num_rows:,} orders; "
              f"{files['jsonl'].stat().st_size / 1e6:.1f} MB events; pyarrow {pa.__version__}, duckdb {duckdb.__version__}")
        bench_sources(files)
        bench_compute(files)
        bench_end_to_end(files, work)
        bench_postgres(files, args.pg_rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
