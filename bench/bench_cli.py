"""The whole job from the command line: ``orchestra run`` against the same job written as
plain DuckDB statements in one Python process, each timed from outside as a whole process
(interpreter start, imports, work, exit).

The job (three branches over one CSV of about 320,000 retail transactions with mixed
types, nulls, duplicates, out-of-range values and dates, generated once from a fixed seed
and cached under bench/.cache): validation of the transactions (not-null, range and
allowed-value rules and duplicate ids; passing rows and a quarantine with reasons to
Parquet; the data passes the validation agent's 0.95 threshold in one attempt),
revenue by region (high priority) and a category/payment summary (quality-monitored),
each to Parquet. The DuckDB script does the same work: the CSV into a table, the
duplicated ids, the passing and failing rows to Parquet, two GROUP BYs to Parquet.

Also reported: seconds from process start to the first branch starting (what start-up
costs before any work), and the import cost of the CLI's run path.

Usage: python bench/bench_cli.py [--repeat 5] [--rows 320000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import CACHE_DIR, Row, Sample, Table, interleaved, median, print_table, save_section, spread  # noqa: E402

REGIONS = ["north", "south", "east", "west", "central"]
CATEGORIES = ["grocery", "electronics", "clothing", "home", "toys", "beauty", "sports", "books"]
PAYMENTS = ["card", "cash", "mobile", "voucher"]


def dataset(rows: int) -> Path:
    """transactions.csv: ``rows`` rows plus a few duplicated ids, generated once."""
    folder = CACHE_DIR / f"retail-{rows}"
    path = folder / "transactions.csv"
    if path.exists():
        return path
    import random
    from datetime import datetime, timedelta

    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = random.Random(20240501)
    start = datetime(2024, 1, 1)
    columns: dict[str, list[Any]] = {k: [] for k in (
        "transaction_id", "store_id", "region", "product_category", "quantity", "unit_price",
        "discount", "payment_type", "customer_age", "is_member", "transaction_date", "transaction_ts")}
    for i in range(rows):
        moment = start + timedelta(seconds=i * 97 + rng.randrange(90))
        tid = 1_000_000 + i
        if i and rng.random() < 0.002:
            tid = columns["transaction_id"][rng.randrange(i)]
        columns["transaction_id"].append(tid)
        columns["store_id"].append(rng.randint(1, 400))
        columns["region"].append(None if rng.random() < 0.01 else rng.choice(REGIONS))
        columns["product_category"].append(rng.choice(CATEGORIES))
        quantity = max(1, int(rng.expovariate(1 / 2.5)))
        columns["quantity"].append(-quantity if rng.random() < 0.003 else quantity)
        price = round(rng.lognormvariate(3, 0.8), 2)
        columns["unit_price"].append(None if rng.random() < 0.004 else price)
        columns["discount"].append(None if rng.random() < 0.6 else round(rng.choice([0.05, 0.1, 0.15, 0.2, 0.3]), 2))
        columns["payment_type"].append(rng.choice(PAYMENTS))
        columns["customer_age"].append(None if rng.random() < 0.15 else rng.randint(16, 90))
        columns["is_member"].append(rng.random() < 0.35)
        columns["transaction_date"].append(moment.date())
        columns["transaction_ts"].append(moment)
    table = pa.table(columns)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pacsv.write_csv(table, tmp)
    tmp.replace(path)
    return path


def orchestra_config(data: Path, out: Path) -> dict[str, Any]:
    source = {"kind": "csv", "path": data.name}
    return {
        "workflow_id": "retail",
        "storage": {"data_roots": [str(data.parent)], "output_root": str(out)},
        "batches": [
            {
                "batch_id": "transactions_checked",
                "type": "data_ingestion",
                "source_type": "batch",
                "source": source,
                "validation": {
                    "rules": [
                        {"column": "transaction_id", "not_null": True, "unique": True},
                        {"column": "quantity", "min": 1, "max": 100},
                        {"column": "region", "allowed": REGIONS},
                        {"column": "unit_price", "not_null": True},
                    ],
                },
            },
            {
                "batch_id": "revenue_by_region",
                "type": "data_aggregation",
                "priority": "high",
                "source": source,
                "aggregation": {
                    "group_by": ["region"],
                    "metrics": [
                        {"column": "unit_price", "fn": "sum"},
                        {"column": "quantity", "fn": "sum"},
                        {"column": "transaction_id", "fn": "count"},
                    ],
                },
            },
            {
                "batch_id": "category_summary",
                "type": "data_aggregation",
                "priority": "normal",
                "source": source,
                "aggregation": {
                    "group_by": ["product_category", "payment_type"],
                    "metrics": [{"column": "unit_price", "fn": "mean"}, {"column": "store_id", "fn": "count_distinct"}],
                },
            },
        ],
        "sync": {"conditional_timeout_seconds": 3600, "overall_timeout_seconds": 3600},
    }


DUCKDB_SCRIPT = '''
import sys
import duckdb

csv, out = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute(f"CREATE TABLE t AS SELECT * FROM read_csv('{csv}')")
con.execute("CREATE TABLE dup AS SELECT transaction_id FROM t WHERE transaction_id IS NOT NULL GROUP BY 1 HAVING count(*) > 1")
checks = [
    ("transaction_id IS NULL", "transaction_id: null"),
    ("transaction_id IN (SELECT transaction_id FROM dup)", "transaction_id: duplicate key"),
    ("quantity < 1", "quantity: below min 1"),
    ("quantity > 100", "quantity: above max 100"),
    ("region IS NOT NULL AND region NOT IN ('north', 'south', 'east', 'west', 'central')", "region: not an allowed value"),
    ("unit_price IS NULL", "unit_price: null"),
]
failed = " OR ".join(f"coalesce({c}, false)" for c, _ in checks)
reasons = "concat_ws('; ', " + ", ".join(f"CASE WHEN {c} THEN '{r}' END" for c, r in checks) + ")"
con.execute(f"COPY (SELECT * FROM t WHERE NOT ({failed})) TO '{out}/valid.parquet'")
con.execute(f"COPY (SELECT *, {reasons} AS _reasons FROM t WHERE {failed}) TO '{out}/quarantine.parquet'")
con.execute(f"COPY (SELECT region, sum(unit_price) AS sum_unit_price, CAST(sum(quantity) AS BIGINT) AS sum_quantity, count(transaction_id) AS count_transaction_id FROM t GROUP BY region ORDER BY region NULLS LAST) TO '{out}/revenue.parquet'")
con.execute(f"COPY (SELECT product_category, payment_type, avg(unit_price) AS mean_unit_price, count(DISTINCT store_id) AS count_distinct_store_id FROM t GROUP BY ALL ORDER BY ALL NULLS LAST) TO '{out}/summary.parquet'")
'''


def run_orchestra(config: Path, out: Path) -> Sample:
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("ORCHESTRA_LEDGER_URL", None)
    env.pop("ORCHESTRA_CHECKPOINT_URL", None)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("orchestra")), "run", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    first_branch = None
    err_lines = []
    assert proc.stderr is not None
    for line in proc.stderr:
        err_lines.append(line)
        if first_branch is None and "started (" in line:
            first_branch = time.perf_counter() - started
    stdout = proc.stdout.read() if proc.stdout else ""
    proc.wait()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"orchestra run failed ({proc.returncode}):\n{''.join(err_lines)[-3000:]}\n{stdout[-2000:]}")
    return Sample(wall=wall, extra={"first_branch": first_branch or wall})


def run_duckdb(script: Path, csv: Path, out: Path) -> Sample:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, str(script), str(csv), str(out)], check=True)
    return Sample(wall=time.perf_counter() - started, extra={"first_branch": 0.0})


def import_seconds(module: str, repeat: int = 3) -> float:
    """Median wall seconds of ``python -c 'import module'`` minus a bare interpreter's."""
    def once(code: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        return time.perf_counter() - started

    samples = [once(f"import {module}") - once("pass") for _ in range(repeat)]
    return sorted(samples)[len(samples) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rows", type=int, default=320_000)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    csv = dataset(args.rows)
    work = Path(tempfile.mkdtemp(prefix="orchestra-bench-cli-"))
    try:
        import yaml

        config = work / "retail.yaml"
        config.write_text(yaml.safe_dump(orchestra_config(csv, work / "out_orchestra")), encoding="utf-8")
        script = work / "duckdb_job.py"
        script.write_text(DUCKDB_SCRIPT, encoding="utf-8")
        runs = interleaved(
            {
                "orchestra run": lambda: run_orchestra(config, work / "out_orchestra"),
                "duckdb statements": lambda: run_duckdb(script, csv, work / "out_duckdb"),
            },
            args.repeat,
            progress="cli",
        )
        imports = {m: import_seconds(m) for m in ("duckdb", "airflow_provider_orchestra.cli", "langgraph.graph", "airflow_provider_orchestra.graph")}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ours, base = runs["orchestra run"], runs["duckdb statements"]
    rows = [
        Row(
            name=f"orchestra run, 3 branches, {args.rows:,}-row CSV (whole process)",
            value=median(ours) / median(base),
            target=1.5,
            figures={
                "seconds": median(ours),
                "duckdb_seconds": median(base),
                "to_first_branch_s": median(ours, "first_branch"),
                "spread": max(spread(ours), spread(base)),
            },
        )
    ]
    rows += [Row(name=f"import {m}", value=s, unit="s") for m, s in imports.items()]
    table = Table(
        title="CLI end to end",
        baseline="the same job as DuckDB statements in one Python process (whole process, read_csv once into a table)",
        rows=rows,
        columns=["seconds", "duckdb_seconds", "to_first_branch_s", "spread"],
    )
    print_table(table)
    save_section("cli", [table], settings={"repeat": args.repeat, "rows": args.rows, "cores": os.cpu_count()}, seconds=time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
