"""Waiting costs nothing: the quorum sensor on a real LocalExecutor deployment while 50
branches run.

The orchestra DAG of bench_airflow.py with ``--branches`` branches is triggered on the
e2e stack (tests/e2e/deployment.py: api-server, scheduler, dag-processor, triggerer on
Postgres, LocalExecutor with 4 slots). Twice a second until the run ends, the metadata
database is asked for the sensor's state, and the triggerer's process tree for its CPU
seconds. Reported:

* worker slots the sensor held while the branches ran (samples in state ``running``
  between its first deferral and the moment it resumed for good), target 0;
* the triggerer's CPU seconds per minute of waiting (its whole process tree, over the
  time the sensor was deferred);
* the waiting time itself and how many branches ran meanwhile.

Usage: python bench/bench_waiting.py [--branches 50]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests"))
sys.path.insert(0, str(BENCH.parent / "tests" / "e2e"))

from harness import Row, Table, print_table, save_section  # noqa: E402


def cpu_seconds(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--branches", type=int, default=50)
    parser.add_argument("--wait-seconds", type=float, default=3600, help="give up after this long")
    args = parser.parse_args(argv)
    from bench_airflow import write_dags
    from bench_graph import branch_data
    from deployment import StackOptions, drop_databases, start_stack

    started = time.perf_counter()
    postgres = os.environ.get("ORCHESTRA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    work = Path(tempfile.mkdtemp(prefix="bench-waiting-"))
    databases: list[str] = []
    try:
        folder = work / "dags"
        folder.mkdir()
        ids = write_dags(folder, args.branches, branch_data(args.branches), work / "output")
        (folder / f"bench_bare_{args.branches}.py").unlink()
        stack = start_stack(
            postgres,
            work / "stack",
            StackOptions(executor="local", parallelism=4, dags=tuple(folder.glob("*.py")), env=(("AIRFLOW__CORE__MAX_MAP_LENGTH", "4096"),)),
            databases,
        )
        try:
            dag_id = ids["orchestra"]
            stack.wait_for_dag(dag_id, timeout=600)
            run_id = stack.trigger(dag_id)
            samples: list[tuple[float, str | None, float, int]] = []
            deadline = time.monotonic() + args.wait_seconds
            while time.monotonic() < deadline:
                rows = stack.query(
                    "select task_id, map_index, state from task_instance where dag_id = %s and run_id = %s", dag_id, run_id
                )
                sensor = next((s for t, m, s in rows if t.endswith(".sync_point_manager")), None)
                running_branches = sum(1 for t, m, s in rows if m >= 0 and s == "running")
                samples.append((time.monotonic(), sensor, cpu_seconds(stack.process_tree("triggerer")), running_branches))
                state = stack.dag_run(dag_id, run_id)["state"]
                if state in ("success", "failed"):
                    break
                time.sleep(0.5)
            if state != "success":
                raise SystemExit(f"{dag_id} ended {state}\n{stack.log_tails()}")
        finally:
            stack.stop()
    finally:
        drop_databases(postgres, databases)
        shutil.rmtree(work, ignore_errors=True)

    deferred = [i for i, s in enumerate(samples) if s[1] == "deferred"]
    if not deferred:
        raise SystemExit("the sensor was never seen deferred")
    first, last = deferred[0], deferred[-1]
    window = samples[first : last + 1]
    held = sum(1 for s in window if s[1] == "running")
    wait_seconds = samples[last][0] - samples[first][0]
    trigger_cpu = samples[last][2] - samples[first][2]
    rows = [
        Row(
            name=f"worker slots held by the quorum sensor while {args.branches} branches ran",
            value=held * 0.5,
            target=0,
            unit="slot-s",
            figures={"samples": len(window), "deferred_samples": sum(1 for s in window if s[1] == "deferred"), "max_branches_running": max(s[3] for s in window)},
        ),
        Row(
            name="triggerer CPU seconds per minute of waiting",
            value=trigger_cpu / (wait_seconds / 60) if wait_seconds else None,
            unit="cpu-s/min",
            figures={"waiting_s": wait_seconds, "triggerer_cpu_s": trigger_cpu},
        ),
    ]
    table = Table(
        title=f"Waiting: the quorum sensor on LocalExecutor (4 slots) while {args.branches} branches run",
        baseline="sampled twice a second from the metadata database and the triggerer's process tree",
        rows=rows,
        columns=["samples", "deferred_samples", "max_branches_running", "waiting_s", "triggerer_cpu_s"],
    )
    print_table(table)
    save_section("waiting", [table], settings={"branches": args.branches, "slots": 4}, seconds=time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
