"""The compiled graph's nodes, edges and routes, and the config checks at build time."""

from __future__ import annotations

import pytest

from airflow_provider_orchestra.core.errors import ConfigError
from airflow_provider_orchestra.core.models import GateResult, SyncDecision
from airflow_provider_orchestra.graph import NODE_NAMES, build_workflow_graph
from airflow_provider_orchestra.graph import routes

REFERENCE_NODES = {
    "data_batch_analyzer",
    "parallel_coordinator",
    "sync_point_manager",
    "load_balancer",
    "data_ingestion_branch_alpha",
    "data_validation_branch_beta",
    "data_transformation_branch_gamma",
    "data_aggregation_branch_primary",
    "data_quality_branch_secondary",
    "branch_merger",
    "quality_validator",
    "final_integrator",
}
SPECIALIST_NODES = {n for n in REFERENCE_NODES if "_branch_" in n}


def _edges() -> set[tuple[str, str, bool]]:
    drawable = build_workflow_graph().get_graph()
    return {(e.source, e.target, e.conditional) for e in drawable.edges}


def test_nodes_carry_the_reference_names():
    graph = build_workflow_graph()
    assert set(NODE_NAMES) == REFERENCE_NODES
    assert set(graph.get_graph().nodes) - {"__start__", "__end__"} == REFERENCE_NODES


def test_edges_follow_the_design():
    edges = _edges()
    assert ("__start__", "data_batch_analyzer", False) in edges
    assert ("data_batch_analyzer", "parallel_coordinator", False) in edges
    for name in SPECIALIST_NODES:
        assert ("parallel_coordinator", name, True) in edges  # Send fan-out
        assert (name, "sync_point_manager", False) in edges
    assert ("parallel_coordinator", "sync_point_manager", True) in edges  # nothing to run
    assert ("sync_point_manager", "branch_merger", True) in edges
    assert ("sync_point_manager", "load_balancer", True) in edges
    assert ("load_balancer", "parallel_coordinator", False) in edges
    assert ("branch_merger", "quality_validator", False) in edges
    assert ("quality_validator", "final_integrator", True) in edges
    assert ("quality_validator", "load_balancer", True) in edges
    assert ("quality_validator", "__end__", True) in edges
    assert ("final_integrator", "__end__", False) in edges


def test_interrupts_only_at_the_two_checkpoints():
    with pytest.raises(ConfigError, match="interrupt_before") as info:
        build_workflow_graph(interrupt_before=["branch_merger"])
    assert info.value.fields == ["interrupt_before"]
    graph = build_workflow_graph(interrupt_before=["sync_point_manager", "quality_validator"])
    assert set(graph.interrupt_before_nodes) == {"sync_point_manager", "quality_validator"}


def test_config_interrupts_are_the_default(tmp_path):
    config = {
        "batches": [{"batch_id": "a", "type": "data_ingestion", "source": {"kind": "csv", "path": "a.csv"}}],
        "interrupt_before": ["quality_validator"],
    }
    assert build_workflow_graph(config).interrupt_before_nodes == ["quality_validator"]


def test_bad_config_is_rejected_before_anything_is_built():
    with pytest.raises(ConfigError) as info:
        build_workflow_graph({"batches": [{"batch_id": "a", "type": "data_cleaning", "source": {"kind": "csv", "path": "a.csv"}}]})
    assert "batches.0.type" in info.value.fields


def _decision(action: str) -> SyncDecision:
    return SyncDecision(
        sync_point="all_branches", progress=0.5, status="waiting", next_action=action,
        completed_branches=[], remaining_branches=[],
    )


@pytest.mark.parametrize(
    ("action", "round", "expected"),
    [
        ("proceed_to_data_merge", 1, "branch_merger"),
        ("conditional_proceed", 1, "branch_merger"),
        ("continue_waiting", 1, "sync_point_manager"),
        ("timeout_recovery", 1, "load_balancer"),
        ("timeout_recovery", 2, "load_balancer"),
        ("timeout_recovery", 3, "branch_merger"),  # no round left to re-plan
    ],
)
def test_route_after_sync(action, round, expected):
    assert routes.after_sync(_decision(action), round, iteration_limit=3) == expected


@pytest.mark.parametrize(
    ("decision", "final", "expected"),
    [
        ("approved", True, "final_integrator"),
        ("needs_revision", False, "load_balancer"),
        ("needs_revision", True, "__end__"),
        ("critical_failure", True, "__end__"),
    ],
)
def test_route_after_gate(decision, final, expected):
    gate = GateResult(decision=decision, reason="", final=final, round=1)
    assert routes.after_gate(gate) == expected


def test_revision_round_only_right_after_the_gate_asked():
    gate = GateResult(decision="needs_revision", reason="", final=False, round=2)
    assert routes.is_revision_round(gate, 2)
    assert not routes.is_revision_round(gate, 3)  # a later sync timeout
    assert not routes.is_revision_round(None, 1)
