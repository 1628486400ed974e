"""Builders of branch tasks over small real files, and readers of what specialists wrote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.dataset as ds

from airflow_provider_orchestra.core.models import (
    BatchSpec,
    BranchAllocation,
    BranchResult,
    BranchTask,
    OutputDescriptor,
    StorageConfig,
)
from airflow_provider_orchestra.core.routing import route


STREAMING_BATCH: dict[str, Any] = {
    "batch_id": "clicks",
    "type": "data_ingestion",
    "source_type": "streaming",
    "source": {"kind": "jsonl", "path": "events.jsonl"},
}
"""A batch routed to the streaming ingestion specialist, over ``data/events.jsonl``."""


def make_task(
    tmp_path: Path,
    batch: dict[str, Any],
    *,
    run_id: str = "run-1",
    record_batch_rows: int = 4,
    workflow_id: str = "wf",
    sink_conn_id: str | None = None,
    round: int = 1,
) -> BranchTask:
    """A task for the specialist the batch routes to; data under ``tmp_path/data``,
    outputs under ``tmp_path/out``."""
    spec = BatchSpec.model_validate(batch)
    specialist = route(spec.type, spec.source_type, spec.priority)
    storage = StorageConfig(
        data_roots=[str(tmp_path / "data")], output_root=str(tmp_path / "out"), sink_conn_id=sink_conn_id
    )
    return BranchTask(
        workflow_id=workflow_id,
        run_id=run_id,
        branch_id=spec.batch_id,
        round=round,
        specialist=specialist,
        allocation=BranchAllocation(
            branch_id=spec.batch_id,
            type=spec.type,
            source_type=spec.source_type,
            priority=spec.priority,
            specialist=specialist,
        ),
        batch=spec,
        record_batch_rows=record_batch_rows,
        storage=storage,
    )


def write_jsonl(path: Path, rows: list[dict[str, Any]], *, raw_lines: tuple[str, ...] = ()) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
        for line in raw_lines:
            fh.write(line + "\n")


def path_of(descriptor: OutputDescriptor) -> Path:
    return Path(unquote(urlsplit(descriptor.uri).path))


def output(result: BranchResult, role: str = "output", fmt: str | None = None) -> OutputDescriptor:
    found = [o for o in result.outputs if o.role == role and (fmt is None or o.format == fmt)]
    assert len(found) == 1, f"expected one {role!r} output, got {result.outputs}"
    return found[0]


def read_parquet(descriptor: OutputDescriptor) -> pa.Table:
    return ds.dataset(path_of(descriptor), format="parquet", partitioning="hive").to_table()


def read_jsonl(descriptor: OutputDescriptor) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path_of(descriptor).read_text().splitlines()]


def branch_dir(tmp_path: Path, branch_id: str, *, run_id: str = "run-1", workflow_id: str = "wf") -> Path:
    return tmp_path / "out" / workflow_id / run_id / branch_id


def published_files(tmp_path: Path) -> list[Path]:
    """Every file under the output root except the offset store's state."""
    root = tmp_path / "out"
    if not root.exists():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and "_state" not in p.relative_to(root).parts)
