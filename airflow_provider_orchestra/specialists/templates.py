"""The default agent-factory templates (the five specialists and the pipeline
coordinator), and a way to run a specialist without the factory (benchmarks, tests) that
asks for the same requirements and picks the same template as the factory would."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from airflow_provider_orchestra.core.models import BranchResult, BranchTask, ResourceRequest
from airflow_provider_orchestra.factory.capabilities import Capability
from airflow_provider_orchestra.specialists.aggregation import (
    PriorityAggregationSpecialist,
    QualityAggregationSpecialist,
)
from airflow_provider_orchestra.specialists.base import Specialist
from airflow_provider_orchestra.specialists.coordination import PipelineCoordinator
from airflow_provider_orchestra.specialists.engine import ProgressCallback
from airflow_provider_orchestra.specialists.ingestion import StreamingIngestionSpecialist
from airflow_provider_orchestra.specialists.transformation import RealtimeTransformationSpecialist
from airflow_provider_orchestra.specialists.validation import BatchValidationSpecialist

SPECIALIST_CLASSES: Mapping[str, type[Specialist]] = MappingProxyType(
    {
        cls.agent_type: cls
        for cls in (
            StreamingIngestionSpecialist,
            BatchValidationSpecialist,
            RealtimeTransformationSpecialist,
            PriorityAggregationSpecialist,
            QualityAggregationSpecialist,
        )
    }
)

TEMPLATE_CAPABILITIES: Mapping[str, frozenset[Capability]] = MappingProxyType(
    {
        StreamingIngestionSpecialist.agent_type: frozenset({Capability.DATA_INGESTION}),
        BatchValidationSpecialist.agent_type: frozenset({Capability.DATA_VALIDATION, Capability.QUALITY_MONITORING}),
        RealtimeTransformationSpecialist.agent_type: frozenset({Capability.DATA_TRANSFORMATION}),
        PriorityAggregationSpecialist.agent_type: frozenset({Capability.DATA_AGGREGATION}),
        QualityAggregationSpecialist.agent_type: frozenset({Capability.DATA_AGGREGATION, Capability.QUALITY_MONITORING}),
        PipelineCoordinator.agent_type: frozenset({Capability.PIPELINE_COORDINATION}),
    }
)
"""What each template offers. A branch asks for what its specialist declares
(factory.selection.required_capabilities_for, specialised by factory.requirements); the
factory picks the best template covering that."""

# Memory covers one record batch in and out plus DuckDB's working set (which spills to
# disk beyond half of it); the validation and aggregation engines hash whole columns.
TEMPLATE_RESOURCES: Mapping[str, ResourceRequest] = MappingProxyType(
    {
        StreamingIngestionSpecialist.agent_type: ResourceRequest(cpu=1.0, memory_mb=512.0),
        BatchValidationSpecialist.agent_type: ResourceRequest(cpu=1.0, memory_mb=1024.0),
        RealtimeTransformationSpecialist.agent_type: ResourceRequest(cpu=1.0, memory_mb=768.0),
        PriorityAggregationSpecialist.agent_type: ResourceRequest(cpu=2.0, memory_mb=1024.0),
        QualityAggregationSpecialist.agent_type: ResourceRequest(cpu=1.0, memory_mb=1024.0),
        PipelineCoordinator.agent_type: ResourceRequest(cpu=0.1, memory_mb=64.0),
    }
)

AGENT_CLASSES: Mapping[str, type] = MappingProxyType({**SPECIALIST_CLASSES, PipelineCoordinator.agent_type: PipelineCoordinator})
"""Every default template: the five specialists and the pipeline coordinator."""


def register_default_templates(registry: Any) -> None:
    """Register the default templates (AGENT_CLASSES) on a factory template registry."""
    for agent_type, cls in AGENT_CLASSES.items():
        registry.register_agent_template(
            agent_type,
            cls,
            TEMPLATE_CAPABILITIES[agent_type],
            resources=TEMPLATE_RESOURCES[agent_type],
            description=(cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else "",
            specialists=cls.branches,
        )


@functools.cache
def _default_templates() -> Any:
    from airflow_provider_orchestra.factory.registry import TemplateRegistry

    registry = TemplateRegistry()
    register_default_templates(registry)
    return registry


def default_specification(
    task: BranchTask,
    *,
    agent_id: str | None = None,
    quality_threshold: float | None = None,
    iteration_limit: int | None = None,
) -> Any:
    """The AgentSpecification a factory without history would build for ``task``: its
    requirements from requirement analysis (optionally overriding quality threshold and
    iteration limit), the best default template for them."""
    from airflow_provider_orchestra.factory.ledger import ResourceUsage
    from airflow_provider_orchestra.factory.requirements import branch_requirements
    from airflow_provider_orchestra.factory.selection import select_agent_type
    from airflow_provider_orchestra.factory.specification import specify

    requirements = branch_requirements(task)
    overrides = {"quality_required": quality_threshold, "max_iterations": iteration_limit}
    requirements = requirements.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    registry = _default_templates()
    unbounded = ResourceUsage(cpu=float("inf"), memory_mb=float("inf"), agents=1)
    entry = registry.get(select_agent_type(registry, requirements.required, {}, unbounded, task.specialist).agent_type)
    return specify(
        entry.agent_type,
        entry.capabilities,
        entry.resources,
        requirements,
        agent_id=agent_id or f"{entry.agent_type}-direct-{task.branch_id}",
    )


def specialist_for(
    task: BranchTask,
    *,
    quality_threshold: float | None = None,
    iteration_limit: int | None = None,
    lease: Any = None,
) -> Specialist:
    """The specialist the factory would pick for ``task`` (no history, no ledger), built
    without the factory."""
    spec = default_specification(task, quality_threshold=quality_threshold, iteration_limit=iteration_limit)
    return SPECIALIST_CLASSES[spec.agent_type](spec, lease)


def run_specialist_directly(
    task: BranchTask | Mapping[str, Any],
    *,
    saver: BaseCheckpointSaver | None = None,
    thread_id: str | None = None,
    connections: Any = None,
    on_progress: ProgressCallback | None = None,
    quality_threshold: float | None = None,
    iteration_limit: int | None = None,
    lease: Any = None,
) -> BranchResult:
    """Run the default specialist of ``task`` (see :meth:`Specialist.run`)."""
    if not isinstance(task, BranchTask):
        task = BranchTask.model_validate(task)
    specialist = specialist_for(
        task, quality_threshold=quality_threshold, iteration_limit=iteration_limit, lease=lease
    )
    return specialist.run(task, saver=saver, thread_id=thread_id, connections=connections, on_progress=on_progress)
