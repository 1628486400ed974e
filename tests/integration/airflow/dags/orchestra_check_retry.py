"""The orchestra workflow with an execution timeout on the high-priority aggregation
specialist of round 1, as a DAG author bounds a branch that may hang on its sink.

``orchestra_check_retry``: the builder with test-sized retry delays (as
``orchestra_check``); the run's conf is the whole config. When the branch's attempt is
still running after ``AGGREGATION_TIMEOUT``, Airflow interrupts it and retries it.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import DAG

from airflow_provider_orchestra.sample import sample_config
from airflow_provider_orchestra.task_groups import orchestra_workflow, workflow_params

HOME = Path(os.environ.get("ORCHESTRA_HOME", "/nonexistent"))
AGGREGATION_TASK_ID = "orchestra.round_1.data_aggregation_branch_primary"
# Long enough for a whole attempt on a busy machine (under a second when nothing waits).
AGGREGATION_TIMEOUT = timedelta(seconds=6)

with DAG(
    "orchestra_check_retry",
    schedule=None,
    start_date=datetime(2024, 5, 1, tzinfo=timezone.utc),
    params=workflow_params(sample_config(HOME / "data", HOME / "output")),
) as orchestra_check_retry:
    orchestra_workflow(specialist_retry_delay=timedelta(seconds=0))

orchestra_check_retry.get_task(AGGREGATION_TASK_ID).execution_timeout = AGGREGATION_TIMEOUT
