"""Native runtime overhead: the LangGraph workflow against the same steps called directly.

For runs of N branches (generated batches cycling over the five specialist routes, each
over its own small files, cached under bench/.cache) it measures, in one process, on the
same data:

* baseline: the workflow's steps called in a plain loop - ``runtime.describe_batches``,
  ``analyze_run``, ``plan_tasks``, ``execute_branch`` for every branch one after another,
  ``merge``, ``gate``, ``integrate`` - the same core functions, factory and specialists,
  no graph;
* the graph with an in-memory checkpointer, one branch at a time (ledger room for one
  agent), so the difference is what the graph itself costs (target <= 1.05x at 500);
* at the sizes given to ``--saver-sizes``, the same with a SQLite file and with Postgres
  (when one answers at ORCHESTRA_TEST_POSTGRES_URL or 127.0.0.1:5432): their extra cost
  per branch (slope between the two sizes) and per superstep (the rest, over the
  supersteps the run checkpointed);
* the graph at the machine's concurrency (reported; the scaling curve uses it).

Every figure is the median of the rounds, the variants taking turns within a round.
Also writes bench/.results/_native_curve.json (seconds per N) for bench_scaling.py.

Usage: python bench/bench_graph.py [--sizes 5 50 500 1000] [--repeat 5 5 3 1] [--saver-sizes 5 50]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import CACHE_DIR, SECTIONS_DIR, Row, Sample, Table, interleaved, median, print_table, save_section, spread  # noqa: E402

from airflow_provider_orchestra import runtime  # noqa: E402
from airflow_provider_orchestra.graph import run_workflow  # noqa: E402
from airflow_provider_orchestra.sample import generate_sample_data, sample_config  # noqa: E402

ORDERS_PER_BRANCH = 1_000
EVENTS_PER_BRANCH = 2_000
POSTGRES_URL = os.environ.get("ORCHESTRA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def branch_data(count: int) -> Path:
    """``count`` folders of sample data (one per branch, so incremental ingestion has new
    records in every one), generated once under bench/.cache."""
    root = CACHE_DIR / f"graph-branches-{ORDERS_PER_BRANCH}-{EVENTS_PER_BRANCH}"
    for i in range(count):
        folder = root / f"b{i:04d}"
        if not (folder / ".complete").exists():
            generate_sample_data(folder, orders=ORDERS_PER_BRANCH, events=EVENTS_PER_BRANCH, seed=i)
            (folder / ".complete").touch()
    return root


def batch_queue(root: Path, branches: int) -> list[dict[str, Any]]:
    """``branches`` batches cycling over the sample's five routes, each on its own files."""
    templates = sample_config(root, root)["batches"]
    batches = []
    for i in range(branches):
        template = templates[i % len(templates)]
        batch = {**template, "batch_id": f"{template['batch_id']}_{i:04d}"}
        batch["source"] = {**template["source"], "path": f"b{i:04d}/{template['source']['path']}"}
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


def run_loop(root: Path, batches: list[dict], work: Path) -> Sample:
    """The graph's steps as plain calls, branches one after another."""
    started, cpu = time.perf_counter(), time.process_time()
    config = runtime.load_config(config_for(root, batches, work))
    factory = runtime.open_factory(str(work / "ledger.sqlite"), capacity=capacity(1))
    analysis = runtime.analyze_run(config, runtime.describe_batches(config), factory)
    tasks = runtime.plan_tasks(config, analysis.allocations, run_id="loop")
    results = []
    for task in tasks:
        result = runtime.execute_branch(task, factory=factory, holder=f"loop/{task.branch_id}")
        if result.status != "success":
            raise SystemExit(f"baseline branch {task.branch_id} failed: {result.error}")
        results.append(result)
    merged = runtime.merge([t.branch_id for t in tasks], results, round=1)
    gated = runtime.gate(config, merged, round=1)
    runtime.integrate(config, run_id="loop", mode=analysis.workflow_mode, merge_report=merged, gate_result=gated, results=results)
    return Sample(wall=time.perf_counter() - started, cpu=time.process_time() - cpu)


def run_graph(root: Path, batches: list[dict], work: Path, *, agents: int, checkpoint: str | None) -> Sample:
    config = config_for(root, batches, work)
    started, cpu = time.perf_counter(), time.process_time()
    factory = runtime.open_factory(str(work / "ledger.sqlite"), capacity=capacity(agents))
    store: Any = None
    if checkpoint == "sqlite":
        store = str(work / "checkpoints.sqlite")
    elif checkpoint == "postgres":
        store = POSTGRES_URL
    thread_id = f"bench-{uuid.uuid4().hex[:10]}"
    outcome = run_workflow(config, checkpoint=store, factory=factory, thread_id=thread_id)
    wall, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    if outcome.status != "approved" or outcome.report.merge.successful_branches != len(batches):
        raise SystemExit(f"graph run ended {outcome.status}: {outcome.report.merge.failed_branch_ids}")
    extra: dict[str, Any] = {}
    if checkpoint in ("sqlite", "postgres"):
        extra["checkpoints"] = count_checkpoints(store, thread_id)
    return Sample(wall=wall, cpu=cpu_seconds, extra=extra)


def count_checkpoints(store: str, thread_id: str) -> int:
    """Checkpoints of the workflow thread (one per superstep)."""
    from airflow_provider_orchestra.graph.checkpointing import close_saver, open_checkpointer

    saver = open_checkpointer(store)
    try:
        return sum(1 for _ in saver.list({"configurable": {"thread_id": thread_id}}))
    finally:
        close_saver(saver)


def postgres_answers() -> bool:
    try:
        import psycopg

        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            return True
    except Exception:
        return False


def in_fresh_dir(measure: Callable[[Path], Sample]) -> Callable[[], Sample]:
    def run() -> Sample:
        work = Path(tempfile.mkdtemp(prefix="bench-graph-run-"))
        try:
            return measure(work)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 50, 500, 1000])
    parser.add_argument("--repeat", type=int, nargs="+", default=[5, 5, 3, 1], help="rounds per size (last one repeats)")
    parser.add_argument("--saver-sizes", type=int, nargs=2, default=[5, 50])
    parser.add_argument("--parallel-up-to", type=int, default=50, help="also run the graph at full concurrency up to this size")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    cores = os.cpu_count() or 1
    root = branch_data(max([*args.sizes, *args.saver_sizes]))
    # Warm-up: imports, first DuckDB connection, first graph compile.
    warm = batch_queue(root, 5)
    in_fresh_dir(lambda w: run_loop(root, warm, w))()
    in_fresh_dir(lambda w: run_graph(root, warm, w, agents=1, checkpoint=None))()

    overhead_rows: list[Row] = []
    curve: dict[str, dict[int, float]] = {"native graph": {}, "native loop": {}, f"native graph, {cores} at a time": {}}
    for index, size in enumerate(args.sizes):
        rounds = args.repeat[min(index, len(args.repeat) - 1)]
        batches = batch_queue(root, size)
        variants = {
            "loop": in_fresh_dir(lambda w, b=batches: run_loop(root, b, w)),
            "graph": in_fresh_dir(lambda w, b=batches: run_graph(root, b, w, agents=1, checkpoint=None)),
        }
        if size <= args.parallel_up_to:
            variants["parallel"] = in_fresh_dir(lambda w, b=batches: run_graph(root, b, w, agents=cores, checkpoint=None))
        runs = interleaved(variants, rounds, progress=f"native {size} branches")
        loop, graph = median(runs["loop"]), median(runs["graph"])
        parallel = median(runs["parallel"]) if "parallel" in runs else None
        curve["native loop"][size], curve["native graph"][size] = loop, graph
        if parallel is not None:
            curve[f"native graph, {cores} at a time"][size] = parallel
        overhead_rows.append(
            Row(
                name=f"graph vs loop, {size} branches, in-memory saver",
                value=graph / loop,
                target=1.05 if size == 500 else None,
                figures={
                    "rounds": rounds,
                    "loop_s": loop,
                    "graph_s": graph,
                    "ms_per_branch": (graph - loop) / size * 1000,
                    "cpu_ratio": median(runs["graph"], "cpu") / median(runs["loop"], "cpu"),
                    f"graph_{cores}_at_a_time_s": parallel,
                    "spread": max(spread(runs["loop"]), spread(runs["graph"])),
                },
            )
        )
        print_table(Table(title="native overhead", baseline="loop", rows=overhead_rows[-1:], columns=list(overhead_rows[-1].figures)))

    saver_rows: list[Row] = []
    savers = ["sqlite"] + (["postgres"] if postgres_answers() else [])
    small, large = args.saver_sizes
    extra: dict[tuple[str, int], tuple[float, int]] = {}
    for size in (small, large):
        batches = batch_queue(root, size)
        variants = {"memory": in_fresh_dir(lambda w, b=batches: run_graph(root, b, w, agents=1, checkpoint=None))}
        for saver in savers:
            variants[saver] = in_fresh_dir(lambda w, b=batches, s=saver: run_graph(root, b, w, agents=1, checkpoint=s))
        runs = interleaved(variants, 5, progress=f"savers {size} branches")
        for saver in savers:
            checkpoints = int(statistics.median(s.extra["checkpoints"] for s in runs[saver]))
            extra[(saver, size)] = (median(runs[saver]) - median(runs["memory"]), checkpoints)
    for saver in savers:
        (extra_small, steps_small), (extra_large, _) = extra[(saver, small)], extra[(saver, large)]
        per_branch = (extra_large - extra_small) / (large - small)
        per_step = (extra_small - per_branch * small) / max(steps_small, 1)
        saver_rows.append(
            Row(
                name=f"{saver} saver: extra seconds per branch",
                value=per_branch,
                unit="s",
                figures={f"extra_s_at_{small}": extra_small, f"extra_s_at_{large}": extra_large, "checkpoints": steps_small},
            )
        )
        saver_rows.append(Row(name=f"{saver} saver: extra seconds per superstep", value=per_step, unit="s"))
    tables = [
        Table(
            title="Native runtime: LangGraph graph vs the same steps in a loop (one branch at a time)",
            baseline="runtime.describe/analyze/plan, execute_branch per branch, merge, gate, integrate called directly",
            rows=overhead_rows,
            columns=["rounds", "loop_s", "graph_s", "ms_per_branch", "cpu_ratio", f"graph_{cores}_at_a_time_s", "spread"],
        ),
        Table(
            title="Native runtime: durable checkpoint savers against the in-memory saver",
            baseline=f"the graph with the in-memory saver at {small} and {large} branches (median of 5); "
            "per branch = slope between the sizes, per superstep = the rest at the small size over its checkpoints",
            rows=saver_rows,
            columns=[f"extra_s_at_{small}", f"extra_s_at_{large}", "checkpoints"],
        ),
    ]
    for table in tables:
        print_table(table)
    SECTIONS_DIR.mkdir(parents=True, exist_ok=True)
    (SECTIONS_DIR / "_native_curve.json").write_text(json.dumps(curve, indent=2), encoding="utf-8")
    save_section(
        "native_overhead",
        tables,
        settings={"sizes": args.sizes, "repeat": args.repeat, "rows_per_branch": f"{ORDERS_PER_BRANCH} orders / {EVENTS_PER_BRANCH} events"},
        seconds=time.perf_counter() - started,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
