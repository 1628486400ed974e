"""What two FinalReports of the same input must share, whichever runtime produced them.

A report is reduced to a *view*: plain data without what legitimately differs between
two runs - timings (execution seconds, throughput, per-attempt seconds, timestamps),
memory peaks, run ids and agent ids, and the run directory inside output URIs. Two views
are compared field by field; floats within a tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from airflow_provider_orchestra.core.merging import merge_results
from airflow_provider_orchestra.core.models import BranchResult, FinalReport, MergeReport, OutputDescriptor

FLOAT_TOLERANCE = 1e-12
FIXED_EXECUTION_SECONDS = 60.0  # any fixed value does: it only has to be the same for every branch

BRANCH_METRICS = ("rows_in", "rows_out", "rows_rejected", "rows_pending", "record_batches", "quality", "iterations")
TIMING_KEYS = frozenset({"seconds"})  # per-attempt wall time inside result details


def differences(
    native: Any,
    airflow: Any,
    path: str = "",
    tolerance: float = FLOAT_TOLERANCE,
    sides: tuple[str, str] = ("native", "airflow"),
) -> list[str]:
    """Every field where the two values differ, as ``path: native=... airflow=...``."""
    left, right = sides
    where = path or "<root>"
    if isinstance(native, dict) and isinstance(airflow, dict):
        found = []
        for key in sorted(set(native) | set(airflow), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in airflow:
                found.append(f"{sub}: only {left} has it ({native[key]!r})")
            elif key not in native:
                found.append(f"{sub}: only {right} has it ({airflow[key]!r})")
            else:
                found += differences(native[key], airflow[key], sub, tolerance, sides)
        return found
    if isinstance(native, list) and isinstance(airflow, list):
        if len(native) != len(airflow):
            return [f"{where}: {left} has {len(native)} items, {right} {len(airflow)}: {left}={native!r} {right}={airflow!r}"]
        found = []
        for index, (a, b) in enumerate(zip(native, airflow)):
            found += differences(a, b, f"{path}[{index}]", tolerance, sides)
        return found
    if _is_number(native) and _is_number(airflow) and (isinstance(native, float) or isinstance(airflow, float)):
        if not math.isclose(native, airflow, rel_tol=0.0, abs_tol=tolerance):
            return [f"{where}: {left}={native!r} {right}={airflow!r} (|diff|={abs(native - airflow):.3g})"]
        return []
    if native != airflow or type(native) is not type(airflow):
        return [f"{where}: {left}={native!r} {right}={airflow!r}"]
    return []


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def describe(found: list[str], what: str) -> str:
    return f"{what}: {len(found)} field(s) differ\n  " + "\n  ".join(found)


# --------------------------------------------------------------------------- views


def output_location(output: OutputDescriptor, output_root: Path, workflow_id: str) -> str:
    """Where an output lies inside its run directory (``<branch>/data``, ...).

    Outputs are written to ``<output_root>/<workflow>/<run>/<branch>/...``; the run
    directory is named after the run id, which each runtime makes up on its own."""
    parsed = urlparse(output.uri)
    if parsed.scheme != "file":
        return output.uri
    relative = Path(unquote(parsed.path)).relative_to(output_root.resolve())
    assert relative.parts[0] == workflow_id and len(relative.parts) > 2, f"unexpected output location {output.uri}"
    return "/".join(relative.parts[2:])


def output_view(output: OutputDescriptor, output_root: Path, workflow_id: str) -> dict[str, Any]:
    # Checksums are of the written bytes (no path inside), so they must match as they are.
    return {
        "location": output_location(output, output_root, workflow_id),
        **output.model_dump(include={"format", "rows", "checksum", "size_bytes", "role"}),
    }


def without_timings(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def branch_view(result: BranchResult, output_root: Path, workflow_id: str) -> dict[str, Any]:
    return {
        "status": result.status,
        "category": result.category,
        "specialist": result.specialist,
        "agent_type": result.agent_type,
        "round": result.round,
        "error": result.error,
        "metrics": result.metrics.model_dump(include=set(BRANCH_METRICS)),
        "outputs": [output_view(o, output_root, workflow_id) for o in result.outputs],
        "details": without_timings(result.details),
    }


def merge_view(merge: MergeReport, output_root: Path, workflow_id: str) -> dict[str, Any]:
    view = merge.model_dump(mode="json", exclude={"categories"})
    view["categories"] = {
        name: {
            **synthesis.model_dump(mode="json", exclude={"outputs"}),
            "outputs": [output_view(o, output_root, workflow_id) for o in synthesis.outputs],
        }
        for name, synthesis in merge.categories.items()
    }
    return view


def report_view(report: FinalReport, output_root: Path) -> dict[str, Any]:
    """Everything but the merge's timing-weighted figures (compared on their own)."""
    wid = report.workflow_id
    return {
        "workflow_id": wid,
        "status": report.status,
        "workflow_mode": report.workflow_mode,
        "rounds": report.rounds,
        "branch_order": [b.branch_id for b in report.branches],
        "branches": {b.branch_id: branch_view(b, output_root, wid) for b in report.branches},
        "outputs": [output_view(o, output_root, wid) for o in report.outputs],
        "merge": {
            key: getattr(report.merge, key)
            for key in (
                "successful_branches",
                "failed_branches",
                "cancelled_branches",
                "empty_branches",
                "allocated_branches",
                "failed_branch_ids",
                "cancelled_branch_ids",
                "empty_branch_ids",
                "success_rate",
                "round",
            )
        },
        "category_status": {name: s.status for name, s in report.merge.categories.items()},
    }


# --------------------------------------------------------------------------- merges


def with_execution_seconds(results: Iterable[BranchResult], seconds: float | None) -> list[BranchResult]:
    return [r.model_copy(update={"metrics": r.metrics.model_copy(update={"execution_seconds": seconds})}) for r in results]


def timing_free_merge(report: FinalReport, allocated: int) -> MergeReport:
    """The report's merge redone with one and the same execution time for every branch."""
    return merge_results(
        with_execution_seconds(report.branches, FIXED_EXECUTION_SECONDS), allocated=allocated, round=report.merge.round
    )


def own_merge_differences(report: FinalReport, allocation_order: list[str]) -> list[str]:
    """Where the runtime's reported merge departs from ``core.merging.merge_results`` over
    the runtime's own branch results, given in allocation order (the report lists branches
    by id; the order only shows in the order of a category's outputs)."""
    position = {branch_id: index for index, branch_id in enumerate(allocation_order)}
    results = sorted(report.branches, key=lambda r: position[r.branch_id])
    expected = merge_results(results, allocated=len(allocation_order), round=report.merge.round)
    return differences(
        report.merge.model_dump(mode="json"), expected.model_dump(mode="json"), "merge", sides=("reported", "recomputed")
    )
