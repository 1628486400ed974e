import math

import pytest

from airflow_provider_orchestra.core.analysis import (
    ResourceSnapshot,
    allocate_branches,
    analyze,
    analyze_batches,
    assess_resources,
    select_mode,
)
from airflow_provider_orchestra.core.models import (
    BatchComplexity,
    BatchDescriptor,
    ColumnInfo,
    ResourceAvailability,
    ResourceRequest,
    parse_config,
)


def complexity(score: float, dependency: float = 0.0) -> BatchComplexity:
    return BatchComplexity(
        complexity_score=score,
        data_dependency_score=dependency,
        volume_score=0,
        schema_score=0,
        type_diversity_score=0,
        source_diversity_score=0,
    )


def resources(cpu: float, workers: int = 8) -> ResourceAvailability:
    return ResourceAvailability(
        cluster_cpu=cpu, memory_available=1, max_concurrent_workers=workers, cpu_capacity=8, memory_capacity_mb=8192
    )


@pytest.mark.parametrize(
    ("score", "cpu", "dependency", "expected"),
    [
        (0.81, 0.71, 0.0, ("parallel", 5)),
        (0.8, 0.71, 0.0, ("adaptive", 3)),  # 0.8 is not > 0.8
        (0.81, 0.7, 0.0, ("adaptive", 3)),  # 0.7 is not > 0.7
        (0.8000001, 0.7000001, 0.0, ("parallel", 5)),
        (0.5, 0.9, 0.61, ("sequential", 1)),
        (0.5, 0.9, 0.6, ("adaptive", 3)),  # 0.6 is not > 0.6
        (0.9, 0.5, 0.9, ("sequential", 1)),  # parallel needs both conditions
    ],
)
def test_mode_selection_boundaries(score, cpu, dependency, expected):
    assert select_mode(complexity(score, dependency), resources(cpu)) == expected


def test_parallel_branches_are_capped_by_workers():
    assert select_mode(complexity(0.9), resources(0.9, workers=2)) == ("parallel", 2)
    assert select_mode(complexity(0.9), resources(0.9, workers=50)) == ("parallel", 5)
    # a cluster that reports free cpu but no worker slot still makes progress with one branch
    assert select_mode(complexity(0.9), resources(0.9, workers=0)) == ("parallel", 1)


def descriptor(batch_id, rows, columns, kind="csv", depends_on=()):
    return BatchDescriptor(
        batch_id=batch_id,
        source_kind=kind,
        uri=f"file:///{batch_id}",
        rows=rows,
        columns=[ColumnInfo(name=f"c{i}", type=t) for i, t in enumerate(columns)],
        depends_on=list(depends_on),
    )


def test_batch_complexity_follows_the_documented_formula():
    ds = [
        descriptor("a", 1_000, ["int64", "string", "double"], "csv"),
        descriptor("b", 99_000, ["int64", "timestamp[us]"], "parquet", depends_on=["a"]),
    ]
    c = analyze_batches(ds)
    volume = math.log10(1 + 100_000) / math.log10(1 + 10_000_000)
    schema = 2.5 / 50
    types = 4 / 8
    sources = 2 / 4
    assert c.volume_score == pytest.approx(volume)
    assert c.schema_score == pytest.approx(schema)
    assert c.type_diversity_score == pytest.approx(types)
    assert c.source_diversity_score == pytest.approx(sources)
    assert c.complexity_score == pytest.approx(0.4 * volume + 0.2 * schema + 0.2 * types + 0.2 * sources)
    assert c.data_dependency_score == pytest.approx(0.5)


def test_big_wide_diverse_queue_scores_above_the_parallel_threshold():
    types = ["int64", "double", "string", "bool", "date32[day]", "timestamp[us]", "decimal128(10, 2)", "binary"]
    ds = [descriptor(f"b{i}", 5_000_000, types * 7, kind) for i, kind in enumerate(["csv", "jsonl", "parquet", "postgres"])]
    assert analyze_batches(ds).complexity_score > 0.8


def test_empty_queue_scores_zero():
    c = analyze_batches([])
    assert c.complexity_score == 0 and c.data_dependency_score == 0


def test_resource_assessment_reads_ledger_and_machine():
    snap = ResourceSnapshot(
        cpu_capacity=8, memory_capacity_mb=8192, max_agents=10, cpu_used=2, memory_used_mb=1024,
        agents_used=2, machine_cpus=4, machine_load_1m=1.0, machine_memory_available_mb=4096,
    )
    r = assess_resources(snap, ResourceRequest(cpu=1, memory_mb=1024))
    assert r.cluster_cpu == pytest.approx((6 / 8) * (1 - 1 / 4))
    assert r.memory_available == pytest.approx(4096 / 8192)
    assert r.max_concurrent_workers == 4  # memory: 4096 // 1024; cpu would allow 6, agents 8


def test_overloaded_machine_has_no_free_cpu():
    snap = ResourceSnapshot(cpu_capacity=2, memory_capacity_mb=1024, max_agents=4, machine_cpus=2, machine_load_1m=9)
    assert assess_resources(snap).cluster_cpu == 0


def config(**extra):
    batches = [
        {"batch_id": "events", "type": "data_ingestion", "source_type": "streaming", "source": {"kind": "jsonl", "path": "e.jsonl"}},
        {"batch_id": "orders", "type": "data_ingestion", "source_type": "batch", "source": {"kind": "csv", "path": "o.csv"}},
        {"batch_id": "orders_rt", "type": "data_ingestion", "source_type": "realtime", "source": {"kind": "parquet", "path": "o.parquet"}},
        {"batch_id": "by_region", "type": "data_aggregation", "priority": "high", "source": {"kind": "parquet", "path": "o.parquet"}},
        {"batch_id": "by_product", "type": "data_aggregation", "priority": "low", "source": {"kind": "parquet", "path": "o.parquet"}},
    ]
    return parse_config({"batches": batches, **extra})


def test_allocation_routes_every_batch_to_its_specialist_in_dependency_order():
    cfg = config(branch_dependencies={"events": ["by_product"]})
    allocs = allocate_branches(cfg)
    assert [a.branch_id for a in allocs] == ["orders", "orders_rt", "by_region", "by_product", "events"]
    routes = {a.branch_id: a.specialist for a in allocs}
    assert routes == {
        "events": "data_ingestion_branch_alpha",
        "orders": "data_validation_branch_beta",
        "orders_rt": "data_transformation_branch_gamma",
        "by_region": "data_aggregation_branch_primary",
        "by_product": "data_quality_branch_secondary",
    }
    assert {a.round for a in allocs} == {1}
    assert allocs[-1].depends_on == ["by_product"]


def test_analyze_fills_dependencies_from_the_config():
    cfg = config(branch_dependencies={"events": ["orders"], "orders_rt": ["orders"], "by_region": ["orders"], "by_product": ["orders"]})
    ds = [descriptor(b.batch_id, 10, ["int64"]) for b in cfg.batches]
    snap = ResourceSnapshot(cpu_capacity=4, memory_capacity_mb=4096, max_agents=4, machine_cpus=4)
    result = analyze(cfg, ds, snap)
    assert result.complexity.data_dependency_score == pytest.approx(0.8)
    assert (result.workflow_mode, result.max_branches) == ("sequential", 1)
    assert len(result.allocations) == 5
