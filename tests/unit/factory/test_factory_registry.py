from __future__ import annotations

import pytest

from airflow_provider_orchestra.core.errors import AgentCreationError
from airflow_provider_orchestra.core.models import ResourceRequest
from airflow_provider_orchestra.factory import (
    Capability,
    TemplateRegistrationError,
    TemplateRegistry,
    UnknownAgentTypeError,
    UnknownCapabilityError,
    UnknownTemplateSetError,
    default_registry,
    register_agent_template,
    register_template_set,
)
from airflow_provider_orchestra.factory.registry import template_sets

from factory_test_support import RecordingAgent


def test_register_and_look_up(registry):
    entry = registry.get("validation_agent")
    assert entry.template is RecordingAgent
    assert entry.capabilities == {Capability.DATA_VALIDATION, Capability.QUALITY_MONITORING}
    assert entry.resources == ResourceRequest(cpu=0.5, memory_mb=256)
    assert "validation_agent" in registry and "nope" not in registry
    assert registry.agent_types() == sorted(registry.agent_types())


def test_default_resources_are_the_core_default():
    reg = TemplateRegistry()
    entry = reg.register_agent_template("plain", RecordingAgent, ["data_ingestion"])
    assert entry.resources == ResourceRequest()


def test_unregistered_agent_type_is_a_clear_error(registry):
    with pytest.raises(UnknownAgentTypeError) as info:
        registry.get("os.system")
    message = str(info.value)
    assert "'os.system'" in message and "ingestion_agent" in message
    assert isinstance(info.value, AgentCreationError)


def test_class_paths_are_never_accepted_as_templates():
    reg = TemplateRegistry()
    with pytest.raises(TemplateRegistrationError, match="never imported"):
        reg.register_agent_template("evil", "subprocess.Popen", ["data_ingestion"])
    with pytest.raises(TemplateRegistrationError, match="callable"):
        reg.register_agent_template("evil", 42, ["data_ingestion"])
    assert len(reg) == 0


def test_bad_registrations(registry):
    with pytest.raises(TemplateRegistrationError, match="invalid agent type"):
        registry.register_agent_template("bad name", RecordingAgent, ["data_ingestion"])
    with pytest.raises(TemplateRegistrationError, match="no capabilities"):
        registry.register_agent_template("empty", RecordingAgent, [])
    with pytest.raises(UnknownCapabilityError, match="'mind_reading'"):
        registry.register_agent_template("odd", RecordingAgent, ["mind_reading"])


def test_reregistering_same_is_noop_different_needs_replace(registry):
    entry = registry.get("ingestion_agent")
    assert (
        registry.register_agent_template(
            "ingestion_agent", RecordingAgent, ["data_ingestion"], ResourceRequest(cpu=0.5, memory_mb=256)
        )
        == entry
    )

    class Other(RecordingAgent):
        pass

    with pytest.raises(TemplateRegistrationError, match="already registered"):
        registry.register_agent_template("ingestion_agent", Other, ["data_ingestion"])
    registry.register_agent_template("ingestion_agent", Other, ["data_ingestion"], replace=True)
    assert registry.get("ingestion_agent").template is Other


def test_candidates_cover_the_required_set(registry):
    names = [e.agent_type for e in registry.candidates_for({Capability.DATA_AGGREGATION})]
    assert names == ["aggregation_agent", "quality_aggregation_agent"]
    both = {Capability.DATA_AGGREGATION, Capability.QUALITY_MONITORING}
    assert [e.agent_type for e in registry.candidates_for(both)] == ["quality_aggregation_agent"]
    assert registry.candidates_for({Capability.PIPELINE_COORDINATION}) == []


def test_template_sets_load_once_by_name():
    calls = []

    def load(reg):
        calls.append(reg)
        reg.register_agent_template("set_member", RecordingAgent, ["pipeline_coordination"])

    register_template_set("factory_test_set", load)
    reg = TemplateRegistry()
    reg.load_template_set("factory_test_set")
    reg.load_template_set("factory_test_set")
    assert calls == [reg]
    assert reg.agent_types() == ["set_member"]
    assert "default" in template_sets()


def test_unknown_template_set():
    with pytest.raises(UnknownTemplateSetError) as info:
        TemplateRegistry().load_template_set("airflow_provider_orchestra.specialists")
    assert "known sets" in str(info.value) and "default" in str(info.value)


def test_module_level_registration_goes_to_the_default_registry():
    try:
        register_agent_template("factory_module_level_test", RecordingAgent, ["data_ingestion"])
        assert default_registry.get("factory_module_level_test").template is RecordingAgent
    finally:
        default_registry.unregister("factory_module_level_test")
    assert "factory_module_level_test" not in default_registry


def test_describe_lists_templates_for_display(registry):
    listing = {item["agent_type"]: item for item in registry.describe()}
    assert listing["validation_agent"]["capabilities"] == ["data_validation", "quality_monitoring"]
    assert listing["validation_agent"]["resources"] == {"cpu": 0.5, "memory_mb": 256.0}
