"""Pydantic models shared by every runtime: the config users write, the workflow state,
allocations, branch results and reports.

Everything here is small and JSON-serialisable: it travels through Airflow XCom and
LangGraph state, so it describes data (URIs, row counts, checksums, metrics) and never
carries rows.
"""

from __future__ import annotations

import operator
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from airflow_provider_orchestra.core.errors import ConfigError

Identifier = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
]
"""Branch, batch and sync point names: safe in task ids, file names and SQL identifiers."""

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


def _no_nul_byte(value: str) -> str:
    if "\x00" in value:
        raise ValueError("holds a NUL byte, which no file path can")
    return value


PathText = Annotated[str, AfterValidator(_no_nul_byte)]
"""A file or directory path as a user writes it."""

BranchType = Literal["data_ingestion", "data_aggregation"]
SourceType = Literal["streaming", "batch", "realtime"]
Priority = Literal["high", "normal", "low"]
WorkflowMode = Literal["parallel", "sequential", "adaptive"]
Category = Literal["ingestion", "validation", "transformation", "aggregation"]
CATEGORIES: tuple[Category, ...] = ("ingestion", "validation", "transformation", "aggregation")
SpecialistName = Identifier
"""A registered specialist's name (core.specialists): one of the built-in five below, or
one a DAG author registered."""
SPECIALISTS: tuple[str, ...] = (
    "data_ingestion_branch_alpha",
    "data_validation_branch_beta",
    "data_transformation_branch_gamma",
    "data_aggregation_branch_primary",
    "data_quality_branch_secondary",
)
"""The five built-in specialists of the reference design. Every registered specialist,
these first: ``core.specialists.specialist_names()``."""
BranchStatus = Literal["success", "empty", "failed", "cancelled", "skipped"]
"""``empty``: the branch ran to its end but read no row (core.outcomes says what follows)."""
GateDecision = Literal["approved", "needs_revision", "critical_failure"]
InterruptNode = Literal["sync_point_manager", "quality_validator"]
WriteMode = Literal["append", "replace", "upsert"]
WRITE_RESERVED_COLUMNS: tuple[str, ...] = ("run_id", "branch_id")
"""Columns a Postgres sink adds to every row it loads (which run and branch wrote it)."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, populate_by_name=True)


class _ConfigModel(_Model):
    """A part of the user's config: a number must be finite (``.inf`` or ``nan`` in a
    timeout, tolerance or bound would pass every range check and fail deep in a run)."""

    model_config = ConfigDict(allow_inf_nan=False)


# --------------------------------------------------------------------------- config


class SourceRef(_ConfigModel):
    """Where a batch's rows live. Files are resolved under the configured data roots;
    Postgres tables are reached through a named connection (an Airflow connection id, or
    ``ORCHESTRA_CONN_<ID>`` / ``AIRFLOW_CONN_<ID>`` in the environment), never a URL with
    a password in it."""

    kind: Literal["csv", "jsonl", "parquet", "postgres"]
    path: PathText | None = None
    table: str | None = None
    db_schema: str = Field(default="public", alias="schema")
    conn_id: str | None = None

    @model_validator(mode="after")
    def _check_target(self) -> SourceRef:
        if self.kind == "postgres":
            if not self.table or not self.conn_id:
                raise ValueError("a postgres source needs both 'table' and 'conn_id'")
        elif not self.path:
            raise ValueError(f"a {self.kind} source needs 'path'")
        return self


class ColumnRule(_ConfigModel):
    """One validation rule on one column (used by the validation specialists)."""

    column: str
    not_null: bool = False
    unique: bool = False
    # An integer bound stays an integer: above 2**53 a float cannot tell neighbours apart.
    min: int | float | None = None
    max: int | float | None = None
    allowed: list[str | int | float] | None = None


class IngestionOptions(_ConfigModel):
    """Incremental read: JSONL files by byte offset, Postgres tables by a watermark column."""

    watermark_column: str | None = None
    event_time_column: str | None = None
    late_tolerance_seconds: float = Field(default=3600.0, ge=0)


class ValidationOptions(_ConfigModel):
    rules: list[ColumnRule] = Field(default_factory=list)
    anomaly_columns: list[str] = Field(default_factory=list)
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)


class TransformationOptions(_ConfigModel):
    rename: dict[str, str] = Field(default_factory=dict)
    cast: dict[str, str] = Field(default_factory=dict)
    derive: dict[str, str] = Field(
        default_factory=dict,
        description="new column -> SQL expression over the input columns (DuckDB dialect)",
    )
    partition_date_column: str | None = None


class Metric(_ConfigModel):
    column: str
    fn: Literal["sum", "mean", "min", "max", "count", "count_distinct"]
    name: str | None = None


class AggregationOptions(_ConfigModel):
    group_by: list[str] = Field(default_factory=list)
    metrics: list[Metric] = Field(default_factory=list)
    sink_table: str | None = None
    sink_conn_id: str | None = None


class BatchSpec(_ConfigModel):
    """One entry of the data batch queue: a unit of work that becomes one branch."""

    batch_id: Identifier
    type: BranchType
    source_type: SourceType = "batch"
    priority: Priority = "normal"
    aggregation_type: str = "summary"
    source: SourceRef
    data_sources: list[str] = Field(default_factory=list)
    ingestion: IngestionOptions = Field(default_factory=IngestionOptions)
    validation: ValidationOptions = Field(default_factory=ValidationOptions)
    transformation: TransformationOptions = Field(default_factory=TransformationOptions)
    aggregation: AggregationOptions = Field(default_factory=AggregationOptions)
    write_mode: WriteMode = Field(
        default="append",
        description=(
            "How the batch's main output meets what earlier runs wrote. 'append': each run "
            "adds its own slice (a Parquet folder per run; Postgres rows keyed by run_id and "
            "branch_id), and a retry of the run replaces its slice. 'replace': the output "
            "holds the latest successful run only, swapped in atomically (Parquet: the folder "
            "<output_root>/<workflow>/_tables/<batch_id>; Postgres: the sink table). 'upsert': "
            "rows are merged into that folder or table by 'key', a row of this run replacing "
            "the row with the same key."
        ),
        examples=["append", "replace", "upsert"],
    )
    key: list[str] = Field(
        default_factory=list,
        description=(
            "The columns that identify a row for write_mode 'upsert' (required there, refused "
            "otherwise). They must be output columns, and unique and non-null in each run's "
            "output; a run whose output repeats a key fails naming the duplicates and writes "
            "nothing."
        ),
        examples=[["region"], ["customer_id", "day"]],
    )

    @model_validator(mode="after")
    def _check_write_mode(self) -> BatchSpec:
        if self.write_mode == "upsert" and not self.key:
            raise ValueError("write_mode 'upsert' needs 'key': the columns that identify a row")
        if self.key and self.write_mode != "upsert":
            raise ValueError(f"'key' is only used by write_mode 'upsert', not {self.write_mode!r}")
        repeated = sorted({c for c in self.key if self.key.count(c) > 1})
        if repeated:
            raise ValueError(f"'key' names column(s) {repeated} more than once")
        reserved = [c for c in self.key if c in WRITE_RESERVED_COLUMNS]
        if reserved:
            raise ValueError(f"'key' cannot use {reserved}: the Postgres sink writes those columns itself")
        return self


class SyncPolicy(_ConfigModel):
    """Quorum rules of the sync point. Timeouts count from the start of the round."""

    quorum: float = Field(default=0.75, gt=0.0, le=1.0)
    conditional_timeout_seconds: float = Field(default=60.0, ge=0)
    overall_timeout_seconds: float = Field(default=600.0, gt=0)
    poke_interval_seconds: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> SyncPolicy:
        if self.conditional_timeout_seconds > self.overall_timeout_seconds:
            raise ValueError(
                "conditional_timeout_seconds must not exceed overall_timeout_seconds"
            )
        return self


class QualityGatePolicy(_ConfigModel):
    """Thresholds of the quality gate (see core.quality_gate.decide)."""

    approve_quality: Fraction = 0.8
    approve_success_rate: Fraction = 0.75
    critical_quality: Fraction = 0.3

    @model_validator(mode="after")
    def _ordered(self) -> QualityGatePolicy:
        if self.critical_quality > self.approve_quality:
            raise ValueError("critical_quality must not exceed approve_quality")
        return self


class StorageConfig(_ConfigModel):
    """File roots. Sources must resolve under one of ``data_roots``; every output is
    written under ``output_root``. Relative paths are relative to the process's cwd."""

    data_roots: list[PathText] = Field(default_factory=lambda: ["data"])
    output_root: PathText = "output"
    sink_conn_id: str | None = None


class WorkflowConfig(_ConfigModel):
    """What a user writes (CLI file, DAG run conf, Params form): validated at the door."""

    workflow_id: Identifier = "orchestra"
    batches: list[BatchSpec] = Field(min_length=1)
    sync_points: dict[Identifier, list[Identifier]] = Field(
        default_factory=dict,
        description=(
            "named sets of batch ids, waited for in the order branch_dependencies imply; batches "
            "no sync point names form a final sync point 'remaining_branches' (none declared: "
            "one sync point 'all_branches' over every batch)"
        ),
    )
    branch_dependencies: dict[Identifier, list[Identifier]] = Field(default_factory=dict)
    sync: SyncPolicy = Field(default_factory=SyncPolicy)
    quality: QualityGatePolicy = Field(default_factory=QualityGatePolicy)
    iteration_limit: int = Field(default=3, ge=1, le=10)
    record_batch_rows: int = Field(default=65_536, ge=1, le=10_000_000)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    interrupt_before: list[InterruptNode] = Field(default_factory=list)

    @field_validator("batches")
    @classmethod
    def _unique_batches(cls, batches: list[BatchSpec]) -> list[BatchSpec]:
        seen: set[str] = set()
        for batch in batches:
            if batch.batch_id in seen:
                raise ValueError(f"duplicate batch_id {batch.batch_id!r}")
            seen.add(batch.batch_id)
        return batches

    @model_validator(mode="after")
    def _check_references(self) -> WorkflowConfig:
        from airflow_provider_orchestra.core.dependencies import topological_order
        from airflow_provider_orchestra.core.sync import RESERVED_SYNC_POINTS, order_sync_points

        batch_ids = [b.batch_id for b in self.batches]
        known = set(batch_ids)
        for name, members in self.sync_points.items():
            if name in RESERVED_SYNC_POINTS:
                raise ValueError(
                    f"sync point name {name!r} is reserved for an implicit sync point; choose another name"
                )
            unknown = sorted(set(members) - known)
            if unknown:
                raise ValueError(f"sync point {name!r} names unknown branch(es) {unknown}")
        for branch, needs in self.branch_dependencies.items():
            unknown = sorted(({branch} | set(needs)) - known)
            if unknown:
                raise ValueError(f"branch_dependencies names unknown branch(es) {unknown}")
        topological_order(known, self.branch_dependencies)  # raises on a cycle
        # Batches no sync point names are synchronised last (see core.sync); the sync
        # points must have an order, checked here rather than mid-run.
        order_sync_points(self.sync_points, self.branch_dependencies, batch_ids)
        return self

    def batch(self, batch_id: str) -> BatchSpec:
        for b in self.batches:
            if b.batch_id == batch_id:
                return b
        raise KeyError(batch_id)


def parse_config(data: Any) -> WorkflowConfig:
    """Validate untrusted input (dict, JSON text or a model) into a WorkflowConfig.

    Raises ConfigError whose message names each offending field path.
    """
    from pydantic import ValidationError

    if isinstance(data, WorkflowConfig):
        return data
    try:
        if isinstance(data, (str, bytes)):
            return WorkflowConfig.model_validate_json(data)
        return WorkflowConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError.from_validation(exc) from None


# --------------------------------------------------------------------------- analysis


class ColumnInfo(_Model):
    name: str
    type: str


class BatchDescriptor(_Model):
    """A measured batch: what the analyzer saw of a source, without reading it whole."""

    batch_id: Identifier
    source_kind: Literal["csv", "jsonl", "parquet", "postgres"]
    uri: str
    rows: int = Field(ge=0)
    size_bytes: int = Field(default=0, ge=0)
    columns: list[ColumnInfo] = Field(default_factory=list)
    depends_on: list[str] = Field(default_factory=list)


class BatchComplexity(_Model):
    complexity_score: Fraction
    data_dependency_score: Fraction
    volume_score: Fraction
    schema_score: Fraction
    type_diversity_score: Fraction
    source_diversity_score: Fraction


class ResourceAvailability(_Model):
    cluster_cpu: Fraction
    memory_available: Fraction
    max_concurrent_workers: int = Field(ge=0)
    cpu_capacity: float = Field(ge=0)
    memory_capacity_mb: float = Field(ge=0)


class ResourceRequest(_Model):
    cpu: float = Field(default=1.0, gt=0)
    memory_mb: float = Field(default=512.0, gt=0)


class BranchAllocation(_Model):
    """One planned branch: which batch, which specialist, in which round."""

    branch_id: Identifier
    type: BranchType
    source_type: SourceType
    priority: Priority
    aggregation_type: str = "summary"
    data_sources: list[str] = Field(default_factory=list)
    specialist: SpecialistName
    resources: ResourceRequest = Field(default_factory=ResourceRequest)
    round: int = Field(default=1, ge=1)
    strategy: Literal["primary", "fallback"] = "primary"
    depends_on: list[str] = Field(default_factory=list)
    rows: int | None = Field(default=None, ge=0, description="rows the analyzer measured (None: not measured)")


class AnalysisResult(_Model):
    workflow_mode: WorkflowMode
    max_branches: int = Field(ge=1)
    complexity: BatchComplexity
    resources: ResourceAvailability
    allocations: list[BranchAllocation]
    analyzed_at: datetime = Field(default_factory=utcnow)


class BranchTask(_Model):
    """Everything one specialist run needs: the mapped kwargs of one Airflow task and the
    payload of one LangGraph Send. Small by construction."""

    workflow_id: str
    run_id: str
    branch_id: Identifier
    round: int = Field(default=1, ge=1)
    specialist: SpecialistName
    allocation: BranchAllocation
    batch: BatchSpec
    record_batch_rows: int = 65_536
    storage: StorageConfig = Field(default_factory=StorageConfig)


# --------------------------------------------------------------------------- results


class OutputDescriptor(_Model):
    uri: str
    format: Literal["parquet", "postgres", "jsonl", "csv", "json"]
    rows: int = Field(ge=0)
    checksum: str = ""
    size_bytes: int = Field(default=0, ge=0)
    role: str = "output"
    columns: list[ColumnInfo] = Field(default_factory=list)
    """The output's columns as written (for lineage); empty when not recorded."""


class BranchMetrics(_Model):
    """What a branch did with its input. Every row is counted: ``rows_in`` rows were read
    to their end; each of them is in an output (``rows_out``; for an aggregation, the
    groups it wrote) or quarantined with a reason (``rows_rejected``). ``rows_pending``
    rows were seen but are not complete yet (a streaming file's half-written last line):
    the next run reads them."""

    rows_in: int = Field(default=0, ge=0)
    rows_out: int = Field(default=0, ge=0)
    rows_rejected: int = Field(default=0, ge=0)
    rows_pending: int = Field(default=0, ge=0)
    record_batches: int = Field(default=0, ge=0)
    execution_seconds: float | None = Field(default=None, ge=0)
    throughput_rows_per_second: float = Field(default=0.0, ge=0)
    quality: Fraction | None = None
    iterations: int = Field(default=0, ge=0)
    peak_memory_bytes: int | None = None


class BranchResult(_Model):
    branch_id: Identifier
    specialist: SpecialistName
    category: Category
    status: BranchStatus
    round: int = 1
    metrics: BranchMetrics = Field(default_factory=BranchMetrics)
    outputs: list[OutputDescriptor] = Field(default_factory=list)
    error: str | None = None
    agent_type: str | None = None
    agent_id: str | None = None
    completed_at: datetime = Field(default_factory=utcnow)
    details: dict[str, Any] = Field(default_factory=dict)
    events: list[dict[str, Any]] = Field(
        default_factory=list,
        description="the agent factory's events for this attempt (specified, allocated, created, "
        "released, outcome, errors), in order; they join the run's timeline",
    )


class SyncDecision(_Model):
    sync_point: str | None
    progress: Fraction
    status: Literal["completed", "waiting_final", "waiting", "timeout"]
    next_action: Literal[
        "proceed_to_data_merge", "conditional_proceed", "continue_waiting", "timeout_recovery"
    ]
    completed_branches: list[str]
    remaining_branches: list[str]
    failed_branches: list[str] = Field(default_factory=list)
    elapsed_seconds: float = 0.0
    decided_at: datetime = Field(default_factory=utcnow)


class CategorySynthesis(_Model):
    category: Category
    status: str
    quality_score: float
    source_attribution: dict[str, float] = Field(default_factory=dict)
    weights: dict[str, float] = Field(default_factory=dict)
    sources_count: int = 0
    total_weight: float = 0.0
    outputs: list[OutputDescriptor] = Field(default_factory=list)


class MergeReport(_Model):
    """Counts and ids follow core.outcomes: each branch's final result is counted once, as
    successful, empty, failed or cancelled."""

    categories: dict[Category, CategorySynthesis]
    successful_branches: int
    failed_branches: int
    cancelled_branches: int = 0
    empty_branches: int = 0
    allocated_branches: int
    failed_branch_ids: list[str] = Field(default_factory=list)
    cancelled_branch_ids: list[str] = Field(default_factory=list)
    empty_branch_ids: list[str] = Field(default_factory=list)
    overall_quality: float
    integration_confidence: float
    success_rate: float
    round: int = 1


class GateResult(_Model):
    decision: GateDecision
    reason: str
    final: bool
    round: int
    decided_at: datetime = Field(default_factory=utcnow)


class FinalReport(_Model):
    workflow_id: str
    run_id: str
    status: Literal["approved", "critical_failure", "revision_limit_reached"]
    workflow_mode: WorkflowMode
    rounds: int
    merge: MergeReport
    branches: list[BranchResult]
    outputs: list[OutputDescriptor] = Field(default_factory=list)
    asset_uri: str | None = None
    timeline: list[dict[str, Any]] = Field(default_factory=list)


# --------------------------------------------------------------------------- state


class TimelineEvent(_Model):
    model_config = ConfigDict(extra="allow")
    timestamp: datetime = Field(default_factory=utcnow)
    event: str


def merge_dicts(left: dict, right: dict) -> dict:
    """State reducer: branch writes land side by side."""
    return {**(left or {}), **(right or {})}


class WorkflowState(_Model):
    """The whole workflow state, field for field the reference state. ``messages`` and
    ``execution_timeline`` append; the branch maps merge by key."""

    messages: Annotated[list[dict[str, Any]], operator.add] = Field(default_factory=list)
    data_batch_queue: list[BatchDescriptor] = Field(default_factory=list)
    active_processing_branches: Annotated[dict[str, BranchAllocation], merge_dicts] = Field(
        default_factory=dict
    )
    completed_processing_branches: Annotated[dict[str, BranchResult], merge_dicts] = Field(
        default_factory=dict
    )
    sync_points: dict[str, list[str]] = Field(default_factory=dict)
    branch_dependencies: dict[str, list[str]] = Field(default_factory=dict)
    execution_timeline: Annotated[list[dict[str, Any]], operator.add] = Field(
        default_factory=list
    )
    workflow_mode: WorkflowMode | None = None
    load_balancing_metrics: dict[str, float] = Field(default_factory=dict)
    branch_performance: Annotated[dict[str, dict[str, float]], merge_dicts] = Field(
        default_factory=dict
    )
    workflow_id: str = ""
    checkpoint_data: dict[str, Any] = Field(default_factory=dict)
    monitoring_metrics: dict[str, Any] = Field(default_factory=dict)
