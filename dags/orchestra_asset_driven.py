"""orchestra_asset_driven: a clickstream workflow that runs whenever orchestra_example
publishes a new integrated output (its Asset).

The upstream run's asset event carries its headline figures and manifest URI; this DAG
then processes the clickstream: streaming ingestion of the events that arrived since its
previous run (byte offset in the offset store), validation of the whole event log, and two
aggregations (events by type, activity per user). The Params form opens on that config
and also applies to runs triggered by hand.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from airflow.sdk import DAG, task

from airflow_provider_orchestra.sample import EVENTS_JSONL
from airflow_provider_orchestra.task_groups import default_asset, orchestra_workflow, workflow_params
from airflow_provider_orchestra.task_groups.examples import (
    ensure_sample_data,
    example_output_dir,
    sample_data_dir,
)

log = logging.getLogger(__name__)

DAG_ID = "orchestra_asset_driven"
UPSTREAM = default_asset("orchestra_example")


def clickstream_config() -> dict:
    events = {"kind": "jsonl", "path": EVENTS_JSONL}
    return {
        "workflow_id": "orchestra_clickstream",
        "record_batch_rows": 8_192,
        "storage": {"data_roots": [str(sample_data_dir())], "output_root": str(example_output_dir())},
        "batches": [
            {
                "batch_id": "new_events",
                "type": "data_ingestion",
                "source_type": "streaming",
                "source": events,
                "data_sources": ["clickstream"],
                "ingestion": {"event_time_column": "ts", "late_tolerance_seconds": 3600},
            },
            {
                "batch_id": "event_log_validation",
                "type": "data_ingestion",
                "source_type": "batch",
                "source": events,
                "data_sources": ["clickstream"],
                "validation": {
                    "rules": [
                        {"column": "event_id", "not_null": True, "unique": True},
                        {"column": "user_id", "not_null": True},
                        {"column": "event_type", "allowed": ["page_view", "click", "add_to_cart", "purchase"]},
                        {"column": "value", "min": 0, "max": 10_000},
                    ],
                    "anomaly_columns": ["value"],
                },
            },
            {
                "batch_id": "events_by_type",
                "type": "data_aggregation",
                "priority": "high",
                "source": events,
                "data_sources": ["clickstream"],
                "aggregation": {
                    "group_by": ["event_type"],
                    "metrics": [
                        {"column": "event_id", "fn": "count", "name": "events"},
                        {"column": "user_id", "fn": "count_distinct", "name": "users"},
                        {"column": "value", "fn": "sum", "name": "total_value"},
                    ],
                },
            },
            {
                "batch_id": "activity_per_user",
                "type": "data_aggregation",
                "priority": "normal",
                "source": events,
                "data_sources": ["clickstream"],
                "aggregation": {
                    "group_by": ["user_id"],
                    "metrics": [
                        {"column": "event_id", "fn": "count", "name": "events"},
                        {"column": "value", "fn": "max", "name": "max_value"},
                    ],
                },
            },
        ],
        "sync_points": {
            "ingested": ["new_events", "event_log_validation"],
            "aggregated": ["events_by_type", "activity_per_user"],
        },
    }


with DAG(
    DAG_ID,
    schedule=[UPSTREAM],
    start_date=datetime(2024, 5, 1, tzinfo=timezone.utc),
    catchup=False,
    params=workflow_params(clickstream_config()),
    tags=["orchestra", "example"],
    doc_md=__doc__,
) as dag:

    @task
    def upstream_update(triggering_asset_events=None) -> dict:
        """What the upstream published (empty for a run triggered by hand)."""
        ensure_sample_data()
        events = [e for evs in (triggering_asset_events or {}).values() for e in evs]
        latest = events[-1].extra if events else {}
        log.info("Upstream integrated output: %s (%s)", latest.get("manifest_uri"), latest.get("status"))
        return {"manifest_uri": latest.get("manifest_uri"), "upstream_status": latest.get("status")}

    upstream_update() >> orchestra_workflow(asset=default_asset(DAG_ID))
