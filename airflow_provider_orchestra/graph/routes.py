"""Where the graph goes after the sync point and after the quality gate: pure functions of
the decisions core/ made (so they can be tested, and mirrored by the Airflow rendering,
without running a graph)."""

from __future__ import annotations

from airflow_provider_orchestra.core.models import GateResult, SyncDecision

BRANCH_MERGER = "branch_merger"
LOAD_BALANCER = "load_balancer"
SYNC_POINT_MANAGER = "sync_point_manager"
FINAL_INTEGRATOR = "final_integrator"
END_OF_RUN = "__end__"

SYNC_ROUTES = {
    "proceed_to_data_merge": BRANCH_MERGER,
    "conditional_proceed": BRANCH_MERGER,
    "continue_waiting": SYNC_POINT_MANAGER,
    "timeout_recovery": LOAD_BALANCER,
}


def after_sync(decision: SyncDecision, round: int, iteration_limit: int) -> str:
    """The sync point's next node.

    proceed / conditional proceed -> branch_merger; timeout recovery -> load_balancer for
    another round, except in the last allowed round: there is no round left to re-plan,
    so the run merges what finished and the quality gate gives the final status.
    """
    target = SYNC_ROUTES[decision.next_action]
    if target == LOAD_BALANCER and round >= iteration_limit:
        return BRANCH_MERGER
    return target


def after_gate(gate: GateResult) -> str:
    """approved -> final_integrator; needs_revision -> load_balancer while rounds are
    left; critical failure or a final needs_revision -> end of the run."""
    if gate.decision == "approved":
        return FINAL_INTEGRATOR
    if gate.decision == "needs_revision" and not gate.final:
        return LOAD_BALANCER
    return END_OF_RUN


def is_revision_round(gate: GateResult | None, round: int) -> bool:
    """The load balancer re-plans for a revision (re-running weak branches too) when the
    gate of the current round asked for one; otherwise it recovers from a sync timeout."""
    return gate is not None and gate.round == round and gate.decision == "needs_revision"
