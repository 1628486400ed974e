"""The quorum trigger's serialisation and its polling loop, and the sensor's resume.

run() is driven with a state reader that answers like ``get_task_states`` from a table the
test changes while the trigger polls (the real triggerer is exercised in tests/e2e).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.serde import deserialize, serialize

from airflow_provider_orchestra.sensors.quorum import OrchestraQuorumSensor
from airflow_provider_orchestra.triggers.quorum import OrchestraQuorumTrigger

ALPHA = "round_2.data_ingestion_branch_alpha"
GAMMA = "round_2.data_transformation_branch_gamma"
RUN_ID = "manual__2026-01-01T00:00:00+00:00"


def plan(*, conditional=30.0, overall=60.0, started_ago=0.0, poke=0.02) -> dict:
    return {
        "round": 2,
        "started_at": (datetime.now(timezone.utc) - timedelta(seconds=started_ago)).isoformat(),
        "branches": {"a0": [ALPHA, 0], "a1": [ALPHA, 1], "a2": [ALPHA, 2], "g0": [GAMMA, 0]},
        "sync_points": {},
        "branch_dependencies": {},
        "sync": {
            "quorum": 0.75,
            "conditional_timeout_seconds": conditional,
            "overall_timeout_seconds": overall,
            "poke_interval_seconds": poke,
        },
        "coordinator_note": "kept",
    }


class TaskTable:
    """Task instance states of one run, answered in get_task_states' format."""

    def __init__(self, states: dict[str, str | None]):
        self.states = dict(states)
        self.reads = 0

    def __call__(self, *, dag_id, task_ids, run_ids, **_):
        assert dag_id == "orchestra_example" and run_ids == [RUN_ID]
        self.reads += 1
        keys = {k: v for k, v in self.states.items() if any(k == t or k.startswith(f"{t}_") for t in task_ids)}
        return {RUN_ID: keys}


def trigger_for(p: dict, table: TaskTable) -> OrchestraQuorumTrigger:
    trigger = OrchestraQuorumTrigger(dag_id="orchestra_example", run_id=RUN_ID, plan=p, poke_interval=p["sync"]["poke_interval_seconds"])
    trigger.read_task_states = table
    return trigger


async def first_event(trigger: OrchestraQuorumTrigger, during=None, limit: float = 20.0):
    async def consume():
        async for event in trigger.run():
            return event

    task = asyncio.ensure_future(consume())
    if during is not None:
        await during
    return await asyncio.wait_for(task, timeout=limit)


def test_serialize_round_trip_through_serde():
    p = plan()
    trigger = OrchestraQuorumTrigger(dag_id="orchestra_example", run_id=RUN_ID, plan=p, poke_interval=0.5)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_orchestra.triggers.quorum.OrchestraQuorumTrigger"
    # The task runner stores kwargs with serde; the triggerer imports the class path.
    from airflow.sdk._shared.module_loading import import_string

    rebuilt = import_string(classpath)(**deserialize(serialize(kwargs)))
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs["plan"]["coordinator_note"] == "kept"
    assert kwargs["plan"]["branches"]["g0"] == [GAMMA, 0]


def test_invalid_plan_ends_the_trigger_with_an_error_naming_the_field():
    bad = plan()
    bad["sync"]["conditional_timeout_seconds"] = 900.0  # beyond the overall timeout
    # Built as the triggerer builds it (on its event loop: no validation there) ...
    trigger = trigger_for(bad, TaskTable({}))
    # ... and refused when it starts, before any read.
    event = asyncio.run(first_event(trigger))
    assert event.payload["status"] == "error"
    assert "invalid round plan" in event.payload["message"] and "conditional_timeout_seconds" in event.payload["message"]
    assert trigger.read_task_states.reads == 0


def test_importing_the_trigger_loads_none_of_the_workflow_models():
    """The triggerer imports a trigger class on its event loop: the module must stay as
    light as what the triggerer has loaded already."""
    import subprocess
    import sys

    probe = (
        "import sys, airflow.triggers.base\n"
        "import airflow_provider_orchestra.triggers.quorum\n"
        "heavy = sorted(m for m in sys.modules if m.startswith(('airflow_provider_orchestra.core', "
        "'airflow_provider_orchestra.sensors', 'airflow_provider_orchestra.branch_states', 'pyarrow', 'langgraph')))\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]", out


def test_run_waits_while_branches_run_and_fires_at_100_percent():
    # Before the routing tasks return, both specialists are bare unexpanded keys.
    table = TaskTable({ALPHA: None, GAMMA: None, "round_2.coordinator": "success"})
    trigger = trigger_for(plan(), table)

    async def branches_progress():
        await asyncio.sleep(0.1)
        table.states = {f"{ALPHA}_0": "running", f"{ALPHA}_1": "queued", f"{ALPHA}_2": "scheduled", GAMMA: None}
        await asyncio.sleep(0.1)
        table.states.update({f"{ALPHA}_0": "success", f"{ALPHA}_1": "up_for_retry", f"{ALPHA}_2": "success"})
        table.states.pop(GAMMA)
        table.states[f"{GAMMA}_0"] = "deferred"
        await asyncio.sleep(0.1)
        table.states.update({f"{ALPHA}_1": "success", f"{GAMMA}_0": "success"})

    event = asyncio.run(first_event(trigger, branches_progress()))
    payload = event.payload
    assert payload["status"] == "decided"
    decision = payload["decision"]
    assert (decision["status"], decision["next_action"]) == ("completed", "proceed_to_data_merge")
    assert decision["completed_branches"] == ["a0", "a1", "a2", "g0"]
    assert payload["branch_states"] == {"a0": "success", "a1": "success", "a2": "success", "g0": "success"}
    assert 0 <= payload["loop_hold_ms"] < 1000  # what one look kept on the event loop
    assert table.reads >= 10  # it polled through the intermediate states


def test_run_proceeds_with_quorum_once_the_conditional_timeout_passes():
    table = TaskTable({f"{ALPHA}_0": "success", f"{ALPHA}_1": "success", f"{ALPHA}_2": "running", f"{GAMMA}_0": "success"})
    trigger = trigger_for(plan(conditional=0.4, overall=30), table)
    event = asyncio.run(first_event(trigger))
    decision = event.payload["decision"]
    assert decision["next_action"] == "conditional_proceed"
    assert decision["remaining_branches"] == ["a2"]
    assert decision["elapsed_seconds"] >= 0.4
    assert table.reads > 1  # it waited at 75% before the conditional timeout


def test_run_reports_timeout_recovery_past_the_overall_timeout():
    table = TaskTable({f"{ALPHA}_0": "success", f"{ALPHA}_1": "running", f"{ALPHA}_2": "up_for_retry", GAMMA: None})
    trigger = trigger_for(plan(conditional=0.1, overall=0.3), table)
    event = asyncio.run(first_event(trigger))
    decision = event.payload["decision"]
    assert (decision["status"], decision["next_action"]) == ("timeout", "timeout_recovery")
    assert decision["elapsed_seconds"] >= 0.3
    assert decision["progress"] == pytest.approx(0.25)


def test_run_reports_a_failing_state_read_as_an_error_event():
    def broken(**_):
        raise ConnectionError("api-server unreachable")

    trigger = OrchestraQuorumTrigger(dag_id="d", run_id=RUN_ID, plan=plan(), poke_interval=0.01)
    trigger.read_task_states = broken
    event = asyncio.run(first_event(trigger))
    assert event.payload == {"status": "error", "message": "reading branch states failed: ConnectionError: api-server unreachable"}


# ---------------------------------------------------------------- the sensor around it


def sensor(**kwargs) -> OrchestraQuorumSensor:
    return OrchestraQuorumSensor(
        task_id="sync_point", specialist_task_ids=[ALPHA, GAMMA], round_started_task_id="coordinator", **kwargs
    )


def decision(next_action: str, status: str, progress: float) -> dict:
    return {
        "sync_point": "all_branches",
        "progress": progress,
        "status": status,
        "next_action": next_action,
        "completed_branches": ["a0", "a1", "g0"],
        "remaining_branches": ["a2"],
        "failed_branches": [],
        "elapsed_seconds": 61.0,
        "decided_at": "2026-01-01T12:01:01+00:00",
    }


def test_resume_succeeds_with_the_validated_decision():
    d = decision("conditional_proceed", "waiting_final", 0.75)
    returned = sensor().execute_complete({}, {"status": "decided", "decision": d, "branch_states": {}})
    assert returned == d | {"decided_at": "2026-01-01T12:01:01Z"}


def test_resume_fails_for_timeout_recovery_with_a_clear_message():
    d = decision("timeout_recovery", "timeout", 0.5) | {"completed_branches": ["a0", "a1"], "remaining_branches": ["a2", "g0"]}
    with pytest.raises(AirflowFailException, match=r"below quorum: progress 50% after 61.0s.*remaining \['a2', 'g0'\]"):
        sensor().execute_complete({}, {"status": "decided", "decision": d})


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"status": "error", "message": "reading branch states failed: boom"}, "quorum trigger failed: reading branch states failed: boom"),
        ({"status": "decided", "decision": {"progress": 7}}, "invalid decision from the quorum trigger"),
        ({"unexpected": True}, "unexpected event"),
        (None, "unexpected event"),
    ],
)
def test_resume_rejects_bad_events(event, message):
    with pytest.raises(AirflowFailException, match=message):
        sensor().execute_complete({}, event)


def test_constructor_checks():
    with pytest.raises(ValueError, match="mode='reschedule' is for deferrable=False"):
        sensor(mode="reschedule")
    with pytest.raises(ValueError, match="non-empty list"):
        OrchestraQuorumSensor(task_id="s", specialist_task_ids=[], round_started_task_id="c")
    s = sensor(deferrable=False, mode="reschedule")
    assert (s.deferrable, s.mode, s.poke_interval_from_plan) == (False, "reschedule", True)
    assert sensor(poke_interval=2).poke_interval == 2 and not sensor(poke_interval=2).poke_interval_from_plan
