"""Node names for the steps core.flow chooses after the sync point and the quality gate."""

from __future__ import annotations

from airflow_provider_orchestra.core import flow
from airflow_provider_orchestra.core.models import GateResult, SyncDecision

BRANCH_MERGER = "branch_merger"
LOAD_BALANCER = "load_balancer"
SYNC_POINT_MANAGER = "sync_point_manager"
FINAL_INTEGRATOR = "final_integrator"
END_OF_RUN = "__end__"

NODE_AFTER_SYNC = {"merge": BRANCH_MERGER, "recover": LOAD_BALANCER, "wait": SYNC_POINT_MANAGER}
NODE_AFTER_GATE = {"integrate": FINAL_INTEGRATOR, "revise": LOAD_BALANCER, "stop": END_OF_RUN}


def after_sync(decision: SyncDecision, round: int, iteration_limit: int) -> str:
    """The sync point's next node (core.flow.next_after_sync decides)."""
    return NODE_AFTER_SYNC[flow.next_after_sync(decision, round, iteration_limit)]


def after_gate(gate: GateResult) -> str:
    """The quality gate's next node (core.flow.next_after_gate decides)."""
    return NODE_AFTER_GATE[flow.next_after_gate(gate)]


is_revision_round = flow.is_revision_round
