"""Specialists against the same work written directly in an engine.

For each of the five specialists the same job is also written by hand, with no
orchestration, in each engine that fits it: pyarrow (streamed record batches, Acero
compute), DuckDB (SQL over the file, as many statements as the job needs) and Polars
(a lazy query sunk to Parquet). At the small size every candidate runs; the fastest
becomes that job's baseline, and at the large size only the specialist and that baseline
run. Memory is compared with the pyarrow candidate (the only one whose allocations are
Arrow's, like the specialists'), and peak RSS is reported as is (target below 1 GiB at
the large size and flat from the small to the large size).

Each run is a fresh process: a warm-up on a 1,000-row copy of the input (imports and
first-use initialisation count in neither time nor memory), then the measured run on
the full input, which reports its wall and CPU seconds, Arrow's peak allocation and the
process's peak RSS. Rounds interleave the variants; medians are reported.

The input (cached under bench/.cache): ``events`` with an id (a few duplicates and
nulls), a user, a region (a few unknown or null), an amount (roughly normal, a few
nulls and outliers), a quantity (a few out of range) and an event time spread evenly
over 30 days (a few events two hours late), as Parquet and as JSONL, written by DuckDB
from a deterministic hash of the row number.

Usage: python bench/bench_specialists.py [--sizes 1000000 10000000] [--repeat 5] [--repeat-large 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    CACHE_DIR,
    Row,
    Sample,
    Table,
    interleaved,
    median,
    peak_rss_bytes,
    print_table,
    run_worker,
    save_section,
    spread,
)

BATCH_ROWS = 65_536
REGIONS = ["north", "south", "east", "west", "central"]
LATE_TOLERANCE = 3600
CONFIDENCE_Z = 1.959963984540054  # two-sided normal critical value at 0.95 (validation per_row)

JOBS: dict[str, dict[str, Any]] = {
    "ingestion": {
        "batch_id": "clicks",
        "type": "data_ingestion",
        "source_type": "streaming",
        "source": {"kind": "jsonl", "path": "events.jsonl"},
        "ingestion": {"event_time_column": "ts", "late_tolerance_seconds": LATE_TOLERANCE},
    },
    "validation": {
        "batch_id": "orders_check",
        "type": "data_ingestion",
        "source_type": "batch",
        "source": {"kind": "parquet", "path": "events.parquet"},
        "validation": {
            "rules": [
                {"column": "id", "not_null": True, "unique": True},
                {"column": "qty", "min": 1, "max": 10},
                {"column": "region", "allowed": REGIONS},
                {"column": "amount", "not_null": True},
            ],
            "anomaly_columns": ["amount"],
        },
    },
    "transformation": {
        "batch_id": "orders_shape",
        "type": "data_ingestion",
        "source_type": "realtime",
        "source": {"kind": "parquet", "path": "events.parquet"},
        "transformation": {
            "rename": {"amount": "gross"},
            "cast": {"qty": "INTEGER"},
            "derive": {"total": "gross * qty", "event_date": "CAST(ts AS DATE)"},
            "partition_date_column": "event_date",
        },
    },
    "aggregation (primary)": {
        "batch_id": "revenue",
        "type": "data_aggregation",
        "priority": "high",
        "source": {"kind": "parquet", "path": "events.parquet"},
        "aggregation": {
            "group_by": ["region"],
            "metrics": [
                {"column": "amount", "fn": "sum"},
                {"column": "amount", "fn": "mean"},
                {"column": "id", "fn": "count"},
                {"column": "user", "fn": "count_distinct"},
            ],
        },
    },
    "quality aggregation (secondary)": {
        "batch_id": "summary",
        "type": "data_aggregation",
        "priority": "normal",
        "source": {"kind": "parquet", "path": "events.parquet"},
        "aggregation": {
            "group_by": ["region", "qty"],
            "metrics": [{"column": "amount", "fn": "max"}, {"column": "user", "fn": "count_distinct"}],
        },
    },
}
ENGINES = ("pyarrow", "duckdb", "polars")


# --------------------------------------------------------------------------- data


def data_dir(rows: int) -> Path:
    """``events.parquet`` and ``events.jsonl`` of ``rows`` rows (and a 1,000-row copy of
    each under ``warm/``), generated once and kept under bench/.cache."""
    folder = CACHE_DIR / f"events-{rows}"
    done = folder / ".complete"
    if done.exists():
        return folder
    import duckdb

    shutil.rmtree(folder, ignore_errors=True)
    step_us = 30 * 86_400 * 1_000_000 // rows
    query = f"""
        SELECT CASE WHEN i % 1009 = 0 THEN NULL WHEN i % 499 = 0 THEN i - 1 ELSE i END AS id,
               'u' || (hash(i, 1) % 50000) AS user,
               CASE WHEN i % 997 = 0 THEN NULL WHEN i % 331 = 0 THEN 'unknown'
                    ELSE ['north', 'south', 'east', 'west', 'central'][1 + (hash(i, 2) % 5)::INTEGER] END AS region,
               CASE WHEN i % 211 = 0 THEN NULL
                    WHEN i % 5003 = 0 THEN 5000.0
                    ELSE round(20 + ((hash(i, 3) % 1000) + (hash(i, 4) % 1000) + (hash(i, 5) % 1000)) / 50.0, 2) END AS amount,
               CASE WHEN i % 199 = 0 THEN 0 ELSE 1 + (hash(i, 6) % 10)::BIGINT END AS qty,
               TIMESTAMP '2024-05-01' + to_microseconds(i * {step_us}
                    - CASE WHEN i % 1013 = 0 THEN 7200000000 ELSE 0 END) AS ts
        FROM range({rows}) t(i)
    """
    folder.mkdir(parents=True)
    con = duckdb.connect()
    for target, limit in ((folder, rows), (folder / "warm", 1_000)):
        target.mkdir(exist_ok=True)
        limited = f"SELECT * FROM ({query}) LIMIT {limit}" if limit < rows else query
        con.execute(f"COPY ({limited}) TO '{target / 'events.parquet'}' (FORMAT parquet, ROW_GROUP_SIZE {BATCH_ROWS * 2})")
        con.execute(f"COPY (SELECT * FROM read_parquet('{target / 'events.parquet'}')) TO '{target / 'events.jsonl'}' (FORMAT json)")
    con.close()
    done.touch()
    return folder


# --------------------------------------------------------------------------- workers


def worker(variant: str, job: str, data: Path, out: Path) -> dict[str, Any]:
    """Warm up on the 1,000-row copy, then run once on the full input."""
    import pyarrow as pa

    run = specialist_run if variant == "orchestra" else BASELINES[(job, variant)]
    run(job, data / "warm", out / "warm")
    shutil.rmtree(out / "warm", ignore_errors=True)
    pool = pa.default_memory_pool()
    pool.release_unused()
    arrow_before = pool.bytes_allocated()
    wall, cpu = time.perf_counter(), time.process_time()
    figures = run(job, data, out / "run")
    figures["wall"] = time.perf_counter() - wall
    figures["cpu"] = time.process_time() - cpu
    figures["arrow_peak"] = pool.max_memory() - arrow_before
    figures["peak_rss"] = peak_rss_bytes()
    return figures


def specialist_run(job: str, data: Path, out: Path) -> dict[str, Any]:
    from langgraph.checkpoint.memory import InMemorySaver

    from airflow_provider_orchestra.core.models import BatchSpec, BranchAllocation, BranchTask, StorageConfig
    from airflow_provider_orchestra.core.routing import route
    from airflow_provider_orchestra.specialists.templates import run_specialist_directly

    spec = BatchSpec.model_validate(JOBS[job])
    specialist = route(spec.type, spec.source_type, spec.priority)
    task = BranchTask(
        workflow_id="bench",
        run_id="bench-run",
        branch_id=spec.batch_id,
        specialist=specialist,
        allocation=BranchAllocation(
            branch_id=spec.batch_id, type=spec.type, source_type=spec.source_type, priority=spec.priority, specialist=specialist
        ),
        batch=spec,
        record_batch_rows=BATCH_ROWS,
        storage=StorageConfig(data_roots=[str(data)], output_root=str(out)),
    )
    result = run_specialist_directly(task, saver=InMemorySaver())
    if result.status != "success":
        raise SystemExit(f"{job} failed: {result.error}")
    return {
        "rows": result.metrics.rows_in,
        # Rows of the main output (the ingestion specialist also counts its late events).
        "rows_out": next(o.rows for o in result.outputs if o.role == "output"),
        "quality": result.metrics.quality,
        "iterations": result.metrics.iterations,
    }


# -- ingestion: JSONL -> Parquet, events late against the running maximum event time to their own file


def ingestion_pyarrow(job: str, data: Path, out: Path) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    reader = pajson.open_json(data / "events.jsonl", read_options=pajson.ReadOptions(block_size=1 << 23))
    schema = reader.schema
    tolerance = LATE_TOLERANCE * 1_000_000
    watermark = None
    rows = late_rows = 0
    with pq.ParquetWriter(out / "data.parquet", schema) as main, pq.ParquetWriter(out / "late.parquet", schema) as late:
        for batch in reader:
            micros = pc.cast(batch.column("ts"), pa.timestamp("us")).cast(pa.int64())
            running = pc.cumulative_max(micros)
            before = pa.concat_arrays([pa.array([watermark if watermark is not None else -(1 << 62)], pa.int64()), running.slice(0, len(running) - 1)])
            is_late = pc.less(micros, pc.subtract(before, tolerance))
            watermark = running[-1].as_py()
            main.write_batch(batch.filter(pc.invert(is_late)))
            late.write_batch(batch.filter(is_late))
            rows += batch.num_rows
            late_rows += pc.sum(is_late).as_py() or 0
    return {"rows": rows, "rows_out": rows - late_rows}


def ingestion_duckdb(job: str, data: Path, out: Path) -> dict[str, Any]:
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(
        f"CREATE TEMP TABLE marked AS SELECT *, CAST(ts AS TIMESTAMP) < max(CAST(ts AS TIMESTAMP)) OVER (ORDER BY n ROWS BETWEEN"
        f" UNBOUNDED PRECEDING AND 1 PRECEDING) - INTERVAL {LATE_TOLERANCE} SECOND AS late"
        f" FROM (SELECT *, row_number() OVER () AS n FROM read_json('{data / 'events.jsonl'}'))"
    )
    con.execute(f"COPY (SELECT * EXCLUDE (n, late) FROM marked WHERE late IS NOT TRUE ORDER BY n) TO '{out / 'data.parquet'}'")
    con.execute(f"COPY (SELECT * EXCLUDE (n, late) FROM marked WHERE late ORDER BY n) TO '{out / 'late.parquet'}'")
    rows, late = con.execute("SELECT count(*), count(*) FILTER (WHERE late) FROM marked").fetchone()
    con.close()
    return {"rows": rows, "rows_out": rows - late}


def ingestion_polars(job: str, data: Path, out: Path) -> dict[str, Any]:
    import polars as pl

    out.mkdir(parents=True, exist_ok=True)
    schema = {"id": pl.Int64, "user": pl.String, "region": pl.String, "amount": pl.Float64, "qty": pl.Int64, "ts": pl.String}
    frame = pl.read_ndjson(data / "events.jsonl", schema=schema).with_columns(pl.col("ts").str.to_datetime())
    watermark = frame.get_column("ts").cum_max().shift(1)
    late = (frame.get_column("ts") < watermark - timedelta(seconds=LATE_TOLERANCE)).fill_null(False)
    frame.filter(~late).write_parquet(out / "data.parquet")
    frame.filter(late).write_parquet(out / "late.parquet")
    return {"rows": frame.height, "rows_out": frame.height - int(late.sum())}


# -- validation: rules + anomalies, passing rows to one file, failing rows with reasons to another


def _reason_sql() -> tuple[str, str]:
    """(reasons expression, failed expression) in DuckDB SQL for the validation job."""
    checks = [
        ("id IS NULL", "id: null"),
        ("id IN (SELECT id FROM dup)", "id: duplicate key"),
        ("qty < 1", "qty: below min 1"),
        ("qty > 10", "qty: above max 10"),
        (f"region IS NOT NULL AND region NOT IN ({', '.join(repr(r) for r in REGIONS)})", "region: not an allowed value"),
        ("amount IS NULL", "amount: null"),
        (f"abs(amount - (SELECT m FROM stats)) / (SELECT s FROM stats) > {CONFIDENCE_Z}", "amount: anomaly"),
    ]
    reasons = "concat_ws('; ', " + ", ".join(f"CASE WHEN {c} THEN '{r}' END" for c, r in checks) + ")"
    failed = " OR ".join(f"coalesce({c}, false)" for c, _ in checks)
    return reasons, failed


def validation_duckdb(job: str, data: Path, out: Path) -> dict[str, Any]:
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    source = f"read_parquet('{data / 'events.parquet'}')"
    con = duckdb.connect()
    con.execute(f"CREATE TEMP TABLE dup AS SELECT id FROM {source} WHERE id IS NOT NULL GROUP BY id HAVING count(*) > 1")
    con.execute(f"CREATE TEMP TABLE stats AS SELECT avg(amount) AS m, stddev_samp(amount) AS s FROM {source}")
    reasons, failed = _reason_sql()
    passed = con.execute(f"COPY (SELECT * FROM {source} WHERE NOT ({failed})) TO '{out / 'data.parquet'}'").fetchone()[0]
    con.execute(f"COPY (SELECT *, {reasons} AS _reasons FROM {source} WHERE {failed}) TO '{out / 'quarantine.parquet'}'")
    rows = con.execute(f"SELECT count(*) FROM {source}").fetchone()[0]
    con.close()
    return {"rows": rows, "rows_out": passed}


def validation_pyarrow(job: str, data: Path, out: Path) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    file = pq.ParquetFile(data / "events.parquet")
    ids, amounts = [], []
    for batch in file.iter_batches(BATCH_ROWS, columns=["id", "amount"]):
        ids.append(batch.column("id"))
        amounts.append(batch.column("amount"))
    counts = pc.value_counts(pa.chunked_array(ids).drop_null())
    dup = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    amount = pa.chunked_array(amounts)
    mean, sd = pc.mean(amount).as_py(), pc.stddev(amount, ddof=1).as_py()
    allowed = pa.array(REGIONS)
    schema = file.schema_arrow
    rows = passed = 0
    with pq.ParquetWriter(out / "data.parquet", schema) as good, pq.ParquetWriter(
        out / "quarantine.parquet", schema.append(pa.field("_reasons", pa.string()))
    ) as bad:
        for batch in file.iter_batches(BATCH_ROWS):
            rows += batch.num_rows
            z = pc.divide(pc.abs(pc.subtract(batch.column("amount"), mean)), sd)
            region = batch.column("region")
            checks = [
                (pc.is_null(batch.column("id")), "id: null"),
                (pc.is_in(batch.column("id"), value_set=dup), "id: duplicate key"),
                (pc.less(batch.column("qty"), 1), "qty: below min 1"),
                (pc.greater(batch.column("qty"), 10), "qty: above max 10"),
                (pc.and_(pc.is_valid(region), pc.invert(pc.is_in(region, value_set=allowed))), "region: not an allowed value"),
                (pc.is_null(batch.column("amount")), "amount: null"),
                (pc.greater(z, CONFIDENCE_Z), "amount: anomaly"),
            ]
            masks = [pc.fill_null(m, False) for m, _ in checks]
            failed = masks[0]
            for m in masks[1:]:
                failed = pc.or_(failed, m)
            reasons = [pc.if_else(m, pa.scalar(r), pa.scalar(None, pa.string())) for m, (_, r) in zip(masks, checks)]
            joined = reasons[0]
            for reason in reasons[1:]:
                joined = pc.coalesce(pc.binary_join_element_wise(joined, reason, "; "), joined, reason)
            kept = batch.filter(pc.invert(failed))
            passed += kept.num_rows
            good.write_batch(kept)
            bad.write_batch(batch.append_column("_reasons", joined).filter(failed))
    return {"rows": rows, "rows_out": passed}


def validation_polars(job: str, data: Path, out: Path) -> dict[str, Any]:
    import polars as pl

    out.mkdir(parents=True, exist_ok=True)
    lazy = pl.scan_parquet(data / "events.parquet")
    stats = lazy.select(pl.col("amount").mean().alias("m"), pl.col("amount").std().alias("s")).collect()
    mean, sd = stats["m"][0], stats["s"][0]
    id_ = pl.col("id")
    checks = [
        (id_.is_null(), "id: null"),
        (id_.is_duplicated() & id_.is_not_null(), "id: duplicate key"),
        (pl.col("qty") < 1, "qty: below min 1"),
        (pl.col("qty") > 10, "qty: above max 10"),
        (pl.col("region").is_not_null() & ~pl.col("region").is_in(REGIONS), "region: not an allowed value"),
        (pl.col("amount").is_null(), "amount: null"),
        (((pl.col("amount") - mean).abs() / sd) > CONFIDENCE_Z, "amount: anomaly"),
    ]
    masks = [m.fill_null(False) for m, _ in checks]
    failed = pl.any_horizontal(masks)
    reasons = pl.concat_str([pl.when(m).then(pl.lit(r)) for m, (_, r) in zip(masks, checks)], separator="; ", ignore_nulls=True)
    marked = lazy.with_columns(failed.alias("_failed"), reasons.alias("_reasons"))
    frame = marked.collect()
    good = frame.filter(~pl.col("_failed")).drop("_failed", "_reasons")
    good.write_parquet(out / "data.parquet")
    frame.filter(pl.col("_failed")).drop("_failed").write_parquet(out / "quarantine.parquet")
    return {"rows": frame.height, "rows_out": good.height}


# -- transformation: rename, cast, derive, date-partitioned Parquet


def transformation_duckdb(job: str, data: Path, out: Path) -> dict[str, Any]:
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT *, gross * qty AS total, CAST(ts AS DATE) AS event_date FROM ("
        f"SELECT id, user, region, amount AS gross, CAST(qty AS INTEGER) AS qty, ts FROM read_parquet('{data / 'events.parquet'}')))"
        f" TO '{out / 'data'}' (FORMAT parquet, PARTITION_BY (event_date))"
    )
    rows = con.execute(f"SELECT count(*) FROM read_parquet('{data / 'events.parquet'}')").fetchone()[0]
    con.close()
    return {"rows": rows, "rows_out": rows}


def transformation_pyarrow(job: str, data: Path, out: Path) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    file = pq.ParquetFile(data / "events.parquet")
    names = ["id", "user", "region", "gross", "qty", "ts", "total", "event_date"]
    rows = 0

    def shaped():
        nonlocal rows
        for b in file.iter_batches(BATCH_ROWS):
            rows += b.num_rows
            qty = pc.cast(b.column("qty"), pa.int32())
            yield pa.RecordBatch.from_arrays(
                [b.column("id"), b.column("user"), b.column("region"), b.column("amount"), qty, b.column("ts"),
                 pc.multiply(b.column("amount"), qty), pc.cast(b.column("ts"), pa.date32())],
                names=names,
            )

    first = next(shaped())
    rows = 0
    ds.write_dataset(
        pa.RecordBatchReader.from_batches(first.schema, shaped()),
        out / "data",
        format="parquet",
        partitioning=ds.partitioning(pa.schema([("event_date", pa.date32())]), flavor="hive"),
        existing_data_behavior="overwrite_or_ignore",
    )
    return {"rows": rows, "rows_out": rows}


def transformation_polars(job: str, data: Path, out: Path) -> dict[str, Any]:
    import polars as pl

    lazy = (
        pl.scan_parquet(data / "events.parquet")
        .rename({"amount": "gross"})
        .with_columns(pl.col("qty").cast(pl.Int32))
        .with_columns((pl.col("gross") * pl.col("qty")).alias("total"), pl.col("ts").dt.date().alias("event_date"))
    )
    (out / "data").mkdir(parents=True, exist_ok=True)
    lazy.sink_parquet(pl.PartitionBy(out / "data", key="event_date"), mkdir=True)
    rows = pl.scan_parquet(data / "events.parquet").select(pl.len()).collect().item()
    return {"rows": rows, "rows_out": rows}


# -- aggregations


def _aggregation_sql(job: str, source: str) -> str:
    if job == "aggregation (primary)":
        return (
            f"SELECT region, sum(amount) AS sum_amount, avg(amount) AS mean_amount, count(id) AS count_id,"
            f" count(DISTINCT user) AS count_distinct_user FROM {source} GROUP BY region ORDER BY region NULLS LAST"
        )
    return (
        f"SELECT region, qty, max(amount) AS max_amount, count(DISTINCT user) AS count_distinct_user"
        f" FROM {source} GROUP BY region, qty ORDER BY region, qty NULLS LAST"
    )


_WATCHED = ["region", "qty", "amount", "user"]


def aggregation_duckdb(job: str, data: Path, out: Path) -> dict[str, Any]:
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    source = f"read_parquet('{data / 'events.parquet'}')"
    con = duckdb.connect()
    groups = con.execute(f"COPY ({_aggregation_sql(job, source)}) TO '{out / 'data.parquet'}'").fetchone()[0]
    if job == "aggregation (primary)":
        rows = con.execute(f"SELECT count(*) FROM {source}").fetchone()[0]
    else:  # the quality specialist also measures complete rows and null shares
        nulls = ", ".join(f"count(*) - count({c})" for c in _WATCHED)
        complete = " AND ".join(f"{c} IS NOT NULL" for c in _WATCHED)
        rows, *_ = con.execute(f"SELECT count(*), count(*) FILTER (WHERE {complete}), {nulls} FROM {source}").fetchone()
    con.close()
    return {"rows": rows, "rows_out": groups}


def aggregation_pyarrow(job: str, data: Path, out: Path) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    primary = job == "aggregation (primary)"
    columns = ["region", "amount", "id", "user"] if primary else _WATCHED
    table = pq.read_table(data / "events.parquet", columns=columns)
    if primary:
        grouped = table.group_by("region").aggregate(
            [("amount", "sum"), ("amount", "mean"), ("id", "count"), ("user", "count_distinct")]
        )
        keys = [("region", "ascending")]
    else:
        grouped = table.group_by(["region", "qty"]).aggregate([("amount", "max"), ("user", "count_distinct")])
        keys = [("region", "ascending"), ("qty", "ascending")]
        valid = None
        for c in _WATCHED:
            mask = pc.is_valid(table.column(c))
            valid = mask if valid is None else pc.and_(valid, mask)
        _ = pc.sum(valid).as_py(), [table.column(c).null_count for c in _WATCHED]
    grouped = grouped.sort_by(keys, null_placement="at_end") if hasattr(grouped, "sort_by") else grouped
    pq.write_table(grouped, out / "data.parquet")
    return {"rows": table.num_rows, "rows_out": grouped.num_rows}


def aggregation_polars(job: str, data: Path, out: Path) -> dict[str, Any]:
    import polars as pl

    out.mkdir(parents=True, exist_ok=True)
    lazy = pl.scan_parquet(data / "events.parquet")
    if job == "aggregation (primary)":
        result = lazy.group_by("region").agg(
            pl.col("amount").sum().alias("sum_amount"),
            pl.col("amount").mean().alias("mean_amount"),
            pl.col("id").count().alias("count_id"),
            pl.col("user").n_unique().alias("count_distinct_user"),
        ).sort("region", nulls_last=True)
        rows = lazy.select(pl.len()).collect().item()
        grouped = result.collect()
        grouped.write_parquet(out / "data.parquet")
    else:
        result = lazy.group_by("region", "qty").agg(
            pl.col("amount").max().alias("max_amount"), pl.col("user").drop_nulls().n_unique().alias("count_distinct_user")
        ).sort("region", "qty", nulls_last=True)
        measured = lazy.select(
            pl.len().alias("rows"),
            pl.all_horizontal([pl.col(c).is_not_null() for c in _WATCHED]).sum().alias("complete"),
            *(pl.col(c).null_count().alias(f"nulls_{c}") for c in _WATCHED),
        )
        grouped, figures = pl.collect_all([result, measured])
        grouped.write_parquet(out / "data.parquet")
        rows = figures["rows"][0]
    return {"rows": rows, "rows_out": grouped.height}


BASELINES = {
    ("ingestion", "pyarrow"): ingestion_pyarrow,
    ("ingestion", "duckdb"): ingestion_duckdb,
    ("ingestion", "polars"): ingestion_polars,
    ("validation", "pyarrow"): validation_pyarrow,
    ("validation", "duckdb"): validation_duckdb,
    ("validation", "polars"): validation_polars,
    ("transformation", "pyarrow"): transformation_pyarrow,
    ("transformation", "duckdb"): transformation_duckdb,
    ("transformation", "polars"): transformation_polars,
    **{(job, engine): fn for job in ("aggregation (primary)", "quality aggregation (secondary)")
       for engine, fn in (("pyarrow", aggregation_pyarrow), ("duckdb", aggregation_duckdb), ("polars", aggregation_polars))},
}


# --------------------------------------------------------------------------- driver


def measure(variant: str, job: str, data: Path, scratch: Path) -> Sample:
    out = Path(tempfile.mkdtemp(dir=scratch))
    try:
        figures = run_worker(Path(__file__), [variant, job, str(data), str(out)])
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return Sample(wall=figures.pop("wall"), cpu=figures.pop("cpu"), extra=figures)


MIB = 1 << 20


def profile(job: str, rows: int) -> int:
    """Where the specialist's time goes: a pyinstrument profile of one run (after a
    warm-up), with its wall and CPU seconds and Arrow's peak."""
    import pyarrow as pa
    from pyinstrument import Profiler

    data = data_dir(rows)
    out = Path(tempfile.mkdtemp(prefix="orchestra-profile-"))
    try:
        specialist_run(job, data / "warm", out / "warm")
        profiler = Profiler(interval=0.002)
        wall, cpu = time.perf_counter(), time.process_time()
        profiler.start()
        figures = specialist_run(job, data, out / "run")
        profiler.stop()
        print(f"{job} @ {rows:,}: {figures}; wall {time.perf_counter() - wall:.2f} s, CPU {time.process_time() - cpu:.2f} s, "
              f"Arrow peak {pa.default_memory_pool().max_memory() / MIB:.0f} MiB")
        print(profiler.output_text(unicode=False, color=False, show_all=False))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return 0


def compare(job: str, rows: int, variants: list[str], repeat: int, scratch: Path) -> dict[str, list[Sample]]:
    data = data_dir(rows)
    return interleaved(
        {v: (lambda v=v: measure(v, job, data, scratch)) for v in variants},
        repeat,
        progress=f"{job} {rows:,} rows",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--repeat", type=int, default=5, help="rounds at the small size")
    parser.add_argument("--repeat-large", type=int, default=5, help="rounds at the large size")
    parser.add_argument("--jobs", nargs="+", default=list(JOBS))
    parser.add_argument("--profile", metavar="JOB", help="print a pyinstrument profile of the specialist on JOB at the small size")
    parser.add_argument("--worker", nargs=4, metavar=("VARIANT", "JOB", "DATA", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        variant, job, data, out = args.worker
        print(json.dumps(worker(variant, job, Path(data), Path(out))))
        return 0
    if args.profile:
        return profile(args.profile, min(args.sizes))

    started = time.perf_counter()
    small, *larger = sorted(args.sizes)
    scratch = Path(tempfile.mkdtemp(prefix="orchestra-bench-specialists-"))
    speed_rows: list[Row] = []
    memory_rows: list[Row] = []
    notes: list[str] = []
    try:
        for job in args.jobs:
            runs = compare(job, small, ["orchestra", *ENGINES], args.repeat, scratch)
            outputs = {v: median(got, "rows_out") for v, got in runs.items()}
            if len(set(outputs.values())) != 1:
                raise SystemExit(f"{job}: the variants disagree on the rows written: {outputs}")
            fastest = min(ENGINES, key=lambda e: median(runs[e]))
            notes.append(
                f"{job}: engine medians at {small:,} rows: "
                + ", ".join(f"{e} {median(runs[e]):.2f}s" for e in ENGINES)
                + f"; baseline = {fastest}"
            )
            by_size = {small: runs}
            for size in larger:
                by_size[size] = compare(job, size, ["orchestra", fastest, *(["pyarrow"] if fastest != "pyarrow" else [])], args.repeat_large, scratch)
            for size, got in by_size.items():
                ours, base = got["orchestra"], got[fastest]
                rows_in = median(ours, "rows")
                speed_rows.append(
                    Row(
                        name=f"{job} @ {size:,}",
                        value=median(base) / median(ours),
                        target=0.8,
                        better="higher",
                        figures={
                            "engine": fastest,
                            "rows_per_s": rows_in / median(ours),
                            "baseline_rows_per_s": rows_in / median(base),
                            "seconds": median(ours),
                            "baseline_seconds": median(base),
                            "cpu_ratio": median(base, "cpu") / median(ours, "cpu"),
                            "spread": max(spread(ours), spread(base)),
                            "quality": median(ours, "quality"),
                        },
                    )
                )
                arrow_base = got["pyarrow"]
                memory_rows.append(
                    Row(
                        name=f"{job} @ {size:,} Arrow peak vs pyarrow",
                        value=median(ours, "arrow_peak") / max(median(arrow_base, "arrow_peak"), 1),
                        target=1.5,
                        figures={
                            "arrow_peak_mib": median(ours, "arrow_peak") / MIB,
                            "baseline_arrow_peak_mib": median(arrow_base, "arrow_peak") / MIB,
                            "peak_rss_mib": median(ours, "peak_rss") / MIB,
                            "baseline_peak_rss_mib": median(got[fastest], "peak_rss") / MIB,
                        },
                    )
                )
            if larger:
                big = larger[-1]
                rss_big = median(by_size[big]["orchestra"], "peak_rss")
                rss_small = median(by_size[small]["orchestra"], "peak_rss")
                memory_rows.append(
                    Row(name=f"{job} @ {big:,} peak RSS", value=rss_big / MIB, target=1024, unit="MiB")
                )
                memory_rows.append(
                    Row(
                        name=f"{job} peak RSS {big:,} / {small:,}",
                        value=rss_big / rss_small,
                        target=1.25,
                        figures={"small_mib": rss_small / MIB, "large_mib": rss_big / MIB},
                    )
                )
            for table in (speed_rows[-len(by_size):], memory_rows[-(len(by_size) + (2 if larger else 0)):]):
                print_table(Table(title=job, baseline=fastest, rows=table, columns=list(table[0].figures)))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    tables = [
        Table(
            title="Specialists: rows/s against the same job written directly in the fastest engine",
            baseline="the fastest of pyarrow (streamed batches), DuckDB (SQL over the file) and Polars (lazy query) "
            f"at {small:,} rows, per job (column engine); value = specialist rows/s / baseline rows/s",
            rows=speed_rows,
            columns=["engine", "rows_per_s", "baseline_rows_per_s", "seconds", "baseline_seconds", "cpu_ratio", "spread", "quality"],
        ),
        Table(
            title="Specialists: memory",
            baseline="Arrow peak: the pyarrow candidate of the same job (streamed record batches); RSS: absolute, "
            "and the large size over the small size",
            rows=memory_rows,
            columns=["arrow_peak_mib", "baseline_arrow_peak_mib", "peak_rss_mib", "baseline_peak_rss_mib", "small_mib", "large_mib"],
        ),
    ]
    save_section(
        "specialists",
        tables,
        settings={"sizes": args.sizes, "repeat": args.repeat, "repeat_large": args.repeat_large, "batch_rows": BATCH_ROWS},
        seconds=time.perf_counter() - started,
        notes=notes,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
