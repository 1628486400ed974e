"""Orchestration overhead in Airflow: the orchestra workflow against a plain Airflow DAG of
the same shape whose mapped tasks call the same specialist work directly.

For N branches (the batches of bench_graph.py: five routes in turn, each on its own small
files) two DAG files are generated:

* ``bench_orchestra_N``: ``orchestra_workflow(config, iteration_limit=1)`` - analyzer,
  coordinator, routing tasks, the five mapped specialists through the agent factory, the
  quorum sensor, merger, quality gate, final integrator;
* ``bench_bare_N``: what a DAG author would write by hand - a coordinator task listing
  one BranchTask per batch (routed by ``core.routing.route``), one task mapped over them
  with ``expand_kwargs`` that calls ``run_specialist_directly``, and a join that merges
  the results with ``core.merging``.

Both are run under ``dag.test()`` (fresh process each; the seconds of ``dag.test()``
itself) and, with ``--scheduler``, on a real deployment with LocalExecutor (the e2e
stack of tests/e2e/deployment.py: api-server, scheduler, dag-processor, triggerer on
Postgres; seconds from the run's start to its end as the metadata database records them).
Reported: the ratio at each N (target <= 1.10x at 500) and the seconds per extra branch
(slope of a least-squares line over N) of each DAG. The dag.test runs also give the XCom
bytes per mapped specialist task. Writes bench/.results/_airflow_curve.json for the
scaling plot.

Usage: python bench/bench_airflow.py [--sizes 5 50 500] [--repeat 5 3 1] [--no-scheduler]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests"))

from harness import SECTIONS_DIR, Row, Sample, Table, interleaved, median, print_table, save_section, spread  # noqa: E402

DAG_TEMPLATE = '''"""{kind} DAG with {n} branches for bench_airflow.py (generated)."""
import json
from datetime import datetime, timezone

from airflow.sdk import DAG, task

CONFIG = json.loads({config!r})

with DAG("bench_{kind}_{n}", schedule=None, start_date=datetime(2024, 5, 1, tzinfo=timezone.utc), catchup=False,
         max_active_tasks=64):
{body}
'''

ORCHESTRA_BODY = '''    from airflow_provider_orchestra.task_groups import orchestra_workflow

    orchestra_workflow(config=CONFIG, iteration_limit=1)
'''

BARE_BODY = '''    @task
    def coordinator() -> list[dict]:
        from airflow_provider_orchestra import runtime
        from airflow_provider_orchestra.core.models import BranchAllocation
        from airflow_provider_orchestra.core.routing import route

        config = runtime.load_config(CONFIG)
        allocations = [
            BranchAllocation(branch_id=b.batch_id, type=b.type, source_type=b.source_type, priority=b.priority,
                             specialist=route(b.type, b.source_type, b.priority))
            for b in config.batches
        ]
        return [{"task": t.model_dump(mode="json")} for t in runtime.plan_tasks(config, allocations, run_id="bare")]

    @task(map_index_template="{{ task['branch_id'] }}")
    def branch(task: dict) -> dict:
        from airflow_provider_orchestra.specialists.templates import run_specialist_directly

        return run_specialist_directly(task).model_dump(mode="json")

    @task
    def join(results: list[dict]) -> dict:
        from airflow_provider_orchestra.core.merging import merge_results
        from airflow_provider_orchestra.core.models import BranchResult

        merged = [BranchResult.model_validate(r) for r in results]
        report = merge_results(merged, allocated=len(merged), round=1)
        if report.successful_branches != len(CONFIG["batches"]):
            raise RuntimeError(f"branches failed: {report.failed_branch_ids}")
        return report.model_dump(mode="json")

    join(branch.expand_kwargs(coordinator()))
'''


def write_dags(folder: Path, n: int, data_root: Path, output_root: Path) -> dict[str, str]:
    from bench_graph import batch_queue

    config = {
        "workflow_id": f"bench_airflow_{n}",
        "record_batch_rows": 8_192,
        "storage": {"data_roots": [str(data_root)], "output_root": str(output_root)},
        "batches": batch_queue(data_root, n),
        "sync": {"conditional_timeout_seconds": 7200, "overall_timeout_seconds": 7200},
    }
    text = json.dumps(config)
    ids = {}
    for kind, body in (("orchestra", ORCHESTRA_BODY), ("bare", BARE_BODY)):
        (folder / f"bench_{kind}_{n}.py").write_text(DAG_TEMPLATE.format(kind=kind, n=n, config=text, body=body), encoding="utf-8")
        ids[kind] = f"bench_{kind}_{n}"
    return ids


# --------------------------------------------------------------------------- dag.test worker


def worker(dag_file: str) -> dict[str, Any]:
    """Run the DAG of ``dag_file`` with dag.test(); report its seconds and XCom bytes."""
    import logging

    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    logging.disable(logging.WARNING)
    bag = DagBag(dag_file)
    if bag.import_errors:
        raise SystemExit(str(bag.import_errors))
    (dag,) = bag.dags.values()
    started, cpu = time.perf_counter(), time.process_time()
    run = dag.test()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    state = str(getattr(run.state, "value", run.state))
    with create_session() as session:
        tis = session.query(TaskInstance).filter(TaskInstance.dag_id == dag.dag_id, TaskInstance.run_id == run.run_id).all()
        mapped = {(ti.task_id, ti.map_index) for ti in tis if ti.map_index >= 0}
        xcoms = session.query(XComModel).filter(XComModel.dag_id == dag.dag_id, XComModel.run_id == run.run_id).all()
        mapped_bytes = [len(json.dumps(x.value) if not isinstance(x.value, (bytes, str)) else x.value) for x in xcoms if (x.task_id, x.map_index) in mapped]
        failed = sorted({ti.task_id for ti in tis if str(getattr(ti.state, "value", ti.state)) == "failed"})
    if state != "success":
        raise SystemExit(f"{dag.dag_id} ended {state}; failed tasks {failed}")
    return {
        "wall": seconds,
        "cpu": cpu_seconds,
        "tasks": len(tis),
        "mapped": len(mapped),
        "xcom_bytes_per_mapped_task": (sum(mapped_bytes) / len(mapped)) if mapped else 0.0,
        "xcom_max_bytes": max(mapped_bytes, default=0),
    }


def dag_test(home: Path, dag_file: Path) -> Sample:
    from airflow_support import airflow_env

    env = airflow_env(home, AIRFLOW__CORE__DAGS_FOLDER=str(dag_file.parent), AIRFLOW__CORE__MAX_MAP_LENGTH="4096")
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", str(dag_file)], env=env, capture_output=True, text=True, cwd=home, timeout=7200
    )
    if proc.returncode != 0:
        raise SystemExit(f"dag.test of {dag_file.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    return Sample(wall=figures.pop("wall"), cpu=figures.pop("cpu"), extra=figures)


# --------------------------------------------------------------------------- LocalExecutor


def scheduler_runs(dag_folders: dict[int, Path], ids: dict[int, dict[str, str]], sizes: list[int], repeat: list[int]) -> dict[int, dict[str, list[Sample]]]:
    """Trigger both DAGs of every size on one LocalExecutor deployment, interleaved; a
    run's seconds are its end_date - start_date in the metadata database."""
    from datetime import datetime

    from deployment import StackOptions, start_stack, drop_databases  # tests/e2e

    postgres = os.environ.get("ORCHESTRA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    home = Path(tempfile.mkdtemp(prefix="bench-airflow-stack-"))
    databases: list[str] = []
    files = tuple(p for n in sizes for p in sorted(dag_folders[n].glob("*.py")))
    options = StackOptions(
        executor="local",
        parallelism=4,
        dags=files,
        env=(("AIRFLOW__CORE__MAX_MAP_LENGTH", "4096"), ("AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL", "3600")),
    )
    stack = start_stack(postgres, home, options, databases)
    try:
        for n in sizes:
            for dag_id in ids[n].values():
                stack.wait_for_dag(dag_id, timeout=600)

        def one(dag_id: str) -> Sample:
            run_id = stack.trigger(dag_id)
            run = stack.wait_for_run(dag_id, run_id, timeout=7200)
            if run["state"] != "success":
                raise SystemExit(f"{dag_id} {run_id} ended {run['state']}\n{stack.log_tails()}")
            began = datetime.fromisoformat(run["start_date"].replace("Z", "+00:00"))
            ended = datetime.fromisoformat(run["end_date"].replace("Z", "+00:00"))
            return Sample(wall=(ended - began).total_seconds())

        out = {}
        for index, n in enumerate(sizes):
            rounds = repeat[min(index, len(repeat) - 1)]
            out[n] = interleaved({kind: (lambda d=dag_id: one(d)) for kind, dag_id in ids[n].items()}, rounds, progress=f"LocalExecutor {n}")
        return out
    finally:
        stack.stop()
        drop_databases(postgres, databases)
        shutil.rmtree(home, ignore_errors=True)


def slope(points: dict[int, float]) -> float:
    xs, ys = list(points), list(points.values())
    if len(xs) < 2:
        return float("nan")
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 50, 500])
    parser.add_argument("--repeat", type=int, nargs="+", default=[5, 3, 1])
    parser.add_argument("--scheduler-sizes", type=int, nargs="+", default=None, help="LocalExecutor sizes (default: --sizes)")
    parser.add_argument("--scheduler-repeat", type=int, nargs="+", default=None, help="LocalExecutor rounds per size (default: --repeat)")
    parser.add_argument("--no-scheduler", action="store_true")
    parser.add_argument("--worker", nargs=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0])))
        return 0

    from airflow_support import migrate_airflow_db
    from bench_graph import branch_data

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench-airflow-"))
    data_root = branch_data(max(args.sizes))
    try:
        home = work / "home"
        migrate_airflow_db(home)
        folders, ids = {}, {}
        for n in sorted(set(args.sizes) | set(args.scheduler_sizes or [])):
            folders[n] = work / f"dags-{n}"
            folders[n].mkdir()
            ids[n] = write_dags(folders[n], n, data_root, work / "output")
        rows: list[Row] = []
        curve: dict[str, dict[int, float]] = {"airflow dag.test orchestra": {}, "airflow dag.test bare": {}}
        xcom_rows: list[Row] = []
        for index, n in enumerate(args.sizes):
            rounds = args.repeat[min(index, len(args.repeat) - 1)]
            runs = interleaved(
                {kind: (lambda k=kind, n=n: dag_test(home, folders[n] / f"bench_{k}_{n}.py")) for kind in ("orchestra", "bare")},
                rounds,
                progress=f"dag.test {n}",
            )
            ours, bare = runs["orchestra"], runs["bare"]
            curve["airflow dag.test orchestra"][n], curve["airflow dag.test bare"][n] = median(ours), median(bare)
            rows.append(
                Row(
                    name=f"dag.test, {n} branches",
                    value=median(ours) / median(bare),
                    target=1.10 if n == 500 else None,
                    figures={
                        "rounds": rounds,
                        "orchestra_s": median(ours),
                        "bare_s": median(bare),
                        "tasks": ours[0].extra["tasks"],
                        "bare_tasks": bare[0].extra["tasks"],
                        "cpu_ratio": median(ours, "cpu") / median(bare, "cpu"),
                        "spread": max(spread(ours), spread(bare)),
                    },
                )
            )
            xcom_rows.append(
                Row(
                    name=f"XCom bytes per mapped specialist task, {n} branches",
                    value=median(ours, "xcom_bytes_per_mapped_task"),
                    target=8192,
                    unit="B",
                    figures={"max_bytes": max(s.extra["xcom_max_bytes"] for s in ours), "bare_bytes": median(bare, "xcom_bytes_per_mapped_task")},
                )
            )
            print_table(Table(title="dag.test", baseline="bare", rows=rows[-1:], columns=list(rows[-1].figures)))
        slope_rows = [
            Row(name=f"dag.test seconds per branch, {kind}", value=slope(curve[f"airflow dag.test {kind}"]), unit="s")
            for kind in ("orchestra", "bare")
        ]
        if not args.no_scheduler:
            sizes = args.scheduler_sizes or args.sizes
            local = scheduler_runs(folders, ids, sizes, args.scheduler_repeat or args.repeat)
            curve["airflow LocalExecutor orchestra"] = {n: median(r["orchestra"]) for n, r in local.items()}
            curve["airflow LocalExecutor bare"] = {n: median(r["bare"]) for n, r in local.items()}
            for index, n in enumerate(sizes):
                ours, bare = local[n]["orchestra"], local[n]["bare"]
                rows.append(
                    Row(
                        name=f"LocalExecutor, {n} branches",
                        value=median(ours) / median(bare),
                        target=1.10 if n == 500 else None,
                        figures={
                            "rounds": len(ours),
                            "orchestra_s": median(ours),
                            "bare_s": median(bare),
                            "spread": max(spread(ours), spread(bare)),
                        },
                    )
                )
            slope_rows += [
                Row(name=f"LocalExecutor seconds per branch, {kind}", value=slope(curve[f"airflow LocalExecutor {kind}"]), unit="s")
                for kind in ("orchestra", "bare")
            ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    tables = [
        Table(
            title="Airflow: orchestra workflow vs a bare DAG of the same shape (coordinator -> expand_kwargs -> join)",
            baseline="a hand-written DAG whose mapped task calls run_specialist_directly on the same BranchTasks; "
            "orchestra with iteration_limit=1 (one round laid out)",
            rows=rows,
            columns=["rounds", "orchestra_s", "bare_s", "tasks", "bare_tasks", "cpu_ratio", "spread"],
        ),
        Table(title="Airflow: seconds per extra branch (least-squares slope over N)", baseline="-", rows=slope_rows),
        Table(
            title="Airflow: XCom per mapped specialist task (dag.test)",
            baseline="target: < 8 KiB, constant in N",
            rows=xcom_rows,
            columns=["max_bytes", "bare_bytes"],
        ),
    ]
    for table in tables:
        print_table(table)
    SECTIONS_DIR.mkdir(parents=True, exist_ok=True)
    (SECTIONS_DIR / "_airflow_curve.json").write_text(json.dumps(curve, indent=2), encoding="utf-8")
    save_section(
        "airflow_overhead",
        tables,
        settings={"sizes": args.sizes, "repeat": args.repeat, "scheduler": not args.no_scheduler, "scheduler_sizes": args.scheduler_sizes or args.sizes},
        seconds=time.perf_counter() - started,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
