"""Batch analysis, cluster resource assessment, mode selection and branch allocation."""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel, Field

from airflow_provider_orchestra.core.dependencies import topological_order
from airflow_provider_orchestra.core.models import (
    AnalysisResult,
    BatchComplexity,
    BatchDescriptor,
    BranchAllocation,
    ResourceAvailability,
    ResourceRequest,
    WorkflowConfig,
    WorkflowMode,
)
from airflow_provider_orchestra.core.routing import route

# Scale points of the complexity score (see analyze_batches).
VOLUME_SATURATION_ROWS = 10_000_000
SCHEMA_SATURATION_COLUMNS = 50
TYPE_SATURATION = 8
SOURCE_KINDS = 4  # csv, jsonl, parquet, postgres

# Mode selection thresholds (DESIGN.md).
PARALLEL_COMPLEXITY = 0.8
PARALLEL_CLUSTER_CPU = 0.7
PARALLEL_MAX_BRANCHES = 5
SEQUENTIAL_DEPENDENCY = 0.6
ADAPTIVE_MAX_BRANCHES = 3


def analyze_batches(descriptors: Sequence[BatchDescriptor]) -> BatchComplexity:
    """Score the batch queue from what was measured of it.

    - volume = log10(1 + total rows) / log10(1 + 10M), capped at 1
    - schema = mean column count / 50, capped at 1
    - type diversity = distinct column types over all batches / 8, capped at 1
    - source diversity = distinct source kinds / 4
    - complexity_score = 0.4 volume + 0.2 schema + 0.2 type diversity + 0.2 source diversity
    - data_dependency_score = share of batches that declare at least one dependency
    An empty queue scores 0 everywhere.
    """
    if not descriptors:
        return BatchComplexity(
            complexity_score=0.0,
            data_dependency_score=0.0,
            volume_score=0.0,
            schema_score=0.0,
            type_diversity_score=0.0,
            source_diversity_score=0.0,
        )
    total_rows = sum(d.rows for d in descriptors)
    volume = min(1.0, math.log10(1 + total_rows) / math.log10(1 + VOLUME_SATURATION_ROWS))
    mean_columns = sum(len(d.columns) for d in descriptors) / len(descriptors)
    schema = min(1.0, mean_columns / SCHEMA_SATURATION_COLUMNS)
    types = {c.type for d in descriptors for c in d.columns}
    type_diversity = min(1.0, len(types) / TYPE_SATURATION)
    source_diversity = min(1.0, len({d.source_kind for d in descriptors}) / SOURCE_KINDS)
    complexity = 0.4 * volume + 0.2 * schema + 0.2 * type_diversity + 0.2 * source_diversity
    dependency = sum(1 for d in descriptors if d.depends_on) / len(descriptors)
    return BatchComplexity(
        complexity_score=min(1.0, complexity),
        data_dependency_score=dependency,
        volume_score=volume,
        schema_score=schema,
        type_diversity_score=type_diversity,
        source_diversity_score=source_diversity,
    )


class ResourceSnapshot(BaseModel):
    """What the resource ledger and the machine report right now."""

    cpu_capacity: float = Field(gt=0)
    memory_capacity_mb: float = Field(gt=0)
    max_agents: int = Field(ge=0)
    cpu_used: float = Field(default=0.0, ge=0)
    memory_used_mb: float = Field(default=0.0, ge=0)
    agents_used: int = Field(default=0, ge=0)
    machine_cpus: int = Field(default=1, ge=1)
    machine_load_1m: float = Field(default=0.0, ge=0)
    machine_memory_available_mb: float | None = None


def assess_resources(
    snapshot: ResourceSnapshot, per_branch: ResourceRequest | None = None
) -> ResourceAvailability:
    """Free share of the cluster, from the ledger and the machine.

    - cluster_cpu = (free ledger cpu / capacity) * (1 - min(1, load_1m / machine cpus))
    - memory_available = free ledger memory / capacity, further capped by what the machine
      reports available
    - max_concurrent_workers = how many more branches of ``per_branch`` size fit in the free
      cpu, memory and agent slots
    """
    per_branch = per_branch or ResourceRequest()
    cpu_free = max(0.0, snapshot.cpu_capacity - snapshot.cpu_used)
    mem_free = max(0.0, snapshot.memory_capacity_mb - snapshot.memory_used_mb)
    if snapshot.machine_memory_available_mb is not None:
        mem_free = min(mem_free, snapshot.machine_memory_available_mb)
    machine_idle = 1.0 - min(1.0, snapshot.machine_load_1m / snapshot.machine_cpus)
    cluster_cpu = (cpu_free / snapshot.cpu_capacity) * machine_idle
    workers = min(
        max(0, snapshot.max_agents - snapshot.agents_used),
        int(cpu_free // per_branch.cpu),
        int(mem_free // per_branch.memory_mb),
    )
    return ResourceAvailability(
        cluster_cpu=min(1.0, cluster_cpu),
        memory_available=min(1.0, mem_free / snapshot.memory_capacity_mb),
        max_concurrent_workers=workers,
        cpu_capacity=snapshot.cpu_capacity,
        memory_capacity_mb=snapshot.memory_capacity_mb,
    )


def select_mode(
    complexity: BatchComplexity, resources: ResourceAvailability
) -> tuple[WorkflowMode, int]:
    """complexity > 0.8 and cluster_cpu > 0.7 -> parallel, min(5, workers) branches at once;
    else data_dependency > 0.6 -> sequential, 1; else adaptive, 3.

    max_branches is how many branches run at the same time; it never drops below 1 so a
    run always makes progress.
    """
    if (
        complexity.complexity_score > PARALLEL_COMPLEXITY
        and resources.cluster_cpu > PARALLEL_CLUSTER_CPU
    ):
        return "parallel", max(1, min(PARALLEL_MAX_BRANCHES, resources.max_concurrent_workers))
    if complexity.data_dependency_score > SEQUENTIAL_DEPENDENCY:
        return "sequential", 1
    return "adaptive", ADAPTIVE_MAX_BRANCHES


def allocate_branches(
    config: WorkflowConfig,
    per_branch: ResourceRequest | None = None,
    descriptors: Sequence[BatchDescriptor] = (),
) -> list[BranchAllocation]:
    """One branch per batch, in dependency order, each routed to its specialist and
    carrying the rows measured of it (when ``descriptors`` has it)."""
    per_branch = per_branch or ResourceRequest()
    rows = {d.batch_id: d.rows for d in descriptors}
    deps = config.branch_dependencies
    order = topological_order([b.batch_id for b in config.batches], deps)
    allocations = []
    for batch_id in order:
        batch = config.batch(batch_id)
        allocations.append(
            BranchAllocation(
                branch_id=batch.batch_id,
                type=batch.type,
                source_type=batch.source_type,
                priority=batch.priority,
                aggregation_type=batch.aggregation_type,
                data_sources=batch.data_sources,
                specialist=route(batch.type, batch.source_type, batch.priority),
                resources=per_branch,
                depends_on=list(deps.get(batch_id, [])),
                rows=rows.get(batch_id),
            )
        )
    return allocations


def with_dependencies(
    config: WorkflowConfig, descriptors: Sequence[BatchDescriptor]
) -> list[BatchDescriptor]:
    """The measured batches with the dependencies the config declares for them."""
    deps = config.branch_dependencies
    return [d.model_copy(update={"depends_on": list(deps.get(d.batch_id, []))}) for d in descriptors]


def analyze(
    config: WorkflowConfig,
    descriptors: Sequence[BatchDescriptor],
    snapshot: ResourceSnapshot,
    per_branch: ResourceRequest | None = None,
) -> AnalysisResult:
    """The data_batch_analyzer step: score, assess, pick the mode, allocate."""
    complexity = analyze_batches(with_dependencies(config, descriptors))
    resources = assess_resources(snapshot, per_branch)
    mode, max_branches = select_mode(complexity, resources)
    return AnalysisResult(
        workflow_mode=mode,
        max_branches=max_branches,
        complexity=complexity,
        resources=resources,
        allocations=allocate_branches(config, per_branch, descriptors),
    )
