"""Final integration: the run's report and the integrated output it is written to."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow_provider_orchestra.core.merging import latest_results
from airflow_provider_orchestra.core.models import (
    BranchResult,
    FinalReport,
    GateResult,
    MergeReport,
    OutputDescriptor,
    WorkflowMode,
)
from airflow_provider_orchestra.core.quality_gate import final_status

MANIFEST_NAME = "integrated.json"


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
SAFE_NAME_MAX = 100


def safe_name(value: str) -> str:
    """A run id, branch id or workflow id as one portable path component of at most
    ``SAFE_NAME_MAX`` + 9 characters (well under every file system's 255).

    Unsafe characters become ``_``; when anything was changed (characters, or a length
    cut to ``SAFE_NAME_MAX``) a short hash of the original is appended, so two different
    ids never share a directory. Branch outputs and the integrated manifest both use it,
    so a run's files share one folder.
    """
    cleaned = _UNSAFE.sub("_", value).strip("._") or "_"
    if cleaned != value or len(cleaned) > SAFE_NAME_MAX:
        digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:8]
        cleaned = f"{cleaned[:SAFE_NAME_MAX]}-{digest}"
    return cleaned


def integrated_output_path(output_root: str | os.PathLike, workflow_id: str, run_id: str) -> Path:
    return Path(output_root) / safe_name(workflow_id) / safe_name(run_id) / MANIFEST_NAME


FACTORY_SOURCE = "agent_factory"
"""``source`` of the timeline entries that come from the agent factory."""


def factory_timeline(events: Iterable[dict[str, Any]], **tags: Any) -> list[dict[str, Any]]:
    """Agent-factory events as run timeline entries, tagged with where they belong."""
    return [{**e, **tags, "source": FACTORY_SOURCE} for e in events]


def branch_timeline(result: BranchResult) -> list[dict[str, Any]]:
    """One branch attempt in the run's timeline, the same in both runtimes: the factory's
    events for it (specified, allocated, created, released, outcome, errors) and
    ``branch_finished`` (when its result was ready), in the order they happened."""
    events = [
        *factory_timeline(result.events, branch_id=result.branch_id, round=result.round),
        {
            "timestamp": result.completed_at.isoformat(),
            "event": "branch_finished",
            "branch_id": result.branch_id,
            "specialist": result.specialist,
            "round": result.round,
            "status": result.status,
            "agent_id": result.agent_id,
            "error": result.error,
        },
    ]
    return sorted(events, key=lambda e: datetime.fromisoformat(e["timestamp"]))


def build_final_report(
    *,
    workflow_id: str,
    run_id: str,
    workflow_mode: WorkflowMode,
    merge: MergeReport,
    gate: GateResult,
    results: Iterable[BranchResult],
    timeline: Sequence[dict[str, Any]] = (),
) -> FinalReport:
    branches = sorted(latest_results(results), key=lambda r: r.branch_id)
    outputs = [o for r in branches if r.status == "success" for o in r.outputs]
    return FinalReport(
        workflow_id=workflow_id,
        run_id=run_id,
        status=final_status(gate),
        workflow_mode=workflow_mode,
        rounds=gate.round,
        merge=merge,
        branches=branches,
        outputs=outputs,
        timeline=list(timeline),
    )


def write_integrated_output(report: FinalReport, output_root: str | os.PathLike) -> FinalReport:
    """Write the report as the run's integrated manifest (atomically: temp file + rename,
    so a retried integrator replaces it) and return the report with its URI set."""
    path = integrated_output_path(output_root, report.workflow_id, report.run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    uri = path.resolve().as_uri()
    report = report.model_copy(update={"asset_uri": uri})
    body = report.model_dump_json(indent=2).encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".integrated-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return report


def describe_integrated_output(report: FinalReport) -> OutputDescriptor:
    """A descriptor of the written manifest (for XCom / the asset event's extra)."""
    if not report.asset_uri:
        raise ValueError("the report has not been written yet")
    path = Path(report.asset_uri.removeprefix("file://"))
    data = path.read_bytes()
    return OutputDescriptor(
        uri=report.asset_uri,
        format="json",
        rows=sum(o.rows for o in report.outputs),
        checksum="sha256:" + hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        role="integrated",
    )


def report_summary(report: FinalReport) -> dict[str, Any]:
    """A few headline figures, small enough for a log line or an asset event's extra."""
    m = report.merge
    return json.loads(
        json.dumps(
            {
                "status": report.status,
                "mode": report.workflow_mode,
                "rounds": report.rounds,
                "overall_quality": round(m.overall_quality, 6),
                "success_rate": round(m.success_rate, 6),
                "successful_branches": m.successful_branches,
                "failed_branches": m.failed_branch_ids,
                "empty_branches": m.empty_branch_ids,
            }
        )
    )
