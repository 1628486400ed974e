"""The example DAGs: they import cleanly without touching the disk, declare their Params,
and run end to end under ``dag.test()``."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pyarrow.parquet as pq
import pytest

from airflow_runs import REPO_DAGS, run_dag
from airflow_support import airflow_env

EXAMPLES = ("orchestra_example", "orchestra_scheduled", "orchestra_asset_driven")


def test_example_dags_import_without_io_and_declare_params(tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    home = tmp_path / "never-created"
    monkeypatch.setenv("ORCHESTRA_HOME", str(home))
    bag = DagBag(str(REPO_DAGS))
    assert bag.import_errors == {}
    assert set(bag.dags) == set(EXAMPLES)
    assert not home.exists()  # parsing wrote nothing (sample data is made at run time)
    for dag_id, dag in bag.dags.items():
        assert dag.params, dag_id
        assert "orchestra.data_batch_analyzer" in dag.task_ids
        assert "orchestra.final_integrator" in dag.task_ids
        assert dag.doc_md
    assert set(bag.dags["orchestra_scheduled"].params) == {"sync", "quality", "iteration_limit", "record_batch_rows"}
    assert len(bag.dags["orchestra_example"].params["batches"]) == 5
    [upstream] = bag.dags["orchestra_asset_driven"].timetable.asset_condition.objects
    assert upstream.uri == "x-orchestra://integrated/orchestra_example/orchestra"


def test_parsing_the_example_dags_loads_no_data_engine(tmp_path):
    """The DAG processor parses every file in a fresh process: what the provider imports
    there is paid on every parse. Data engines and LangGraph load only when a task runs."""
    code = (
        "import logging, sys\n"
        "logging.disable(logging.WARNING)\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag({str(REPO_DAGS)!r})\n"
        "assert not bag.import_errors and len(bag.dags) == 3, bag.import_errors\n"
        "heavy = ('pyarrow', 'duckdb', 'polars', 'langgraph', 'langchain_core', 'psycopg')\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=airflow_env(tmp_path), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.fixture(scope="module")
def example_runs(new_home):
    files = sorted(REPO_DAGS.glob("*.py"))
    requests = {
        "orchestra_example": {},
        "orchestra_scheduled": {"logical_date": "2024-05-04T00:00:00+00:00"},  # covers May 3rd
        "orchestra_asset_driven": {},
    }
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {
            dag_id: pool.submit(run_dag, new_home(dag_id, files), dag_id, None, req.get("logical_date"))
            for dag_id, req in requests.items()
        }
        yield {dag_id: f.result() for dag_id, f in futures.items()}


@pytest.mark.airflow
@pytest.mark.slow
def test_orchestra_example_runs_on_generated_sample_data(example_runs):
    run = example_runs["orchestra_example"]
    assert run.state == "success", run.log[-6000:]
    assert run.tis[("prepare_sample_data", -1)]["state"] == "success"
    assert (run.home.data / "orders.csv").is_file()
    report = run.manifest()
    assert report["status"] == "approved" and len(report["branches"]) == 5
    [event] = run.result["asset_events"]
    assert event["uri"] == "x-orchestra://integrated/orchestra_example/orchestra"


@pytest.mark.airflow
@pytest.mark.slow
def test_orchestra_scheduled_processes_its_days_slice(example_runs):
    run = example_runs["orchestra_scheduled"]
    assert run.state == "success", run.log[-6000:]
    day_slice = run.home.data / "slices" / "2024-05-03" / "orders.parquet"
    table = pq.read_table(day_slice)
    assert 0 < table.num_rows < pq.read_metadata(run.home.data / "orders.parquet").num_rows
    days = {t.date().isoformat() for t in table["order_ts"].to_pylist()}
    assert days == {"2024-05-03"}
    plan = run.xcom("round_1.parallel_coordinator")
    assert len(plan["branches"]) == 5
    report = run.manifest()
    transformed = next(b for b in report["branches"] if b["branch_id"] == "orders_transform")
    assert transformed["metrics"]["rows_in"] == table.num_rows


@pytest.mark.airflow
@pytest.mark.slow
def test_orchestra_asset_driven_runs_its_clickstream_workflow(example_runs):
    run = example_runs["orchestra_asset_driven"]
    assert run.state == "success", run.log[-6000:]
    report = run.manifest()
    assert report["workflow_id"] == "orchestra_clickstream"
    assert {b["branch_id"] for b in report["branches"]} == {
        "new_events",
        "event_log_validation",
        "events_by_type",
        "activity_per_user",
    }
    [event] = run.result["asset_events"]
    assert event["uri"] == "x-orchestra://integrated/orchestra_asset_driven/orchestra"
