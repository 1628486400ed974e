from __future__ import annotations

import pytest

from airflow_provider_orchestra.core.models import BatchSpec, BranchAllocation, BranchTask
from airflow_provider_orchestra.core.routing import route
from airflow_provider_orchestra.factory import Capability, analyze_requirements, branch_requirements, is_high_volume

RECORD_BATCH = 1_000


def task(batch_id, source_type, rows=None, rules=(), branch_type="data_ingestion", priority="normal"):
    spec = BatchSpec(
        batch_id=batch_id,
        type=branch_type,
        source_type=source_type,
        priority=priority,
        source={"kind": "jsonl", "path": f"{batch_id}.jsonl"},
        validation={"rules": [{"column": c, "not_null": True} for c in rules]},
    )
    specialist = route(spec.type, spec.source_type, spec.priority)
    allocation = BranchAllocation(
        branch_id=batch_id, type=spec.type, source_type=spec.source_type, priority=spec.priority,
        specialist=specialist, rows=rows,
    )
    return BranchTask(
        workflow_id="wf", run_id="r", branch_id=batch_id, specialist=specialist, allocation=allocation,
        batch=spec, record_batch_rows=RECORD_BATCH,
    )


def test_high_volume_means_more_rows_than_one_record_batch():
    assert not is_high_volume(None, RECORD_BATCH)
    assert not is_high_volume(RECORD_BATCH, RECORD_BATCH)
    assert is_high_volume(RECORD_BATCH + 1, RECORD_BATCH)


def test_a_high_volume_stream_gets_a_dedicated_ingestion_agent():
    req = branch_requirements(task("s1", "streaming", RECORD_BATCH + 1))
    assert req.capabilities_needed == [Capability.DATA_INGESTION]
    assert req.batch_ids == ["s1"]
    assert (req.data_source, req.batch_size, req.sla_seconds) == ("jsonl", RECORD_BATCH, 600)
    assert "high-volume" in req.description
    small = branch_requirements(task("s2", "streaming", RECORD_BATCH))
    assert small.capabilities_needed == [Capability.DATA_INGESTION] and small.sla_seconds is None


def test_a_validating_branch_is_held_to_095_with_its_rules():
    req = branch_requirements(task("b1", "batch", 10, rules=["id"]))
    assert req.capabilities_needed == [Capability.DATA_VALIDATION]
    assert (req.quality_required, req.confidence_level, req.sla_seconds) == (0.95, 0.95, 400)
    assert req.rules == [{"column": "id", "not_null": True, "unique": False, "min": None, "max": None, "allowed": None}]
    assert branch_requirements(task("b2", "batch", 10)).rules is None  # comprehensive by default


@pytest.mark.parametrize(
    ("branch", "capabilities"),
    [
        (task("r1", "realtime", 10 * RECORD_BATCH, rules=["id"]), [Capability.DATA_TRANSFORMATION]),
        (task("a1", "batch", 10, branch_type="data_aggregation", priority="high"), [Capability.DATA_AGGREGATION]),
        (task("a2", "batch", 10, branch_type="data_aggregation"), [Capability.DATA_AGGREGATION, Capability.QUALITY_MONITORING]),
    ],
    ids=["transformation", "primary", "secondary"],
)
def test_other_branches_ask_for_what_their_specialist_declares_and_no_rule_applies(branch, capabilities):
    req = branch_requirements(branch)
    assert req.capabilities_needed == capabilities
    assert req.quality_required is None and req.sla_seconds is None
    assert analyze_requirements([branch]).specialised == []


def test_two_specialised_agents_need_no_coordination():
    needs = analyze_requirements([task("b1", "batch", 1), task("b2", "batch", 1), task("r1", "realtime", 1)])
    assert needs.specialised == ["b1", "b2"] and needs.coordination is None
    assert list(needs.branches) == ["b1", "b2", "r1"]


def test_more_than_two_specialised_agents_add_coordination():
    needs = analyze_requirements(
        [task("b1", "batch", 1), task("s1", "streaming", RECORD_BATCH + 1), task("b2", "batch", 1)]
    )
    assert [needs.branches[b].capabilities_needed for b in ("b1", "s1", "b2")] == [
        [Capability.DATA_VALIDATION],
        [Capability.DATA_INGESTION],
        [Capability.DATA_VALIDATION],
    ]
    assert needs.coordination.capabilities_needed == [Capability.PIPELINE_COORDINATION]
    assert needs.coordination.agent_count == 3
    assert needs.coordination.batch_ids == ["b1", "s1", "b2"]


def test_a_branch_planned_twice_is_refused():
    with pytest.raises(ValueError, match="'b1' is planned twice"):
        analyze_requirements([task("b1", "batch", 1), task("b1", "batch", 1)])
