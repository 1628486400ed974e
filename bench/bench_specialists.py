"""Specialist benchmark: rows per second and peak memory of each of the five specialists
on the same 1,000,000-row data, against a baseline measured in the same run.

The baseline is plain pyarrow streaming the same input file into Parquet, record batch by
record batch (``pyarrow.json.open_json`` for the JSONL input of the ingestion specialist,
``ParquetFile.iter_batches`` for the Parquet input of the others). Every measurement runs
in a fresh subprocess, which reports:

* seconds of the work (imports excluded) and rows per second;
* Arrow's peak allocation (``pyarrow.default_memory_pool().max_memory()``), the memory
  tracemalloc cannot see;
* the growth of the maximum resident set (``resource.getrusage``) over the process right
  after its imports, i.e. what the work itself added (DuckDB's memory included).

Each figure is printed as a ratio against the baseline for the same input. Medians of
``--repeat`` rounds (default 3); each round runs every measurement once, so load from
other processes falls on baselines and specialists alike.

Usage: python bench/bench_specialists.py [--rows N] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BATCH_ROWS = 65_536
SPECIALISTS = {
    "ingestion (alpha)": {
        "batch_id": "clicks",
        "type": "data_ingestion",
        "source_type": "streaming",
        "source": {"kind": "jsonl", "path": "events.jsonl"},
        "ingestion": {"event_time_column": "ts", "late_tolerance_seconds": 3600},
    },
    "validation (beta)": {
        "batch_id": "orders_check",
        "type": "data_ingestion",
        "source_type": "batch",
        "source": {"kind": "parquet", "path": "events.parquet"},
        "validation": {
            "rules": [
                {"column": "id", "not_null": True, "unique": True},
                {"column": "qty", "min": 1, "max": 10},
                {"column": "region", "allowed": ["north", "south", "east", "west", "central"]},
                {"column": "amount", "not_null": True},
            ],
            "anomaly_columns": ["amount"],
        },
    },
    "transformation (gamma)": {
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
INPUT_OF = {name: spec["source"]["kind"] for name, spec in SPECIALISTS.items()}


# --------------------------------------------------------------------------- workers


def _max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def worker(kind: str, target: str, data_dir: Path, out_dir: Path) -> dict:
    """One measured run, after a warm-up run on a 1,000-row copy of the input so lazy
    imports and first-use initialisation count in neither time nor memory."""
    run = baseline_run if kind == "baseline" else specialist_run
    run(target, data_dir / "warm", out_dir / "warm")
    import pyarrow as pa

    rss_ready = _max_rss_bytes()
    start = time.perf_counter()
    figures = run(target, data_dir, out_dir / "measured")
    figures["seconds"] = time.perf_counter() - start
    figures["arrow_peak"] = pa.default_memory_pool().max_memory()
    figures["rss_growth"] = _max_rss_bytes() - rss_ready
    return figures


def baseline_run(target: str, data_dir: Path, out_dir: Path) -> dict:
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    source = data_dir / f"events.{target}"
    if target == "jsonl":
        reader = pajson.open_json(source, read_options=pajson.ReadOptions(block_size=1 << 23))
        batches = iter(reader)
        schema = reader.schema
    else:
        parquet = pq.ParquetFile(source)
        batches = parquet.iter_batches(batch_size=BATCH_ROWS)
        schema = parquet.schema_arrow
    rows = 0
    out_dir.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(out_dir / "copy.parquet", schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
            rows += batch.num_rows
    return {"rows": rows}


def specialist_run(target: str, data_dir: Path, out_dir: Path) -> dict:
    from langgraph.checkpoint.memory import InMemorySaver

    from airflow_provider_orchestra.core.models import BatchSpec, BranchAllocation, BranchTask, StorageConfig
    from airflow_provider_orchestra.core.routing import route
    from airflow_provider_orchestra.specialists.templates import run_specialist_directly

    spec = BatchSpec.model_validate(SPECIALISTS[target])
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
        storage=StorageConfig(data_roots=[str(data_dir)], output_root=str(out_dir)),
    )
    result = run_specialist_directly(task, saver=InMemorySaver())
    if result.status != "success":
        raise SystemExit(f"{target} failed: {result.error}")
    return {"rows": result.metrics.rows_in, "quality": result.metrics.quality, "iterations": result.metrics.iterations}


def measure(kind: str, target: str, data_dir: Path, scratch: Path) -> dict:
    out_dir = Path(tempfile.mkdtemp(dir=scratch))
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", kind, target, str(data_dir), str(out_dir)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(f"worker {kind} {target} failed:\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


# --------------------------------------------------------------------------- data


def generate(data_dir: Path, rows: int) -> None:
    """``events.parquet`` and ``events.jsonl`` with the same rows (DuckDB writes both), and
    a 1,000-row copy of each under ``warm/`` for the warm-up runs."""
    import duckdb

    query = f"""
        SELECT i AS id,
               'u' || (i % 50000) AS user,
               ['north', 'south', 'east', 'west', 'central'][1 + (i % 5)] AS region,
               round(10 + (hash(i) % 10000) / 100.0, 2) AS amount,
               1 + (i % 10) AS qty,
               TIMESTAMP '2024-05-01' + to_seconds(i * 2.5) AS ts
        FROM range({rows}) t(i)
    """
    con = duckdb.connect()
    for target, limit in ((data_dir, rows), (data_dir / "warm", 1_000)):
        target.mkdir(exist_ok=True)
        limited = f"SELECT * FROM ({query}) LIMIT {limit}"
        con.execute(f"COPY ({limited}) TO '{target / 'events.parquet'}' (FORMAT parquet)")
        con.execute(f"COPY ({limited}) TO '{target / 'events.jsonl'}' (FORMAT json)")
    con.close()


# --------------------------------------------------------------------------- report


def median_of(runs: list[dict]) -> dict:
    keys = [k for k in runs[0] if isinstance(runs[0][k], (int, float))]
    return {k: statistics.median(r[k] for r in runs) for k in keys}


def mib(value: float) -> str:
    return f"{value / (1 << 20):8.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--worker", nargs=4, metavar=("KIND", "TARGET", "DATA", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, target, data, out = args.worker
        print(json.dumps(worker(kind, target, Path(data), Path(out))))
        return

    scratch = Path(tempfile.mkdtemp(prefix="orchestra-bench-"))
    try:
        data_dir = scratch / "data"
        data_dir.mkdir()
        generate(data_dir, args.rows)
        sizes = {kind: (data_dir / f"events.{kind}").stat().st_size for kind in ("jsonl", "parquet")}
        print(f"{args.rows:,} rows; events.jsonl {mib(sizes['jsonl']).strip()} MiB, events.parquet "
              f"{mib(sizes['parquet']).strip()} MiB; record batches of {BATCH_ROWS:,} rows; "
              f"median of {args.repeat} runs, each in its own process; cpus {os.cpu_count()}")
        # Rounds interleave every run, so load from other processes on a shared machine
        # falls on baselines and specialists alike.
        runs: dict[tuple[str, str], list[dict]] = {}
        for _ in range(args.repeat):
            for kind, target in [("baseline", "jsonl"), ("baseline", "parquet"), *(("specialist", n) for n in SPECIALISTS)]:
                runs.setdefault((kind, target), []).append(measure(kind, target, data_dir, scratch))
        baselines = {target: median_of(runs[("baseline", target)]) for target in ("jsonl", "parquet")}
        results = {name: median_of(runs[("specialist", name)]) for name in SPECIALISTS}

        header = (
            f"{'run':34} {'rows/s':>11} {'x base':>7} {'arrow MiB':>10} {'x base':>7} "
            f"{'+RSS MiB':>9} {'x base':>7} {'quality':>8}"
        )
        print(header)
        print("-" * len(header))
        for kind, base in baselines.items():
            print(
                f"{'baseline pyarrow ' + kind + ' -> parquet':34} {base['rows'] / base['seconds']:11,.0f} {1.0:7.2f} "
                f"{mib(base['arrow_peak']):>10} {1.0:7.2f} {mib(base['rss_growth']):>9} {1.0:7.2f} {'':>8}"
            )
        for name, r in results.items():
            base = baselines[INPUT_OF[name]]
            rate, base_rate = r["rows"] / r["seconds"], base["rows"] / base["seconds"]
            print(
                f"{name:34} {rate:11,.0f} {rate / base_rate:7.2f} "
                f"{mib(r['arrow_peak']):>10} {r['arrow_peak'] / max(base['arrow_peak'], 1):7.2f} "
                f"{mib(r['rss_growth']):>9} {r['rss_growth'] / max(base['rss_growth'], 1):7.2f} {r['quality']:8.3f}"
            )
        print("x base: rows/s as a fraction of the baseline on the same input (higher is faster); "
              "memory as a multiple of the baseline's (lower is leaner).")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
