from __future__ import annotations

import json
from datetime import datetime

import pytest
from pydantic import ValidationError

from airflow_provider_orchestra.factory import (
    AgentSpecification,
    Capability,
    TaskRequirements,
    UnknownCapabilityError,
    parse_capabilities,
)
from airflow_provider_orchestra.factory.specification import specialization_parameters

ALL_CAPABILITIES = [
    "data_ingestion",
    "data_validation",
    "data_transformation",
    "data_aggregation",
    "quality_monitoring",
    "pipeline_coordination",
]


def test_capability_values_are_the_lower_case_names():
    assert [c.value for c in Capability] == ALL_CAPABILITIES
    assert [c.name.lower() for c in Capability] == ALL_CAPABILITIES
    assert Capability.DATA_INGESTION == "data_ingestion"


def test_capability_parses_value_name_and_case():
    assert Capability.parse("data_validation") is Capability.DATA_VALIDATION
    assert Capability.parse("QUALITY_MONITORING") is Capability.QUALITY_MONITORING
    assert Capability("Pipeline_Coordination") is Capability.PIPELINE_COORDINATION
    assert parse_capabilities(["data_ingestion", Capability.DATA_INGESTION]) == {
        Capability.DATA_INGESTION
    }


def test_unknown_capability_names_it_and_lists_the_known():
    with pytest.raises(UnknownCapabilityError) as info:
        Capability.parse("data_teleportation")
    message = str(info.value)
    assert "'data_teleportation'" in message
    for known in ALL_CAPABILITIES:
        assert known in message
    assert isinstance(info.value, ValueError)


def test_task_requirements_refuse_unknown_capability_and_fields():
    with pytest.raises(ValidationError, match="unknown capability 'telepathy'"):
        TaskRequirements(capabilities_needed=["telepathy"])
    with pytest.raises(ValidationError, match="capabilities_needed"):
        TaskRequirements(capabilities_needed=[])
    with pytest.raises(ValidationError, match="template_class"):
        TaskRequirements.model_validate(
            {"capabilities_needed": ["data_ingestion"], "template_class": "os.system"}
        )


def test_agent_specification_defaults_of_the_design():
    spec = AgentSpecification(agent_type="x", capabilities=["data_ingestion"])
    assert spec.max_concurrent_batches == 3
    assert spec.timeout_seconds == 300
    assert spec.retry_attempts == 3
    assert spec.monitoring_enabled is True
    assert spec.capabilities == [Capability.DATA_INGESTION]
    assert json.loads(spec.model_dump_json())["capabilities"] == ["data_ingestion"]


def _params(capabilities, **overrides):
    requirements = TaskRequirements(capabilities_needed=["pipeline_coordination"], **overrides)
    return specialization_parameters(
        requirements, parse_capabilities(capabilities), agent_id="a1", context={"run": "r"}
    )


def test_common_defaults_for_every_agent():
    params = _params(["pipeline_coordination"])
    assert params["quality_threshold"] == 0.8
    assert params["response_time_target"] == 300
    assert params["iteration_limit"] == 3
    assert params["agent_id"] == "a1"
    assert params["task_context"] == {"run": "r"}
    datetime.fromisoformat(params["creation_timestamp"])
    assert "ingestion_source" not in params and "validation_rules" not in params


def test_ingestion_defaults():
    params = _params(["data_ingestion"])
    assert params["ingestion_source"] == "kafka"
    assert params["batch_size"] == 1000
    assert params["data_format"] == ["parquet", "json"]
    assert params["schema_validation"] is True


def test_validation_defaults():
    params = _params(["data_validation"])
    assert params["validation_rules"] == "comprehensive"
    assert params["anomaly_detection"] is True
    assert params["confidence_level"] == 0.95


def test_transformation_defaults():
    params = _params(["data_transformation"])
    assert params["output_format"] == "parquet"
    assert params["schema_mapping"] == {}
    assert params["aggregation_rules"] == []
    assert params["partition_strategy"] == "date"


def test_requirements_override_defaults():
    params = _params(
        ["data_ingestion", "data_validation", "data_transformation"],
        data_source="postgres",
        batch_size=50,
        format="jsonl",
        validate_schema=False,
        rules=[{"column": "id", "not_null": True}],
        detect_anomalies=False,
        confidence_level=0.9,
        output_format="csv",
        schema_mapping={"a": "b"},
        aggregations=["sum"],
        partitioning="hour",
        quality_required=0.95,
        sla_seconds=60,
        max_iterations=5,
    )
    assert params["ingestion_source"] == "postgres"
    assert params["batch_size"] == 50
    assert params["data_format"] == ["jsonl"]
    assert params["schema_validation"] is False
    assert params["validation_rules"] == [{"column": "id", "not_null": True}]
    assert params["anomaly_detection"] is False
    assert params["confidence_level"] == 0.9
    assert params["output_format"] == "csv"
    assert params["schema_mapping"] == {"a": "b"}
    assert params["aggregation_rules"] == ["sum"]
    assert params["partition_strategy"] == "hour"
    assert params["quality_threshold"] == 0.95
    assert params["response_time_target"] == 60
    assert params["iteration_limit"] == 5


def test_default_collections_are_not_shared_between_agents():
    first = _params(["data_ingestion", "data_transformation"])
    first["data_format"].append("csv")
    first["schema_mapping"]["x"] = "y"
    second = _params(["data_ingestion", "data_transformation"])
    assert second["data_format"] == ["parquet", "json"]
    assert second["schema_mapping"] == {}


def test_task_context_is_made_json_safe():
    requirements = TaskRequirements(capabilities_needed=["data_ingestion"])
    params = specialization_parameters(
        requirements, {Capability.DATA_INGESTION}, agent_id="a", context={"when": datetime(2026, 1, 2)}
    )
    assert params["task_context"] == {"when": "2026-01-02 00:00:00"}
    json.dumps(params)
