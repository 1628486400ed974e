"""OpenLineage from real ``dag.test()`` runs of the orchestra workflow.

Two branches: ``orders_validation`` reads ``orders.csv`` and writes Parquet;
``revenue_by_region`` reads ``orders.parquet`` and replaces the Postgres
table ``public.revenue_by_region`` behind the Airflow connection ``warehouse`` with its
groups (and its Parquet dataset).

- With OpenLineage's file transport configured (``AIRFLOW__OPENLINEAGE__TRANSPORT``), the
  COMPLETE event of each specialist names its source and outputs as datasets (files:
  namespace ``file`` + path; the table: ``postgres://host:port`` + ``db.schema.table``)
  with schema, row-count and quality facets, and the final integrator's names the manifest.
- The same run in a process where every OpenLineage module is blocked (a meta-path finder
  refuses them, as if the extra were not installed): the run succeeds with the same
  outputs, and no module of this package tried to import OpenLineage.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from airflow_provider_orchestra.sample import generate_sample_data, sample_config

from airflow_runs import TEST_DAGS, AirflowHome, DagRunResult, run_dag

pytestmark = [pytest.mark.airflow, pytest.mark.postgres, pytest.mark.slow]

BLOCKER = Path(__file__).with_name("without_openlineage.py")
VALIDATION = "orders_validation"
AGGREGATION = "revenue_by_region"


def lineage_conf(home: AirflowHome) -> dict[str, Any]:
    generate_sample_data(home.data, orders=1_500, events=10)
    conf = sample_config(home.data, home.output, postgres_conn_id="warehouse")
    conf["batches"] = [b for b in conf["batches"] if b["batch_id"] in (VALIDATION, AGGREGATION)]
    aggregation = conf["batches"][1]
    aggregation["write_mode"] = "replace"  # upsert by region would refuse the sample's null region
    conf["sync_points"] = {}
    conf["sync"] = {"poke_interval_seconds": 1, "conditional_timeout_seconds": 2, "overall_timeout_seconds": 180}
    return conf


@pytest.fixture(scope="module")
def runs(new_home, module_databases):
    """The run with the file transport and the run without OpenLineage, side by side,
    each loading into a database of its own."""
    databases = [module_databases(), module_databases()]
    homes = [new_home("lineage", [TEST_DAGS / "orchestra_check.py"]), new_home("no-lineage", [TEST_DAGS / "orchestra_check.py"])]
    events = homes[0].path / "openlineage.jsonl"
    transport = json.dumps({"type": "file", "log_file_path": str(events), "append": True})
    with ThreadPoolExecutor(max_workers=2) as pool:
        with_lineage = pool.submit(
            run_dag, homes[0], "orchestra_check", lineage_conf(homes[0]),
            env={"AIRFLOW__OPENLINEAGE__TRANSPORT": transport, "AIRFLOW_CONN_WAREHOUSE": databases[0]},
        )
        without = pool.submit(
            run_dag, homes[1], "orchestra_check", lineage_conf(homes[1]),
            env={"AIRFLOW_CONN_WAREHOUSE": databases[1]}, python_args=(str(BLOCKER),),
        )
        yield {"with": with_lineage.result(), "without": without.result(), "events": events, "databases": databases}


def finished(run: DagRunResult) -> DagRunResult:
    assert run.result is not None, f"no result (exit {run.returncode})\n{run.log[-8000:]}"
    assert run.state == "success", run.log[-8000:]
    return run


def complete_events(path: Path) -> dict[str, dict[str, Any]]:
    """The COMPLETE event of each task (job name ``<dag_id>.<task_id>``)."""
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {e["job"]["name"]: e for e in events if e["eventType"] == "COMPLETE"}


def names(datasets: list[dict]) -> set[tuple[str, str]]:
    return {(d["namespace"], d["name"]) for d in datasets}


def branch_outputs(run: DagRunResult, branch: str) -> list[dict]:
    return next(b for b in run.manifest()["branches"] if b["branch_id"] == branch)["outputs"]


def test_specialists_and_integrator_report_their_datasets(runs, postgres_server_url: str):
    run = finished(runs["with"])
    events = complete_events(runs["events"])
    data, output = run.home.data.resolve(), run.home.output.resolve()
    server = urlsplit(postgres_server_url)
    database = runs["databases"][0].rsplit("/", 1)[1]
    table = (f"postgres://{server.hostname}:{server.port or 5432}", f"{database}.public.revenue_by_region")

    # file source -> Parquet output (+ quarantine files of the run)
    validation = events["orchestra_check.orchestra.round_1.data_validation_branch_beta"]
    assert names(validation["inputs"]) == {("file", str(data / "orders.csv"))}
    written = {(o["role"], o["uri"].removeprefix("file://")) for o in branch_outputs(run, VALIDATION)}
    assert ("file", dict((r, p) for r, p in written)["output"]) in names(validation["outputs"])
    assert names(validation["outputs"]) == {("file", path) for _, path in written}
    source = validation["inputs"][0]
    assert [f["name"] for f in source["facets"]["schema"]["fields"]][:2] == ["order_id", "customer_id"]
    rows_in = source["inputFacets"]["inputStatistics"]["rowCount"]
    assert rows_in >= 1_500 and source["inputFacets"]["dataQualityMetrics"]["rowCount"] == rows_in
    assertions = {a["assertion"]: a for a in source["facets"]["dataQualityAssertions"]["assertions"]}
    assert assertions["quality_threshold"]["success"] is True and float(assertions["quality_threshold"]["actual"]) > 0.8
    assert assertions["rows_rejected"]["success"] is False  # the sample's bad rows were quarantined
    main = next(o for o in validation["outputs"] if o["name"].endswith("/data"))
    assert main["outputFacets"]["outputStatistics"]["rowCount"] == next(
        o["rows"] for o in branch_outputs(run, VALIDATION) if o["role"] == "output"
    )
    assert "order_id" in [f["name"] for f in main["facets"]["schema"]["fields"]]

    # Parquet source -> replaced Parquet dataset + Postgres table
    aggregation = events["orchestra_check.orchestra.round_1.data_aggregation_branch_primary"]
    assert names(aggregation["inputs"]) == {("file", str(data / "orders.parquet"))}
    dataset = ("file", str(output / "orchestra_sample" / "_tables" / AGGREGATION))
    assert names(aggregation["outputs"]) == {dataset, table}
    sink = next(o for o in aggregation["outputs"] if o["namespace"].startswith("postgres://"))
    regions = next(o["rows"] for o in branch_outputs(run, AGGREGATION) if o["format"] == "postgres")
    assert sink["outputFacets"]["outputStatistics"]["rowCount"] == regions > 0
    assert [f["name"] for f in sink["facets"]["schema"]["fields"]] == ["region", "revenue", "orders", "avg_unit_price", "customers"]

    # the final integrator: every branch output in, the manifest out
    integrator = events["orchestra_check.orchestra.final_integrator"]
    manifest = Path(run.xcom("final_integrator")["manifest_uri"].removeprefix("file://"))
    assert names(integrator["outputs"]) == {("file", str(manifest))}
    assert names(integrator["inputs"]) == names(validation["outputs"]) | names(aggregation["outputs"])


def test_without_openlineage_nothing_changes_and_nothing_is_imported(runs):
    run = finished(runs["without"])
    blocked = json.loads(next(line for line in run.stdout.splitlines() if line.startswith("BLOCKED "))[len("BLOCKED ") :])
    assert blocked["ours"] == [], blocked  # no module of this package asked for OpenLineage
    assert blocked["loaded"] == []
    assert "openlineage" in blocked["refused"]  # the finder's own check: it was in force
    with_lineage = finished(runs["with"])
    for branch in (VALIDATION, AGGREGATION):
        assert [(o["role"], o["rows"]) for o in branch_outputs(run, branch)] == [
            (o["role"], o["rows"]) for o in branch_outputs(with_lineage, branch)
        ]
    assert run.manifest()["merge"]["overall_quality"] == with_lineage.manifest()["merge"]["overall_quality"]
