"""Run ``orchestra_example`` end to end on the embedded default and say where the result is.

    python -m airflow_provider_orchestra.demo            # what ``make demo`` runs
    python -m airflow_provider_orchestra.demo --branches 50

Sets up an Airflow home at ``./.orchestra/airflow`` (SQLite metadata DB, migrated on
first use), copies the example DAGs into its DAGs folder, and runs ``orchestra_example``
with ``dag.test()`` (tasks one at a time in this process; the quorum sensor waits in
reschedule mode there). Sample data and outputs go to ``./.orchestra/data`` and
``./.orchestra/output``. ``--branches N`` runs N branches (the sample's five batches
repeated) instead of five.

Airflow reads its configuration when first imported, so everything Airflow-related is
imported only after the environment is set.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DAG_ID = "orchestra_example"


def find_dags_folder() -> Path:
    """The repository's ``dags/`` (an editable install or the current directory)."""
    candidates = [
        Path(os.environ["ORCHESTRA_DAGS_SOURCE"]) if os.environ.get("ORCHESTRA_DAGS_SOURCE") else None,
        Path(__file__).resolve().parent.parent / "dags",
        Path.cwd() / "dags",
    ]
    for candidate in candidates:
        if candidate is not None and (candidate / f"{DAG_ID}.py").is_file():
            return candidate
    raise SystemExit(
        "cannot find the example DAGs (dags/orchestra_example.py); run from the repository "
        "root or set ORCHESTRA_DAGS_SOURCE"
    )


def prepare_environment(root: Path, *, verbose: bool) -> dict[str, Path]:
    """Environment for an embedded Airflow under ``root``; returns the paths it uses."""
    home = root / "airflow"
    dags = home / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    for source in find_dags_folder().glob("*.py"):
        shutil.copy2(source, dags / source.name)
    for key in [k for k in os.environ if k.startswith("AIRFLOW__")]:
        del os.environ[key]  # an outer Airflow's settings must not leak in
    os.environ.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO" if verbose else "WARNING",
        ORCHESTRA_HOME=str(root),
    )
    return {"home": home, "dags": dags, "db": home / "airflow.db"}


def migrate(db: Path) -> None:
    print(f"Preparing the Airflow metadata database at {db} ...", flush=True)
    proc = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, env=os.environ.copy()
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"airflow db migrate failed (exit {proc.returncode})")


def widened_conf(branches: int) -> dict[str, Any]:
    """The example's default config with its batches repeated up to ``branches``."""
    from airflow_provider_orchestra.sample import sample_config
    from airflow_provider_orchestra.task_groups.examples import example_output_dir, sample_data_dir

    config = sample_config(sample_data_dir(), example_output_dir())
    base = config["batches"]
    batches = []
    for i in range(branches):
        batch = copy.deepcopy(base[i % len(base)])
        batch["batch_id"] = f"{batch['batch_id']}_{i // len(base) + 1}"
        batches.append(batch)
    config["batches"] = batches
    config["sync_points"] = {}
    config["workflow_id"] = f"orchestra_{branches}_branches"
    return config


def run(branches: int | None) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        raise SystemExit(f"the example DAGs do not import: {bag.import_errors}")
    dag = bag.dags[DAG_ID]
    conf = widened_conf(branches) if branches else None
    # While the sync point waits in reschedule mode, dag.test() lists every task it cannot
    # run yet on each pass; that wall of text would bury the task logs.
    logging.getLogger("airflow.sdk.definitions.dag").setLevel(logging.ERROR)
    started = time.monotonic()
    dag_run = dag.test(run_conf=conf)
    seconds = time.monotonic() - started
    return {"dag_run": dag_run, "seconds": seconds, "dag": dag}


def summarize(dag_run, dag) -> dict[str, Any]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from airflow_provider_orchestra.operators.layout import INTEGRATOR

    integrator = next(t.task_id for t in dag.tasks if t.task_id.endswith(INTEGRATOR))
    with create_session() as session:
        tis = (
            session.query(TaskInstance)
            .filter(TaskInstance.run_id == dag_run.run_id, TaskInstance.dag_id == dag.dag_id)
            .all()
        )
        failed = sorted({ti.task_id for ti in tis if ti.state in ("failed", "upstream_failed")})
        row = (
            session.query(XComModel.value)
            .filter(
                XComModel.dag_id == dag.dag_id,
                XComModel.run_id == dag_run.run_id,
                XComModel.task_id == integrator,
                XComModel.key == "return_value",
            )
            .first()
        )
    value = row[0] if row else None
    if isinstance(value, (str, bytes)):
        value = json.loads(value)
    return {"state": str(dag_run.state), "integrated": value, "failed_tasks": failed, "run_id": dag_run.run_id}


def print_merge_report(manifest: Path, run_id: str) -> None:
    """The integrated manifest is the run's FinalReport: show it as the CLI does."""
    from airflow_provider_orchestra.cli import render_report
    from airflow_provider_orchestra.core.models import FinalReport

    if manifest.exists():
        report = FinalReport.model_validate_json(manifest.read_text())
        print(render_report(report, thread_id=f"airflow run {run_id}"))
        print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--root",
        default=os.environ.get("ORCHESTRA_DEMO_ROOT", ".orchestra"),
        help="where the demo keeps everything (default ./.orchestra)",
    )
    parser.add_argument(
        "--branches", type=int, default=None, help="run this many branches instead of the sample's five"
    )
    parser.add_argument("--verbose", action="store_true", help="show Airflow's task logs")
    args = parser.parse_args(argv)
    if args.branches is not None and args.branches < 1:
        parser.error("--branches must be at least 1")

    root = Path(args.root).absolute()
    paths = prepare_environment(root, verbose=args.verbose)
    migrate(paths["db"])
    what = f"{args.branches} branches" if args.branches else "the sample data (5 branches)"
    print(f"Running {DAG_ID} on {what} with dag.test() ...", flush=True)
    result = run(args.branches)
    summary = summarize(result["dag_run"], result["dag"])
    integrated = summary["integrated"] or {}
    print()
    print(f"DAG run {summary['run_id']}: {summary['state']} in {result['seconds']:.1f} s (dag.test)")
    if integrated:
        s = integrated["summary"]
        manifest = integrated["manifest_uri"]
        print_merge_report(Path(manifest.removeprefix("file://")), summary["run_id"])
        print(f"  integrated manifest: {manifest.removeprefix('file://')}")
        print(f"  asset:               {integrated['asset_uri']}")
        print(
            f"  merged quality:      {s['overall_quality']:.3f} over {s['successful_branches']} successful "
            f"branch(es), success rate {s['success_rate']:.2f}, mode {s['mode']}, rounds {s['rounds']}"
        )
        if s["failed_branches"]:
            print(f"  failed branches:     {', '.join(s['failed_branches'])}")
        if s.get("empty_branches"):
            print(f"  empty branches:      {', '.join(s['empty_branches'])} (read no row; not merged)")
    if summary["failed_tasks"]:
        print(f"  failed tasks:        {', '.join(summary['failed_tasks'])}")
    print(f"  Airflow home:        {paths['home']}  (metadata DB {paths['db'].name})")
    print(f"  outputs:             {root / 'output'}")
    print(
        "  browse it in the UI: AIRFLOW_HOME="
        f"{paths['home']} AIRFLOW__CORE__DAGS_FOLDER={paths['dags']} airflow standalone"
    )
    return 0 if summary["state"].endswith("success") else 1


if __name__ == "__main__":
    sys.exit(main())
