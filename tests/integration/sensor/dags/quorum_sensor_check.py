"""A small round for the quorum sensor: a coordinator plans N branches, each a mapped
instance that waits for its input file and sums it; the sync point watches them.

The test decides when each input file appears, so branch durations are controlled by real
files, not by sleeping. Run conf:
    {"inputs_dir": str, "branches": int, "sync": {SyncPolicy fields}}
Branch i reads ``<inputs_dir>/branch_<i>.csv`` (one integer per line). The merge writes
``merge.json`` (the sync decision and the sum over the completed branches); the recovery
task writes ``recovery.json``. Run directly, the file calls ``dag.test(run_conf=argv[1])``.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from airflow.sdk import DAG, PokeReturnValue, get_current_context, task

from airflow_provider_orchestra.sensors.quorum import OrchestraQuorumSensor

SPECIALIST = "ingest_branch_alpha"
COORDINATOR = "plan_round"
SENSOR = "sync_point"

with DAG(dag_id="quorum_sensor_check", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:

    @task(task_id=COORDINATOR)
    def plan_round() -> dict:
        conf = get_current_context()["dag_run"].conf
        return {
            "round": 1,
            "started_at": datetime.now(timezone.utc).isoformat(),
            "branches": {f"b{i}": [SPECIALIST, i] for i in range(conf["branches"])},
            "sync_points": {},
            "branch_dependencies": {},
            "sync": conf["sync"],
        }

    @task
    def route_branches() -> list[str]:
        conf = get_current_context()["dag_run"].conf
        return [str(Path(conf["inputs_dir"]) / f"branch_{i}.csv") for i in range(conf["branches"])]

    @task.sensor(task_id=SPECIALIST, poke_interval=0.3, mode="reschedule", timeout=300)
    def ingest(path: str) -> PokeReturnValue:
        source = Path(path)
        if not source.exists():
            return PokeReturnValue(is_done=False)
        values = [int(line) for line in source.read_text().split()]
        return PokeReturnValue(is_done=True, xcom_value={"path": path, "rows": len(values), "total": sum(values)})

    sync_point = OrchestraQuorumSensor(
        task_id=SENSOR, specialist_task_ids=[SPECIALIST], round_started_task_id=COORDINATOR
    )

    @task
    def merge(decision: dict) -> None:
        ctx = get_current_context()
        plan = ctx["ti"].xcom_pull(task_ids=COORDINATOR)
        indexes = [plan["branches"][b][1] for b in decision["completed_branches"]]
        results = ctx["ti"].xcom_pull(task_ids=SPECIALIST, map_indexes=indexes)
        out = Path(ctx["dag_run"].conf["inputs_dir"]) / "merge.json"
        out.write_text(
            json.dumps({"decision": decision, "total": sum(r["total"] for r in results), "rows": sum(r["rows"] for r in results)})
        )

    @task(trigger_rule="one_failed")
    def recover() -> None:
        ctx = get_current_context()
        out = Path(ctx["dag_run"].conf["inputs_dir"]) / "recovery.json"
        out.write_text(json.dumps({"sensor_state": ctx["ti"].get_task_states(
            dag_id=ctx["ti"].dag_id, task_ids=[SENSOR], run_ids=[ctx["ti"].run_id]
        )[ctx["ti"].run_id][SENSOR]}))

    plan = plan_round()
    ingest.expand(path=route_branches())
    plan >> sync_point
    merge(sync_point.output)
    sync_point >> recover()


if __name__ == "__main__":
    run = dag.test(run_conf=json.loads(sys.argv[1]))
    print(f"DAG_RUN_STATE={run.state}")
