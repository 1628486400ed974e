from __future__ import annotations

import pytest

from airflow_provider_orchestra.core.errors import NoSuitableAgentError
from airflow_provider_orchestra.core.models import SPECIALISTS, ResourceRequest
from airflow_provider_orchestra.factory import (
    Capability,
    ResourceUsage,
    TaskRequirements,
    TemplateRegistry,
    required_capabilities_for,
    resource_efficiency,
    score_candidates,
    select_agent_type,
)

from factory_test_support import RecordingAgent

FREE = ResourceUsage(cpu=4.0, memory_mb=4096.0, agents=4)
AGG = {Capability.DATA_AGGREGATION}


def test_score_weights_of_the_design(registry):
    scores = {c.agent_type: c for c in score_candidates(registry, AGG, {"aggregation_agent": 0.5}, FREE)}
    generalist = scores["quality_aggregation_agent"]
    assert generalist.capability_match == 0.5  # 1 required / 2 offered
    assert generalist.success_rate == 1.0  # never run
    assert generalist.resource_efficiency == pytest.approx(1 - 0.5 / 4)
    assert generalist.score == pytest.approx(0.5 * 0.4 + 1.0 * 0.4 + (1 - 0.5 / 4) * 0.2)
    specialist = scores["aggregation_agent"]
    assert specialist.capability_match == 1.0
    assert specialist.score == pytest.approx(1.0 * 0.4 + 0.5 * 0.4 + (1 - 0.5 / 4) * 0.2)


def test_exact_match_beats_generalist_when_both_work(registry):
    assert select_agent_type(registry, AGG, {}, FREE).agent_type == "aggregation_agent"


def test_a_failing_template_loses_to_one_that_works(registry):
    ranked = score_candidates(
        registry, AGG, {"aggregation_agent": 0.0, "quality_aggregation_agent": 1.0}, FREE
    )
    assert [c.agent_type for c in ranked] == ["quality_aggregation_agent", "aggregation_agent"]


def test_resource_efficiency_formula():
    assert resource_efficiency(ResourceRequest(cpu=1, memory_mb=1024), FREE) == pytest.approx(0.75)
    # the tighter dimension decides
    assert resource_efficiency(ResourceRequest(cpu=1, memory_mb=3072), FREE) == pytest.approx(0.25)
    assert resource_efficiency(ResourceRequest(cpu=8, memory_mb=1), FREE) == 0.0
    assert resource_efficiency(ResourceRequest(), ResourceUsage(cpu=0, memory_mb=0, agents=0)) == 0.0


def test_lighter_template_wins_when_all_else_is_equal():
    reg = TemplateRegistry()
    reg.register_agent_template("heavy", RecordingAgent, ["data_ingestion"], ResourceRequest(cpu=3, memory_mb=100))
    reg.register_agent_template("light", RecordingAgent, ["data_ingestion"], ResourceRequest(cpu=1, memory_mb=100))
    assert select_agent_type(reg, {Capability.DATA_INGESTION}, {}, FREE).agent_type == "light"


def test_ties_go_to_the_first_agent_type_by_name():
    reg = TemplateRegistry()
    for name in ("zeta", "alpha", "mid"):
        reg.register_agent_template(name, RecordingAgent, ["data_ingestion"])
    ranked = score_candidates(reg, {Capability.DATA_INGESTION}, {}, FREE)
    assert [c.agent_type for c in ranked] == ["alpha", "mid", "zeta"]
    assert len({c.score for c in ranked}) == 1


def test_no_suitable_agent_names_the_capabilities(registry):
    needed = {Capability.DATA_INGESTION, Capability.PIPELINE_COORDINATION}
    with pytest.raises(NoSuitableAgentError) as info:
        select_agent_type(registry, needed, {}, FREE)
    message = str(info.value)
    assert "['data_ingestion', 'pipeline_coordination']" in message
    assert "ingestion_agent" in message  # shows what is registered


def test_required_capabilities_of_every_branch():
    expected = {
        "data_ingestion_branch_alpha": {Capability.DATA_INGESTION},
        "data_validation_branch_beta": {Capability.DATA_VALIDATION},
        "data_transformation_branch_gamma": {Capability.DATA_TRANSFORMATION},
        "data_aggregation_branch_primary": {Capability.DATA_AGGREGATION},
        "data_quality_branch_secondary": {Capability.DATA_AGGREGATION, Capability.QUALITY_MONITORING},
    }
    assert set(expected) == set(SPECIALISTS)
    for name, capabilities in expected.items():
        assert required_capabilities_for(name) == capabilities
    with pytest.raises(ValueError, match="unknown specialist 'data_branch_omega'"):
        required_capabilities_for("data_branch_omega")


def test_each_branch_finds_its_template(registry):
    chosen = {
        name: select_agent_type(registry, required_capabilities_for(name), {}, FREE).agent_type
        for name in SPECIALISTS
    }
    assert chosen == {
        "data_ingestion_branch_alpha": "ingestion_agent",
        "data_validation_branch_beta": "validation_agent",
        "data_transformation_branch_gamma": "transformation_agent",
        "data_aggregation_branch_primary": "aggregation_agent",
        "data_quality_branch_secondary": "quality_aggregation_agent",
    }


def test_requirements_expose_the_required_set():
    req = TaskRequirements(capabilities_needed=["data_aggregation", "DATA_AGGREGATION"])
    assert req.required == {Capability.DATA_AGGREGATION}
