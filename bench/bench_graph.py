"""Native graph benchmark: what the LangGraph workflow costs on top of the specialists.

For runs of 5 and 50 branches (generated sample batches, all five specialists in turn)
it measures, in the same process on the same data:

* baseline: ``runtime.execute_branch`` called in a plain loop, one branch after another
  (the specialists' own work, through the agent factory, nothing else);
* graph, one branch at a time, in-memory checkpoints: the whole workflow (analysis, Send
  fan-out, sync point, merge, gate, integration) with the concurrency cap forced to 1,
  so the difference to the baseline is the orchestration overhead;
* the same with a SQLite checkpoint file (durable checkpoints after every step and
  every branch);
* graph at the machine's concurrency (the ledger sized to the cores).

Printed as ratios to the baseline and as overhead per branch, for wall time and for the
process's CPU time (all threads; steadier than wall time on a shared machine). Each
figure is the median of ``--repeat`` runs, the variants taking turns; every run gets
fresh output and ledger directories.

Usage: python bench/bench_graph.py [--sizes 5 50] [--repeat 3] [--orders 2000] [--events 4000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airflow_provider_orchestra import runtime
from airflow_provider_orchestra.graph import run_workflow
from airflow_provider_orchestra.sample import generate_sample_data, sample_config


def batch_queue(root: Path, branches: int, orders: int, events: int) -> list[dict[str, Any]]:
    """``branches`` batches cycling over the sample's five routes, each over its own files
    (so incremental ingestion has fresh data for every branch)."""
    templates = sample_config(root, root)["batches"]
    batches = []
    for i in range(branches):
        folder = root / f"b{i:03d}"
        if not folder.exists():
            generate_sample_data(folder, orders=orders, events=events, seed=i)
        template = templates[i % len(templates)]
        batch = {**template, "batch_id": f"{template['batch_id']}_{i:03d}"}
        batch["source"] = {**template["source"], "path": f"b{i:03d}/{template['source']['path']}"}
        batch["aggregation"] = {k: v for k, v in template.get("aggregation", {}).items() if k not in ("sink_table", "sink_conn_id")}
        batches.append(batch)
    return batches


def config_for(root: Path, batches: list[dict], work: Path) -> dict[str, Any]:
    return {
        "workflow_id": "bench_graph",
        "record_batch_rows": 8_192,
        "storage": {"data_roots": [str(root)], "output_root": str(work / "output")},
        "batches": batches,
        # A bench run must never stop early: wait for every branch.
        "sync": {"conditional_timeout_seconds": 3600, "overall_timeout_seconds": 3600},
    }


def capacity(agents: int) -> dict[str, Any]:
    return {"cpu": float(agents), "memory_mb": 4096.0 * agents, "max_agents": agents}


Timing = tuple[float, float]  # (wall seconds, process CPU seconds over all threads)


def _timed(work: Callable[[], None]) -> Timing:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def run_loop(root: Path, batches: list[dict], work: Path) -> Timing:
    config = runtime.load_config(config_for(root, batches, work))
    factory = runtime.open_factory(str(work / "ledger.sqlite"), capacity=capacity(1))
    analysis = runtime.analyze_run(config, runtime.describe_batches(config), factory)
    tasks = runtime.plan_tasks(config, analysis.allocations, run_id="loop")

    def loop() -> None:
        for task in tasks:
            result = runtime.execute_branch(task, factory=factory, holder=f"loop/{task.branch_id}")
            if result.status != "success":
                raise SystemExit(f"baseline branch {task.branch_id} failed: {result.error}")

    return _timed(loop)


def run_graph(root: Path, batches: list[dict], work: Path, *, agents: int, checkpoint: str | None) -> Timing:
    config = config_for(root, batches, work)
    factory = runtime.open_factory(str(work / "ledger.sqlite"), capacity=capacity(agents))
    store = str(work / "checkpoints.sqlite") if checkpoint == "sqlite" else None
    outcome = None

    def graph() -> None:
        nonlocal outcome
        outcome = run_workflow(config, checkpoint=store, factory=factory)

    timing = _timed(graph)
    if outcome.status != "approved" or outcome.report.merge.successful_branches != len(batches):
        raise SystemExit(f"graph run ended {outcome.status}: {outcome.report.merge.failed_branch_ids}")
    return timing


def medians(repeat: int, variants: dict[str, Callable[[Path], Timing]]) -> dict[str, Timing]:
    """Median wall and CPU time of each variant; the variants take turns within each
    repetition so that a noisy neighbour slows them alike."""
    samples: dict[str, list[Timing]] = {name: [] for name in variants}
    for _ in range(repeat):
        for name, measure in variants.items():
            work = Path(tempfile.mkdtemp(prefix="bench-graph-run-"))
            try:
                samples[name].append(measure(work))
            finally:
                shutil.rmtree(work, ignore_errors=True)
    return {
        name: (statistics.median(t[0] for t in got), statistics.median(t[1] for t in got))
        for name, got in samples.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 50])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--orders", type=int, default=2_000, help="orders per generated batch folder")
    parser.add_argument("--events", type=int, default=4_000, help="events per generated batch folder")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1

    root = Path(tempfile.mkdtemp(prefix="bench-graph-data-"))
    try:
        batch_queue(root, max(args.sizes), args.orders, args.events)
        # Warm-up: imports, first DuckDB connection, first LangGraph compile.
        warm = batch_queue(root, 5, args.orders, args.events)
        medians(1, {"loop": lambda w: run_loop(root, warm, w), "graph": lambda w: run_graph(root, warm, w, agents=1, checkpoint=None)})

        print(f"native graph vs specialists called in a loop ({cores} cores, median of {args.repeat}; CPU = all threads)")
        header = (
            f"{'branches':>8} {'variant':<36} {'wall s':>7} {'x loop':>7} {'wall/branch':>12}"
            f" {'cpu s':>7} {'x loop':>7} {'cpu/branch':>11}"
        )
        print(header)
        print("-" * len(header))
        for size in args.sizes:
            batches = batch_queue(root, size, args.orders, args.events)
            baseline = "baseline: execute_branch loop"
            results = medians(
                args.repeat,
                {
                    baseline: lambda w: run_loop(root, batches, w),
                    "graph, 1 at a time, memory ckpt": lambda w: run_graph(root, batches, w, agents=1, checkpoint=None),
                    "graph, 1 at a time, sqlite ckpt": lambda w: run_graph(root, batches, w, agents=1, checkpoint="sqlite"),
                    f"graph, {cores} at a time, memory ckpt": lambda w: run_graph(root, batches, w, agents=cores, checkpoint=None),
                },
            )
            loop_wall, loop_cpu = results[baseline]
            for name, (wall, cpu) in results.items():
                extra_wall = "-" if name == baseline else f"{(wall - loop_wall) / size * 1000:+.1f} ms"
                extra_cpu = "-" if name == baseline else f"{(cpu - loop_cpu) / size * 1000:+.1f} ms"
                print(
                    f"{size:>8} {name:<36} {wall:>7.2f} {wall / loop_wall:>7.2f} {extra_wall:>12}"
                    f" {cpu:>7.2f} {cpu / loop_cpu:>7.2f} {extra_cpu:>11}"
                )
            sys.stdout.flush()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
