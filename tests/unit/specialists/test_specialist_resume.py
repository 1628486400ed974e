"""A specialist killed mid-run resumes from its checkpoint in a new process: completed
nodes are not run again and no output row is duplicated."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import pyarrow as pa
import pyarrow.parquet as pq

from airflow_provider_orchestra.core.models import BranchResult, StorageConfig
from airflow_provider_orchestra.specialists.base import Specialist
from airflow_provider_orchestra.specialists.checkpoint import close_saver, make_saver
from airflow_provider_orchestra.specialists.ingestion import offset_key
from airflow_provider_orchestra.specialists.io import OffsetStore
from airflow_provider_orchestra.specialists.templates import run_specialist_directly
from specialist_test_support import branch_dir, make_task, output, read_parquet, write_jsonl

WORKER = Path(__file__).with_name("specialist_resume_worker.py")
THREAD = "orchestra_dag/manual__2024-01-01/specialist/0"


def run_worker(tmp_path: Path, saver_url: str, mode: str, batch: dict, connections: dict | None = None) -> subprocess.CompletedProcess:
    args = [sys.executable, str(WORKER), str(tmp_path), saver_url, THREAD, mode, json.dumps(batch)]
    if connections:
        args.append(json.dumps(connections))
    return subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path)


def kill_then_resume(tmp_path: Path, saver_url: str, batch: dict, connections: dict | None = None) -> BranchResult:
    killed = run_worker(tmp_path, saver_url, "kill", batch, connections)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not branch_dir(tmp_path, batch["batch_id"]).exists()  # nothing published by the killed attempt

    resumed = run_worker(tmp_path, saver_url, "resume", batch, connections)
    assert resumed.returncode == 0, resumed.stderr
    result = BranchResult.model_validate_json(resumed.stdout.strip().splitlines()[-1])
    assert result.status == "success", result.error
    assert not list(branch_dir(tmp_path, batch["batch_id"]).parent.glob(".*attempt-*"))

    # Once more, in this process: the thread is complete, so no node runs at all.
    saver = make_saver(saver_url)
    try:
        with pytest.MonkeyPatch.context() as patch:
            for node in ("_node_plan", "_node_act", "_node_check", "_node_finish"):
                patch.setattr(Specialist, node, _forbidden(node))
            again = run_specialist_directly(
                make_task(tmp_path, batch, record_batch_rows=3), saver=saver, thread_id=THREAD, connections=connections
            )
    finally:
        close_saver(saver)
    assert again == result
    return result


def _forbidden(name: str):
    def node(*args, **kwargs):
        raise AssertionError(f"{name} ran again")

    return node


def test_ingestion_killed_after_the_first_batch_resumes_with_a_sqlite_saver(tmp_path, data_dir):
    write_jsonl(data_dir / "events.jsonl", [{"id": i, "value": i * 0.5} for i in range(1, 13)])
    batch = {
        "batch_id": "clicks",
        "type": "data_ingestion",
        "source_type": "streaming",
        "source": {"kind": "jsonl", "path": "events.jsonl"},
    }
    saver_url = f"sqlite:///{tmp_path / 'checkpoints.sqlite'}"

    result = kill_then_resume(tmp_path, saver_url, batch)

    assert read_parquet(output(result)).column("id").to_pylist() == list(range(1, 13))
    assert result.metrics.record_batches == 4
    store = OffsetStore.for_storage(StorageConfig(output_root=str(tmp_path / "out")))
    assert json.loads(store.get("wf", offset_key(make_task(tmp_path, batch))))["run_id"] == "run-1"

    # The offset moved once: the next run finds nothing new.
    follow_up = run_specialist_directly(make_task(tmp_path, batch, run_id="run-2"))
    assert (follow_up.metrics.rows_in, follow_up.metrics.rows_out) == (0, 0)


def test_aggregation_with_postgres_sink_resumes_with_a_postgres_saver(tmp_path, data_dir, postgres_url):
    table = pa.table({"region": [["n", "s", "e"][i % 3] for i in range(15)], "amount": pa.array(range(15), pa.int64())})
    pq.write_table(table, data_dir / "sales.parquet")
    batch = {
        "batch_id": "revenue",
        "type": "data_aggregation",
        "priority": "high",
        "source": {"kind": "parquet", "path": "sales.parquet"},
        "aggregation": {
            "group_by": ["region"],
            "metrics": [{"column": "amount", "fn": "sum", "name": "revenue"}],
            "sink_table": "revenue_by_region",
            "sink_conn_id": "warehouse",
        },
    }

    result = kill_then_resume(tmp_path, postgres_url, batch, {"warehouse": postgres_url})

    expected = {"e": sum(range(2, 15, 3)), "n": sum(range(0, 15, 3)), "s": sum(range(1, 15, 3))}
    assert {r["region"]: r["revenue"] for r in read_parquet(output(result, fmt="parquet")).to_pylist()} == expected
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute("select region, revenue from revenue_by_region order by region").fetchall()
        checkpoints = conn.execute("select count(*) from checkpoints where thread_id = %s", (THREAD,)).fetchone()[0]
    assert dict(rows) == expected and len(rows) == 3
    assert checkpoints > 0
