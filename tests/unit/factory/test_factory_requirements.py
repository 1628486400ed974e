from __future__ import annotations

import pytest

from airflow_provider_orchestra.core.models import BatchDescriptor, BatchSpec, SourceRef
from airflow_provider_orchestra.factory import Capability, analyze_requirements

ROWS_HIGH = 100_000


def pair(batch_id, source_type, rows, rules=()):
    spec = BatchSpec(
        batch_id=batch_id,
        type="data_ingestion",
        source_type=source_type,
        source=SourceRef(kind="jsonl", path=f"{batch_id}.jsonl"),
        validation={"rules": [{"column": c, "not_null": True} for c in rules]},
    )
    descriptor = BatchDescriptor(batch_id=batch_id, source_kind="jsonl", uri=f"file:///{batch_id}", rows=rows)
    return spec, descriptor


def caps(requirements):
    return [r.capabilities_needed for r in requirements]


def test_high_volume_stream_needs_an_ingestion_agent():
    (req,) = analyze_requirements([pair("s1", "streaming", ROWS_HIGH)])
    assert req.capabilities_needed == [Capability.DATA_INGESTION]
    assert req.batch_ids == ["s1"]
    assert req.data_source == "jsonl"
    assert req.sla_seconds == 600


def test_threshold_is_inclusive_and_small_streams_need_none():
    assert analyze_requirements([pair("s1", "streaming", ROWS_HIGH - 1)]) == []
    assert len(analyze_requirements([pair("s1", "streaming", ROWS_HIGH)])) == 1
    assert analyze_requirements([pair("r1", "realtime", 10 * ROWS_HIGH)]) == []


def test_batch_source_needs_validation_at_095():
    (req,) = analyze_requirements([pair("b1", "batch", 10)])
    assert req.capabilities_needed == [Capability.DATA_VALIDATION]
    assert req.quality_required == 0.95
    assert req.rules is None  # comprehensive by default
    assert req.confidence_level == 0.95
    assert req.sla_seconds == 400


def test_declared_rules_need_validation_on_any_source():
    reqs = analyze_requirements([pair("r1", "realtime", 10, rules=["id"])])
    assert caps(reqs) == [[Capability.DATA_VALIDATION]]
    assert reqs[0].rules == [
        {"column": "id", "not_null": True, "unique": False, "min": None, "max": None, "allowed": None}
    ]
    both = analyze_requirements([pair("s1", "streaming", ROWS_HIGH, rules=["id"])])
    assert caps(both) == [[Capability.DATA_INGESTION], [Capability.DATA_VALIDATION]]


def test_two_requirements_need_no_coordination():
    reqs = analyze_requirements([pair("b1", "batch", 1), pair("b2", "batch", 1)])
    assert caps(reqs) == [[Capability.DATA_VALIDATION]] * 2


def test_more_than_two_requirements_add_coordination():
    reqs = analyze_requirements(
        [pair("b1", "batch", 1), pair("s1", "streaming", ROWS_HIGH), pair("b2", "batch", 1)]
    )
    assert caps(reqs)[:3] == [
        [Capability.DATA_VALIDATION],
        [Capability.DATA_INGESTION],
        [Capability.DATA_VALIDATION],
    ]
    coordination = reqs[3]
    assert coordination.capabilities_needed == [Capability.PIPELINE_COORDINATION]
    assert coordination.agent_count == 3
    assert coordination.batch_ids == ["b1", "b2", "s1"]


def test_mismatched_pair_is_refused():
    spec, _ = pair("a", "batch", 1)
    _, descriptor = pair("b", "batch", 1)
    with pytest.raises(ValueError, match="'a'.*'b'"):
        analyze_requirements([(spec, descriptor)])
