"""orchestra_e2e: the orchestra workflow as a deployment runs it, for the end-to-end tests.

The whole config comes from the run's conf (the Params form opens on the sample config);
specialists retry 2 s after a failed or killed attempt, so the kill tests do not wait out
the default delay.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG

from airflow_provider_orchestra.sample import sample_config
from airflow_provider_orchestra.task_groups import default_asset, orchestra_workflow, workflow_params
from airflow_provider_orchestra.task_groups.examples import example_output_dir, sample_data_dir

DAG_ID = "orchestra_e2e"

with DAG(
    DAG_ID,
    schedule=None,
    start_date=datetime(2024, 5, 1, tzinfo=timezone.utc),
    catchup=False,
    params=workflow_params(sample_config(sample_data_dir(), example_output_dir())),
    tags=["orchestra", "e2e"],
):
    orchestra_workflow(asset=default_asset(DAG_ID), specialist_retry_delay=timedelta(seconds=2))
