"""The orchestra workflow in real ``dag.test()`` runs: real sample files, the real
specialists, SQLite metadata DB, one subprocess per run.

Every scenario is started when the module's first test asks for it (a few side by side);
each test then checks its own run. The DAGs are in ``dags/orchestra_check.py``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from airflow_provider_orchestra.core.models import SPECIALISTS
from airflow_provider_orchestra.sample import generate_sample_data, sample_config

from airflow_runs import TEST_DAGS, AirflowHome, DagRunResult, run_dag

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

PARALLEL_RUNS = 3
ALPHA, BETA, GAMMA, PRIMARY, SECONDARY = SPECIALISTS
LATER_ROUNDS = ("round_2", "round_3")


def base_conf(home: AirflowHome) -> dict[str, Any]:
    generate_sample_data(home.data, orders=1_500, events=3_000)
    conf = sample_config(home.data, home.output)
    conf["sync"] = {"poke_interval_seconds": 1, "conditional_timeout_seconds": 2, "overall_timeout_seconds": 180}
    return conf


def batch(conf: dict, batch_id: str) -> dict:
    return next(b for b in conf["batches"] if b["batch_id"] == batch_id)


def needs_channel(conf: dict) -> None:
    """Two batches that need an ``orders.parquet`` column the file does not have yet."""
    batch(conf, "orders_transform")["transformation"]["derive"]["is_web"] = "channel = 'web'"
    batch(conf, "revenue_by_region")["aggregation"]["group_by"] = ["region", "channel"]


def write_repaired_orders_with_channel(home: AirflowHome) -> None:
    table = pq.read_table(home.data / "orders.parquet")
    channel = pc.if_else(pc.equal(pc.bit_wise_and(table["order_id"], 1), 0), "web", "store")
    (home.data / "repaired").mkdir()
    pq.write_table(table.append_column("channel", channel), home.data / "repaired" / "orders.parquet")


STRICT_ORDER_RULES = [
    {"column": "status", "allowed": ["completed"]},
    {"column": "quantity", "not_null": True, "max": 2},
]


def validation_only(conf: dict) -> None:
    """One validation batch whose rules most sample orders break (quality about 0.4)."""
    only = copy.deepcopy(batch(conf, "orders_validation"))
    only["validation"]["rules"] = STRICT_ORDER_RULES
    conf["batches"] = [only]
    conf["sync_points"] = {}


def write_repaired_clean_orders_csv(home: AirflowHome) -> None:
    table = pq.read_table(home.data / "orders.parquet")
    keep = pc.and_(pc.equal(table["status"], "completed"), pc.less_equal(table["quantity"], 2))
    keep = pc.and_(keep, pc.is_valid(table["quantity"]))
    (home.data / "repaired").mkdir()
    pacsv.write_csv(table.filter(keep), home.data / "repaired" / "orders.csv")


# --------------------------------------------------------------------------- scenarios


def happy(home: AirflowHome):
    return "orchestra_check", base_conf(home)


def empty_routes(home: AirflowHome):
    """Two specialists get no branch; and one validation branch reads a CSV holding only
    its header (an empty input: its branch ends ``empty``, not perfect)."""
    conf = base_conf(home)
    conf["batches"] = [
        b for b in conf["batches"] if b["batch_id"] not in ("orders_transform", "product_status_summary")
    ]
    header = (home.data / "orders.csv").read_text().splitlines()[0]
    (home.data / "orders_none.csv").write_text(header + "\n")
    no_orders = copy.deepcopy(batch(conf, "orders_validation"))
    no_orders.update(batch_id="orders_none", source={"kind": "csv", "path": "orders_none.csv"})
    conf["batches"].append(no_orders)
    conf["sync_points"] = {}
    return "orchestra_check", conf


def one_branch_fails(home: AirflowHome):
    conf = base_conf(home)
    batch(conf, "orders_transform")["transformation"]["derive"]["is_web"] = "channel = 'web'"
    conf["sync_points"] = {}
    # Past the quorum the sync point still waits (up to the conditional timeout) for the
    # branch that is retrying; it proceeds as soon as that one has failed for good.
    conf["sync"]["conditional_timeout_seconds"] = 150
    return "orchestra_check", conf


def below_quorum(home: AirflowHome):
    conf = base_conf(home)
    needs_channel(conf)
    write_repaired_orders_with_channel(home)
    return "orchestra_check_repair", conf


def quorum_never_holds(home: AirflowHome):
    conf = base_conf(home)
    needs_channel(conf)  # and nobody repairs the file
    conf["iteration_limit"] = 2  # fewer rounds than the DAG lays out
    return "orchestra_check", conf


def needs_revision(home: AirflowHome):
    conf = base_conf(home)
    validation_only(conf)
    write_repaired_clean_orders_csv(home)
    return "orchestra_check_repair", conf


def critical(home: AirflowHome):
    conf = base_conf(home)
    validation_only(conf)
    conf["quality"] = {"approve_quality": 0.8, "critical_quality": 0.5}
    return "orchestra_check", conf


def bad_conf(home: AirflowHome):
    conf = base_conf(home)
    batch(conf, "orders_validation")["source"] = {"kind": "postgres", "conn_id": "warehouse"}
    return "orchestra_check", conf


SCENARIOS: dict[str, Callable[[AirflowHome], tuple[str, dict]]] = {
    f.__name__: f
    for f in (below_quorum, quorum_never_holds, needs_revision, happy, one_branch_fails, critical, empty_routes, bad_conf)
}


@pytest.fixture(scope="module")
def runs(new_home):
    pool = ThreadPoolExecutor(max_workers=PARALLEL_RUNS)
    futures: dict[str, Future[DagRunResult]] = {}
    for name, scenario in SCENARIOS.items():
        home = new_home(name, [TEST_DAGS / "orchestra_check.py"])
        dag_id, conf = scenario(home)
        futures[name] = pool.submit(run_dag, home, dag_id, conf)
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


def finished(runs, name: str) -> DagRunResult:
    result = runs[name].result()
    assert result.result is not None, f"{name}: no result (exit {result.returncode})\n{result.log[-8000:]}"
    return result


def assert_later_rounds_skipped(run: DagRunResult, after_round: int = 1) -> None:
    for (task_id, _), ti in run.tis.items():
        for later in range(after_round + 1, 4):
            if task_id.startswith(f"orchestra.round_{later}."):
                assert ti["state"] == "skipped", (task_id, ti)


# --------------------------------------------------------------------------- tests


def test_happy_path_runs_all_five_specialists_and_emits_the_asset(runs):
    run = finished(runs, "happy")
    assert run.state == "success", run.log[-6000:]
    labels = {}
    for name in SPECIALISTS:
        states = run.states(f"round_1.{name}")
        assert states == {0: "success"}, (name, states)
        labels[name] = run.ti(f"round_1.{name}", 0)["label"]
    assert labels == {
        ALPHA: "clickstream_events",
        BETA: "orders_validation",
        GAMMA: "orders_transform",
        PRIMARY: "revenue_by_region",
        SECONDARY: "product_status_summary",
    }
    integrated = run.xcom("final_integrator")
    assert integrated["status"] == "approved"
    report = run.manifest()
    assert report["status"] == "approved" and report["rounds"] == 1
    assert {b["branch_id"]: b["status"] for b in report["branches"]} == dict.fromkeys(labels.values(), "success")
    assert report["merge"]["success_rate"] == 1.0
    for category in ("ingestion", "validation", "transformation", "aggregation"):
        assert report["merge"]["categories"][category]["status"] == "merged"
    # every branch wrote real output under the run's output root
    for branch in report["branches"]:
        for output in branch["outputs"]:
            assert Path(output["uri"].removeprefix("file://")).exists(), output
    [event] = run.result["asset_events"]
    assert event["uri"] == "x-orchestra://integrated/orchestra_check/orchestra"
    assert event["extra"]["status"] == "approved"
    assert event["extra"]["manifest_uri"] == integrated["manifest_uri"]
    # XCom stays small: descriptors, not rows
    plan = run.xcom("round_1.parallel_coordinator")
    assert set(plan["branches"]) == set(labels.values()) and plan["round"] == 1
    assert run.ti("round_1.stop_workflow")["state"] == "skipped"
    assert_later_rounds_skipped(run)


def test_an_empty_specialist_list_is_skipped_and_an_empty_input_is_named_not_merged(runs):
    run = finished(runs, "empty_routes")
    assert run.state == "success", run.log[-6000:]
    assert run.states(f"round_1.{GAMMA}") == {-1: "skipped"}
    assert run.states(f"round_1.{SECONDARY}") == {-1: "skipped"}
    for name in (ALPHA, PRIMARY):
        assert run.states(f"round_1.{name}") == {0: "success"}
    # The empty branch's task ends well (it read its whole input), so it completes the sync point.
    assert run.states(f"round_1.{BETA}") == {0: "success", 1: "success"}
    assert run.xcom(f"round_1.route_{GAMMA}") == []
    report = run.manifest()
    assert report["merge"]["categories"]["transformation"]["status"] == "no_transformation_data"
    assert report["merge"]["allocated_branches"] == 4
    assert report["merge"]["empty_branch_ids"] == ["orders_none"]
    assert report["merge"]["successful_branches"] == 3 and report["merge"]["success_rate"] == 0.75
    assert report["merge"]["categories"]["validation"]["source_attribution"].keys() == {"orders_validation"}
    empty = next(b for b in report["branches"] if b["branch_id"] == "orders_none")
    assert (empty["status"], empty["metrics"]["rows_in"], empty["metrics"]["quality"]) == ("empty", 0, 0.0)
    assert report["status"] == "approved"


def test_a_branch_failing_after_its_retries_leaves_the_run_successful_and_named(runs):
    run = finished(runs, "one_branch_fails")
    assert run.state == "success", run.log[-6000:]
    gamma = run.ti(f"round_1.{GAMMA}", 0)
    assert gamma["state"] == "failed"
    assert gamma["try_number"] == 4  # the first try and three retries (the spec's retry_attempts)
    sync = run.xcom("round_1.sync_point_manager")
    assert sync["next_action"] == "conditional_proceed" and sync["progress"] == pytest.approx(0.8)
    assert sync["failed_branches"] == ["orders_transform"]
    report = run.manifest()
    assert report["status"] == "approved"
    assert report["merge"]["failed_branch_ids"] == ["orders_transform"]
    failed = next(b for b in report["branches"] if b["branch_id"] == "orders_transform")
    assert failed["status"] == "failed" and "channel" in failed["error"]
    assert run.xcom("final_integrator")["summary"]["failed_branches"] == ["orders_transform"]
    assert run.ti("round_1.branches_done")["state"] == "success"
    assert_later_rounds_skipped(run)


def test_below_quorum_the_next_round_recovers_the_unfinished_branches(runs):
    run = finished(runs, "below_quorum")
    assert run.state == "success", run.log[-6000:]
    assert run.ti("round_1.sync_point_manager")["state"] == "failed"
    assert run.ti("round_1.timeout_recovery")["state"] == "success"
    assert run.ti("round_1.branch_merger")["state"] == "skipped"  # not upstream_failed: it never reaches the integrator
    assert run.ti("round_1.quality_validator")["state"] == "skipped"
    replanned = run.xcom("round_2.load_balancer")
    assert sorted(a["branch_id"] for a in replanned) == ["orders_transform", "revenue_by_region"]
    assert {a["strategy"] for a in replanned} == {"fallback"} and {a["round"] for a in replanned} == {2}
    assert run.states(f"round_2.{GAMMA}") == {0: "success"}
    assert run.states(f"round_2.{PRIMARY}") == {0: "success"}
    assert run.states(f"round_2.{ALPHA}") == {-1: "skipped"}  # did well in round 1: not run again
    # round 2's sync point counts the run's branches: round 1's successes stand as done
    plan = run.xcom("round_2.parallel_coordinator")
    assert plan["branches"]["clickstream_events"] == [f"orchestra.round_1.{ALPHA}", 0]
    assert plan["branches"]["orders_transform"] == [f"orchestra.round_2.{GAMMA}", 0]
    assert run.xcom("round_2.sync_point_manager")["progress"] == 1.0
    report = run.manifest()
    assert report["status"] == "approved" and report["rounds"] == 2
    assert report["merge"]["successful_branches"] == 5 and report["merge"]["failed_branch_ids"] == []
    assert run.ti("final_integrator")["state"] == "success"
    assert_later_rounds_skipped(run, after_round=2)


def test_without_quorum_in_the_last_allowed_round_the_run_merges_and_stops(runs):
    run = finished(runs, "quorum_never_holds")
    assert run.state == "failed"
    for r in (1, 2):
        assert run.ti(f"round_{r}.sync_point_manager")["state"] == "failed"
        assert run.ti(f"round_{r}.timeout_recovery")["state"] == "success"
    assert run.ti("round_1.branch_merger")["state"] == "skipped"
    assert run.ti("round_2.branch_merger")["state"] == "success"  # the last allowed round merges what finished
    gate = run.xcom("round_2.quality_validator", key="gate_result")
    assert gate["decision"] == "needs_revision" and gate["final"]
    assert run.ti("round_2.stop_workflow")["state"] == "failed"
    assert "stopped in round 2: revision_limit_reached" in run.log
    assert run.ti("round_3.load_balancer")["state"] == "skipped"
    assert run.ti("final_integrator")["state"] == "skipped"
    [manifest] = list(run.home.output.glob("orchestra_sample/*/integrated.json"))
    report = manifest.read_text()
    assert '"status": "revision_limit_reached"' in report
    assert '"orders_transform"' in report and '"revenue_by_region"' in report
    assert_later_rounds_skipped(run, after_round=2)


def test_needs_revision_runs_a_second_round(runs):
    run = finished(runs, "needs_revision")
    assert run.state == "success", run.log[-6000:]
    first = run.xcom("round_1.quality_validator", key="gate_result")
    assert first["decision"] == "needs_revision" and first["follow"] == "orchestra.round_2.load_balancer"
    assert run.ti("round_1.approved")["state"] == "skipped"
    assert run.ti("round_1.stop_workflow")["state"] == "skipped"
    assert [a["branch_id"] for a in run.xcom("round_2.load_balancer")] == ["orders_validation"]
    second = run.xcom("round_2.quality_validator", key="gate_result")
    assert second["decision"] == "approved"
    report = run.manifest()
    assert report["rounds"] == 2 and report["merge"]["overall_quality"] > 0.8
    assert_later_rounds_skipped(run, after_round=2)


def test_critical_failure_stops_the_run_with_the_reason(runs):
    run = finished(runs, "critical")
    assert run.state == "failed"
    gate = run.xcom("round_1.quality_validator", key="gate_result")
    assert gate["decision"] == "critical_failure" and gate["follow"] == "orchestra.round_1.stop_workflow"
    assert run.ti("round_1.stop_workflow")["state"] == "failed"
    assert "stopped in round 1: critical_failure" in run.log
    assert run.ti("final_integrator")["state"] == "skipped"
    assert run.result["asset_events"] == []
    # the report of the stopped run is written all the same
    [manifest] = list(run.home.output.glob("orchestra_sample/*/integrated.json"))
    assert '"status": "critical_failure"' in manifest.read_text()
    assert_later_rounds_skipped(run)


def test_a_bad_conf_fails_the_first_task_naming_the_field(runs):
    run = finished(runs, "bad_conf")
    assert run.state == "failed"
    assert run.ti("data_batch_analyzer")["state"] == "failed"
    assert "batches.1.source" in run.log and "needs both 'table' and 'conn_id'" in run.log
    others = {t: ti["state"] for (t, _), ti in run.tis.items() if t != "orchestra.data_batch_analyzer"}
    assert set(others.values()) == {"upstream_failed"}, others
    assert not run.home.output.exists() or not any(run.home.output.rglob("*.parquet"))
