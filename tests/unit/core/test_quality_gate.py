import pytest

from airflow_provider_orchestra.core.balancing import replan
from airflow_provider_orchestra.core.models import (
    BranchAllocation,
    BranchMetrics,
    BranchResult,
    MergeReport,
    QualityGatePolicy,
    parse_config,
)
from airflow_provider_orchestra.core.quality_gate import decide, final_status

POLICY = QualityGatePolicy()


def report(quality, rate, successful=3):
    return MergeReport(
        categories={}, successful_branches=successful, failed_branches=0, allocated_branches=4,
        overall_quality=quality, integration_confidence=quality * rate, success_rate=rate,
    )


@pytest.mark.parametrize(
    ("quality", "rate", "decision"),
    [
        (0.8, 0.75, "approved"),
        (0.7999, 0.75, "needs_revision"),
        (0.8, 0.7499, "needs_revision"),
        (0.3, 1.0, "needs_revision"),
        (0.2999, 1.0, "critical_failure"),
    ],
)
def test_gate_thresholds(quality, rate, decision):
    assert decide(report(quality, rate), POLICY, round=1, iteration_limit=3).decision == decision


def test_no_success_is_critical():
    g = decide(report(0.9, 0, successful=0), POLICY, 1, 3)
    assert g.decision == "critical_failure" and "no branch succeeded" in g.reason


def test_revision_is_bounded_by_the_iteration_limit():
    assert not decide(report(0.5, 1), POLICY, round=2, iteration_limit=3).final
    last = decide(report(0.5, 1), POLICY, round=3, iteration_limit=3)
    assert last.final and last.decision == "needs_revision"
    assert final_status(last) == "revision_limit_reached"
    assert "revision limit 3 reached" in last.reason


def test_thresholds_are_configurable_and_validated():
    strict = QualityGatePolicy(approve_quality=0.95, approve_success_rate=1.0, critical_quality=0.5)
    assert decide(report(0.9, 1), strict, 1, 3).decision == "needs_revision"
    with pytest.raises(ValueError):
        QualityGatePolicy(approve_quality=0.5, critical_quality=0.6)
    with pytest.raises(ValueError):
        QualityGatePolicy(approve_quality=1.5)


def alloc(branch_id):
    return BranchAllocation(
        branch_id=branch_id, type="data_ingestion", source_type="batch", priority="normal",
        specialist="data_validation_branch_beta",
    )


def res(branch_id, status="success", quality=0.9):
    return BranchResult(
        branch_id=branch_id, specialist="data_validation_branch_beta", category="validation",
        status=status, metrics=BranchMetrics(quality=quality, execution_seconds=1.0),
    )


def test_load_balancer_replans_missing_failed_and_weak_branches():
    allocs = [alloc(x) for x in "abcd"]
    results = [res("a"), res("b", status="failed"), res("c", quality=0.5)]
    timeout_plan = replan(allocs, results, next_round=2)
    assert [a.branch_id for a in timeout_plan] == ["b", "d"]
    assert {a.round for a in timeout_plan} == {2} and {a.strategy for a in timeout_plan} == {"fallback"}
    revision_plan = replan(allocs, results, next_round=2, quality_threshold=0.8)
    assert [a.branch_id for a in revision_plan] == ["b", "c", "d"]
