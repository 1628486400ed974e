"""The load balancer: re-plan unfinished, failed or weak branches for the next round."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from airflow_provider_orchestra.core.merging import latest_results
from airflow_provider_orchestra.core.models import BranchAllocation, BranchResult


def replan(
    allocations: Sequence[BranchAllocation],
    results: Iterable[BranchResult],
    next_round: int,
    quality_threshold: float | None = None,
) -> list[BranchAllocation]:
    """Allocations for round ``next_round``.

    Re-planned: every allocated branch with no result yet (a straggler or one below quorum),
    every branch whose latest result is not a success, and - when ``quality_threshold`` is
    given (a needs_revision round) - every successful branch whose measured quality is below
    it. Re-planned branches run with the ``fallback`` strategy; branches that did well keep
    their result and are not run again.
    """
    latest = {r.branch_id: r for r in latest_results(results)}
    plan = []
    for alloc in allocations:
        result = latest.get(alloc.branch_id)
        weak = (
            result is not None
            and result.status == "success"
            and quality_threshold is not None
            and result.metrics.quality is not None
            and result.metrics.quality < quality_threshold
        )
        if result is None or result.status != "success" or weak:
            plan.append(alloc.model_copy(update={"round": next_round, "strategy": "fallback"}))
    return plan


def balancing_metrics(allocations: Sequence[BranchAllocation], replanned: Sequence[BranchAllocation]) -> dict[str, float]:
    """Figures for the state's load_balancing_metrics."""
    return {
        "allocated_branches": float(len(allocations)),
        "replanned_branches": float(len(replanned)),
        "replanned_share": len(replanned) / len(allocations) if allocations else 0.0,
    }
