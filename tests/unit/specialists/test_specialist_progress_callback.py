"""A progress callback that raises stops the specialist: the exception leaves ``run()``
unchanged, no attempt is recorded as failed, no fallback strategy runs and nothing is
published. This is how the sync point cancels a straggler."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from langgraph.checkpoint.memory import InMemorySaver

from airflow_provider_orchestra.core.errors import OrchestraError
from airflow_provider_orchestra.specialists.templates import run_specialist_directly
from specialist_test_support import make_task, published_files, write_jsonl


class StopRequested(Exception):
    """Raised by the caller's progress callback; deliberately not an OrchestraError."""


def orders(n: int = 40) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "region": [["north", "south", "east"][i % 3] for i in range(n)],
            "amount": [float(i % 9) for i in range(n)],
            "amount_text": [str(i % 9) for i in range(n)],
            "qty": pa.array([1 + i % 4 for i in range(n)], pa.int64()),
        }
    )


BATCHES: dict[str, dict[str, Any]] = {
    "ingestion": {
        "batch_id": "clicks",
        "type": "data_ingestion",
        "source_type": "streaming",
        "source": {"kind": "jsonl", "path": "events.jsonl"},
    },
    "validation": {
        "batch_id": "orders_check",
        "type": "data_ingestion",
        "source_type": "batch",
        "source": {"kind": "parquet", "path": "orders.parquet"},
        "validation": {
            "rules": [{"column": "id", "unique": True}, {"column": "qty", "min": 1}],
            "anomaly_columns": ["amount"],
        },
    },
    "transformation": {
        "batch_id": "orders_shape",
        "type": "data_ingestion",
        "source_type": "realtime",
        "source": {"kind": "parquet", "path": "orders.parquet"},
        "transformation": {"cast": {"amount_text": "DOUBLE"}, "derive": {"total": "amount * qty"}},
    },
    "priority_aggregation": {
        "batch_id": "revenue",
        "type": "data_aggregation",
        "priority": "high",
        "source": {"kind": "parquet", "path": "orders.parquet"},
        "aggregation": {"group_by": ["region"], "metrics": [{"column": "amount", "fn": "sum"}]},
    },
    "quality_aggregation": {
        "batch_id": "revenue",
        "type": "data_aggregation",
        "priority": "normal",
        "source": {"kind": "parquet", "path": "orders.parquet"},
        "aggregation": {"group_by": ["region"], "metrics": [{"column": "amount", "fn": "sum"}]},
    },
}


@pytest.mark.parametrize("kind", sorted(BATCHES))
def test_an_exception_from_the_progress_callback_propagates_out_of_run(tmp_path, data_dir, kind):
    assert not issubclass(StopRequested, OrchestraError)
    write_jsonl(data_dir / "events.jsonl", [{"id": i} for i in range(40)])
    pq.write_table(orders(), data_dir / "orders.parquet")
    task = make_task(tmp_path, BATCHES[kind], record_batch_rows=8)
    events: list[dict[str, Any]] = []
    raised = StopRequested("the sync point no longer waits for this branch")

    def stop_at_first_batch(event: dict[str, Any]) -> None:
        events.append(event)
        raise raised

    with pytest.raises(StopRequested) as caught:
        run_specialist_directly(task, saver=InMemorySaver(), thread_id="t", on_progress=stop_at_first_batch)

    assert caught.value is raised
    # One event: the attempt stopped at its first record batch and no fallback followed.
    assert [(e["iteration"], e["batch"], e["rows"]) for e in events] == [(1, 1, 8)]
    assert published_files(tmp_path) == []


def test_the_same_task_runs_to_the_end_once_the_callback_lets_it(tmp_path, data_dir):
    """The stop leaves no state that spoils the next run of the branch."""
    pq.write_table(orders(), data_dir / "orders.parquet")
    task = make_task(tmp_path, BATCHES["validation"], record_batch_rows=8)
    saver = InMemorySaver()

    def stop(event: dict[str, Any]) -> None:
        raise StopRequested("stop")

    with pytest.raises(StopRequested):
        run_specialist_directly(task, saver=saver, thread_id="t", on_progress=stop)

    result = run_specialist_directly(task, saver=saver, thread_id="t")
    assert result.status == "success", result.error
    assert result.metrics.iterations == 1
    assert result.metrics.rows_in == 40
