"""The native graph's state: the workflow state of core.models plus what one run of the
graph needs to carry between nodes (its config, round, plan and decisions).

Everything here is a small descriptor; rows never enter the state. The config travels in
the state so that a resumed run needs nothing but its thread id and checkpoint store.
"""

from __future__ import annotations

import operator
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from airflow_provider_orchestra.core.models import (
    AnalysisResult,
    BranchAllocation,
    BranchResult,
    BranchTask,
    FinalReport,
    GateResult,
    MergeReport,
    SyncDecision,
    WorkflowConfig,
    WorkflowState,
)

RunStatus = Literal["running", "approved", "critical_failure", "revision_limit_reached"]


class GraphState(WorkflowState):
    """WorkflowState plus the run's own fields.

    - ``branch_results`` keeps every attempt of every round (appended by the branch nodes);
      ``completed_processing_branches`` holds the latest result per branch.
    - ``allocations`` / ``branch_tasks`` are the current round's plan; the round's Send
      payloads are ``branch_tasks``.
    """

    config: WorkflowConfig | None = None
    run_id: str = ""
    round: int = 0
    analysis: AnalysisResult | None = None
    allocations: list[BranchAllocation] = Field(default_factory=list)
    branch_tasks: list[BranchTask] = Field(default_factory=list)
    branch_results: Annotated[list[BranchResult], operator.add] = Field(default_factory=list)
    round_started_at: datetime | None = None
    sync: SyncDecision | None = None
    merge: MergeReport | None = None
    gate: GateResult | None = None
    report: FinalReport | None = None
    status: RunStatus = "running"


def initial_state(config: WorkflowConfig, run_id: str) -> dict:
    """The input of a new run."""
    return {"config": config, "run_id": run_id, "workflow_id": config.workflow_id}
