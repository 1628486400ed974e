"""Parity: the native LangGraph graph and the Airflow DAG, given the same input, report
the same merge - weights, quality, attribution and statuses; timings aside - and the same
timeline per branch (the agent factory's events and the branch's end).

One set of sample files feeds every run. Each run has its own output root, so its own
agent-factory ledger and ingestion offsets (both kept under ``<output_root>/_state``),
and starts from nothing: both runtimes read the same records. The Airflow side is the
``orchestra_check`` DAG under ``dag.test()`` in a subprocess (as in the Airflow workflow
tests); the native side is ``run_workflow`` in this process, run while the DAGs run.

Weights depend on each branch's execution time, which no two runs share; the merges are
therefore compared by redoing them with one fixed execution time for every branch, and
each runtime's own merge is checked against ``core.merging.merge_results`` over its own
results (so both went through the one merge).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_orchestra.core.integration import integrated_output_path
from airflow_provider_orchestra.core.models import (
    CATEGORIES,
    SPECIALISTS,
    BranchResult,
    FinalReport,
    WorkflowConfig,
    parse_config,
)
from airflow_provider_orchestra.graph import run_workflow
from airflow_provider_orchestra.runtime import LEDGER_URL_ENV
from airflow_provider_orchestra.sample import generate_sample_data, sample_config

from airflow_runs import TEST_DAGS, DagRunResult, run_dag
from report_parity import (
    FIXED_EXECUTION_SECONDS,
    describe,
    differences,
    merge_view,
    own_merge_differences,
    report_view,
    timing_free_merge,
)

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

DAG_ID = "orchestra_check"
FAILING_BRANCH = "orders_transform"


# --------------------------------------------------------------------------- scenarios


def sample(data: Path, output: Path) -> dict[str, Any]:
    """The bundled sample workflow: five batches, one per specialist route."""
    conf = sample_config(data, output)
    conf["sync"] = {"poke_interval_seconds": 1, "conditional_timeout_seconds": 2, "overall_timeout_seconds": 180}
    return conf


def failing_branch(data: Path, output: Path) -> dict[str, Any]:
    """The transformation derives from a column the file does not have: that branch fails
    in both runtimes (after its retries in Airflow), 4 of 5 succeed, above the quorum.

    One sync point names only the validation batch: the four others form the implicit
    final sync point ``remaining_branches`` (3 of 4 = 0.75 holds the quorum). They are
    waited for in both runtimes, not cancelled for being left out."""
    conf = sample(data, output)
    batch = next(b for b in conf["batches"] if b["batch_id"] == FAILING_BRANCH)
    batch["transformation"]["derive"]["is_web"] = "channel = 'web'"
    conf["sync_points"] = {"fast": ["orders_validation"]}
    # Past the quorum the sync point waits for the retrying branch until it has failed
    # for good (bounded by this timeout), so both runtimes see it fail, not cancelled.
    conf["sync"]["conditional_timeout_seconds"] = 150
    return conf


SCENARIOS: dict[str, Callable[[Path, Path], dict[str, Any]]] = {
    "sample": sample,
    "failing_branch": failing_branch,
}


# --------------------------------------------------------------------------- runs


@dataclass
class Run:
    runtime: str
    conf: dict[str, Any]
    report: FinalReport
    state: str  # native: the outcome status; Airflow: the DAG run state

    @property
    def output_root(self) -> Path:
        return Path(self.conf["storage"]["output_root"])

    @property
    def allocated(self) -> int:
        return len(self.conf["batches"])

    @property
    def allocation_order(self) -> list[str]:
        return [b["batch_id"] for b in self.conf["batches"]]

    @property
    def config(self) -> WorkflowConfig:
        return parse_config(self.conf)


@dataclass
class Pair:
    native: Run
    airflow: Run
    airflow_run: DagRunResult


@pytest.fixture(scope="module")
def sample_data(tmp_path_factory) -> Path:
    """Generated once, read by every run (nothing writes into the data root)."""
    path = tmp_path_factory.mktemp("parity-sample") / "data"
    generate_sample_data(path, orders=1_500, events=3_000)
    return path


def data_fingerprint(data: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(data.iterdir())}


def native_run(conf: dict[str, Any], thread_id: str) -> Run:
    # factory=None: the runtime's default ledger, as the Airflow hook picks it without a
    # connection - <output_root>/_state/ledger.sqlite (no $ORCHESTRA_LEDGER_URL here).
    outcome = run_workflow(copy.deepcopy(conf), thread_id=thread_id)
    assert outcome.finished, f"native run paused or did not finish: {outcome}"
    return Run("native", conf, outcome.report, outcome.status)


def airflow_run(result: DagRunResult, conf: dict[str, Any]) -> Run:
    assert result.result is not None, f"dag.test() reported no result (exit {result.returncode})\n{result.log[-8000:]}"
    return Run("airflow", conf, FinalReport.model_validate(result.manifest()), result.state)


@pytest.fixture(scope="module")
def pairs(new_home, sample_data, tmp_path_factory) -> dict[str, Pair]:
    before = data_fingerprint(sample_data)
    with ThreadPoolExecutor(max_workers=len(SCENARIOS)) as pool:
        submitted = {}
        for name, scenario in SCENARIOS.items():
            home = new_home(f"parity-{name}", [TEST_DAGS / f"{DAG_ID}.py"])
            conf = scenario(sample_data, home.output)
            assert not home.output.exists(), "the Airflow run must start without state"
            submitted[name] = (conf, pool.submit(run_dag, home, DAG_ID, conf))

        natives = {}
        with pytest.MonkeyPatch.context() as env:
            env.delenv(LEDGER_URL_ENV, raising=False)
            for name, scenario in SCENARIOS.items():
                output = tmp_path_factory.mktemp(f"parity-native-{name}") / "output"
                natives[name] = native_run(scenario(sample_data, output), f"parity-{name}")

        pairs = {}
        for name, (conf, future) in submitted.items():
            result = future.result()
            pairs[name] = Pair(natives[name], airflow_run(result, conf), result)
    assert data_fingerprint(sample_data) == before, "a run wrote into the shared data root"
    return pairs


# --------------------------------------------------------------------------- tests


def branch_of(report: FinalReport, branch_id: str) -> BranchResult:
    return next(b for b in report.branches if b.branch_id == branch_id)


@pytest.fixture(params=list(SCENARIOS))
def scenario(request) -> str:
    return request.param


def test_each_runtime_kept_its_own_state_and_wrote_its_manifest(pairs, scenario):
    pair = pairs[scenario]
    assert pair.native.output_root.resolve() != pair.airflow.output_root.resolve()
    for run in (pair.native, pair.airflow):
        state = run.output_root / "_state"
        assert (state / "ledger.sqlite").is_file(), f"{run.runtime}: no ledger of its own under {state}"
        assert (state / "offsets.sqlite").is_file(), f"{run.runtime}: no offsets of its own under {state}"
        manifest = integrated_output_path(run.output_root, run.report.workflow_id, run.report.run_id)
        assert run.report.asset_uri == manifest.resolve().as_uri(), (run.runtime, run.report.asset_uri, manifest)
        assert FinalReport.model_validate_json(manifest.read_text()) == run.report, f"{run.runtime}: manifest != report"


def test_reports_agree_on_status_mode_rounds_branches_and_outputs(pairs, scenario):
    pair = pairs[scenario]
    found = differences(
        report_view(pair.native.report, pair.native.output_root),
        report_view(pair.airflow.report, pair.airflow.output_root),
    )
    assert not found, describe(found, f"{scenario}: native and Airflow reports")


def test_merges_agree_with_one_execution_time_for_every_branch(pairs, scenario):
    """Weights, attribution, category and overall quality, confidence - timings aside."""
    pair = pairs[scenario]
    native = timing_free_merge(pair.native.report, pair.native.allocated)
    airflow = timing_free_merge(pair.airflow.report, pair.airflow.allocated)
    found = differences(
        merge_view(native, pair.native.output_root, pair.native.report.workflow_id),
        merge_view(airflow, pair.airflow.output_root, pair.airflow.report.workflow_id),
        "merge",
    )
    assert not found, describe(found, f"{scenario}: merges redone with {FIXED_EXECUTION_SECONDS} s for every branch")


def test_each_runtime_merged_with_core_merge_results(pairs, scenario):
    pair = pairs[scenario]
    for run in (pair.native, pair.airflow):
        assert run.report.merge.allocated_branches == run.allocated, (run.runtime, run.report.merge.allocated_branches)
        found = own_merge_differences(run.report, run.allocation_order)
        assert not found, describe(found, f"{scenario}, {run.runtime}: reported merge vs core.merging.merge_results")


def test_the_sample_workflow_succeeds_in_both_with_every_route(pairs):
    pair = pairs["sample"]
    assert pair.native.state == "approved", pair.native.report.model_dump_json(indent=1)[:4000]
    assert pair.airflow.state == "success", pair.airflow_run.log[-6000:]
    # What the parity tests compare is a full run, not an empty one.
    for run in (pair.native, pair.airflow):
        report = run.report
        assert report.status == "approved" and report.rounds == 1, run.runtime
        assert sorted(b.specialist for b in report.branches) == sorted(SPECIALISTS), run.runtime
        for branch in report.branches:
            assert branch.status == "success" and branch.outputs and branch.metrics.rows_in > 0, (run.runtime, branch)
            assert all(o.checksum.startswith("sha256:") for o in branch.outputs), (run.runtime, branch.outputs)
        for category in CATEGORIES:
            assert report.merge.categories[category].status == "merged", (run.runtime, category)
        assert report.merge.success_rate == 1.0, run.runtime
        # Both ingested the events from the start of the file: no offsets of the other's.
        clickstream = branch_of(report, "clickstream_events")
        assert clickstream.details["start_position"] is None, (run.runtime, clickstream.details)
        assert clickstream.metrics.rows_in == 3_000, (run.runtime, clickstream.metrics)


def test_a_branch_failing_in_both_runtimes_is_reported_the_same(pairs):
    pair = pairs["failing_branch"]
    assert pair.native.state == "approved", pair.native.report.model_dump_json(indent=1)[:4000]
    assert pair.airflow.state == "success", pair.airflow_run.log[-6000:]
    for run in (pair.native, pair.airflow):
        merge = run.report.merge
        assert merge.failed_branch_ids == [FAILING_BRANCH], (run.runtime, merge.failed_branch_ids)
        assert merge.cancelled_branch_ids == [], (run.runtime, merge.cancelled_branch_ids)
        assert (merge.successful_branches, merge.failed_branches, merge.cancelled_branches) == (4, 1, 0), run.runtime
        assert merge.success_rate == 0.8, (run.runtime, merge.success_rate)
        assert merge.success_rate >= run.config.sync.quorum, run.runtime
        assert merge.categories["transformation"].status == "no_transformation_data", run.runtime
        failed = branch_of(run.report, FAILING_BRANCH)
        assert failed.status == "failed" and "channel" in failed.error and not failed.outputs, (run.runtime, failed)
    # In Airflow the mapped task failed for good (its first try and its retries).
    assert pair.airflow_run.ti("round_1.data_transformation_branch_gamma", 0)["state"] == "failed"


def test_both_runtimes_retry_a_failing_branch_as_often(pairs):
    """Each runtime's own ledger history shows the failing template run once plus its
    retries (Airflow task retries; the native graph's branch node retries as many times)."""
    from airflow_provider_orchestra.factory import AgentFactory
    from airflow_provider_orchestra.runtime import BRANCH_RETRIES

    pair = pairs["failing_branch"]
    runs = {}
    for run in (pair.native, pair.airflow):
        factory = AgentFactory.from_url(str(run.output_root / "_state" / "ledger.sqlite"), template_set=None)
        stats = factory.history.stats("realtime_transformation_specialist")
        runs[run.runtime] = (stats.runs, stats.successes)
    assert runs["native"] == runs["airflow"] == (1 + BRANCH_RETRIES, 0), runs


def branch_timelines(report: FinalReport) -> dict[tuple[str, int], list[str]]:
    """Per branch attempt (branch id, round): the names of its timeline events, in order."""
    found: dict[tuple[str, int], list[str]] = {}
    for entry in report.timeline:
        if "branch_id" in entry:
            found.setdefault((entry["branch_id"], entry["round"]), []).append(entry["event"])
    return found


def test_each_branch_has_the_same_timeline_in_both_runtimes(pairs, scenario):
    """The agent factory's events (specified, allocated, created, released, outcome) and
    the branch's end reach both reports, in the same order per branch."""
    pair = pairs[scenario]
    native, airflow = branch_timelines(pair.native.report), branch_timelines(pair.airflow.report)
    assert native == airflow, describe(differences(native, airflow), f"{scenario}: per-branch timelines")
    assert {branch for branch, _ in native} == {b.branch_id for b in pair.native.report.branches}
    for events in native.values():
        assert events[:3] == ["agent_specified", "resources_allocated", "agent_created"], events
        assert {"branch_finished", "resources_released", "outcome_recorded"} <= set(events), events


def test_batches_no_sync_point_names_are_waited_for_in_both_runtimes(pairs):
    """The failing-branch scenario names one sync point of one batch: the four others are
    synchronised last, in the implicit sync point, and none is cancelled."""
    pair = pairs["failing_branch"]
    for run in (pair.native, pair.airflow):
        checkpoints = [e for e in run.report.timeline if e["event"] == "synchronization_checkpoint"]
        assert checkpoints[-1]["sync_point"] == "remaining_branches", (run.runtime, checkpoints[-1])
        assert run.report.merge.cancelled_branch_ids == [] and len(run.report.branches) == 5, run.runtime
