"""The quorum sensor defers to its trigger in a real deployment and frees its worker slot.

Scheduler (LocalExecutor with ONE slot), triggerer, dag-processor and api-server run as
subprocesses on a fresh Postgres metadata database. The test holds a Postgres advisory
lock that every branch needs, triggers ``quorum_deferral``, and checks that:
- the sensor reaches ``deferred`` with an OrchestraQuorumTrigger row assigned to the
  triggerer, while no branch has finished;
- a branch then runs in the only executor slot while the sensor is still deferred (a
  sensor holding its slot would deadlock here);
- after the lock is released every branch succeeds, the trigger fires, the sensor resumes
  through execute_complete and succeeds with 4/4, and the run succeeds.
"""

from __future__ import annotations

import json
import random
import time

import psycopg
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow]

DAG_ID = "quorum_deferral"
SENSOR = "sync_point"
SPECIALIST = "aggregate_branch_primary"
TRIGGER_CLASSPATH = "airflow_provider_orchestra.triggers.quorum.OrchestraQuorumTrigger"
BRANCHES = 4


class Timeline:
    """Task-instance state transitions of one run, timed from the trigger of the run."""

    def __init__(self, stack, run_id: str):
        self.stack, self.run_id = stack, run_id
        self.t0 = time.monotonic()
        self.last: dict[tuple[str, int], str | None] = {}
        self.events: list[tuple[float, str, int, str | None]] = []

    def poll(self) -> dict[tuple[str, int], str | None]:
        rows = self.stack.query(
            "select task_id, map_index, state from task_instance where dag_id = %s and run_id = %s", DAG_ID, self.run_id
        )
        now = {(t, m): s for t, m, s in rows}
        for key, state in sorted(now.items()):
            if self.last.get(key, "<none>") != state:
                self.events.append((time.monotonic() - self.t0, key[0], key[1], state))
        self.last = now
        return now

    def first(self, task_id: str, state: str, map_index: int = -1) -> float:
        return next(t for t, tid, mi, s in self.events if (tid, mi, s) == (task_id, map_index, state))

    def __str__(self) -> str:
        return "\n".join(f"  {t:6.1f}s  {tid}[{mi}] -> {s}" for t, tid, mi, s in self.events)


@pytest.mark.timeout(900)
def test_quorum_sensor_defers_and_frees_its_worker_slot(airflow_stack, postgres_server_url):
    stack = airflow_stack(AIRFLOW__CORE__PARALLELISM="1")
    stack.wait_for(
        f"DAG {DAG_ID} parsed by the dag-processor",
        lambda: stack.query("select 1 from serialized_dag where dag_id = %s", DAG_ID),
        timeout=180,
    )
    lock_key = random.randint(1, 2**31 - 1)
    conf = {
        "postgres_url": postgres_server_url,
        "lock_key": lock_key,
        "branches": BRANCHES,
        "sync": {"quorum": 0.75, "conditional_timeout_seconds": 240, "overall_timeout_seconds": 480, "poke_interval_seconds": 1},
    }
    run_id = f"e2e_{random.getrandbits(40):x}"
    with psycopg.connect(postgres_server_url, autocommit=True) as lock_conn:
        lock_conn.execute("select pg_advisory_lock(%s)", (lock_key,))
        stack.airflow("dags", "trigger", DAG_ID, "--run-id", run_id, "--conf", json.dumps(conf))
        timeline = Timeline(stack, run_id)

        stack.wait_for(
            "the sync sensor to defer",
            lambda: timeline.poll().get((SENSOR, -1)) == "deferred",
            timeout=240,
        )
        (trigger_classpath, triggerer_id, next_method), = stack.query(
            "select tr.classpath, tr.triggerer_id, ti.next_method from task_instance ti "
            "join trigger tr on tr.id = ti.trigger_id where ti.dag_id = %s and ti.run_id = %s and ti.task_id = %s",
            DAG_ID, run_id, SENSOR,
        )
        assert trigger_classpath == TRIGGER_CLASSPATH
        assert next_method == "execute_complete"
        assert not any(s == "success" for (t, _), s in timeline.last.items() if t == SPECIALIST)

        # With one executor slot, a branch can only run because the sensor gave its slot back.
        def branch_running_while_deferred():
            states = timeline.poll()
            return states.get((SENSOR, -1)) == "deferred" and any(
                s == "running" for (t, _), s in states.items() if t == SPECIALIST
            )

        stack.wait_for("a branch running while the sensor is deferred", branch_running_while_deferred, timeout=240)
        stack.wait_for(
            "the trigger to be picked up by the triggerer",
            lambda: stack.query("select triggerer_id from trigger where classpath = %s and triggerer_id is not null", TRIGGER_CLASSPATH),
            timeout=120,
        )
        released_at = time.monotonic() - timeline.t0
        lock_conn.execute("select pg_advisory_unlock(%s)", (lock_key,))

        def run_finished():
            timeline.poll()
            (state,), = stack.query("select state from dag_run where dag_id = %s and run_id = %s", DAG_ID, run_id)
            return state if state in ("success", "failed") else None

        final = stack.wait_for("the run to finish", run_finished, timeout=300)

    report = f"timeline (lock released at {released_at:.1f}s):\n{timeline}"
    print(report)
    assert final == "success", f"{report}\n{stack.log_tails()}"
    states = timeline.last
    assert states[(SENSOR, -1)] == "success"
    assert all(states[(SPECIALIST, i)] == "success" for i in range(BRANCHES)), report

    deferred_at = timeline.first(SENSOR, "deferred")
    sensor_done = timeline.first(SENSOR, "success")
    branch_done = [timeline.first(SPECIALIST, "success", i) for i in range(BRANCHES)]
    # Deferred before any branch finished, and resumed only after all of them had.
    assert deferred_at < min(branch_done) and max(branch_done) <= sensor_done, report
    assert deferred_at < released_at

    (decision,), = stack.query(
        "select value from xcom where dag_id = %s and run_id = %s and task_id = %s and key = 'return_value'",
        DAG_ID, run_id, SENSOR,
    )
    decision = decision if isinstance(decision, dict) else json.loads(decision)
    assert (decision["status"], decision["next_action"]) == ("completed", "proceed_to_data_merge"), decision
    assert decision["completed_branches"] == [f"b{i}" for i in range(BRANCHES)]
    (merged,), = stack.query(
        "select value from xcom where dag_id = %s and run_id = %s and task_id = 'merge' and key = 'return_value'",
        DAG_ID, run_id,
    )
    merged = merged if isinstance(merged, dict) else json.loads(merged)
    assert merged == {"branches": BRANCHES, "rows": sum((i + 1) * 1000 for i in range(BRANCHES))}
    # The sensor ran twice in a worker (defer, then resume) on a single try, and the trigger
    # row is gone once it fired.
    (try_number,), = stack.query(
        "select try_number from task_instance where dag_id = %s and run_id = %s and task_id = %s", DAG_ID, run_id, SENSOR
    )
    assert try_number == 1
    assert not stack.query("select 1 from trigger where classpath = %s", TRIGGER_CLASSPATH)

    # The polling happened in the triggerer: its log for the sensor shows the waiting looks.
    # (The look that fires the event may not reach the log file before the trigger ends;
    # the decision itself was checked above.)
    trigger_logs = list((stack.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={SENSOR}").glob("*.trigger.*.log"))
    assert trigger_logs, f"no trigger log for {SENSOR}\n{stack.log_tails()}"
    looks = [line for path in trigger_logs for line in path.read_text().splitlines() if "sync point 'all_branches'" in line]
    assert any("next action continue_waiting" in line for line in looks), looks
