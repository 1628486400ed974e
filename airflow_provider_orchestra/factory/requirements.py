"""Which agents a batch queue calls for (requirement analysis of the design).

Three rules, applied to every (BatchSpec, BatchDescriptor) pair of the queue:

1. a streaming batch of high volume (``rows >= HIGH_VOLUME_ROWS``) needs an ingestion agent;
2. a batch that needs validation (a ``batch`` source, or validation rules declared) needs a
   validation agent held to quality ``VALIDATION_QUALITY_REQUIRED``;
3. more than two requirements in all also need a PIPELINE_COORDINATION agent.

A batch may meet rules 1 and 2 both and then yields both requirements.
"""

from __future__ import annotations

from collections.abc import Iterable

from airflow_provider_orchestra.core.models import BatchDescriptor, BatchSpec
from airflow_provider_orchestra.factory.capabilities import Capability
from airflow_provider_orchestra.factory.specification import TaskRequirements

HIGH_VOLUME_ROWS = 100_000
"""A streaming batch from this many rows up is ingested by a dedicated agent."""

VALIDATION_QUALITY_REQUIRED = 0.95
"""Quality a validation agent is held to."""

STREAMING_INGESTION_SLA_SECONDS = 600.0
VALIDATION_SLA_SECONDS = 400.0
"""Deadlines of the two kinds of requirement, as in the reference design."""

COORDINATION_THRESHOLD = 2
"""More requirements than this call for a coordinating agent."""


def needs_high_volume_ingestion(spec: BatchSpec, descriptor: BatchDescriptor) -> bool:
    return spec.source_type == "streaming" and descriptor.rows >= HIGH_VOLUME_ROWS


def needs_validation(spec: BatchSpec) -> bool:
    return spec.source_type == "batch" or bool(spec.validation.rules)


def analyze_requirements(
    queue: Iterable[tuple[BatchSpec, BatchDescriptor]],
) -> list[TaskRequirements]:
    """The agents the queue needs, in queue order, coordination last.

    Raises ValueError when a pair's spec and descriptor name different batches.
    """
    requirements: list[TaskRequirements] = []
    for spec, descriptor in queue:
        if spec.batch_id != descriptor.batch_id:
            raise ValueError(
                f"batch queue pairs spec {spec.batch_id!r} with descriptor "
                f"{descriptor.batch_id!r}"
            )
        if needs_high_volume_ingestion(spec, descriptor):
            requirements.append(
                TaskRequirements(
                    capabilities_needed=[Capability.DATA_INGESTION],
                    description=(
                        f"ingest high-volume stream {spec.batch_id} "
                        f"({descriptor.rows} rows from {descriptor.source_kind})"
                    ),
                    batch_ids=[spec.batch_id],
                    data_source=spec.source.kind,
                    sla_seconds=STREAMING_INGESTION_SLA_SECONDS,
                )
            )
        if needs_validation(spec):
            rules = spec.validation.rules
            requirements.append(
                TaskRequirements(
                    capabilities_needed=[Capability.DATA_VALIDATION],
                    description=f"validate batch {spec.batch_id} ({descriptor.rows} rows)",
                    batch_ids=[spec.batch_id],
                    rules=[r.model_dump(mode="json") for r in rules] if rules else None,
                    confidence_level=spec.validation.confidence,
                    quality_required=VALIDATION_QUALITY_REQUIRED,
                    sla_seconds=VALIDATION_SLA_SECONDS,
                )
            )
    if len(requirements) > COORDINATION_THRESHOLD:
        requirements.append(
            TaskRequirements(
                capabilities_needed=[Capability.PIPELINE_COORDINATION],
                description=f"coordinate {len(requirements)} specialised agents",
                batch_ids=sorted({b for r in requirements for b in r.batch_ids}),
                agent_count=len(requirements),
            )
        )
    return requirements
