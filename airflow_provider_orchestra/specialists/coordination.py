"""The pipeline coordinator: the agent that plans a round whose specialised agents need
coordinating (rule 3 of the requirement analysis, ``factory.requirements``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from airflow_provider_orchestra.core.models import BranchAllocation, BranchTask, WorkflowConfig


class PipelineCoordinator:
    """Plans one round: one BranchTask per allocation, in allocation (dependency) order,
    checked to cover every branch its specification says it coordinates."""

    agent_type: ClassVar[str] = "pipeline_coordinator"
    branches: ClassVar[tuple[str, ...]] = ()  # serves no branch: it plans the round

    def __init__(self, spec: Any, lease: Any = None):
        self.spec = spec
        self.lease = lease
        params = getattr(spec, "specialization_parameters", None) or {}
        self.agent_id = str(params.get("agent_id") or f"{self.agent_type}-unregistered")
        self.coordinates = list((params.get("task_context") or {}).get("coordinates") or [])

    def plan(self, config: WorkflowConfig, allocations: Iterable[BranchAllocation], *, run_id: str) -> list[BranchTask]:
        from airflow_provider_orchestra.runtime import plan_tasks

        tasks = plan_tasks(config, allocations, run_id=run_id)
        missing = sorted(set(self.coordinates) - {t.branch_id for t in tasks})
        if missing:
            raise ValueError(f"{self.agent_id}: branches {missing} to coordinate are not in the round")
        return tasks
