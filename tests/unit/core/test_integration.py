import json
from pathlib import Path

from airflow_provider_orchestra.core.integration import (
    build_final_report,
    describe_integrated_output,
    integrated_output_path,
    write_integrated_output,
)
from airflow_provider_orchestra.core.merging import merge_results
from airflow_provider_orchestra.core.models import BranchMetrics, BranchResult, GateResult, OutputDescriptor


def test_final_report_is_written_atomically_and_rewritten_on_retry(tmp_path: Path):
    results = [
        BranchResult(
            branch_id="a", specialist="data_ingestion_branch_alpha", category="ingestion", status="success",
            metrics=BranchMetrics(quality=0.9, execution_seconds=2),
            outputs=[OutputDescriptor(uri="file:///x", format="parquet", rows=7)],
        ),
        BranchResult(branch_id="b", specialist="data_validation_branch_beta", category="validation", status="failed", error="boom"),
    ]
    merge = merge_results(results, allocated=2)
    gate = GateResult(decision="approved", reason="ok", final=True, round=1)
    report = build_final_report(
        workflow_id="wf", run_id="manual__2026-01-01T00:00:00+00:00", workflow_mode="adaptive",
        merge=merge, gate=gate, results=results,
    )
    written = write_integrated_output(report, tmp_path)
    path = integrated_output_path(tmp_path, "wf", report.run_id)
    assert path.exists() and ":" not in path.parent.name
    assert written.asset_uri == path.resolve().as_uri()
    again = write_integrated_output(report, tmp_path)
    assert again.asset_uri == written.asset_uri
    assert [p.name for p in path.parent.iterdir()] == ["integrated.json"]  # no temp files left
    body = json.loads(path.read_text())
    assert body["status"] == "approved" and body["merge"]["failed_branch_ids"] == ["b"]
    d = describe_integrated_output(written)
    assert d.rows == 7 and d.checksum.startswith("sha256:")
