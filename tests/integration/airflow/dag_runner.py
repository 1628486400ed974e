"""Runs one DAG with ``dag.test()`` in a fresh process and prints what happened as JSON.

    python dag_runner.py <dag_id> <request.json>

The request holds the run's ``conf`` (optional) and ``logical_date`` (optional). The last
line of stdout is ``RESULT <json>``: the run's state and wall time, every task instance
(state, tries, map index and its label), the orchestra XComs the tests look at, and the
asset events the run emitted. Airflow must already be configured through the environment.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime


def main() -> None:
    dag_id, request_path = sys.argv[1], sys.argv[2]
    request = json.loads(open(request_path).read())

    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.asset import AssetEvent
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    import os

    bag = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags[dag_id]
    kwargs = {"run_conf": request.get("conf")}
    if request.get("logical_date"):
        kwargs["logical_date"] = datetime.fromisoformat(request["logical_date"])
    started = time.monotonic()
    dag_run = dag.test(**kwargs)
    seconds = time.monotonic() - started

    with create_session() as session:
        tis = (
            session.query(TaskInstance)
            .filter(TaskInstance.dag_id == dag_id, TaskInstance.run_id == dag_run.run_id)
            .all()
        )
        xcoms = (
            session.query(XComModel)
            .filter(XComModel.dag_id == dag_id, XComModel.run_id == dag_run.run_id)
            .filter(XComModel.key.in_(["return_value", "gate_result", "failed_branch_result"]))
            .all()
        )
        events = session.query(AssetEvent).filter(AssetEvent.source_run_id == dag_run.run_id).all()
        result = {
            "run_id": dag_run.run_id,
            "state": str(dag_run.state.value if hasattr(dag_run.state, "value") else dag_run.state),
            "seconds": seconds,
            "tis": [
                {
                    "task_id": ti.task_id,
                    "map_index": ti.map_index,
                    "state": None
                    if ti.state is None
                    else str(ti.state.value if hasattr(ti.state, "value") else ti.state),
                    "try_number": ti.try_number,
                    "label": ti.rendered_map_index,
                }
                for ti in tis
            ],
            "xcoms": [
                {"task_id": x.task_id, "map_index": x.map_index, "key": x.key, "value": _value(x.value)} for x in xcoms
            ],
            "asset_events": [{"uri": e.asset.uri, "extra": e.extra} for e in events],
        }
    print("RESULT " + json.dumps(result, default=str), flush=True)


def _value(raw):
    if isinstance(raw, (bytes, str)):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


if __name__ == "__main__":
    main()
