"""Requirement analysis is the one path from a planned branch to its agent: both runtimes
(runtime.execute_branch) and a direct run ask factory.requirements, templates cover every
capability the rules ask for, and the factory's events come back with the branch."""

from __future__ import annotations

import pytest

from airflow_provider_orchestra import runtime
from airflow_provider_orchestra.core.models import SPECIALISTS, WorkflowConfig
from airflow_provider_orchestra.factory import (
    AgentFactory,
    Capability,
    LedgerCapacity,
    TemplateRegistry,
    VALIDATION_QUALITY_REQUIRED,
    analyze_requirements,
    branch_requirements,
    required_capabilities_for,
)
from airflow_provider_orchestra.specialists.templates import (
    TEMPLATE_CAPABILITIES,
    TEMPLATE_RESOURCES,
    register_default_templates,
    run_specialist_directly,
)
from airflow_provider_orchestra.specialists.validation import BatchValidationSpecialist
from specialist_test_support import STREAMING_BATCH, make_task

VALIDATE = {
    "batch_id": "orders",
    "type": "data_ingestion",
    "source_type": "batch",
    "source": {"kind": "csv", "path": "orders.csv"},
    "validation": {"rules": [{"column": "id", "not_null": True}]},
}
STREAM = STREAMING_BATCH
FACTORY_STEPS = ["agent_specified", "resources_allocated", "agent_created", "resources_released", "outcome_recorded"]


def write_orders(tmp_path, rows=5):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "orders.csv").write_text("id,amount\n" + "".join(f"{i},{i * 2}\n" for i in range(rows)))


def with_rows(task, rows):
    return task.model_copy(update={"allocation": task.allocation.model_copy(update={"rows": rows})})


@pytest.fixture
def factory(tmp_path):
    registry = TemplateRegistry()
    register_default_templates(registry)
    return AgentFactory.from_url(
        str(tmp_path / "ledger.sqlite"),
        registry=registry,
        template_set=None,
        capacity=LedgerCapacity(cpu=8, memory_mb=8192, max_agents=8),
    )


def test_a_validation_branch_is_held_to_the_design_quality_through_the_factory_and_directly(tmp_path, factory):
    write_orders(tmp_path)
    through_factory = runtime.execute_branch(make_task(tmp_path, VALIDATE), factory=factory, holder="h-1")
    direct = run_specialist_directly(make_task(tmp_path, VALIDATE, run_id="run-2"))
    for result in (through_factory, direct):
        assert result.status == "success", result.error
        assert result.details["quality_threshold"] == VALIDATION_QUALITY_REQUIRED == 0.95
    assert through_factory.agent_type == direct.agent_type == BatchValidationSpecialist.agent_type


def test_the_high_volume_rule_is_a_stream_longer_than_one_record_batch(tmp_path):
    task = make_task(tmp_path, STREAM, record_batch_rows=1_000)
    assert branch_requirements(with_rows(task, 1_000)).sla_seconds is None
    high = branch_requirements(with_rows(task, 1_001))
    assert high.sla_seconds == 600 and high.capabilities_needed == [Capability.DATA_INGESTION]
    assert high.batch_size == 1_000 and high.data_source == "jsonl"
    assert branch_requirements(task).sla_seconds is None  # rows not measured: not high volume


def test_more_than_two_specialised_agents_call_for_a_coordinator(tmp_path):
    two = [make_task(tmp_path, {**VALIDATE, "batch_id": f"v{i}"}) for i in range(2)]
    assert analyze_requirements(two).coordination is None
    stream = with_rows(make_task(tmp_path, STREAM, record_batch_rows=10), 11)
    plain = make_task(tmp_path, {**STREAM, "batch_id": "small"})
    needs = analyze_requirements([*two, plain, stream])
    assert needs.specialised == ["v0", "v1", "clicks"]
    assert needs.coordination.capabilities_needed == [Capability.PIPELINE_COORDINATION]
    assert needs.coordination.agent_count == 3 and needs.coordination.batch_ids == ["v0", "v1", "clicks"]


def test_every_capability_the_rules_ask_for_is_offered_by_a_default_template(tmp_path):
    registry = TemplateRegistry()
    register_default_templates(registry)
    asked = {Capability.PIPELINE_COORDINATION}
    for specialist in SPECIALISTS:
        asked |= required_capabilities_for(specialist)
    for capability in asked:
        assert registry.candidates_for({capability}), capability
    assert set(TEMPLATE_CAPABILITIES) == set(TEMPLATE_RESOURCES) == set(registry.agent_types())


def test_a_coordinator_agent_plans_a_round_that_needs_one(tmp_path, factory):
    batches = [{**VALIDATE, "batch_id": f"v{i}"} for i in range(3)]
    config = WorkflowConfig.model_validate({"batches": batches, "storage": {"output_root": str(tmp_path / "out")}})
    from airflow_provider_orchestra.core.analysis import allocate_branches

    tasks, events = runtime.plan_round(config, allocate_branches(config), run_id="r1", factory=factory, holder="coord")
    assert [t.branch_id for t in tasks] == ["v0", "v1", "v2"]
    assert [e["event"] for e in events] == FACTORY_STEPS
    assert {e.get("agent_type") for e in events} == {"pipeline_coordinator"}
    assert factory.ledger.lease_of("coord") is None  # released once planned


def test_the_factory_events_of_a_branch_come_back_with_its_result(tmp_path, factory):
    write_orders(tmp_path)
    result = runtime.execute_branch(make_task(tmp_path, VALIDATE), factory=factory, holder="h-1")
    assert [e["event"] for e in result.events] == FACTORY_STEPS
    assert result.events[0]["agent_id"] == result.agent_id


class _Unbuildable:
    def __init__(self, spec, lease):
        raise RuntimeError("missing credentials")


def test_a_template_that_cannot_be_created_fails_the_branch_naming_the_error_with_its_events(tmp_path):
    registry = TemplateRegistry()
    registry.register_agent_template("broken_validator", _Unbuildable, ["data_validation"])
    factory = AgentFactory.from_url(str(tmp_path / "ledger.sqlite"), registry=registry, template_set=None)
    result = runtime.execute_branch(make_task(tmp_path, VALIDATE), factory=factory, holder="h-2")
    assert result.status == "failed"
    assert "AgentCreationError" in result.error and "missing credentials" in result.error
    names = [e["event"] for e in result.events]
    assert names == ["agent_specified", "resources_allocated", "agent_factory_error", "resources_released"]
    assert factory.ledger.lease_of("h-2") is None


def test_an_unexpected_error_fails_the_branch_with_its_traceback(tmp_path, factory, monkeypatch):
    write_orders(tmp_path)

    def overflow(self, *args, **kwargs):
        raise OverflowError("cannot convert float infinity to integer")

    monkeypatch.setattr(BatchValidationSpecialist, "act", overflow)
    result = runtime.execute_branch(make_task(tmp_path, VALIDATE), factory=factory, holder="h-3")
    assert result.status == "failed"
    assert result.error == "orders: crashed: OverflowError: cannot convert float infinity to integer"
    assert "OverflowError: cannot convert float infinity to integer" in result.details["traceback"]
    assert any("in overflow" in line for line in result.details["traceback"])
    assert [e["event"] for e in result.events] == FACTORY_STEPS
    assert factory.history.stats(BatchValidationSpecialist.agent_type).successes == 0
