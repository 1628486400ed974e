"""The sync point and the quality gate with the real graph: a real straggler (a big CSV
streamed in small record batches) cancelled at quorum, timeout recovery below quorum,
revision rounds and the critical stop."""

from __future__ import annotations

from pathlib import Path

from airflow_provider_orchestra.graph import run_workflow
from graph_test_support import STRAGGLER_ROWS, EventLog, aggregation_batch, validation_batch, workflow_config, write_csv, write_parquet


def _small_files(data_dir: Path, names: list[str]) -> None:
    for i, name in enumerate(names):
        write_csv(data_dir / f"{name}.csv", 2_000, start=10_000 * (i + 1))


def _events_named(report, name: str) -> list[dict]:
    return [e for e in report.timeline if e["event"] == name]


def test_quorum_with_conditional_timeout_goes_on_without_the_straggler(data_roots, data_dir, output_dir, factory):
    _small_files(data_dir, ["small1", "small2", "small3"])
    batches = [validation_batch("straggler", "straggler.csv")] + [
        validation_batch(n, f"{n}.csv") for n in ("small1", "small2", "small3")
    ]
    config = workflow_config(
        data_roots, output_dir, batches, sync={"conditional_timeout_seconds": 0.5, "overall_timeout_seconds": 120}
    )
    events = EventLog()
    outcome = run_workflow(config, factory=factory, on_event=events.append)
    report = outcome.report

    # 3 of 4 is the 75% quorum: the run went on and was approved without the straggler.
    assert outcome.status == "approved" and report.rounds == 1
    assert report.merge.cancelled_branch_ids == ["straggler"]
    assert report.merge.failed_branch_ids == []
    assert report.merge.successful_branches == 3
    straggler = next(b for b in report.branches if b.branch_id == "straggler")
    assert straggler.status == "cancelled"
    assert "conditional_proceed" in straggler.error
    assert straggler.outputs == []
    sync = _events_named(report, "synchronization_checkpoint")[0]
    assert sync["next_action"] == "conditional_proceed"
    assert sync["cancelled_branches"] == ["straggler"]
    assert sync["watcher_action"] == "conditional_proceed"

    # It really was working and really stopped: progress came in, then it ended cancelled
    # long before streaming its whole source, and published nothing.
    progress = events.branch("straggler", "progress")
    assert progress, "the straggler reported no progress"
    assert progress[-1]["rows"] < STRAGGLER_ROWS
    assert events.branch("straggler", "finished")[0]["status"] == "cancelled"
    assert not (output_dir / "graph_test" / outcome.thread_id / "straggler").exists()
    assert list((output_dir / "graph_test" / outcome.thread_id).glob(".straggler.attempt-*")) == []


def test_below_quorum_at_the_overall_timeout_recovers_through_the_load_balancer(
    data_roots, data_dir, output_dir, factory
):
    _small_files(data_dir, ["small1"])
    batches = [validation_batch("straggler", "straggler.csv"), validation_batch("small1", "small1.csv")]
    config = workflow_config(
        data_roots,
        output_dir,
        batches,
        iteration_limit=2,
        sync={"conditional_timeout_seconds": 0.2, "overall_timeout_seconds": 0.8},
    )
    events = EventLog()
    outcome = run_workflow(config, factory=factory, on_event=events.append)
    report = outcome.report

    syncs = _events_named(report, "synchronization_checkpoint")
    assert [s["next_action"] for s in syncs] == ["timeout_recovery", "timeout_recovery"]
    assert all(s["cancelled_branches"] == ["straggler"] for s in syncs)
    balancing = _events_named(report, "load_balancing")
    assert len(balancing) == 1
    assert balancing[0]["reason"] == "timeout_recovery"
    assert balancing[0]["replanned"] == ["straggler"]  # small1's success is kept
    # Round 2 ran only the straggler; in the last round the run merges what it has.
    assert [e["branch_id"] for e in events if e.get("phase") == "started" and e["round"] == 2] == ["straggler"]
    assert report.rounds == 2
    assert outcome.status == "revision_limit_reached"
    assert report.merge.success_rate == 0.5
    assert report.merge.cancelled_branch_ids == ["straggler"]


def test_failed_branches_below_quorum_are_replanned_without_waiting(data_roots, data_dir, output_dir, factory):
    _small_files(data_dir, ["ok1", "ok2", "broken1", "broken2"])
    broken_rules = {"rules": [{"column": "no_such_column", "not_null": True}]}
    batches = [
        validation_batch("ok1", "ok1.csv"),
        validation_batch("ok2", "ok2.csv"),
        {**validation_batch("broken1", "broken1.csv"), "validation": broken_rules},
        {**validation_batch("broken2", "broken2.csv"), "validation": broken_rules},
    ]
    config = workflow_config(
        data_roots, output_dir, batches, iteration_limit=2, sync={"conditional_timeout_seconds": 60, "overall_timeout_seconds": 600}
    )
    outcome = run_workflow(config, factory=factory)
    report = outcome.report
    # Nothing was left running, so the sync point did not wait for its 600 s timeout.
    sync = _events_named(report, "synchronization_checkpoint")[0]
    assert sync["next_action"] == "timeout_recovery" and sync["elapsed_seconds"] < 60
    assert _events_named(report, "load_balancing")[0]["replanned"] == ["broken1", "broken2"]
    assert outcome.status == "revision_limit_reached"
    assert report.merge.failed_branch_ids == ["broken1", "broken2"]
    broken = next(b for b in report.branches if b.branch_id == "broken1")
    assert broken.round == 2 and "no_such_column" in broken.error


def test_needs_revision_reruns_only_weak_branches_then_stops_at_the_limit(data_dir, output_dir, factory):
    write_csv(data_dir / "half_bad.csv", 4_000, bad_share=0.5)
    write_parquet(data_dir / "clean.parquet", 4_000)
    batches = [validation_batch("half_bad", "half_bad.csv"), aggregation_batch("revenue", "clean.parquet")]
    config = workflow_config([data_dir], output_dir, batches, iteration_limit=2)
    events = EventLog()
    outcome = run_workflow(config, factory=factory, on_event=events.append)
    report = outcome.report

    gates = _events_named(report, "quality_gate")
    assert [(g["round"], g["decision"], g["final"]) for g in gates] == [
        (1, "needs_revision", False),
        (2, "needs_revision", True),
    ]
    balancing = _events_named(report, "load_balancing")[0]
    assert balancing["reason"] == "needs_revision" and balancing["replanned"] == ["half_bad"]
    assert [e["branch_id"] for e in events if e.get("phase") == "started" and e["round"] == 2] == ["half_bad"]
    assert outcome.status == report.status == "revision_limit_reached"
    assert report.asset_uri is None  # nothing integrated for a run that was not approved
    weak = next(b for b in report.branches if b.branch_id == "half_bad")
    assert weak.metrics.quality == 0.5 and weak.round == 2


def test_critical_quality_stops_the_run_at_once(data_dir, output_dir, factory):
    write_csv(data_dir / "mostly_bad.csv", 4_000, bad_share=0.9)
    config = workflow_config([data_dir], output_dir, [validation_batch("mostly_bad", "mostly_bad.csv")])
    outcome = run_workflow(config, factory=factory)
    report = outcome.report
    assert outcome.status == report.status == "critical_failure"
    assert report.rounds == 1
    assert _events_named(report, "load_balancing") == []
    gate = _events_named(report, "quality_gate")[0]
    assert gate["decision"] == "critical_failure" and "critical" in gate["reason"]
    assert report.asset_uri is None
    assert not list(output_dir.rglob("integrated.json"))


def test_no_branch_succeeding_is_a_critical_failure(data_dir, output_dir, factory):
    write_csv(data_dir / "a.csv", 100)
    batch = {**validation_batch("a", "a.csv"), "validation": {"rules": [{"column": "missing", "not_null": True}]}}
    outcome = run_workflow(workflow_config([data_dir], output_dir, [batch], iteration_limit=1), factory=factory)
    assert outcome.status == "critical_failure"
    assert outcome.report.merge.failed_branch_ids == ["a"]
    assert "no branch succeeded" in _events_named(outcome.report, "quality_gate")[0]["reason"]
