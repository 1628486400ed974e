"""DAG parsing: an orchestra DAG against a bare DAG of the same shape, as the DAG processor
parses them, and what the provider imports at parse time.

The DAG processor parses each file in a fresh child of a process that has Airflow loaded,
then serialises every DAG of the file. Each measurement here does the same: a fresh
interpreter imports Airflow's DAG processor (not timed), then times the
``BundleDagBag`` parse of one file plus ``DagSerialization.to_dict`` of its DAGs; the
provider's own imports are part of the timed parse, as in the processor.

Files compared (bare ones generated from the orchestra DAG loaded in this process: same
task ids, same dependencies, same Params, each task a PythonOperator doing nothing):

* ``dags/orchestra_example.py`` against its bare twin (target <= 1.5x);
* a DAG with three ``orchestra_workflow`` groups against its bare twin (reported);
* modules loaded by the parse: none of pyarrow, duckdb, polars, langgraph,
  langchain_core or psycopg may be among them (target 0), also checked with
  ``python -X importtime`` over the provider's DAG-facing modules.

Usage: python bench/bench_parse.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import REPO, Row, Sample, Table, interleaved, median, print_table, run_worker, save_section, spread  # noqa: E402

HEAVY = ("pyarrow", "duckdb", "polars", "langgraph", "langchain_core", "psycopg")
DAG_FACING = (
    "airflow_provider_orchestra.task_groups",
    "airflow_provider_orchestra.operators",
    "airflow_provider_orchestra.sensors",
    "airflow_provider_orchestra.triggers",
    "airflow_provider_orchestra.hooks",
)

THREE_GROUPS = '''"""Three orchestra workflows in one DAG (parse benchmark)."""
from datetime import datetime, timezone

from airflow.sdk import DAG

from airflow_provider_orchestra.sample import sample_config
from airflow_provider_orchestra.task_groups import default_asset, orchestra_workflow, workflow_params

with DAG(
    "orchestra_three_groups",
    schedule=None,
    start_date=datetime(2024, 5, 1, tzinfo=timezone.utc),
    params=workflow_params(sample_config("/data", "/data/out")),
):
    for name in ("orders", "clicks", "inventory"):
        orchestra_workflow(group_id=name, asset=default_asset(f"orchestra_three_groups_{name}"))
'''


# --------------------------------------------------------------------------- worker


def worker(path: str) -> dict[str, Any]:
    import logging

    from airflow.dag_processing.dagbag import BundleDagBag
    from airflow.serialization.serialized_objects import DagSerialization

    logging.disable(logging.WARNING)
    before = set(sys.modules)
    file = Path(path)
    wall, cpu = time.perf_counter(), time.process_time()
    bag = BundleDagBag(dag_folder=str(file), bundle_path=file.parent, bundle_name="bench", load_op_links=False)
    parsed = time.perf_counter() - wall
    serialized = [DagSerialization.to_dict(dag) for dag in bag.dags.values()]
    seconds, cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu
    if bag.import_errors or not serialized:
        raise SystemExit(f"{file.name}: {bag.import_errors}")
    loaded = sorted({m.split(".")[0] for m in set(sys.modules) - before})
    return {
        "wall": seconds,
        "cpu": cpu_seconds,
        "parse": parsed,
        "tasks": sum(len(d.tasks) for d in bag.dags.values()),
        "heavy_loaded": [m for m in loaded if m in HEAVY],
    }


# --------------------------------------------------------------------------- bare twins


def bare_twin(source: Path, target: Path) -> int:
    """Write a DAG with the same task ids, dependencies and Params as ``source``."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(source), load_op_links=False)
    if bag.import_errors:
        raise SystemExit(f"{source}: {bag.import_errors}")
    (dag,) = bag.dags.values()
    params = {
        key: {"default": param.value, "description": param.description, "schema": param.schema}
        for key, param in dag.params.items()
        for param in [dag.params.get_param(key)]
    }
    edges = [(up, t.task_id) for t in dag.tasks for up in sorted(t.upstream_task_ids)]
    body = [
        '"""Bare twin of an orchestra DAG for the parse benchmark (generated)."""',
        "import json",
        "from datetime import datetime, timezone",
        "",
        "from airflow.providers.standard.operators.python import PythonOperator",
        "from airflow.sdk import DAG, Param",
        "",
        f"PARAMS = json.loads({json.dumps(json.dumps(params, default=str))})",
        f"TASKS = {json.dumps([t.task_id for t in dag.tasks])}",
        f"EDGES = {json.dumps(edges)}",
        "",
        "",
        "def nothing():",
        "    return None",
        "",
        "",
        "with DAG(",
        f"    {dag.dag_id + '_bare'!r},",
        "    schedule=None,",
        "    start_date=datetime(2024, 5, 1, tzinfo=timezone.utc),",
        "    params={k: Param(v['default'], description=v['description'], **v['schema']) for k, v in PARAMS.items()},",
        "):",
        "    ops = {t: PythonOperator(task_id=t.replace('.', '__'), python_callable=nothing) for t in TASKS}",
        "    for up, down in EDGES:",
        "        ops[up] >> ops[down]",
        "",
    ]
    target.write_text("\n".join(body), encoding="utf-8")
    return len(dag.tasks)


def importtime_heavy() -> list[str]:
    """Heavy modules ``python -X importtime`` shows for the DAG-facing modules."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "; ".join(f"import {m}" for m in DAG_FACING)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    names = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    return sorted(n for n in names if n.split(".")[0] in HEAVY and "." not in n)


# --------------------------------------------------------------------------- driver


def measure(path: Path) -> Sample:
    figures = run_worker(Path(__file__), [str(path)])
    return Sample(wall=figures.pop("wall"), cpu=figures.pop("cpu"), extra=figures)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--worker", nargs=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0])))
        return 0

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="orchestra-bench-parse-"))
    try:
        files = {
            "orchestra_example": work / "example" / "orchestra_example.py",
            "bare_example": work / "example_bare" / "orchestra_example_bare.py",
            "three_groups": work / "three" / "orchestra_three_groups.py",
            "bare_three_groups": work / "three_bare" / "orchestra_three_groups_bare.py",
        }
        for path in files.values():
            path.parent.mkdir(parents=True)
        shutil.copy(REPO / "dags" / "orchestra_example.py", files["orchestra_example"])
        files["three_groups"].write_text(THREE_GROUPS, encoding="utf-8")
        bare_twin(files["orchestra_example"], files["bare_example"])
        bare_twin(files["three_groups"], files["bare_three_groups"])
        runs = interleaved({name: (lambda p=path: measure(p)) for name, path in files.items()}, args.repeat, progress="parse")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = []
    for subject, bare, target in (("orchestra_example", "bare_example", 1.5), ("three_groups", "bare_three_groups", None)):
        ours, base = runs[subject], runs[bare]
        rows.append(
            Row(
                name=f"{subject} parse+serialise vs bare twin",
                value=median(ours) / median(base),
                target=target,
                figures={
                    "tasks": ours[0].extra["tasks"],
                    "seconds": median(ours),
                    "bare_seconds": median(base),
                    "cpu_ratio": median(ours, "cpu") / median(base, "cpu"),
                    "spread": max(spread(ours), spread(base)),
                },
            )
        )
    loaded = sorted({m for name in ("orchestra_example", "three_groups") for s in runs[name] for m in s.extra["heavy_loaded"]})
    rows.append(Row(name="heavy modules loaded by parsing", value=float(len(loaded)), target=0, unit="modules", note=", ".join(loaded)))
    imported = importtime_heavy()
    rows.append(
        Row(name="heavy modules in -X importtime of DAG-facing modules", value=float(len(imported)), target=0, unit="modules", note=", ".join(imported))
    )
    table = Table(
        title="DAG parsing (DagBag parse + serialisation, fresh process each, Airflow preloaded)",
        baseline="a bare DAG with the same task ids, dependencies and Params (PythonOperators doing nothing)",
        rows=rows,
        columns=["tasks", "seconds", "bare_seconds", "cpu_ratio", "spread"],
        notes=[f"heavy = {', '.join(HEAVY)}; DAG-facing modules = {', '.join(DAG_FACING)}"],
    )
    print_table(table)
    save_section("parse", [table], settings={"repeat": args.repeat}, seconds=time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
