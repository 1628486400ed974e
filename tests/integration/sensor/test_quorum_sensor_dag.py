"""The quorum sensor in real ``dag.test()`` runs (SQLite metadata DB, one subprocess each).

Each run is the DAG in ``dags/quorum_sensor_check.py``: a coordinator plans four branches,
each a mapped instance that waits for its input file and sums it. This test is the outside
world: it writes the input files, at moments chosen by watching the run's task states in
the metadata database, so the branches' durations are real and controlled.

The three runs start together (each in its own AIRFLOW_HOME) and every test waits for its
own.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

DAG_ID = "quorum_sensor_check"
SPECIALIST = "ingest_branch_alpha"
SENSOR = "sync_point"
BRANCHES = 4
RUN_LIMIT_SECONDS = 240


def write_input(inputs: Path, index: int) -> None:
    """Branch i's input: the integers 1..i+3, one per line."""
    (inputs / f"branch_{index}.csv").write_text("\n".join(str(v) for v in range(1, index + 4)) + "\n")


def expected_total(indexes) -> int:
    return sum(sum(range(1, i + 4)) for i in indexes)


TaskStates = dict[tuple[str, int], dict]


def read_task_states(db: Path) -> TaskStates:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        rows = conn.execute(
            "select task_id, map_index, state, start_date, end_date from task_instance where dag_id = ?",
            (DAG_ID,),
        ).fetchall()
    return {(t, m): {"state": s, "start_date": sd, "end_date": ed} for t, m, s, sd, ed in rows}


@dataclass
class RoundRun:
    """One dag.test() subprocess and the thread that plays the outside world for it."""

    name: str
    home: Path
    inputs: Path
    react: Callable[[TaskStates, Path], bool]
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    reacted_at: float | None = None
    snapshots: list[TaskStates] = field(default_factory=list)
    final_states: TaskStates = field(default_factory=dict)
    watcher: threading.Thread | None = None

    def start(self, sync: dict, initial_inputs: list[int]) -> None:
        for i in initial_inputs:
            write_input(self.inputs, i)
        conf = {"inputs_dir": str(self.inputs), "branches": BRANCHES, "sync": sync}
        self.log_path = self.home / "dag_test.log"
        log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, str(self.home / "dags" / "quorum_sensor_check.py"), json.dumps(conf)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.home,
        )
        self.watcher = threading.Thread(target=self._watch, daemon=True)
        self.watcher.start()

    def _watch(self) -> None:
        db = self.home / "airflow.db"
        while self.proc.poll() is None:
            try:
                states = read_task_states(db)
            except sqlite3.OperationalError:  # locked by a writer for a moment
                time.sleep(0.1)
                continue
            if self.reacted_at is None and self.react(states, self.inputs):
                self.reacted_at = time.monotonic()
                self.snapshots.append(states)
            time.sleep(0.2)

    def wait(self) -> str:
        try:
            self.proc.wait(timeout=RUN_LIMIT_SECONDS)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"{self.name}: dag.test() did not finish in {RUN_LIMIT_SECONDS}s\n{self.log_tail()}")
        self.watcher.join(timeout=10)
        self.final_states = read_task_states(self.home / "airflow.db")
        return self.log_path.read_text()

    def log_tail(self, chars: int = 6000) -> str:
        return self.log_path.read_text()[-chars:] if self.log_path and self.log_path.exists() else ""

    def state(self, task_id: str, map_index: int = -1) -> str | None:
        return self.final_states[(task_id, map_index)]["state"]

    def output(self, name: str) -> dict | None:
        path = self.inputs / name
        return json.loads(path.read_text()) if path.exists() else None


def sensor_state(states: TaskStates) -> str | None:
    return states.get((SENSOR, -1), {}).get("state")


def release_all_once_sensor_waits(states: TaskStates, inputs: Path) -> bool:
    """100% scenario: nothing exists until the sensor has been put back to wait once."""
    if sensor_state(states) != "up_for_reschedule":
        return False
    for i in range(BRANCHES):
        write_input(inputs, i)
    return True


def release_straggler_after_sync(states: TaskStates, inputs: Path) -> bool:
    """Quorum scenario: the last branch's input appears only after the sync point passed."""
    if sensor_state(states) != "success":
        return False
    write_input(inputs, 3)
    return True


def release_rest_after_sensor_failed(states: TaskStates, inputs: Path) -> bool:
    """Below-quorum scenario: the missing inputs appear only after the sync point gave up."""
    if sensor_state(states) != "failed":
        return False
    write_input(inputs, 2)
    write_input(inputs, 3)
    return True


@pytest.fixture(scope="module")
def rounds(new_airflow_home, airflow_env, tmp_path_factory) -> dict[str, RoundRun]:
    plans = {
        # conditional timeout far away: only 100% lets the sensor go
        "all_done": (
            release_all_once_sensor_waits,
            {"quorum": 0.75, "conditional_timeout_seconds": 120, "overall_timeout_seconds": 180, "poke_interval_seconds": 0.5},
            [],
        ),
        "quorum_with_straggler": (
            release_straggler_after_sync,
            {"quorum": 0.75, "conditional_timeout_seconds": 3, "overall_timeout_seconds": 180, "poke_interval_seconds": 0.5},
            [0, 1, 2],
        ),
        "below_quorum": (
            release_rest_after_sensor_failed,
            {"quorum": 0.75, "conditional_timeout_seconds": 2, "overall_timeout_seconds": 6, "poke_interval_seconds": 0.5},
            [0, 1],
        ),
    }
    runs = {}
    for name, (react, sync, initial) in plans.items():
        home = new_airflow_home(name)
        runs[name] = RoundRun(name, home, tmp_path_factory.mktemp(f"inputs-{name}"), react, airflow_env(home))
        runs[name].start(sync, initial)
    yield runs
    for run in runs.values():
        if run.proc and run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()


def test_all_branches_done_proceeds_to_merge(rounds):
    run = rounds["all_done"]
    log = run.wait()
    assert "DAG_RUN_STATE=success" in log, run.log_tail()
    assert run.reacted_at is not None, "the sensor never waited (up_for_reschedule)"
    # When the inputs were released, no branch had succeeded and the sensor was waiting.
    before = run.snapshots[0]
    assert not any(v["state"] == "success" for (t, _), v in before.items() if t == SPECIALIST)
    assert "Running under dag.test(): waiting in reschedule mode" in log

    merged = run.output("merge.json")
    decision = merged["decision"]
    assert (decision["status"], decision["next_action"]) == ("completed", "proceed_to_data_merge")
    assert decision["progress"] == 1.0
    assert decision["completed_branches"] == ["b0", "b1", "b2", "b3"]
    assert merged["total"] == expected_total(range(4))
    assert run.state(SENSOR) == "success"
    assert run.state("recover") == "skipped"


def test_quorum_and_conditional_timeout_proceed_without_the_straggler(rounds):
    run = rounds["quorum_with_straggler"]
    log = run.wait()
    assert "DAG_RUN_STATE=success" in log, run.log_tail()
    merged = run.output("merge.json")
    decision = merged["decision"]
    assert (decision["status"], decision["next_action"]) == ("waiting_final", "conditional_proceed")
    assert decision["completed_branches"] == ["b0", "b1", "b2"]
    assert decision["remaining_branches"] == ["b3"]
    assert decision["progress"] == pytest.approx(0.75)
    assert decision["elapsed_seconds"] >= 3
    # Merged over what was done: three branches' rows, not the straggler's.
    assert merged["total"] == expected_total([0, 1, 2])
    # The straggler was still waiting when the sync point passed, and finished later.
    at_sync = run.snapshots[0]
    assert at_sync[(SPECIALIST, 3)]["state"] != "success"
    assert run.state(SPECIALIST, 3) == "success"
    assert run.final_states[(SPECIALIST, 3)]["end_date"] > run.final_states[(SENSOR, -1)]["end_date"]
    assert run.state("recover") == "skipped"


def test_below_quorum_past_overall_timeout_fails_and_recovery_runs(rounds):
    run = rounds["below_quorum"]
    log = run.wait()
    assert "DAG_RUN_STATE=failed" in log, run.log_tail()
    assert run.state(SENSOR) == "failed"
    match = re.search(r"sync point 'all_branches' below quorum: progress 50% after ([0-9.]+)s", log)
    assert match, run.log_tail()
    assert float(match.group(1)) >= 6
    assert "completed ['b0', 'b1'], remaining ['b2', 'b3']" in log
    # The one_failed task ran and saw the failed sensor; the merge never ran.
    assert run.state("recover") == "success"
    assert run.output("recovery.json") == {"sensor_state": "failed"}
    assert run.state("merge") == "upstream_failed"
    assert run.output("merge.json") is None
    # The sensor failed once, without retries, while branches were still waiting.
    at_failure = run.snapshots[0]
    assert {at_failure[(SPECIALIST, i)]["state"] for i in (2, 3)} <= {"up_for_reschedule", "scheduled", "queued", "running"}
