"""A round whose sync point must defer: run by a real scheduler, executor and triggerer.

The coordinator plans four branches; each branch, a mapped instance, first takes a shared
Postgres advisory lock that the test holds exclusively (so the branches cannot finish
before the test has seen the sensor deferred), then does its work in Postgres and returns
a small descriptor. Run conf: {"postgres_url": str, "lock_key": int, "branches": int,
"sync": {SyncPolicy fields}}.

The sensor has the highest priority: with a single executor slot it runs first, defers,
and the branches use the slot it gave back.
"""

from __future__ import annotations

from datetime import datetime, timezone

from airflow.sdk import DAG, get_current_context, task

from airflow_provider_orchestra.sensors.quorum import OrchestraQuorumSensor

SPECIALIST = "aggregate_branch_primary"
COORDINATOR = "plan_round"
SENSOR = "sync_point"

with DAG(dag_id="quorum_deferral", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:

    @task(task_id=COORDINATOR)
    def plan_round() -> dict:
        conf = get_current_context()["dag_run"].conf
        return {
            "round": 1,
            "started_at": datetime.now(timezone.utc).isoformat(),
            "branches": {f"b{i}": [SPECIALIST, i] for i in range(conf["branches"])},
            "sync": conf["sync"],
        }

    @task
    def route_branches(plan: dict) -> list[int]:
        return [index for _, index in plan["branches"].values()]

    @task(task_id=SPECIALIST)
    def aggregate(index: int) -> dict:
        import psycopg

        conf = get_current_context()["dag_run"].conf
        with psycopg.connect(conf["postgres_url"], autocommit=True) as conn:
            conn.execute("set lock_timeout = '180s'")
            conn.execute("select pg_advisory_lock_shared(%s)", (conf["lock_key"],))
            rows, total = conn.execute(
                "select count(*), sum(g) from generate_series(1, %s) as g", ((index + 1) * 1000,)
            ).fetchone()
            conn.execute("select pg_advisory_unlock_shared(%s)", (conf["lock_key"],))
        return {"branch": f"b{index}", "rows": rows, "total": int(total)}

    sync_point = OrchestraQuorumSensor(
        task_id=SENSOR,
        specialist_task_ids=[SPECIALIST],
        round_started_task_id=COORDINATOR,
        priority_weight=100,
        weight_rule="absolute",
    )

    @task
    def merge(decision: dict) -> dict:
        ti = get_current_context()["ti"]
        plan = ti.xcom_pull(task_ids=COORDINATOR)
        indexes = [plan["branches"][b][1] for b in decision["completed_branches"]]
        results = ti.xcom_pull(task_ids=SPECIALIST, map_indexes=indexes)
        return {"branches": len(results), "rows": sum(r["rows"] for r in results)}

    plan = plan_round()
    aggregate.expand(index=route_branches(plan))
    plan >> sync_point
    merge(sync_point.output)
