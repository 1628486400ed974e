"""The orchestra workflow as the integration tests run it.

``orchestra_check``: the builder with test-sized retry delays; each test passes its whole
config as the run's conf. ``orchestra_check_repair``: the same plus ``repair_sources``
between round 1 and round 2, which moves the files of ``<data>/repaired/`` over the
originals - the outside world fixing a source while the workflow recovers.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import DAG, task

from airflow_provider_orchestra.sample import sample_config
from airflow_provider_orchestra.task_groups import orchestra_workflow, workflow_params

HOME = Path(os.environ.get("ORCHESTRA_HOME", "/nonexistent"))
DEFAULTS = sample_config(HOME / "data", HOME / "output")


def build(dag_id: str) -> DAG:
    with DAG(
        dag_id,
        schedule=None,
        start_date=datetime(2024, 5, 1, tzinfo=timezone.utc),
        params=workflow_params(DEFAULTS),
    ) as dag:
        orchestra_workflow(specialist_retry_delay=timedelta(seconds=0))
    return dag


orchestra_check = build("orchestra_check")

with build("orchestra_check_repair") as orchestra_check_repair:

    @task(trigger_rule="all_done")
    def repair_sources() -> list[str]:
        repaired = HOME / "data" / "repaired"
        moved = []
        for source in sorted(repaired.glob("*")):
            shutil.copy2(source, HOME / "data" / source.name)
            moved.append(source.name)
        return moved

    repair = repair_sources()
    orchestra_check_repair.get_task("orchestra.round_1.branches_done") >> repair
    repair >> orchestra_check_repair.get_task("orchestra.round_2.parallel_coordinator")
