"""Reading a round's branch states: key parsing, outcome mapping and the decision."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_orchestra.core.models import SyncPolicy
from airflow_provider_orchestra.branch_states import (
    RoundPlan,
    decide,
    fetch_task_states,
    observe_round,
    outcome_of,
    parse_task_states,
)

ALPHA = "round_1.data_ingestion_branch_alpha"
BETA = "round_1.data_validation_branch_beta"
PRIMARY = "round_1.data_aggregation_branch_primary"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
POLICY = SyncPolicy(quorum=0.75, conditional_timeout_seconds=60, overall_timeout_seconds=600)


def plan(branches: dict[str, tuple[str, int | None]], **extra) -> RoundPlan:
    return RoundPlan.model_validate(
        {"round": 1, "started_at": T0.isoformat(), "branches": branches, "sync": POLICY.model_dump(), **extra}
    )


FOUR = {"b0": (ALPHA, 0), "b1": (ALPHA, 1), "b2": (ALPHA, 2), "b3": (BETA, 0)}


def test_keys_parse_anchored_on_task_ids_with_underscores():
    # Airflow writes "<task_id>_<map_index>"; the task ids themselves end in "_alpha" etc.
    answer = {f"{ALPHA}_0": "success", f"{ALPHA}_10": "running", f"{BETA}_1": "failed", PRIMARY: None}
    parsed = parse_task_states(answer, [ALPHA, BETA, PRIMARY])
    assert parsed[ALPHA].mapped == {0: "success", 10: "running"}
    assert not parsed[ALPHA].bare_present
    assert parsed[BETA].mapped == {1: "failed"}
    assert parsed[PRIMARY].bare_present and parsed[PRIMARY].bare_state is None
    assert parsed[PRIMARY].mapped == {}


def test_keys_of_other_tasks_are_ignored():
    parsed = parse_task_states({"round_1.coordinator": "success", f"{ALPHA}x_0": "success"}, [ALPHA])
    assert parsed[ALPHA].mapped == {} and not parsed[ALPHA].bare_present


def test_ambiguous_task_ids_are_refused_in_one_answer_and_read_apart():
    # "spec_1" could be instance 1 of "spec" or the unmapped task "spec_1".
    with pytest.raises(ValueError, match="cannot be told apart"):
        parse_task_states({"spec_1": "success"}, ["spec", "spec_1"])

    db = {"spec": {1: "running"}, "spec_1": {-1: "success"}, "other": {0: "success"}}
    calls = []

    def read(*, dag_id, task_ids, run_ids):
        calls.append(sorted(task_ids))
        out = {}
        for tid in task_ids:
            for mi, state in db[tid].items():
                out[tid if mi < 0 else f"{tid}_{mi}"] = state
        return {run_ids[0]: out}

    parsed = fetch_task_states(read, dag_id="d", run_id="r", task_ids=["spec", "spec_1", "other"])
    assert sorted(calls) == [["other"], ["spec"], ["spec_1"]]
    assert parsed["spec"].mapped == {1: "running"}
    assert parsed["spec_1"].bare_state == "success" and parsed["spec_1"].mapped == {}
    assert parsed["other"].mapped == {0: "success"}


@pytest.mark.parametrize(
    ("state", "outcome"),
    [
        ("success", "succeeded"),
        ("failed", "failed"),
        ("upstream_failed", "failed"),
        ("removed", "failed"),
        ("skipped", "skipped"),
        (None, "pending"),
        ("scheduled", "pending"),
        ("queued", "pending"),
        ("running", "pending"),
        ("deferred", "pending"),
        ("up_for_retry", "pending"),
        ("up_for_reschedule", "pending"),
        ("restarting", "pending"),
        ("a_state_from_the_future", "pending"),
    ],
)
def test_state_outcomes(state, outcome):
    assert outcome_of(state) == outcome


def test_unexpanded_bare_key_is_pending_never_done():
    # Before the routing task returns, each mapped specialist is one bare key with None.
    instances = parse_task_states({ALPHA: None, BETA: None}, [ALPHA, BETA])
    obs = decide(plan(FOUR), instances, T0 + timedelta(seconds=1))
    assert set(obs.outcomes.values()) == {"pending"}
    assert obs.decision.next_action == "continue_waiting"
    assert obs.decision.progress == 0.0


def test_task_without_any_instance_is_pending():
    obs = decide(plan(FOUR), {}, T0 + timedelta(seconds=1))
    assert obs.decision.next_action == "continue_waiting"


def test_unexpanded_task_that_cannot_run_fails_its_branches():
    instances = parse_task_states({ALPHA: "upstream_failed", f"{BETA}_0": "success"}, [ALPHA, BETA])
    obs = decide(plan(FOUR), instances, T0 + timedelta(seconds=1))
    assert obs.outcomes == {"b0": "failed", "b1": "failed", "b2": "failed", "b3": "succeeded"}
    # 1/4 succeeded and nothing left running: recovery without waiting for the timeout.
    assert obs.decision.next_action == "timeout_recovery"
    assert obs.decision.failed_branches == ["b0", "b1", "b2"]


def test_index_missing_after_expansion_counts_as_failed():
    instances = parse_task_states({f"{ALPHA}_0": "success", f"{ALPHA}_1": "success"}, [ALPHA, BETA])
    obs = decide(plan(FOUR), instances, T0)
    assert obs.states["b2"] == "removed" and obs.outcomes["b2"] == "failed"
    assert obs.outcomes["b3"] == "pending"


def test_mixed_states_below_conditional_timeout_keep_waiting_then_proceed():
    answer = {f"{ALPHA}_0": "success", f"{ALPHA}_1": "success", f"{ALPHA}_2": "up_for_retry", f"{BETA}_0": "success"}
    instances = parse_task_states(answer, [ALPHA, BETA])
    early = decide(plan(FOUR), instances, T0 + timedelta(seconds=59))
    assert (early.decision.status, early.decision.next_action) == ("waiting_final", "continue_waiting")
    late = decide(plan(FOUR), instances, T0 + timedelta(seconds=60))
    assert late.decision.next_action == "conditional_proceed"
    assert late.decision.completed_branches == ["b0", "b1", "b3"]
    assert late.decision.remaining_branches == ["b2"]
    assert late.decision.progress == pytest.approx(0.75)


def test_all_succeeded_proceeds_at_once():
    answer = {f"{ALPHA}_{i}": "success" for i in range(3)} | {f"{BETA}_0": "success"}
    obs = decide(plan(FOUR), parse_task_states(answer, [ALPHA, BETA]), T0)
    assert (obs.decision.status, obs.decision.next_action) == ("completed", "proceed_to_data_merge")


def test_below_quorum_times_out_only_past_the_overall_timeout():
    answer = {f"{ALPHA}_0": "success", f"{ALPHA}_1": "running", f"{ALPHA}_2": "queued", f"{BETA}_0": "success"}
    instances = parse_task_states(answer, [ALPHA, BETA])
    assert decide(plan(FOUR), instances, T0 + timedelta(seconds=599)).decision.next_action == "continue_waiting"
    late = decide(plan(FOUR), instances, T0 + timedelta(seconds=600))
    assert (late.decision.status, late.decision.next_action) == ("timeout", "timeout_recovery")


def test_skipped_branches_leave_the_round():
    # An empty specialist list leaves one skipped instance; its planned branches drop out.
    branches = {"b0": (ALPHA, 0), "b1": (ALPHA, 1), "q": (PRIMARY, None)}
    answer = {f"{ALPHA}_0": "success", f"{ALPHA}_1": "success", PRIMARY: "skipped"}
    obs = decide(plan(branches), parse_task_states(answer, [ALPHA, PRIMARY]), T0)
    assert obs.outcomes["q"] == "skipped"
    assert obs.decision.next_action == "proceed_to_data_merge"
    assert obs.decision.completed_branches == ["b0", "b1"]


def test_named_sync_points_follow_branch_dependencies():
    # "late" needs "early"; the first sync point below 100% is the current one.
    p = plan(
        FOUR,
        sync_points={"early": ["b0", "b1"], "late": ["b2", "b3"]},
        branch_dependencies={"b2": ["b0"]},
    )
    answer = {f"{ALPHA}_0": "success", f"{ALPHA}_1": "running", f"{ALPHA}_2": "success", f"{BETA}_0": "success"}
    obs = decide(p, parse_task_states(answer, [ALPHA, BETA]), T0 + timedelta(seconds=1))
    assert obs.decision.sync_point == "early"
    assert obs.decision.progress == pytest.approx(0.5)


def test_observe_round_reads_once_per_unambiguous_group_and_uses_elapsed_from_plan():
    calls = []

    def read(*, dag_id, task_ids, run_ids):
        calls.append((dag_id, tuple(task_ids), tuple(run_ids)))
        return {"manual__1": {f"{ALPHA}_{i}": "success" for i in range(3)} | {f"{BETA}_0": "running"}}

    obs = observe_round(plan(FOUR), read_states=read, dag_id="orchestra", run_id="manual__1", now=T0 + timedelta(seconds=61))
    assert calls == [("orchestra", (ALPHA, BETA), ("manual__1",))]
    assert obs.decision.elapsed_seconds == pytest.approx(61)
    assert obs.decision.next_action == "conditional_proceed"


def test_round_plan_validation_and_utc():
    p = RoundPlan.model_validate(
        {"round": 2, "started_at": "2026-01-01T12:00:00", "branches": {"b0": [ALPHA, 0]}, "extra_field": 1}
    )
    assert p.started_at.tzinfo == timezone.utc
    assert p.branches["b0"] == (ALPHA, 0)
    assert p.model_dump(mode="json")["extra_field"] == 1
    with pytest.raises(ValueError, match="branches"):
        RoundPlan.model_validate({"round": 1, "started_at": T0.isoformat(), "branches": {"bad id!": [ALPHA, 0]}})


def test_an_earlier_success_stands_when_its_revision_rerun_fails():
    # Round 2 re-runs b3 (weak in round 1) and it fails: as in the native graph, its round-1
    # success still counts, so the run is complete rather than at 75%.
    answer = {f"{ALPHA}_{i}": "success" for i in range(3)} | {f"{BETA}_0": "failed"}
    instances = parse_task_states(answer, [ALPHA, BETA])
    without = decide(plan(FOUR), instances, T0)
    assert without.decision.progress == pytest.approx(0.75)
    kept = decide(plan(FOUR, succeeded_before=["b3"]), instances, T0)
    assert (kept.decision.status, kept.decision.next_action) == ("completed", "proceed_to_data_merge")
    # while the re-run is still going it is pending, not done
    running = parse_task_states({**answer, f"{BETA}_0": "running"}, [ALPHA, BETA])
    waiting = decide(plan(FOUR, succeeded_before=["b3"]), running, T0)
    assert waiting.decision.remaining_branches == ["b3"]


def test_the_state_reader_sits_where_neither_operators_nor_sensors_import_the_other():
    """The trigger (loaded by the triggerer) and the operators share the reader without
    loading each other's package, and the reader itself loads neither Airflow nor LangGraph."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import airflow_provider_orchestra.branch_states\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'airflow', 'langgraph'}))\n"
        "import airflow_provider_orchestra.triggers.quorum\n"
        "print(sorted(m for m in sys.modules if m.startswith(('airflow_provider_orchestra.sensors', 'airflow_provider_orchestra.operators'))))\n"
        "import airflow_provider_orchestra.operators.base\n"
        "print(sorted(m for m in sys.modules if m.startswith('airflow_provider_orchestra.sensors')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["[]", "[]", "[]"], out.stdout
