import pytest

from airflow_provider_orchestra.core.flow import next_after_gate, next_after_sync
from airflow_provider_orchestra.core.models import GateResult, SyncDecision


def decision(action):
    status = {"proceed_to_data_merge": "completed", "conditional_proceed": "waiting_final",
              "continue_waiting": "waiting", "timeout_recovery": "timeout"}[action]
    return SyncDecision(sync_point="all_branches", progress=0.5, status=status, next_action=action,
                        completed_branches=[], remaining_branches=[])


@pytest.mark.parametrize(
    ("action", "round", "expected"),
    [
        ("proceed_to_data_merge", 1, "merge"),
        ("conditional_proceed", 1, "merge"),
        ("continue_waiting", 1, "wait"),
        ("timeout_recovery", 1, "recover"),
        ("timeout_recovery", 2, "recover"),
        ("timeout_recovery", 3, "merge"),  # last allowed round: nothing left to re-plan
    ],
)
def test_after_sync(action, round, expected):
    assert next_after_sync(decision(action), round, iteration_limit=3) == expected


@pytest.mark.parametrize(
    ("decision_", "final", "expected"),
    [
        ("approved", True, "integrate"),
        ("needs_revision", False, "revise"),
        ("needs_revision", True, "stop"),
        ("critical_failure", True, "stop"),
    ],
)
def test_after_gate(decision_, final, expected):
    assert next_after_gate(GateResult(decision=decision_, reason="", final=final, round=1)) == expected
