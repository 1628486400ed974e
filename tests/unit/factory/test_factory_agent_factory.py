from __future__ import annotations

import time
from datetime import datetime

import pytest
from pydantic import ValidationError

from airflow_provider_orchestra.core.errors import (
    AgentCreationError,
    NoSuitableAgentError,
    ResourceUnavailableError,
)
from airflow_provider_orchestra.core.models import ResourceRequest
from airflow_provider_orchestra.factory import (
    AgentFactory,
    Capability,
    LedgerCapacity,
    TaskRequirements,
    TemplateRegistry,
    UnknownAgentTypeError,
    register_template_set,
    required_capabilities_for,
)
from factory_test_support import SMALL, TEST_CAPACITY, BrokenTemplate, RecordingAgent


def events(factory):
    return [e["event"] for e in factory.timeline]


def test_generate_spec_builds_a_full_specification(factory):
    spec = factory.generate_spec(
        TaskRequirements(capabilities_needed=["data_validation"], quality_required=0.95, sla_seconds=400),
        {"run_id": "r1"},
    )
    assert spec.agent_type == "validation_agent"
    assert spec.capabilities == [Capability.DATA_VALIDATION]
    assert spec.resource_requirements == SMALL  # the template's need
    params = spec.specialization_parameters
    assert params["agent_id"].startswith("validation_agent_") and spec.agent_id == params["agent_id"]
    assert params["validation_rules"] == "comprehensive"
    assert params["task_context"] == {"run_id": "r1"}
    assert spec.quality_thresholds == {"quality": 0.95, "confidence": 0.95}
    assert spec.performance_targets == {"response_time_seconds": 400.0, "quality": 0.95}
    assert spec.monitoring_enabled is True
    assert events(factory) == ["agent_specified"]
    event = factory.timeline[0]
    assert event["candidates"] == {"validation_agent": pytest.approx(event["score"])}


def test_agent_ids_are_unique(factory):
    req = {"capabilities_needed": ["data_ingestion"]}
    assert factory.generate_spec(req).agent_id != factory.generate_spec(req).agent_id


def test_requirements_may_override_resources_and_monitoring(factory):
    spec = factory.generate_spec(
        {"capabilities_needed": ["data_ingestion"], "resources": {"cpu": 2, "memory_mb": 100}},
        {"monitoring_required": False},
    )
    assert spec.resource_requirements == ResourceRequest(cpu=2, memory_mb=100)
    assert spec.monitoring_enabled is False


def test_untrusted_requirements_are_validated(factory):
    with pytest.raises(ValidationError, match="unknown capability 'root_access'"):
        factory.generate_spec({"capabilities_needed": ["root_access"]})


def test_history_steers_selection(factory):
    needed = {"capabilities_needed": sorted(required_capabilities_for("data_aggregation_branch_primary"))}
    assert factory.generate_spec(needed).agent_type == "aggregation_agent"
    factory.record_outcome("aggregation_agent", False, 3.0, 0.2)
    factory.record_outcome("aggregation_agent", False, 3.0, 0.1)
    assert factory.generate_spec(needed).agent_type == "quality_aggregation_agent"
    assert factory.history.stats("aggregation_agent").runs == 2
    assert "outcome_recorded" in events(factory)


def test_no_suitable_agent_goes_into_the_timeline(factory):
    with pytest.raises(NoSuitableAgentError, match="pipeline_coordination"):
        factory.generate_spec({"capabilities_needed": ["pipeline_coordination"]})
    (error,) = factory.timeline
    assert error["event"] == "agent_factory_error"
    assert error["stage"] == "select" and error["error_type"] == "NoSuitableAgentError"


def test_allocate_instantiate_release(factory):
    spec = factory.generate_spec({"capabilities_needed": ["data_transformation"]})
    lease = factory.allocate(spec, "dag/run/gamma/0")
    agent = factory.instantiate(spec, lease)
    assert isinstance(agent, RecordingAgent)
    assert agent.spec is spec and agent.lease is lease
    assert lease.resources == SMALL and lease.agent_type == "transformation_agent"
    assert factory.ledger.snapshot().used.cpu == SMALL.cpu
    assert factory.release(lease) is True
    assert factory.ledger.snapshot().used.agents == 0
    assert events(factory) == [
        "agent_specified",
        "resources_allocated",
        "agent_created",
        "resources_released",
    ]
    for event in factory.timeline:
        assert datetime.fromisoformat(event["timestamp"]).tzinfo is not None


def test_exhausted_pool_is_reported(factory):
    spec = factory.generate_spec(
        {"capabilities_needed": ["data_ingestion"], "resources": {"cpu": TEST_CAPACITY.cpu + 1}}
    )
    with pytest.raises(ResourceUnavailableError, match="cpu: requested 5"):
        factory.allocate(spec, "greedy")
    assert factory.timeline[-1]["stage"] == "allocate"
    assert factory.ledger.snapshot().used.agents == 0


def test_creation_failure_releases_the_lease(factory):
    factory.registry.register_agent_template("broken_agent", BrokenTemplate, ["pipeline_coordination"])
    spec = factory.generate_spec({"capabilities_needed": ["pipeline_coordination"]})
    lease = factory.allocate(spec, "dag/run/coord/0")
    assert factory.ledger.snapshot().used.agents == 1
    with pytest.raises(AgentCreationError) as info:
        factory.instantiate(spec, lease)
    assert "broken_agent" in str(info.value) and "missing credentials" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert factory.ledger.snapshot().used.agents == 0
    assert factory.ledger.lease_of("dag/run/coord/0") is None
    assert events(factory)[-2:] == ["agent_factory_error", "resources_released"]


def test_unregistered_type_is_never_instantiated(factory):
    spec = factory.generate_spec({"capabilities_needed": ["data_ingestion"]})
    forged = spec.model_copy(update={"agent_type": "builtins.eval"})
    lease = factory.allocate(forged, "forger")
    with pytest.raises(UnknownAgentTypeError, match="'builtins.eval'"):
        factory.instantiate(forged, lease)
    assert factory.ledger.snapshot().used.agents == 0


def test_agent_for_holds_while_the_block_runs(factory):
    with factory.agent_for({"capabilities_needed": ["data_ingestion"]}, "dag/run/alpha/0") as agent:
        assert isinstance(agent, RecordingAgent)
        assert agent.spec.agent_type == "ingestion_agent"
        assert factory.ledger.lease_of("dag/run/alpha/0") == agent.lease
    assert factory.ledger.snapshot().used.agents == 0
    assert factory.history.stats("ingestion_agent").runs == 0  # the caller records outcomes
    factory.record_outcome(agent.spec.agent_type, True, 1.5, 0.9)
    stats = factory.history.stats("ingestion_agent")
    assert (stats.runs, stats.successes, stats.mean_quality) == (1, 1, 0.9)


def test_agent_for_releases_and_records_failure_on_exception(factory):
    with pytest.raises(KeyError, match="missing_column"):
        with factory.agent_for({"capabilities_needed": ["data_ingestion"]}, "dag/run/alpha/1"):
            raise KeyError("missing_column")
    assert factory.ledger.snapshot().used.agents == 0
    stats = factory.history.stats("ingestion_agent")
    assert (stats.runs, stats.failures) == (1, 1)
    assert events(factory)[-3:] == ["agent_factory_error", "outcome_recorded", "resources_released"]
    assert factory.timeline[-3]["error_type"] == "KeyError"


def test_agent_for_releases_when_creation_fails(factory):
    factory.registry.register_agent_template("broken_agent", BrokenTemplate, ["pipeline_coordination"])
    with pytest.raises(AgentCreationError):
        with factory.agent_for({"capabilities_needed": ["pipeline_coordination"]}, "h"):
            pytest.fail("the block must not run")
    assert factory.ledger.snapshot().used.agents == 0


def test_agent_for_keeps_a_long_running_lease_alive(factory):
    ttl = 0.8
    with factory.agent_for({"capabilities_needed": ["data_ingestion"]}, "long", ttl_seconds=ttl) as agent:
        time.sleep(2.5 * ttl)  # the holder stays in the block well past its TTL
        held = factory.ledger.lease_of("long")
        assert held is not None and held.lease_id == agent.lease.lease_id
        assert held.expires_at > agent.lease.expires_at
    assert factory.ledger.lease_of("long") is None


def test_from_url_builds_everything(tmp_path):
    register_template_set(
        "factory_from_url_test",
        lambda reg: reg.register_agent_template("solo_agent", RecordingAgent, ["data_ingestion"]),
    )
    registry = TemplateRegistry()
    capacity = LedgerCapacity(cpu=1, memory_mb=1024, max_agents=1)
    factory = AgentFactory.from_url(
        tmp_path / "f.db", capacity=capacity, template_set="factory_from_url_test", registry=registry
    )
    assert registry.agent_types() == ["solo_agent"]
    assert factory.ledger.snapshot().capacity == capacity
    assert factory.ledger.store is factory.history.store
    with factory.agent_for({"capabilities_needed": ["data_ingestion"]}, "one") as agent:
        assert agent.spec.agent_type == "solo_agent"
        with pytest.raises(ResourceUnavailableError, match="agents: requested 1, free 0 of 1"):
            factory.allocate(agent.spec, "two")
    # a capacity may also come as a mapping (connection extras, config files)
    again = AgentFactory.from_url(
        tmp_path / "f.db", capacity={"cpu": 3, "memory_mb": 10, "max_agents": 2}, template_set=None, registry=registry
    )
    assert again.ledger.snapshot().capacity == LedgerCapacity(cpu=3, memory_mb=10, max_agents=2)


def test_from_url_on_postgres(postgres_url, registry):
    factory = AgentFactory.from_url(postgres_url, capacity=TEST_CAPACITY, template_set=None, registry=registry)
    with factory.agent_for({"capabilities_needed": ["data_transformation"]}, "pg/holder"):
        assert factory.ledger.snapshot().used.agents == 1
    factory.record_outcome("transformation_agent", True, 0.5, 1.0)
    assert factory.ledger.snapshot().used.agents == 0
    assert factory.history.success_rate("transformation_agent") == 1.0
    assert factory.history.stats("transformation_agent").runs == 1


def test_a_lost_lease_is_reported_in_the_timeline(factory):
    ttl = 0.3
    with factory.agent_for({"capabilities_needed": ["data_ingestion"]}, "reclaimed", ttl_seconds=ttl) as agent:
        factory.ledger.release(agent.lease)  # e.g. an operator freed it by hand
        deadline = time.monotonic() + 10
        while not any(e.get("stage") == "heartbeat" for e in factory.timeline):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    (lost,) = [e for e in factory.timeline if e.get("stage") == "heartbeat"]
    assert lost["error_type"] == "LeaseLostError" and lost["holder"] == "reclaimed"
