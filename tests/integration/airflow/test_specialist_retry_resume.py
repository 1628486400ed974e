"""A specialist's Airflow retry in a real ``dag.test()`` run of the orchestra workflow, and
what it makes of the checkpoint its first try left in the task state store.

One aggregation branch (``revenue_by_region``) loads its groups into Postgres through the
Airflow connection ``warehouse`` (table ``warehouse.revenue_by_region``). The test holds a
transaction that creates the ``warehouse`` schema and has not committed - a migration in
flight - so the branch's load waits behind it, after the subgraph has checkpointed its plan
step. While that first try waits, each scenario ends it its own way; the retry then reaches
the same wait, the test reads the checkpoint the retry is working from out of Airflow's
task state store, and rolls the migration back so the retry's load goes through.

- ``killed``: the attempt outlives the task's execution timeout and Airflow interrupts it
  in the middle of its load. The subgraph never finished, so the retry resumes from the
  checkpoint try 1 wrote after plan: plan does not run again.
- ``dropped``: the sink's database connection is terminated. The load fails, the subgraph
  records a failed attempt and finishes with a failed result. A finished thread is not
  resumed (``Specialist.run``): the retry runs the subgraph again from plan, in the same
  thread.

Either way the task ends successful on its second try and the sink holds each group once.
Both runs go side by side; the DAGs are in ``dags/``.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest
from psycopg import sql

from airflow_provider_orchestra.operators.checkpoint import KEY_PREFIX, TaskStateCheckpointSaver
from airflow_provider_orchestra.sample import ORDERS_PARQUET, generate_sample_data, sample_config

from airflow_runs import RUN_TIMEOUT_SECONDS, RUNNER, TEST_DAGS, AirflowHome, DagRunResult

pytestmark = [pytest.mark.airflow, pytest.mark.postgres, pytest.mark.slow]

SINK_CONN_ID = "warehouse"
SINK_SCHEMA = "warehouse"
SINK_TABLE = "revenue_by_region"
BRANCH_ID = "revenue_by_region"
SPECIALIST = "round_1.data_aggregation_branch_primary"
TASK_ID = DagRunResult.full_id(SPECIALIST)
WAIT_SECONDS = 180.0
POLL_SECONDS = 0.05


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class Checkpoint:
    """The specialist's latest checkpoint as the task state store holds it."""

    thread_id: str
    checkpoint_id: str
    step: int
    steps: list[str]
    plan: dict[str, Any] | None


@dataclass
class Outcome:
    dag_id: str
    run: DagRunResult
    first_try: Checkpoint
    """What the store held while the first try waited on the sink."""
    retry: Checkpoint
    """What the store held while the retry waited on the sink."""
    left_in_store: list[str]
    sink_rows: list[tuple]
    expected: dict[str | None, tuple[float, int]]


class StoredDocument:
    """The saver's store over one value read out of the metadata DB (read only)."""

    def __init__(self, value: Any):
        self.value = value

    def get(self, key: str, default: Any = None) -> Any:
        return self.value

    def set(self, key: str, value: Any, **kwargs: Any) -> None:
        raise AssertionError("the test only reads the task state store")

    def delete(self, key: str) -> None:
        raise AssertionError("the test only reads the task state store")


def checkpoint_keys(airflow_db: Path) -> list[tuple[str, str]]:
    con = sqlite3.connect(f"file:{airflow_db}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute(
            "select key, value from task_state_store where task_id = ? and map_index = 0 and key like ?",
            (TASK_ID, KEY_PREFIX + "%"),
        ).fetchall()
    finally:
        con.close()


def read_checkpoint(airflow_db: Path) -> Checkpoint | None:
    rows = checkpoint_keys(airflow_db)
    if not rows:
        return None
    [(key, value)] = rows
    thread_id = key.removeprefix(KEY_PREFIX)
    saver = TaskStateCheckpointSaver(StoredDocument(json.loads(value)))
    latest = saver.get_tuple({"configurable": {"thread_id": thread_id}})
    values = latest.checkpoint["channel_values"]
    # The first checkpoint of a thread holds only the input, not yet the state's channels.
    return Checkpoint(
        thread_id, latest.checkpoint["id"], latest.metadata["step"], values.get("steps", []), values.get("plan")
    )


def waiting_loads(watch: psycopg.Connection) -> set[int]:
    """Backends of the sink load (its application_name) waiting on a lock."""
    return {
        pid
        for (pid,) in watch.execute(
            "select pid from pg_stat_activity where application_name = 'orchestra-load' "
            "and datname = current_database() and wait_event_type = 'Lock'"
        )
    }


def expected_groups(orders: Path) -> dict[str | None, tuple[float, int]]:
    """Revenue and order count per region, straight from the source file."""
    table = pq.read_table(orders, columns=["region", "amount", "order_id"])
    grouped = table.group_by("region").aggregate([("amount", "sum"), ("order_id", "count")])
    return {r["region"]: (r["amount_sum"], r["order_id_count"]) for r in grouped.to_pylist()}


def conf_for(home: AirflowHome) -> dict[str, Any]:
    generate_sample_data(home.data, orders=1_500, events=100)
    conf = sample_config(home.data, home.output, postgres_conn_id=SINK_CONN_ID)
    [revenue] = [b for b in conf["batches"] if b["batch_id"] == BRANCH_ID]
    revenue["aggregation"]["sink_table"] = f"{SINK_SCHEMA}.{SINK_TABLE}"
    conf["batches"] = [revenue]
    conf["sync_points"] = {}
    conf["sync"] = {"poke_interval_seconds": 1, "conditional_timeout_seconds": 2, "overall_timeout_seconds": 180}
    return conf


def run_with_a_held_sink(
    home: AirflowHome, dag_id: str, url: str, end_first_try: Callable[[psycopg.Connection, int], None]
) -> Outcome:
    conf = conf_for(home)
    request = home.path / f"request-{dag_id}.json"
    request.write_text(json.dumps({"conf": conf, "logical_date": None}))
    airflow_db = home.path / "airflow.db"

    migration = psycopg.connect(url)
    migration.execute(sql.SQL("create schema {}").format(sql.Identifier(SINK_SCHEMA)))  # not committed
    watch = psycopg.connect(url, autocommit=True)
    proc = subprocess.Popen(
        [sys.executable, str(RUNNER), dag_id, str(request)],
        env=home.env(**{f"AIRFLOW_CONN_{SINK_CONN_ID.upper()}": url}),
        cwd=home.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + WAIT_SECONDS

        def wait_for(what: str, found: Callable[[], Any]) -> Any:
            while time.monotonic() < deadline:
                if value := found():
                    return value
                if proc.poll() is not None:
                    raise AssertionError(f"the run ended before {what}")
                time.sleep(POLL_SECONDS)
            raise AssertionError(f"gave up waiting for {what}")

        def first_try_waiting() -> tuple[int, Checkpoint] | None:
            loads = waiting_loads(watch)
            stored = read_checkpoint(airflow_db)
            return (min(loads), stored) if loads and stored and stored.steps == ["plan"] else None

        first_load, first_try = wait_for("the first try's load to wait on the migration", first_try_waiting)
        end_first_try(watch, first_load)

        def retry_waiting() -> Checkpoint | None:
            # The killed try's backend may still wait: the retry's own load is a new one.
            # Checkpoints are written in the background while the next step runs, so the
            # one before act may land a moment after act began.
            if not waiting_loads(watch) - {first_load}:
                return None
            stored = read_checkpoint(airflow_db)
            return stored if stored and stored.steps == ["plan"] else None

        retry = wait_for("the retry's load to wait on the migration", retry_waiting)
        migration.rollback()  # the migration gives up; the load creates the schema itself
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT_SECONDS)
    except BaseException:
        proc.kill()
        stdout, stderr = proc.communicate()
        print(stdout[-6000:], stderr[-3000:])
        raise
    finally:
        migration.close()
        watch.close()

    run = DagRunResult(home, proc.returncode, stdout, stderr)
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            run.result = json.loads(line[len("RESULT ") :])
            run.tis = {(t["task_id"], t["map_index"]): t for t in run.result["tis"]}
            break
    with psycopg.connect(url) as conn:
        sink_rows = conn.execute(
            sql.SQL("select run_id, branch_id, region, revenue, orders from {} order by region").format(
                sql.Identifier(SINK_SCHEMA, SINK_TABLE)
            )
        ).fetchall()
    return Outcome(
        dag_id=dag_id,
        run=run,
        first_try=first_try,
        retry=retry,
        left_in_store=[key for key, _ in checkpoint_keys(airflow_db)],
        sink_rows=sink_rows,
        expected=expected_groups(home.data / ORDERS_PARQUET),
    )


# --------------------------------------------------------------------------- how try 1 ends


def outlive_the_execution_timeout(watch: psycopg.Connection, load_pid: int) -> None:
    """Nothing to do: the load waits until Airflow's execution timeout interrupts it."""


def terminate_the_sink_connection(watch: psycopg.Connection, load_pid: int) -> None:
    assert watch.execute("select pg_terminate_backend(%s)", (load_pid,)).fetchone()[0]


SCENARIOS = {
    "killed": ("orchestra_check_retry", outlive_the_execution_timeout),
    "dropped": ("orchestra_check", terminate_the_sink_connection),
}


@pytest.fixture(scope="module")
def outcomes(new_home, postgres_server_url) -> Iterator[dict[str, Future]]:
    databases = {name: f"orch_retry_{name}_{uuid.uuid4().hex[:8]}" for name in SCENARIOS}
    base = postgres_server_url.rsplit("/", 1)[0]
    with psycopg.connect(postgres_server_url, autocommit=True) as admin:
        for database in databases.values():
            admin.execute(sql.SQL("create database {}").format(sql.Identifier(database)))
    pool = ThreadPoolExecutor(max_workers=len(SCENARIOS))
    try:
        futures = {}
        for name, (dag_id, end_first_try) in SCENARIOS.items():
            home = new_home(f"retry-{name}", [TEST_DAGS / f"{dag_id}.py"])
            futures[name] = pool.submit(
                run_with_a_held_sink, home, dag_id, f"{base}/{databases[name]}", end_first_try
            )
        yield futures
    finally:
        pool.shutdown(wait=True)
        with psycopg.connect(postgres_server_url, autocommit=True) as admin:
            for database in databases.values():
                admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(database)))


# --------------------------------------------------------------------------- checks


def check_the_retry_succeeded_once_per_group(outcome: Outcome) -> None:
    run = outcome.run
    assert run.state == "success", run.log[-6000:]
    ti = run.ti(SPECIALIST, 0)
    assert (ti["state"], ti["try_number"], ti["label"]) == ("success", 2, BRANCH_ID)
    assert run.ti("final_integrator")["state"] == "success"

    run_id = run.result["run_id"]
    # The DESIGN's thread id, and the thread a success leaves behind: none.
    assert outcome.first_try.thread_id == f"{outcome.dag_id}/{run_id}/{TASK_ID}/0"
    assert outcome.left_in_store == []

    expected = outcome.expected
    assert len(outcome.sink_rows) == len(expected)  # each group once: the failed try loaded nothing
    assert {(r[0], r[1]) for r in outcome.sink_rows} == {(run_id, BRANCH_ID)}
    loaded = {region: (revenue, orders) for _, _, region, revenue, orders in outcome.sink_rows}
    assert loaded.keys() == expected.keys()
    for region, (revenue, orders) in expected.items():
        assert loaded[region] == (pytest.approx(revenue), orders), region

    result = run.xcom(SPECIALIST, map_index=0)
    assert result["status"] == "success"
    assert result["metrics"]["rows_out"] == len(expected)
    [pg_output] = [o for o in result["outputs"] if o["format"] == "postgres"]
    assert pg_output["rows"] == len(expected)


def test_a_killed_try_is_resumed_by_its_retry_without_planning_again(outcomes):
    outcome = outcomes["killed"].result()
    check_the_retry_succeeded_once_per_group(outcome)
    log = outcome.run.log
    assert "AirflowTaskTimeout" in log  # Airflow interrupted try 1 ...
    assert "SpecialistError" not in log  # ... before its subgraph could finish with a result

    first, retry = outcome.first_try, outcome.retry
    assert first.steps == ["plan"] and first.plan is not None
    # The retry works from the very checkpoint try 1 wrote after plan: had plan run again,
    # the retry would have written a checkpoint of its own before reaching the sink.
    assert retry == first
    # One act counted: the interrupted one left no attempt behind.
    assert outcome.run.xcom(SPECIALIST, map_index=0)["metrics"]["iterations"] == 1


def test_a_try_that_failed_on_its_sink_is_planned_again_by_its_retry(outcomes):
    outcome = outcomes["dropped"].result()
    check_the_retry_succeeded_once_per_group(outcome)
    log = outcome.run.log
    assert "AdminShutdown" in log and "SpecialistError" in log  # try 1 finished, failed

    first, retry = outcome.first_try, outcome.retry
    assert first.steps == ["plan"]
    # The finished thread starts over: a new checkpoint after a second plan, later in the
    # same thread (try 1 went on to act, check and finish after its plan).
    assert retry.thread_id == first.thread_id
    assert retry.steps == ["plan"] and retry.plan == first.plan
    assert retry.checkpoint_id != first.checkpoint_id
    assert retry.step > first.step + 3
