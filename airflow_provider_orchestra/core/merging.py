"""The branch merger: weight each successful branch by quality and time, per category."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from airflow_provider_orchestra.core.models import (
    CATEGORIES,
    BranchResult,
    CategorySynthesis,
    MergeReport,
)
from airflow_provider_orchestra.core.outcomes import SUCCESS, outcomes

QUALITY_WEIGHT = 0.7
TIME_WEIGHT = 0.3
TIME_SCALE_SECONDS = 60.0
MISSING_QUALITY = 0.5


def time_factor(execution_seconds: float | None) -> float:
    """1 / (1 + seconds / 60); a missing time gives 0."""
    if execution_seconds is None:
        return 0.0
    return 1.0 / (1.0 + execution_seconds / TIME_SCALE_SECONDS)


def branch_quality(result: BranchResult) -> float:
    """Measured quality; a missing quality counts 0.5."""
    q = result.metrics.quality
    return MISSING_QUALITY if q is None else q


def branch_weight(result: BranchResult) -> float:
    """quality * 0.7 + time_factor * 0.3."""
    return branch_quality(result) * QUALITY_WEIGHT + time_factor(result.metrics.execution_seconds) * TIME_WEIGHT


def latest_results(results: Iterable[BranchResult]) -> list[BranchResult]:
    """One result per branch across rounds: its latest success, else its latest attempt."""
    best: dict[str, BranchResult] = {}
    for r in sorted(results, key=lambda r: r.round):
        prev = best.get(r.branch_id)
        if prev is None or r.status == "success" or prev.status != "success":
            best[r.branch_id] = r
    return list(best.values())


def merge_category(category: str, results: Sequence[BranchResult]) -> CategorySynthesis:
    if not results:
        return CategorySynthesis(category=category, status=f"no_{category}_data", quality_score=0.0)
    weights = {r.branch_id: branch_weight(r) for r in results}
    total = sum(weights.values())
    if total > 0:
        attribution = {b: w / total for b, w in weights.items()}
        quality = sum(branch_quality(r) * weights[r.branch_id] for r in results) / total
    else:  # every branch scored 0: no branch is preferred and nothing is credible
        attribution = {b: 1.0 / len(weights) for b in weights}
        quality = 0.0
    return CategorySynthesis(
        category=category,
        status="merged",
        quality_score=quality,
        source_attribution=attribution,
        weights=weights,
        sources_count=len(results),
        total_weight=total,
        outputs=[o for r in results for o in r.outputs],
    )


def merge_results(results: Iterable[BranchResult], allocated: int, round: int = 1) -> MergeReport:
    """Merge branch results into a report.

    - per category (ingestion, validation, transformation, aggregation): source attribution
      = weight / total weight, quality = weight-averaged quality, sources count; an empty
      category reports ``no_<category>_data`` with quality 0
    - overall_quality = mean quality of the categories that have data (0 if none)
    - success_rate = successful branches / allocated branches
    - an empty branch (read no row) is in no category and is not a success: it is named
      in ``empty_branch_ids`` (core.outcomes)
    - integration_confidence = overall_quality * success_rate
    """
    final = latest_results(results)
    ended = outcomes(final)
    ok = [r for r in final if r.status == SUCCESS]
    categories = {c: merge_category(c, [r for r in ok if r.category == c]) for c in CATEGORIES}
    with_data = [s.quality_score for s in categories.values() if s.sources_count]
    overall = sum(with_data) / len(with_data) if with_data else 0.0
    success_rate = len(ok) / allocated if allocated else 0.0
    return MergeReport(
        categories=categories,
        successful_branches=len(ended.succeeded),
        failed_branches=len(ended.failed),
        cancelled_branches=len(ended.cancelled),
        empty_branches=len(ended.empty),
        allocated_branches=allocated,
        failed_branch_ids=ended.failed,
        cancelled_branch_ids=ended.cancelled,
        empty_branch_ids=ended.empty,
        overall_quality=overall,
        integration_confidence=overall * success_rate,
        success_rate=success_rate,
        round=round,
    )
