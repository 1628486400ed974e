import pytest

from airflow_provider_orchestra.core.merging import branch_weight, latest_results, merge_results, time_factor
from airflow_provider_orchestra.core.flow import observed_outcomes
from airflow_provider_orchestra.core.models import BranchMetrics, BranchResult, OutputDescriptor, QualityGatePolicy
from airflow_provider_orchestra.core.quality_gate import decide

SPECIALIST = {
    "ingestion": "data_ingestion_branch_alpha",
    "validation": "data_validation_branch_beta",
    "transformation": "data_transformation_branch_gamma",
    "aggregation": "data_aggregation_branch_primary",
}


def result(branch_id, category, quality=None, seconds=None, status="success", round=1):
    return BranchResult(
        branch_id=branch_id,
        specialist=SPECIALIST[category],
        category=category,
        status=status,
        round=round,
        metrics=BranchMetrics(quality=quality, execution_seconds=seconds),
        outputs=[OutputDescriptor(uri=f"file:///out/{branch_id}", format="parquet", rows=10)],
    )


def test_time_factor():
    assert time_factor(0) == 1.0  # zero execution time
    assert time_factor(60) == 0.5
    assert time_factor(None) == 0.0  # a missing time


def test_weight_is_quality_070_plus_time_030():
    assert branch_weight(result("a", "ingestion", 0.9, 60)) == pytest.approx(0.9 * 0.7 + 0.5 * 0.3)
    assert branch_weight(result("a", "ingestion", 1.0, 0)) == pytest.approx(1.0)
    # a branch with no quality counts 0.5
    assert branch_weight(result("a", "ingestion", None, 0)) == pytest.approx(0.5 * 0.7 + 0.3)
    assert branch_weight(result("a", "ingestion", None, None)) == pytest.approx(0.35)


def test_category_attribution_and_weighted_quality():
    a, b = result("a", "ingestion", 0.9, 60), result("b", "ingestion", 0.6, 0)
    wa, wb = 0.9 * 0.7 + 0.5 * 0.3, 0.6 * 0.7 + 1.0 * 0.3
    report = merge_results([a, b], allocated=2)
    ing = report.categories["ingestion"]
    assert ing.source_attribution == pytest.approx({"a": wa / (wa + wb), "b": wb / (wa + wb)})
    assert ing.quality_score == pytest.approx((0.9 * wa + 0.6 * wb) / (wa + wb))
    assert ing.sources_count == 2 and ing.status == "merged"
    assert len(ing.outputs) == 2


def test_every_category_is_merged_including_aggregation_and_empty_ones_say_so():
    report = merge_results(
        [result("i", "ingestion", 0.8, 0), result("g", "aggregation", 0.6, 0)], allocated=2
    )
    assert report.categories["aggregation"].sources_count == 1
    assert report.categories["validation"].status == "no_validation_data"
    assert report.categories["validation"].quality_score == 0
    assert report.categories["transformation"].status == "no_transformation_data"
    # overall = mean of the categories that have data
    assert report.overall_quality == pytest.approx((0.8 + 0.6) / 2)


def test_success_rate_counts_only_successes():
    report = merge_results(
        [
            result("a", "ingestion", 0.9, 1),
            result("b", "validation", 0.9, 1),
            result("c", "transformation", 0.9, 1),
            result("d", "aggregation", None, None, status="failed"),
        ],
        allocated=5,
    )
    assert report.successful_branches == 3
    assert report.failed_branches == 1
    assert report.failed_branch_ids == ["d"]
    assert report.success_rate == pytest.approx(3 / 5)
    assert report.integration_confidence == pytest.approx(report.overall_quality * 3 / 5)


def test_all_branches_failed():
    report = merge_results([result("a", "ingestion", status="failed"), result("b", "validation", status="cancelled")], allocated=2)
    assert report.successful_branches == 0 and report.success_rate == 0
    assert report.overall_quality == 0
    assert report.failed_branch_ids == ["a"] and report.cancelled_branch_ids == ["b"]
    assert all(s.status.startswith("no_") for s in report.categories.values())


def test_zero_weight_branches_share_attribution_equally():
    report = merge_results([result("a", "ingestion", 0.0, None), result("b", "ingestion", 0.0, None)], allocated=2)
    ing = report.categories["ingestion"]
    assert ing.source_attribution == {"a": 0.5, "b": 0.5}
    assert ing.quality_score == 0


def test_a_later_success_replaces_an_earlier_failure_but_not_the_reverse():
    r1 = result("a", "ingestion", None, None, status="failed", round=1)
    r2 = result("a", "ingestion", 0.9, 5, round=2)
    r3 = result("a", "ingestion", None, None, status="failed", round=3)
    assert latest_results([r2, r1])[0].round == 2
    assert latest_results([r1, r2, r3])[0].round == 2
    assert merge_results([r1, r2], allocated=1).success_rate == 1.0


def test_failed_and_cancelled_branches_are_counted_as_they_are_named():
    """One definition (core.outcomes): the counts match the named ids, and every branch's
    final result is counted exactly once."""
    results = [
        result("a", "ingestion", 0.9, 1),
        result("b", "validation", status="failed"),
        result("c", "transformation", status="cancelled"),
        result("d", "aggregation", status="cancelled"),
    ]
    report = merge_results(results, allocated=4)
    assert report.failed_branch_ids == ["b"] and report.failed_branches == 1
    assert report.cancelled_branch_ids == ["c", "d"] and report.cancelled_branches == 2
    assert report.successful_branches + report.failed_branches + report.cancelled_branches == 4


def test_an_empty_branch_is_named_and_can_neither_lift_nor_drag_a_category():
    """core.outcomes: a branch that read no row is not a success and enters no category."""
    results = [
        result("a", "ingestion", 0.6, 1),
        result("b", "ingestion", 0.0, 1, status="empty"),
        result("c", "aggregation", 0.0, 1, status="empty"),
    ]
    report = merge_results(results, allocated=3)
    assert report.empty_branch_ids == ["b", "c"] and report.empty_branches == 2
    assert (report.successful_branches, report.failed_branches) == (1, 0)
    assert report.categories["ingestion"].quality_score == pytest.approx(0.6)
    assert report.categories["ingestion"].sources_count == 1
    assert report.categories["aggregation"].status == "no_aggregation_data"
    assert report.success_rate == pytest.approx(1 / 3)


def test_no_success_but_empty_branches_is_a_critical_failure_that_names_them():
    report = merge_results([result("b", "ingestion", 0.0, 1, status="empty")], allocated=1)
    gate = decide(report, QualityGatePolicy(), round=1, iteration_limit=3)
    assert (gate.decision, gate.reason) == ("critical_failure", "no branch succeeded (b read no row)")


def test_an_empty_branch_completes_its_sync_point():
    succeeded, failed = observed_outcomes(["a", "b"], (), {"a": "empty", "b": "failed"}, pending=())
    assert (succeeded, failed) == ({"a"}, {"b"})
