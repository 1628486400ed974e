"""Where the workflow goes after the sync point and after the quality gate.

Pure functions of the decisions core/ made. The native graph maps their answers to node
names, the Airflow rendering to task ids; neither decides on its own.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Literal

from airflow_provider_orchestra.core.models import AnalysisResult, GateResult, SyncDecision
from airflow_provider_orchestra.core.outcomes import COMPLETED

SyncStep = Literal["merge", "recover", "wait"]
GateStep = Literal["integrate", "revise", "stop"]

_SYNC_STEPS: dict[str, SyncStep] = {
    "proceed_to_data_merge": "merge",
    "conditional_proceed": "merge",
    "continue_waiting": "wait",
    "timeout_recovery": "recover",
}


def next_after_sync(decision: SyncDecision, round: int, iteration_limit: int) -> SyncStep:
    """proceed / conditional proceed -> merge; continue waiting -> wait; timeout recovery
    -> recover (a new round), except in the last allowed round: no round is left to
    re-plan, so the run merges what finished and the quality gate gives the final status."""
    step = _SYNC_STEPS[decision.next_action]
    if step == "recover" and round >= iteration_limit:
        return "merge"
    return step


def next_after_gate(gate: GateResult) -> GateStep:
    """approved -> integrate; needs_revision -> revise while rounds are left; critical
    failure or a final needs_revision -> stop."""
    if gate.decision == "approved":
        return "integrate"
    if gate.decision == "needs_revision" and not gate.final:
        return "revise"
    return "stop"


def is_revision_round(gate: GateResult | None, round: int) -> bool:
    """The load balancer re-plans for a revision (re-running weak branches too) when the
    gate of the current round asked for one; otherwise it recovers from a sync timeout."""
    return gate is not None and gate.round == round and gate.decision == "needs_revision"


def observed_outcomes(
    allocated: Sequence[str],
    succeeded_before: Collection[str],
    ended: Mapping[str, str],
    pending: Collection[str],
) -> tuple[set[str], set[str]]:
    """What the sync policy is told: succeeded and failed branches of the run.

    A branch that ended empty counts as succeeded here: it completed (core.outcomes). A branch that succeeded in an earlier round counts as succeeded unless it is being run
    again right now (a revision round re-runs weak successes; while it runs it is pending,
    and if the re-run fails the earlier success still stands). Allocated branches that are
    neither pending nor succeeded will not complete in this round: they count as failed.
    """
    pending = set(pending)
    succeeded = {b for b in succeeded_before if b not in pending}
    succeeded |= {b for b, status in ended.items() if status in COMPLETED}
    failed = {b for b in allocated if b not in succeeded and b not in pending}
    return succeeded, failed


def concurrency_cap(analysis: AnalysisResult) -> int:
    """Branches of a round that run at once: the analysis' ``max_branches``, and no more
    than the resource ledger had room for when the run was analysed (the ledger keeps the
    final word: a branch that finds it full waits for a release)."""
    return max(1, min(analysis.max_branches, analysis.resources.max_concurrent_workers))
