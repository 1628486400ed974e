"""How a branch ended, in one place: succeeded, empty, failed or cancelled.

- succeeded: its result has status ``success``;
- empty: it ran to its end but read no row (an empty source, nothing new in a stream, or
  only a half-written line, reported pending). Its quality is ``EMPTY_QUALITY`` (0) and
  it is not a success: it stays out of the merge's categories (so it can neither lift
  nor drag a category's quality), it does not count in the success rate, and the report
  names it. Having ended, it completes its sync point like a success (``COMPLETED``);
- cancelled: the sync point went on without it (stopped mid-run, or before it started);
- failed: it ended without success for any other reason (its own error after its retries).

Merge reports, timeline events and the command line all count with these sets, so a
failed count always equals the number of failed ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from airflow_provider_orchestra.core.models import BranchResult

CANCELLED = "cancelled"
EMPTY = "empty"
SUCCESS = "success"
COMPLETED = frozenset({SUCCESS, EMPTY})
"""Statuses of a branch that ran to its end: it completes its sync point and is not re-run
for having failed."""

EMPTY_QUALITY = 0.0
"""The quality of a branch that read no row: an empty input proves nothing."""


def share(part: int, whole: int) -> float:
    """``part / whole`` as a measured quality; over no rows at all, ``EMPTY_QUALITY``."""
    return part / whole if whole else EMPTY_QUALITY


@dataclass(frozen=True)
class Outcomes:
    """Branch ids by how their result ended, each sorted."""

    succeeded: list[str]
    failed: list[str]
    cancelled: list[str]
    empty: list[str]


def outcomes(results: Iterable[BranchResult]) -> Outcomes:
    """Classify results (one per branch; see ``merging.latest_results`` across rounds)."""
    succeeded, failed, cancelled, empty = [], [], [], []
    for r in results:
        if r.status == SUCCESS:
            succeeded.append(r.branch_id)
        elif r.status == EMPTY:
            empty.append(r.branch_id)
        elif r.status == CANCELLED:
            cancelled.append(r.branch_id)
        else:
            failed.append(r.branch_id)
    return Outcomes(sorted(succeeded), sorted(failed), sorted(cancelled), sorted(empty))
