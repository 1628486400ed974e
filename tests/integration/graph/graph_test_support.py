"""Data and configs for the native graph tests: real CSV files written with pyarrow, and
workflow configs over them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

REGIONS = ["north", "south", "east", "west"]

# Fixed capacity so the concurrency cap does not depend on the machine running the tests.
TEST_CAPACITY = {"cpu": 8, "memory_mb": 16_384, "max_agents": 8}

STRAGGLER_ROWS = 2_000_000
"""Rows of the straggler's CSV: with 5,000-row record batches it streams for seconds,
reporting progress (and so checking for cancellation) about 800 times."""


def orders_table(rows: int, *, bad_share: float = 0.0, start: int = 0) -> pa.Table:
    """``id, region, amount``; the first ``bad_share`` of the rows carry an unknown region."""
    ids = pa.array(range(start, start + rows), pa.int64())
    regions = pc.take(pa.array(REGIONS), pc.bit_wise_and(ids, 3))
    bad = int(rows * bad_share)
    if bad:
        regions = pa.concat_arrays([pa.array(["atlantis"] * bad), regions.slice(bad)])
    amount = pc.cast(pc.bit_wise_and(ids, 1023), pa.float64())
    return pa.table({"id": ids, "region": regions, "amount": amount})


def write_csv(path: Path, rows: int, **kwargs: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(orders_table(rows, **kwargs), path)
    return path


def write_parquet(path: Path, rows: int, **kwargs: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(orders_table(rows, **kwargs), path)
    return path


def validation_batch(batch_id: str, path: str, **extra: Any) -> dict[str, Any]:
    """A batch routed to data_validation_branch_beta (ingestion, source type batch)."""
    return {
        "batch_id": batch_id,
        "type": "data_ingestion",
        "source_type": "batch",
        "source": {"kind": "csv", "path": path},
        "data_sources": [batch_id],
        "validation": {
            "rules": [
                {"column": "id", "not_null": True, "unique": True},
                {"column": "region", "allowed": REGIONS},
            ]
        },
        **extra,
    }


def aggregation_batch(batch_id: str, path: str, *, priority: str = "high", kind: str = "parquet", **extra: Any) -> dict[str, Any]:
    """A batch routed to data_aggregation_branch_primary (high) or _secondary (else)."""
    return {
        "batch_id": batch_id,
        "type": "data_aggregation",
        "priority": priority,
        "source": {"kind": kind, "path": path},
        "data_sources": [batch_id],
        "aggregation": {
            "group_by": ["region"],
            "metrics": [{"column": "amount", "fn": "sum", "name": "revenue"}, {"column": "id", "fn": "count", "name": "orders"}],
            **extra,
        },
    }


def workflow_config(data_roots: list[Path], output_dir: Path, batches: list[dict], **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "workflow_id": "graph_test",
        "record_batch_rows": 5_000,
        "storage": {"data_roots": [str(r) for r in data_roots], "output_root": str(output_dir)},
        "batches": batches,
    }
    config.update(overrides)
    return config


class EventLog(list):
    """Progress events of a run, with the questions tests ask of them."""

    def branch(self, branch_id: str, phase: str | None = None) -> list[dict]:
        return [
            e
            for e in self
            if e.get("kind") == "branch" and e["branch_id"] == branch_id and (phase is None or e["phase"] == phase)
        ]

    def started(self) -> list[str]:
        return [e["branch_id"] for e in self if e.get("kind") == "branch" and e["phase"] == "started"]

    def max_running(self) -> int:
        running, peak = set(), 0
        for e in self:
            if e.get("kind") != "branch":
                continue
            key = (e["branch_id"], e["round"])
            if e["phase"] == "started":
                running.add(key)
                peak = max(peak, len(running))
            elif e["phase"] == "finished":
                running.discard(key)
        return peak
