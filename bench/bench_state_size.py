"""XCom and graph state stay small: bytes per branch as the data grows.

The five specialist jobs of bench_specialists.py (one branch per route, on the cached
``events`` data) run at each row count:

* natively (``run_workflow`` with an in-memory saver): bytes of each branch's result in
  the final checkpoint (the saver's own serialisation), and of the whole checkpoint per
  branch;
* under Airflow ``dag.test()`` (the same config in ``orchestra_workflow``): bytes of XCom
  per mapped specialist task.

Target: constant in rows and below 8 KiB per branch (data moves by reference).

Usage: python bench/bench_state_size.py [--rows 10000 1000000 10000000] [--airflow-rows ...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests"))

from harness import Row, Table, print_table, save_section  # noqa: E402

TARGET_BYTES = 8192


def config_for(data: Path, out: Path, rows: int) -> dict[str, Any]:
    from bench_specialists import JOBS

    return {
        "workflow_id": f"state_size_{rows}",
        "record_batch_rows": 65_536,
        "storage": {"data_roots": [str(data)], "output_root": str(out)},
        "batches": [dict(spec) for spec in JOBS.values()],
        "sync": {"conditional_timeout_seconds": 7200, "overall_timeout_seconds": 7200},
    }


def native(data: Path, work: Path, rows: int) -> dict[str, float]:
    from langgraph.checkpoint.memory import InMemorySaver

    from airflow_provider_orchestra import runtime
    from airflow_provider_orchestra.graph import run_workflow

    saver = InMemorySaver()
    config = config_for(data, work / "out", rows)
    factory = runtime.open_factory(str(work / "ledger.sqlite"), capacity={"cpu": 2.0, "memory_mb": 8192.0, "max_agents": 2})
    outcome = run_workflow(config, checkpoint=saver, factory=factory, thread_id=f"size-{rows}")
    if outcome.status != "approved":
        raise SystemExit(f"native run at {rows} rows ended {outcome.status}")
    checkpoint = saver.get_tuple({"configurable": {"thread_id": f"size-{rows}"}})
    values = checkpoint.checkpoint["channel_values"]
    results = values["branch_results"]
    per_branch = [len(saver.serde.dumps_typed(r)[1]) for r in results]
    whole = sum(len(saver.serde.dumps_typed(v)[1]) for v in values.values())
    return {"branches": len(results), "result_bytes_max": max(per_branch), "result_bytes_mean": sum(per_branch) / len(per_branch), "checkpoint_bytes_per_branch": whole / len(results)}


def airflow(data: Path, work: Path, rows: int) -> dict[str, float]:
    from airflow_support import migrate_airflow_db
    from bench_airflow import dag_test

    home = work / "home"
    if not (home / "airflow.db").exists():
        migrate_airflow_db(home)
    folder = work / f"dags-{rows}"
    folder.mkdir()
    dag_file = folder / f"state_size_{rows}.py"
    dag_file.write_text(
        "import json\nfrom datetime import datetime, timezone\nfrom airflow.sdk import DAG\n"
        "from airflow_provider_orchestra.task_groups import orchestra_workflow\n"
        f"CONFIG = json.loads({json.dumps(json.dumps(config_for(data, work / 'af-out', rows)))})\n"
        f"with DAG('state_size_{rows}', schedule=None, start_date=datetime(2024, 5, 1, tzinfo=timezone.utc)):\n"
        "    orchestra_workflow(config=CONFIG, iteration_limit=1)\n",
        encoding="utf-8",
    )
    sample = dag_test(home, dag_file)
    return {"xcom_bytes_per_mapped_task": sample.extra["xcom_bytes_per_mapped_task"], "xcom_max_bytes": sample.extra["xcom_max_bytes"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 1_000_000, 10_000_000])
    parser.add_argument("--airflow-rows", type=int, nargs="+", default=None, help="default: --rows")
    args = parser.parse_args(argv)
    from bench_specialists import data_dir

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench-state-size-"))
    rows_out: list[Row] = []
    try:
        for rows in args.rows:
            data = data_dir(rows)
            got = native(data, work / f"native-{rows}", rows)
            rows_out.append(
                Row(
                    name=f"native: result bytes per branch, {rows:,} rows",
                    value=got["result_bytes_max"],
                    target=TARGET_BYTES,
                    unit="B",
                    figures={"mean_bytes": got["result_bytes_mean"], "checkpoint_bytes_per_branch": got["checkpoint_bytes_per_branch"], "branches": got["branches"]},
                )
            )
            print_table(Table(title="state size", baseline="-", rows=rows_out[-1:], columns=list(rows_out[-1].figures)))
        for rows in args.airflow_rows or args.rows:
            got = airflow(data_dir(rows), work, rows)
            rows_out.append(
                Row(
                    name=f"Airflow: XCom bytes per mapped specialist task, {rows:,} rows",
                    value=got["xcom_bytes_per_mapped_task"],
                    target=TARGET_BYTES,
                    unit="B",
                    figures={"max_bytes": got["xcom_max_bytes"]},
                )
            )
            print_table(Table(title="state size", baseline="-", rows=rows_out[-1:], columns=list(rows_out[-1].figures)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    native_rows = [r for r in rows_out if r.name.startswith("native")]
    if len(native_rows) > 1:
        rows_out.append(
            Row(
                name="native: largest / smallest result bytes across row counts",
                value=max(r.value for r in native_rows) / min(r.value for r in native_rows),
                target=1.25,
            )
        )
    xcom_rows = [r for r in rows_out if r.name.startswith("Airflow")]
    if len(xcom_rows) > 1:
        rows_out.append(
            Row(
                name="Airflow: largest / smallest XCom bytes across row counts",
                value=max(r.value for r in xcom_rows) / min(r.value for r in xcom_rows),
                target=1.25,
            )
        )
    table = Table(
        title="XCom and graph state per branch as the data grows (five branches, one per specialist)",
        baseline="target: below 8 KiB per branch and constant in rows (ratio largest/smallest <= 1.25)",
        rows=rows_out,
        columns=["mean_bytes", "checkpoint_bytes_per_branch", "branches", "max_bytes"],
    )
    print_table(table)
    save_section("state_size", [table], settings={"rows": args.rows, "airflow_rows": args.airflow_rows or args.rows}, seconds=time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
