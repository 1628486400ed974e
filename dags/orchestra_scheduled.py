"""orchestra_scheduled: the orchestra workflow once a day, on that day's slice of the data.

Each run first cuts the orders of its data interval out of the sample order history
(``slices/<day>/orders.parquet``, written atomically), then runs the workflow on that slice:
validation, transformation and two aggregations over the day's orders, and streaming
ingestion of the clickstream events that arrived since the previous run (the ingestion
specialist keeps its byte offset and event-time watermark in the offset store, so each
run reads only what is new and late events are set apart).

A run at midnight covers the day before (a cron trigger with a one-day interval); slices
are named by the interval's start. The sample history covers May 2024, so the DAG is
bounded to that month and catches up one day at a time (``max_active_runs=1`` keeps the
incremental reads in order). The batch
layout is fixed in code (templated per run); the Params form exposes the policies only.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import DAG, CronTriggerTimetable, task

from airflow_provider_orchestra.sample import ORDERS_CSV, ORDERS_PARQUET, sample_config
from airflow_provider_orchestra.task_groups import default_asset, orchestra_workflow, workflow_params
from airflow_provider_orchestra.task_groups.examples import (
    ensure_sample_data,
    example_output_dir,
    sample_data_dir,
    slice_path,
    write_orders_slice,
)

DAG_ID = "orchestra_scheduled"
POLICY_FIELDS = ("sync", "quality", "iteration_limit", "record_batch_rows")


def daily_config() -> dict:
    """The sample workflow with every order batch reading the run's slice."""
    config = copy.deepcopy(sample_config(sample_data_dir(), example_output_dir()))
    config["workflow_id"] = "orchestra_daily"
    day_slice = slice_path("{{ data_interval_start | ds }}")
    for batch in config["batches"]:
        if batch["source"].get("path") in (ORDERS_CSV, ORDERS_PARQUET):
            batch["source"] = {"kind": "parquet", "path": day_slice}
    return config


with DAG(
    DAG_ID,
    schedule=CronTriggerTimetable("@daily", timezone="UTC", interval=timedelta(days=1)),
    start_date=datetime(2024, 5, 2, tzinfo=timezone.utc),
    end_date=datetime(2024, 6, 1, tzinfo=timezone.utc),
    catchup=True,
    max_active_runs=1,
    params=workflow_params(daily_config(), fields=POLICY_FIELDS),
    tags=["orchestra", "example"],
    doc_md=__doc__,
) as dag:

    @task
    def slice_orders(data_interval_start=None, data_interval_end=None) -> dict:
        """The data interval's orders, as their own Parquet file."""
        files = ensure_sample_data()
        return write_orders_slice(
            files["orders_parquet"],
            Path(sample_data_dir()) / slice_path(data_interval_start.strftime("%Y-%m-%d")),
            data_interval_start,
            data_interval_end,
        )

    slice_orders() >> orchestra_workflow(config=daily_config(), asset=default_asset(DAG_ID))
