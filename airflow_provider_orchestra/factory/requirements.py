"""Which agents a round calls for (requirement analysis of the design).

The one path from a planned branch to what its agent must be: both runtimes and a direct
run ask :func:`branch_requirements`, and the coordinator asks :func:`analyze_requirements`
for the round. Every branch is served by one agent whose capabilities are those its
specialist declares (``required_capabilities_for``); three rules specialise it:

1. a streaming branch of high volume, one that does not fit in a single record batch
   (``rows > record_batch_rows``, the run's own streaming unit), is ingested by a dedicated
   agent with the streaming deadline (``STREAMING_INGESTION_SLA_SECONDS``);
2. a branch that validates (its specialist asks for DATA_VALIDATION) gets a validation
   agent held to quality ``VALIDATION_QUALITY_REQUIRED``, with the batch's rules and
   confidence and the validation deadline;
3. more than ``COORDINATION_THRESHOLD`` agents specialised by rules 1 and 2 also call for a
   PIPELINE_COORDINATION agent, which plans the round.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from airflow_provider_orchestra.core.models import BranchTask
from airflow_provider_orchestra.factory.capabilities import Capability
from airflow_provider_orchestra.factory.selection import required_capabilities_for
from airflow_provider_orchestra.factory.specification import TaskRequirements

VALIDATION_QUALITY_REQUIRED = 0.95
"""Quality a validation agent is held to."""

STREAMING_INGESTION_SLA_SECONDS = 600.0
VALIDATION_SLA_SECONDS = 400.0
"""Deadlines of the two kinds of specialised agent, as in the reference design."""

COORDINATION_THRESHOLD = 2
"""More specialised agents than this call for a coordinating agent."""


def is_high_volume(rows: int | None, record_batch_rows: int) -> bool:
    """More rows than one record batch holds: the stream is read in several record
    batches. Unmeasured rows (None) are not high volume."""
    return rows is not None and rows > record_batch_rows


def needs_high_volume_ingestion(task: BranchTask) -> bool:
    """Rule 1: an ingesting branch over a streaming source of high volume."""
    return (
        Capability.DATA_INGESTION in required_capabilities_for(task.specialist)
        and task.batch.source_type == "streaming"
        and is_high_volume(task.allocation.rows, task.record_batch_rows)
    )


def needs_validation(task: BranchTask) -> bool:
    """Rule 2: a branch whose specialist validates."""
    return Capability.DATA_VALIDATION in required_capabilities_for(task.specialist)


def branch_requirements(task: BranchTask) -> TaskRequirements:
    """What the agent of ``task`` must be: its specialist's capabilities, specialised by
    rules 1 and 2 (see the module docstring)."""
    batch = task.batch
    rows = "unmeasured" if task.allocation.rows is None else f"{task.allocation.rows} rows"
    fields: dict = {
        "capabilities_needed": sorted(required_capabilities_for(task.specialist), key=str),
        "specialist": task.specialist,
        "description": f"{task.specialist} for branch {task.branch_id} ({rows} from {batch.source.kind})",
        "batch_ids": [task.branch_id],
        "data_source": batch.source.kind,
        "batch_size": task.record_batch_rows,
        "resources": task.allocation.resources,
    }
    if needs_high_volume_ingestion(task):
        fields.update(
            description=f"ingest high-volume stream {task.branch_id} ({rows} from {batch.source.kind})",
            sla_seconds=STREAMING_INGESTION_SLA_SECONDS,
        )
    if needs_validation(task):
        rules = batch.validation.rules
        fields.update(
            description=f"validate batch {task.branch_id} ({rows})",
            rules=[r.model_dump(mode="json") for r in rules] if rules else None,
            confidence_level=batch.validation.confidence,
            quality_required=VALIDATION_QUALITY_REQUIRED,
            sla_seconds=VALIDATION_SLA_SECONDS,
        )
    return TaskRequirements(**fields)


class RequirementAnalysis(BaseModel):
    """The agents a round needs: one per branch, plus a coordinator when rule 3 holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    branches: dict[str, TaskRequirements] = Field(description="branch id -> its agent's requirements")
    specialised: list[str] = Field(description="branches whose agent rules 1 or 2 specialised, in round order")
    coordination: TaskRequirements | None = None


def analyze_requirements(tasks: Iterable[BranchTask]) -> RequirementAnalysis:
    """Requirements of every branch of a round (rules 1 and 2) and of its coordinator
    (rule 3). Raises ValueError when two tasks plan the same branch."""
    branches: dict[str, TaskRequirements] = {}
    specialised: list[str] = []
    for task in tasks:
        if task.branch_id in branches:
            raise ValueError(f"branch {task.branch_id!r} is planned twice in one round")
        branches[task.branch_id] = branch_requirements(task)
        if needs_high_volume_ingestion(task) or needs_validation(task):
            specialised.append(task.branch_id)
    coordination = None
    if len(specialised) > COORDINATION_THRESHOLD:
        coordination = TaskRequirements(
            capabilities_needed=[Capability.PIPELINE_COORDINATION],
            description=f"coordinate {len(specialised)} specialised agents",
            batch_ids=specialised,
            agent_count=len(specialised),
        )
    return RequirementAnalysis(branches=branches, specialised=specialised, coordination=coordination)
