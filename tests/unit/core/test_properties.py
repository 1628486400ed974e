"""Properties of the merge and the sync policy over generated inputs."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_orchestra.core.merging import merge_results
from airflow_provider_orchestra.core.models import BranchMetrics, BranchResult, SyncPolicy
from airflow_provider_orchestra.core.sync import evaluate_sync

CATEGORY_SPECIALIST = {
    "ingestion": "data_ingestion_branch_alpha",
    "validation": "data_validation_branch_beta",
    "transformation": "data_transformation_branch_gamma",
    "aggregation": "data_aggregation_branch_primary",
}

branch = st.tuples(
    st.sampled_from(sorted(CATEGORY_SPECIALIST)),
    st.one_of(st.none(), st.floats(0, 1)),
    st.one_of(st.none(), st.floats(0, 10_000)),
    st.sampled_from(["success", "success", "failed", "cancelled"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(branch, min_size=1, max_size=12), st.integers(0, 5))
def test_merge_attribution_sums_to_one_and_quality_stays_within_its_branches(branches, extra_allocated):
    results = [
        BranchResult(
            branch_id=f"b{i}", specialist=CATEGORY_SPECIALIST[cat], category=cat, status=status,
            metrics=BranchMetrics(quality=q, execution_seconds=s),
        )
        for i, (cat, q, s, status) in enumerate(branches)
    ]
    allocated = len(results) + extra_allocated
    report = merge_results(results, allocated=allocated)
    ok = [r for r in results if r.status == "success"]
    assert report.successful_branches == len(ok)
    assert report.success_rate == pytest.approx(len(ok) / allocated)
    for category, synthesis in report.categories.items():
        members = [r for r in ok if r.category == category]
        assert synthesis.sources_count == len(members)
        if not members:
            assert synthesis.status == f"no_{category}_data" and synthesis.quality_score == 0
            continue
        assert sum(synthesis.source_attribution.values()) == pytest.approx(1.0)
        qualities = [0.5 if r.metrics.quality is None else r.metrics.quality for r in members]
        if synthesis.total_weight > 0:
            assert min(qualities) - 1e-9 <= synthesis.quality_score <= max(qualities) + 1e-9
    assert 0 <= report.overall_quality <= 1
    assert report.integration_confidence <= report.overall_quality + 1e-12


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(1, 20),
    data=st.data(),
    elapsed=st.floats(0, 1000),
    quorum=st.floats(0.05, 1.0),
)
def test_the_sync_point_never_proceeds_below_quorum_and_never_waits_on_nothing(n, data, elapsed, quorum):
    branches = [f"b{i}" for i in range(n)]
    outcome = data.draw(st.lists(st.sampled_from(["ok", "failed", "running"]), min_size=n, max_size=n))
    succeeded = {b for b, o in zip(branches, outcome) if o == "ok"}
    failed = {b for b, o in zip(branches, outcome) if o == "failed"}
    policy = SyncPolicy(quorum=quorum, conditional_timeout_seconds=100, overall_timeout_seconds=500)
    d = evaluate_sync(
        sync_points={}, branch_dependencies={}, branch_ids=branches, succeeded=succeeded,
        failed=failed, elapsed_seconds=elapsed, policy=policy,
    )
    progress = len(succeeded) / n
    assert d.progress == pytest.approx(progress)
    if d.next_action in ("proceed_to_data_merge", "conditional_proceed"):
        assert progress >= quorum - 1e-12
    if d.next_action == "proceed_to_data_merge":
        assert not d.remaining_branches
    if d.next_action == "continue_waiting":
        assert any(o == "running" for o in outcome)  # something is left to wait for
        assert elapsed < 500
