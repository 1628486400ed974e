"""Exactly once under kills, in every write mode.

An aggregation branch (Parquet output + Postgres sink ``mart.sales``) has run once (r0).
Run r1 then runs in a subprocess (``kill_driver.py``: the native specialist with a SQLite
checkpointer) and is SIGKILLed twice mid-write, each time at a moment seen from outside:

1. while it streams its source into the staged Parquet output (its staging directory is
   there, the run reports its second record batch);
2. in the middle of the sink's COPY (``pg_stat_activity`` shows the load's COPY active).

After each kill the table and the dataset are exactly what they were; the retry (run in the test's own process), resumes from the checkpoint and finishes. Then the table and the Parquet output
hold exactly the expected rows of the mode (count and checksum over the sorted rows):
append = r0's slice + r1's slice; replace = r1 only; upsert = r0 merged with r1 by region.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_orchestra.core.models import BatchSpec, BranchAllocation, BranchTask, StorageConfig
from airflow_provider_orchestra.specialists.checkpoint import close_saver, make_saver
from airflow_provider_orchestra.specialists.templates import run_specialist_directly

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

DRIVER = Path(__file__).with_name("kill_driver.py")
WAIT_SECONDS = 420.0  # a bound for a loaded machine, not a measure
THREAD_ID = "kills/r1/sales"
REGIONS = {"r0": ["eu", "us", "apac", "latam"], "r1": ["eu", "us", "mea", "anz", "nordics"]}
Rows = list[tuple[Any, ...]]


def source_table(run: str, rows: int = 3_000) -> pa.Table:
    regions = REGIONS[run]
    offset = 1 if run == "r1" else 0
    return pa.table(
        {
            "order_id": pa.array(range(rows), pa.int64()),
            "region": [regions[i % len(regions)] for i in range(rows)],
            "amount": pa.array([(i * 7 + offset) % 100 for i in range(rows)], pa.int64()),
        }
    )


def aggregate(run: str) -> Rows:
    """The branch's expected groups, computed without the product: (region, sum, count)."""
    grouped = source_table(run).group_by("region").aggregate([("amount", "sum"), ("order_id", "count")])
    return sorted(zip(*(grouped.column(c).to_pylist() for c in ("region", "amount_sum", "order_id_count")), strict=True))


def expected_rows(mode: str) -> tuple[Rows, Rows]:
    """(table rows with run_id, dataset rows) after r0 then r1."""
    r0, r1 = aggregate("r0"), aggregate("r1")
    if mode == "append":
        return sorted([(*r, "r0") for r in r0] + [(*r, "r1") for r in r1]), r1
    if mode == "replace":
        return [(*r, "r1") for r in r1], r1
    r1_keys = {r[0] for r in r1}
    merged = sorted([(*r, "r0") for r in r0 if r[0] not in r1_keys] + [(*r, "r1") for r in r1])
    return merged, [r[:3] for r in merged]


def fingerprint(rows: Rows) -> tuple[int, str]:
    return len(rows), hashlib.sha256(repr(sorted(rows)).encode()).hexdigest()[:16]


class Branch:
    """One mode's branch: its data, output root and sink schema."""

    def __init__(self, root: Path, url: str, mode: str):
        self.root, self.url, self.mode = root, url, mode
        self.data = root / "data"
        self.output = root / "output"
        self.data.mkdir(parents=True)
        self.db_schema = f"mart_{mode}_{uuid.uuid4().hex[:6]}"
        for run in REGIONS:
            pq.write_table(source_table(run), self.data / f"{run}.parquet")

    def task(self, run: str) -> dict[str, Any]:
        batch = BatchSpec.model_validate(
            {
                "batch_id": "sales",
                "type": "data_aggregation",
                "priority": "high",
                "source": {"kind": "parquet", "path": f"{run}.parquet"},
                "aggregation": {
                    "group_by": ["region"],
                    "metrics": [{"column": "amount", "fn": "sum"}, {"column": "order_id", "fn": "count"}],
                    "sink_table": f"{self.db_schema}.sales",
                    "sink_conn_id": "warehouse",
                },
                "write_mode": self.mode,
                "key": ["region"] if self.mode == "upsert" else [],
            }
        )
        allocation = BranchAllocation(
            branch_id="sales", type="data_aggregation", source_type="batch", priority="high",
            specialist="data_aggregation_branch_primary",
        )
        return BranchTask(
            workflow_id="kills", run_id=run, branch_id="sales", specialist="data_aggregation_branch_primary",
            allocation=allocation, batch=batch, record_batch_rows=500,
            storage=StorageConfig(data_roots=[str(self.data)], output_root=str(self.output)),
        ).model_dump(mode="json", by_alias=True)

    def table_rows(self) -> Rows:
        with psycopg.connect(self.url) as conn:
            return sorted(
                conn.execute(f"select region, sum_amount, count_order_id, run_id from {self.db_schema}.sales").fetchall()
            )

    def dataset_path(self) -> Path:
        if self.mode == "append":
            return self.output / "kills" / "r1" / "sales" / "data"
        return self.output / "kills" / "_tables" / "sales"

    def dataset_rows(self) -> Rows:
        path = self.dataset_path()
        if not path.exists():
            return []
        table = pq.read_table(path)
        return sorted(zip(*(table.column(c).to_pylist() for c in ("region", "sum_amount", "count_order_id")), strict=True))

    def state(self) -> tuple[Rows, Rows]:
        return self.table_rows(), self.dataset_rows()


def wait_for(what: str, found: Callable[[], Any], process: subprocess.Popen | None = None) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if (value := found()):
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the run ended ({process.returncode}) before {what}: {process.stderr.read()}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def start_run(branch: Branch, stop_at: str, checkpoint: Path, signal_file: Path, go: Path) -> subprocess.Popen:
    """The driver process; it imports at once and runs once ``go`` exists."""
    args = {
        "task": branch.task("r1"), "checkpoint": str(checkpoint), "thread_id": THREAD_ID,
        "sink_url": branch.url, "stop_at": stop_at, "signal": str(signal_file), "go": str(go),
    }
    return subprocess.Popen(
        [sys.executable, str(DRIVER), json.dumps(args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def kill(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


def active_copy(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [
            row[0]
            for row in conn.execute(
                "select query from pg_stat_activity where application_name = 'orchestra-load' "
                "and state = 'active' and query ilike 'copy %%'"
            )
        ]


@pytest.fixture(scope="module")
def sink_db(module_databases) -> str:
    return module_databases()


@pytest.mark.parametrize("mode", ["append", "replace", "upsert"])
def test_killed_mid_write_and_retried_leaves_exactly_the_expected_rows(mode: str, tmp_path: Path, sink_db: str):
    branch = Branch(tmp_path, sink_db, mode)
    first = run_specialist_directly(branch.task("r0"), connections={"warehouse": sink_db})
    assert first.status == "success", first.error
    before = branch.state()
    checkpoint = tmp_path / "checkpoints.sqlite"
    attempts = tmp_path / "output" / "kills" / "r1"

    # Both doomed runs start now (their imports overlap); each goes when told.
    reading = start_run(branch, "read", checkpoint, tmp_path / "read.signal", tmp_path / "read.go")
    loading = start_run(branch, "load", checkpoint, tmp_path / "load.signal", tmp_path / "load.go")

    # 1. killed while streaming into its staged Parquet output
    (tmp_path / "read.go").touch()
    wait_for("the second record batch", lambda: (tmp_path / "read.signal").exists(), reading)
    assert list(attempts.glob(".sales.attempt-*")), "the attempt's staging directory should be there"
    kill(reading)
    assert branch.state() == before

    # 2. killed in the middle of the sink's COPY (resumed from the checkpoint after plan)
    (tmp_path / "load.go").touch()
    wait_for("the sink's COPY", lambda: (tmp_path / "load.signal").exists(), loading)
    copying = active_copy(sink_db)
    assert len(copying) == 1 and "orchestra_stage_" in copying[0], copying
    kill(loading)
    assert branch.state() == before

    # 3. the retry (in this process, from the same checkpoint) runs through
    saver = make_saver(str(checkpoint))
    try:
        result = run_specialist_directly(
            branch.task("r1"), saver=saver, thread_id=THREAD_ID, connections={"warehouse": sink_db}
        )
    finally:
        close_saver(saver)
    assert result.status == "success", result.error
    assert [a["ok"] for a in result.details["attempts"]] == [True]  # the killed tries left no attempt

    want_table, want_dataset = expected_rows(mode)
    found_table, found_dataset = branch.state()
    print(
        f"\n{mode}: table expected {fingerprint(want_table)} found {fingerprint(found_table)}; "
        f"parquet expected {fingerprint(want_dataset)} found {fingerprint(found_dataset)}"
    )
    assert found_table == want_table
    assert found_dataset == want_dataset
    assert not list(attempts.glob(".sales.attempt-*")), "stale staging directories were cleared"
