"""Checkpoints in the real Postgres: human pauses resumed with the same thread id, and a
process killed with SIGKILL mid-round resumed without recomputing finished branches or
duplicating sink rows."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest
import yaml

from airflow_provider_orchestra.graph import resume_workflow, run_workflow
from airflow_provider_orchestra.sample import sample_config
from graph_test_support import EventLog, aggregation_batch, validation_batch, workflow_config, write_csv, write_parquet

pytestmark = pytest.mark.postgres

ORCHESTRA = str(Path(sys.executable).with_name("orchestra"))


def _checkpoint_threads(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {row[0] for row in conn.execute("select distinct thread_id from checkpoints")}


def test_interrupts_pause_and_resume_with_the_same_thread_id(postgres_url, sample_data, output_dir, factory):
    config = sample_config(sample_data, output_dir)
    events = EventLog()
    first = run_workflow(
        config,
        checkpoint=postgres_url,
        thread_id="pause-1",
        interrupt_before=["sync_point_manager", "quality_validator"],
        factory=factory,
        on_event=events.append,
    )
    assert first.status == "paused" and first.paused_before == ["sync_point_manager"]
    assert len(events.started()) == 5  # the round ran; the decision waits for a human

    resumed = EventLog()
    second = resume_workflow("pause-1", checkpoint=postgres_url, factory=factory, on_event=resumed.append)
    assert second.status == "paused" and second.paused_before == ["quality_validator"]
    third = resume_workflow("pause-1", checkpoint=postgres_url, factory=factory, on_event=resumed.append)
    assert third.status == "approved"
    assert resumed.started() == []  # no branch ran again across the two resumes
    assert [e["node"] for e in resumed if e.get("kind") == "node"] == [
        "sync_point_manager",
        "branch_merger",
        "quality_validator",
        "final_integrator",
    ]
    threads = _checkpoint_threads(postgres_url)
    assert "pause-1" in threads
    assert {f"pause-1/{b['batch_id']}/1" for b in config["batches"]} <= threads


def _read_lines_until(proc: subprocess.Popen, done, timeout: float) -> list[str]:
    """stderr lines of ``proc`` until ``done(lines)`` holds (or fail after ``timeout``)."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    buffer = b""
    fd = proc.stderr.fileno()
    while not done(lines):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or proc.poll() is not None:
            pytest.fail(f"run ended or stalled before the kill point; stderr so far:\n{''.join(lines)}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 65536)
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            lines += [line.decode() + "\n" for line in complete]
    return lines


def _wait_for_saved_results(url: str, thread_id: str, count: int, timeout: float = 30.0) -> None:
    query = (
        "select count(distinct task_id) from checkpoint_writes"
        " where thread_id = %s and checkpoint_ns = '' and channel = 'branch_results'"
    )
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while conn.execute(query, (thread_id,)).fetchone()[0] < count:
            if time.monotonic() > deadline:
                pytest.fail(f"{count} branch results of {thread_id} never reached the checkpoint")
            time.sleep(0.02)


def test_killed_run_resumes_without_recomputing_or_duplicating(
    postgres_url, data_roots, data_dir, output_dir, tmp_path
):
    for name in ("small1", "small2"):
        write_csv(data_dir / f"{name}.csv", 2_000, start=10_000 if name == "small1" else 20_000)
    write_parquet(data_dir / "orders.parquet", 4_000)
    batches = [
        validation_batch("straggler", "straggler.csv"),
        validation_batch("small1", "small1.csv"),
        validation_batch("small2", "small2.csv"),
        aggregation_batch("revenue", "orders.parquet", sink_table="revenue_by_region", sink_conn_id="graph_sink"),
    ]
    # Generous timeouts: here the straggler must be waited for, not cancelled.
    config = workflow_config(data_roots, output_dir, batches, sync={"conditional_timeout_seconds": 300, "overall_timeout_seconds": 600})
    config_path = tmp_path / "workflow.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "ORCHESTRA_CONN_GRAPH_SINK": postgres_url}
    ledger = str(tmp_path / "ledger.sqlite")
    common = ["--checkpoint", postgres_url, "--ledger", ledger]

    proc = subprocess.Popen(
        [ORCHESTRA, "run", str(config_path), "--thread-id", "killed-1", *common],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    finished = ("small1", "small2", "revenue")
    try:
        before = _read_lines_until(
            proc,
            lambda lines: all(any(f"] {b} " in line and "success" in line for line in lines) for b in finished),
            timeout=120,
        )
        # A branch is finished for the workflow once its result is in the checkpoint
        # (LangGraph saves each task's writes as it returns, from a background thread).
        _wait_for_saved_results(postgres_url, "killed-1", len(finished))
        assert not any("] straggler " in line and ("success" in line or "failed" in line) for line in before)
        proc.send_signal(signal.SIGKILL)
        killed_at = datetime.now(timezone.utc)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

    resumed = subprocess.run(
        [ORCHESTRA, "resume", "killed-1", *common, "--json"], capture_output=True, text=True, env=env, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    outcome = json.loads(resumed.stdout)
    assert outcome["status"] == "approved"
    report = outcome["report"]
    branches = {b["branch_id"]: b for b in report["branches"]}
    assert all(b["status"] == "success" for b in branches.values())

    # Only the straggler ran again; the others' results are the ones from before the kill.
    started_again = [line for line in resumed.stderr.splitlines() if "started (" in line]
    assert len(started_again) == 1 and "] straggler " in started_again[0]
    for name in finished:
        assert datetime.fromisoformat(branches[name]["completed_at"]) < killed_at

    # Sinks hold every row once.
    with psycopg.connect(postgres_url) as conn:
        loaded = conn.execute("select count(*), count(distinct region) from revenue_by_region").fetchone()
    assert loaded == (4, 4)
    straggler_root = output_dir / "graph_test" / "killed-1"
    assert list(straggler_root.glob(".straggler.*")) == []  # the killed attempt's staging is gone
    main = next(o for o in branches["straggler"]["outputs"] if o["role"] == "output")
    assert pq.read_table(main["uri"].removeprefix("file://")).num_rows == main["rows"] == branches["straggler"]["metrics"]["rows_out"]
    assert "killed-1/straggler/1" in _checkpoint_threads(postgres_url)
