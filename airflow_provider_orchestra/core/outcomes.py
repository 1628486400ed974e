"""How a branch ended, in one place: succeeded, failed or cancelled.

- succeeded: its result has status ``success``;
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
SUCCESS = "success"


@dataclass(frozen=True)
class Outcomes:
    """Branch ids by how their result ended, each sorted."""

    succeeded: list[str]
    failed: list[str]
    cancelled: list[str]


def outcomes(results: Iterable[BranchResult]) -> Outcomes:
    """Classify results (one per branch; see ``merging.latest_results`` across rounds)."""
    succeeded, failed, cancelled = [], [], []
    for r in results:
        if r.status == SUCCESS:
            succeeded.append(r.branch_id)
        elif r.status == CANCELLED:
            cancelled.append(r.branch_id)
        else:
            failed.append(r.branch_id)
    return Outcomes(sorted(succeeded), sorted(failed), sorted(cancelled))
