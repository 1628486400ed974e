"""The five specialists as agent-factory templates, and a way to run one without the
factory (benchmarks, tests, the command line)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from airflow_provider_orchestra.core.models import BranchResult, BranchTask, ResourceRequest, SpecialistName
from airflow_provider_orchestra.factory.capabilities import Capability
from airflow_provider_orchestra.specialists.aggregation import (
    PriorityAggregationSpecialist,
    QualityAggregationSpecialist,
)
from airflow_provider_orchestra.specialists.base import Specialist
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

SPECIALIST_FOR_BRANCH: Mapping[SpecialistName, str] = MappingProxyType(
    {
        "data_ingestion_branch_alpha": StreamingIngestionSpecialist.agent_type,
        "data_validation_branch_beta": BatchValidationSpecialist.agent_type,
        "data_transformation_branch_gamma": RealtimeTransformationSpecialist.agent_type,
        "data_aggregation_branch_primary": PriorityAggregationSpecialist.agent_type,
        "data_quality_branch_secondary": QualityAggregationSpecialist.agent_type,
    }
)
"""The default agent type of each workflow branch (core.models.SPECIALISTS)."""

TEMPLATE_CAPABILITIES: Mapping[str, frozenset[Capability]] = MappingProxyType(
    {
        StreamingIngestionSpecialist.agent_type: frozenset({Capability.DATA_INGESTION}),
        BatchValidationSpecialist.agent_type: frozenset({Capability.DATA_VALIDATION, Capability.QUALITY_MONITORING}),
        RealtimeTransformationSpecialist.agent_type: frozenset({Capability.DATA_TRANSFORMATION}),
        PriorityAggregationSpecialist.agent_type: frozenset({Capability.DATA_AGGREGATION}),
        QualityAggregationSpecialist.agent_type: frozenset({Capability.DATA_AGGREGATION, Capability.QUALITY_MONITORING}),
    }
)

# Memory covers one record batch in and out plus DuckDB's working set (which spills to
# disk beyond half of it); the validation and aggregation engines hash whole columns.
TEMPLATE_RESOURCES: Mapping[str, ResourceRequest] = MappingProxyType(
    {
        StreamingIngestionSpecialist.agent_type: ResourceRequest(cpu=1.0, memory_mb=512.0),
        BatchValidationSpecialist.agent_type: ResourceRequest(cpu=1.0, memory_mb=1024.0),
        RealtimeTransformationSpecialist.agent_type: ResourceRequest(cpu=1.0, memory_mb=768.0),
        PriorityAggregationSpecialist.agent_type: ResourceRequest(cpu=2.0, memory_mb=1024.0),
        QualityAggregationSpecialist.agent_type: ResourceRequest(cpu=1.0, memory_mb=1024.0),
    }
)


def register_default_templates(registry: Any) -> None:
    """Register the five specialists on a factory template registry."""
    for agent_type, cls in SPECIALIST_CLASSES.items():
        registry.register_agent_template(
            agent_type,
            cls,
            TEMPLATE_CAPABILITIES[agent_type],
            resources=TEMPLATE_RESOURCES[agent_type],
            description=(cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else "",
            specialists=cls.branches,
        )


def default_specification(agent_type: str, *, agent_id: str, quality_threshold: float | None = None, iteration_limit: int | None = None) -> Any:
    """The AgentSpecification the factory would build for ``agent_type`` with default
    requirements (optionally overriding quality threshold and iteration limit)."""
    from airflow_provider_orchestra.factory.specification import (
        AgentSpecification,
        TaskRequirements,
        specialization_parameters,
    )

    capabilities = TEMPLATE_CAPABILITIES[agent_type]
    requirements = TaskRequirements(
        capabilities_needed=sorted(capabilities, key=str),
        quality_required=quality_threshold,
        max_iterations=iteration_limit,
    )
    params = specialization_parameters(requirements, capabilities, agent_id=agent_id)
    return AgentSpecification(
        agent_type=agent_type,
        capabilities=sorted(capabilities, key=str),
        resource_requirements=TEMPLATE_RESOURCES[agent_type],
        specialization_parameters=params,
    )


def specialist_for(
    task: BranchTask,
    *,
    quality_threshold: float | None = None,
    iteration_limit: int | None = None,
    lease: Any = None,
) -> Specialist:
    """The default specialist for ``task.specialist``, built without the factory."""
    agent_type = SPECIALIST_FOR_BRANCH[task.specialist]
    spec = default_specification(
        agent_type,
        agent_id=f"{agent_type}-direct-{task.branch_id}",
        quality_threshold=quality_threshold,
        iteration_limit=iteration_limit,
    )
    return SPECIALIST_CLASSES[agent_type](spec, lease)


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
