"""What a task needs (TaskRequirements) and what the factory builds for it
(AgentSpecification), with the specialization defaults of the design.

Every default number lives in this module once: the spec defaults as field defaults, the
specialization defaults in the tables below.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from airflow_provider_orchestra.core.models import Fraction, ResourceRequest, ValidationOptions
from airflow_provider_orchestra.factory.capabilities import Capability

# The validation confidence is the same quantity as a batch's validation.confidence, so it
# has one source.
DEFAULT_CONFIDENCE_LEVEL: float = ValidationOptions.model_fields["confidence"].default


def _parse_capability_list(value: Any) -> Any:
    if isinstance(value, (str, Capability)):
        value = [value]
    if isinstance(value, Iterable) and not isinstance(value, Mapping):
        return [Capability.parse(v) for v in value]
    return value


class TaskRequirements(BaseModel):
    """One task's needs: the capabilities it asks for and optional overrides of the
    specialization defaults. Untrusted (it may come from DAG run conf): unknown fields are
    refused."""

    model_config = ConfigDict(extra="forbid")

    capabilities_needed: list[Capability] = Field(min_length=1)
    specialist: str | None = None
    """The workflow specialist the agent will run: only templates that run it qualify."""
    description: str = ""
    batch_ids: list[str] = Field(default_factory=list)
    # ingestion
    data_source: str | None = None
    batch_size: int | None = Field(default=None, gt=0)
    format: list[str] | None = None
    validate_schema: bool | None = None
    # validation
    rules: str | list[Any] | None = None
    detect_anomalies: bool | None = None
    confidence_level: float | None = Field(default=None, gt=0.5, lt=1.0)
    # transformation
    output_format: str | None = None
    schema_mapping: dict[str, str] | None = None
    aggregations: list[Any] | None = None
    partitioning: str | None = None
    # every agent
    quality_required: Fraction | None = None
    sla_seconds: float | None = Field(default=None, gt=0)
    max_iterations: int | None = Field(default=None, ge=1)
    resources: ResourceRequest | None = None
    # coordination
    agent_count: int | None = Field(default=None, ge=1)

    @field_validator("capabilities_needed", mode="before")
    @classmethod
    def _capabilities(cls, value: Any) -> Any:
        return _parse_capability_list(value)

    @field_validator("format", mode="before")
    @classmethod
    def _format(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @property
    def required(self) -> frozenset[Capability]:
        return frozenset(self.capabilities_needed)


class AgentSpecification(BaseModel):
    """Everything needed to instantiate one agent from its template."""

    model_config = ConfigDict(extra="forbid")

    agent_type: str
    capabilities: list[Capability]
    resource_requirements: ResourceRequest = Field(default_factory=ResourceRequest)
    performance_targets: dict[str, float] = Field(default_factory=dict)
    specialization_parameters: dict[str, Any] = Field(default_factory=dict)
    max_concurrent_batches: int = Field(default=3, ge=1)
    timeout_seconds: float = Field(default=300, gt=0)
    retry_attempts: int = Field(default=3, ge=0)
    quality_thresholds: dict[str, float] = Field(default_factory=dict)
    monitoring_enabled: bool = True

    @field_validator("capabilities", mode="before")
    @classmethod
    def _capabilities(cls, value: Any) -> Any:
        return _parse_capability_list(value)

    @property
    def agent_id(self) -> str:
        return str(self.specialization_parameters.get("agent_id", ""))


# (specialization parameter, TaskRequirements field overriding it, default)
Specialization = tuple[tuple[str, str, Any], ...]

COMMON_SPECIALIZATION: Specialization = (
    ("quality_threshold", "quality_required", 0.8),
    ("response_time_target", "sla_seconds", 300),
    ("iteration_limit", "max_iterations", 3),
)
"""Given to every agent."""

CAPABILITY_SPECIALIZATION: Mapping[Capability, Specialization] = MappingProxyType(
    {
        Capability.DATA_INGESTION: (
            ("ingestion_source", "data_source", "kafka"),
            ("batch_size", "batch_size", 1000),
            ("data_format", "format", ["parquet", "json"]),
            ("schema_validation", "validate_schema", True),
        ),
        Capability.DATA_VALIDATION: (
            ("validation_rules", "rules", "comprehensive"),
            ("anomaly_detection", "detect_anomalies", True),
            ("confidence_level", "confidence_level", DEFAULT_CONFIDENCE_LEVEL),
        ),
        Capability.DATA_TRANSFORMATION: (
            ("output_format", "output_format", "parquet"),
            ("schema_mapping", "schema_mapping", {}),
            ("aggregation_rules", "aggregations", []),
            ("partition_strategy", "partitioning", "date"),
        ),
    }
)
"""Extra parameters for a template that has the capability (a template may have several)."""


def _apply(table: Specialization, requirements: TaskRequirements, into: dict[str, Any]) -> None:
    for parameter, field, default in table:
        value = getattr(requirements, field)
        into[parameter] = copy.deepcopy(default) if value is None else value


def json_safe(value: Any) -> Any:
    """A JSON-round-tripped copy (unknown objects become strings), so a spec always
    serialises into XCom or graph state."""
    return json.loads(json.dumps(value, default=str))


def specialization_parameters(
    requirements: TaskRequirements,
    template_capabilities: Iterable[Capability],
    *,
    agent_id: str,
    context: Mapping[str, Any] | None = None,
    created_at: datetime | None = None,
) -> dict[str, Any]:
    """The template's specialization: identity, task context, the defaults of each of its
    capabilities overridden by ``requirements``, and the parameters common to all agents."""
    params: dict[str, Any] = {
        "agent_id": agent_id,
        "creation_timestamp": (created_at or datetime.now(timezone.utc)).isoformat(),
        "task_context": json_safe(dict(context or {})),
        "task_description": requirements.description,
    }
    capabilities = set(template_capabilities)
    for capability, table in CAPABILITY_SPECIALIZATION.items():
        if capability in capabilities:
            _apply(table, requirements, params)
    _apply(COMMON_SPECIALIZATION, requirements, params)
    return params


def performance_targets(params: Mapping[str, Any]) -> dict[str, float]:
    """Targets the agent is measured against, taken from its specialization."""
    return {
        "response_time_seconds": float(params["response_time_target"]),
        "quality": float(params["quality_threshold"]),
    }


def quality_thresholds(params: Mapping[str, Any]) -> dict[str, float]:
    """Minimum quality, plus the statistical confidence for validating agents."""
    thresholds = {"quality": float(params["quality_threshold"])}
    if "confidence_level" in params:
        thresholds["confidence"] = float(params["confidence_level"])
    return thresholds


def specify(
    agent_type: str,
    template_capabilities: Iterable[Capability],
    template_resources: ResourceRequest,
    requirements: TaskRequirements,
    *,
    agent_id: str,
    context: Mapping[str, Any] | None = None,
    created_at: datetime | None = None,
) -> AgentSpecification:
    """The specification of an agent of ``agent_type`` (a template with these capabilities
    and resources) for ``requirements``. ``context`` travels as ``task_context``; its
    ``monitoring_required`` (default True) sets ``monitoring_enabled``."""
    context = dict(context or {})
    params = specialization_parameters(
        requirements, template_capabilities, agent_id=agent_id, context=context, created_at=created_at
    )
    return AgentSpecification(
        agent_type=agent_type,
        capabilities=sorted(requirements.required, key=lambda c: c.value),
        resource_requirements=requirements.resources or template_resources,
        performance_targets=performance_targets(params),
        specialization_parameters=params,
        quality_thresholds=quality_thresholds(params),
        monitoring_enabled=bool(context.get("monitoring_required", True)),
    )
