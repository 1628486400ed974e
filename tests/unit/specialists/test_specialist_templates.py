"""The specialists as factory templates, progress events and the run contract."""

from __future__ import annotations

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from airflow_provider_orchestra.core.models import SPECIALISTS
from airflow_provider_orchestra.factory import (
    AgentFactory,
    Capability,
    LedgerCapacity,
    TemplateRegistry,
    branch_requirements,
)
from airflow_provider_orchestra.specialists.base import Specialist
from airflow_provider_orchestra.specialists.templates import (
    SPECIALIST_CLASSES,
    default_specification,
    register_default_templates,
    run_specialist_directly,
    specialist_for,
)
from specialist_test_support import STREAMING_BATCH as INGEST
from specialist_test_support import make_task, output, read_parquet, write_jsonl


@pytest.fixture
def factory(tmp_path):
    registry = TemplateRegistry()
    return AgentFactory.from_url(
        str(tmp_path / "factory.sqlite"),
        registry=registry,
        capacity=LedgerCapacity(cpu=8, memory_mb=8192, max_agents=8),
    )


def test_the_default_templates_and_their_capabilities():
    registry = TemplateRegistry()
    register_default_templates(registry)
    described = {d["agent_type"]: d for d in registry.describe()}
    assert {k: v["capabilities"] for k, v in described.items()} == {
        "streaming_ingestion_specialist": ["data_ingestion"],
        "batch_validation_specialist": ["data_validation", "quality_monitoring"],
        "realtime_transformation_specialist": ["data_transformation"],
        "priority_aggregation_specialist": ["data_aggregation"],
        "quality_aggregation_specialist": ["data_aggregation", "quality_monitoring"],
        "pipeline_coordinator": ["pipeline_coordination"],
    }
    assert all(d["resources"]["memory_mb"] > 0 and d["description"] for d in described.values())


# One batch per route (core.routing), so each specialist gets a branch.
BATCH_OF = {
    "data_ingestion_branch_alpha": INGEST,
    "data_validation_branch_beta": {**INGEST, "source_type": "batch"},
    "data_transformation_branch_gamma": {**INGEST, "source_type": "realtime"},
    "data_aggregation_branch_primary": {**INGEST, "type": "data_aggregation", "priority": "high"},
    "data_quality_branch_secondary": {**INGEST, "type": "data_aggregation"},
}


@pytest.mark.parametrize("branch", SPECIALISTS)
def test_the_factory_and_a_direct_run_pick_the_same_specialist_for_a_branch(factory, branch, tmp_path):
    task = make_task(tmp_path, BATCH_OF[branch])
    assert task.specialist == branch
    picked = factory.generate_spec(branch_requirements(task)).agent_type
    assert picked == default_specification(task).agent_type
    assert branch in SPECIALIST_CLASSES[picked].branches


def test_an_agent_from_the_factory_runs_a_branch(factory, tmp_path, data_dir):
    write_jsonl(data_dir / "events.jsonl", [{"id": i} for i in range(7)])
    task = make_task(tmp_path, INGEST)
    with factory.agent_for({"capabilities_needed": [Capability.DATA_INGESTION]}, holder="wf/run-1/clicks") as agent:
        assert isinstance(agent, Specialist)
        assert agent.lease_cpu == 1.0 and agent.lease_memory_mb == 512.0
        result = agent.run(task)
    assert result.status == "success", result.error
    assert result.agent_type == "streaming_ingestion_specialist"
    assert result.agent_id == agent.agent_id and agent.agent_id.startswith("streaming_ingestion_specialist")
    assert read_parquet(output(result)).num_rows == 7


def test_progress_is_reported_once_per_record_batch(tmp_path, data_dir):
    write_jsonl(data_dir / "events.jsonl", [{"id": i} for i in range(10)])
    events = []

    result = run_specialist_directly(make_task(tmp_path, INGEST, record_batch_rows=4), on_progress=events.append)

    assert result.metrics.record_batches == 3
    assert [(e["branch_id"], e["batch"], e["rows"]) for e in events] == [("clicks", 1, 4), ("clicks", 2, 8), ("clicks", 3, 10)]
    assert {e["specialist"] for e in events} == {"data_ingestion_branch_alpha"}


def test_a_failed_thread_starts_over_when_rerun(tmp_path, data_dir):
    saver = InMemorySaver()
    task = make_task(tmp_path, INGEST)
    failed = run_specialist_directly(task, saver=saver, thread_id="t")
    assert failed.status == "failed" and "does not exist" in failed.error

    write_jsonl(data_dir / "events.jsonl", [{"id": 1}])
    retried = run_specialist_directly(task, saver=saver, thread_id="t")
    assert retried.status == "success", retried.error
    assert retried.metrics.rows_out == 1


def test_programming_errors_raise(tmp_path):
    task = make_task(tmp_path, INGEST)
    validation = specialist_for(make_task(tmp_path, {**INGEST, "source_type": "batch"}))
    with pytest.raises(ValueError, match="runs \\['data_validation_branch_beta'\\]"):
        validation.run(task)
    spec = default_specification(task, agent_id="a-1")
    spec.specialization_parameters.pop("quality_threshold")
    with pytest.raises(ValueError, match="quality_threshold and iteration_limit"):
        specialist_for(task).__class__(spec, None)


def test_thresholds_come_from_the_specification(tmp_path):
    task = make_task(tmp_path, INGEST)
    default = specialist_for(task)
    assert (default.quality_threshold, default.iteration_limit) == (0.8, 3)
    strict = specialist_for(task, quality_threshold=0.95, iteration_limit=2)
    assert (strict.quality_threshold, strict.iteration_limit) == (0.95, 2)
