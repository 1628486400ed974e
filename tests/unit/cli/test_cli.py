"""The ``orchestra`` console script, run as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

ORCHESTRA = str(Path(sys.executable).with_name("orchestra"))


def orchestra(*args: str, cwd: Path | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([ORCHESTRA, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The error line; besides it stderr may only hold the banner naming the run."""
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("orchestra: run ")]
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("orchestra: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli-sample")
    proc = orchestra("sample", str(root))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(root / "orchestra.yaml")
    return root


def _write(tmp_path: Path, name: str, data) -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def _sample_copy(sample_dir: Path, tmp_path: Path, **changes) -> Path:
    """The sample config with its own output root (and ``changes`` applied)."""
    config = yaml.safe_load((sample_dir / "orchestra.yaml").read_text())
    config["storage"]["output_root"] = str(tmp_path / "output")
    config.update(changes)
    return _write(tmp_path, "workflow.yaml", config)


def test_schema_is_the_config_model_and_accepts_the_sample(sample_dir):
    proc = orchestra("schema")
    assert proc.returncode == 0
    schema = json.loads(proc.stdout)
    assert {"batches", "sync_points", "branch_dependencies", "sync", "quality", "iteration_limit"} <= set(schema["properties"])
    jsonschema.validate(yaml.safe_load((sample_dir / "orchestra.yaml").read_text()), schema)


def test_validate_shows_routes_and_sync_points(sample_dir):
    proc = orchestra("validate", str(sample_dir / "orchestra.yaml"))
    assert proc.returncode == 0, proc.stderr
    assert "valid workflow config 'orchestra_sample' with 5 batches; sources and connections found" in proc.stdout
    assert "orders_validation" in proc.stdout and "-> data_validation_branch_beta" in proc.stdout
    assert "sync point ingestion_complete:" in proc.stdout


def test_validate_checks_roots_files_and_connections_without_reading_data(tmp_path, sample_dir):
    config = yaml.safe_load((sample_dir / "orchestra.yaml").read_text())
    config["storage"]["data_roots"].append(str(tmp_path / "no-such-root"))
    config["batches"][1]["source"]["path"] = "missing.csv"
    config["batches"][3]["aggregation"].update(sink_table="revenue", sink_conn_id="undefined_sink")
    config["batches"].append({"batch_id": "warehouse", "type": "data_aggregation", "source": {"kind": "postgres", "table": "t", "conn_id": "undefined_db"}})
    config["sync_points"] = {"fast": ["orders_validation"]}
    path = _write(tmp_path, "workflow.yaml", config)

    proc = orchestra("validate", str(path))
    assert proc.returncode == 2 and proc.stdout == ""
    problems = proc.stderr.splitlines()
    assert problems[0].endswith("4 problem(s) with its sources and sinks:")
    assert "storage.data_roots.1" in problems[1] and "does not exist" in problems[1]
    assert "batches.1.source.path (orders_validation)" in problems[2] and "missing.csv" in problems[2]
    assert "batches.3.aggregation.sink_conn_id (revenue_by_region): unknown connection 'undefined_sink'" in problems[3]
    assert "batches.5.source.conn_id (warehouse): unknown connection 'undefined_db'" in problems[4]

    offline = orchestra("validate", "--offline", str(path))
    assert offline.returncode == 0, offline.stderr
    assert "sources not checked (--offline)" in offline.stdout
    # Batches no sync point names are waited for last, in a sync point of their own.
    assert "sync point fast: orders_validation" in offline.stdout
    assert "sync point remaining_branches: clickstream_events, orders_transform, revenue_by_region" in offline.stdout


BATCH = {"batch_id": "a", "type": "data_ingestion", "source": {"kind": "csv", "path": "a.csv"}}
B = {**BATCH, "batch_id": "b"}


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"batches": [{**BATCH, "type": "data_cleaning"}]}, "batches.0.type"),
        ({"batches": [BATCH], "sync": {"quorum": -0.5}}, "sync.quorum"),
        ({"batches": [BATCH], "sync": {"conditional_timeout_seconds": -1}}, "sync.conditional_timeout_seconds"),
        ({"batches": [BATCH], "iteration_limit": "three"}, "iteration_limit"),
        ({"batches": [BATCH, B], "branch_dependencies": {"a": ["b"], "b": ["a"]}}, "cycle"),
        ({"batches": [BATCH], "sync_points": {"p": ["a", "ghost"]}}, "unknown branch(es) ['ghost']"),
        (
            {"batches": [BATCH, B, {**BATCH, "batch_id": "c"}], "sync_points": {"p": ["a", "c"], "q": ["b"]},
             "branch_dependencies": {"b": ["a"], "c": ["b"]}},
            "'p' waits for 'q' (c depends on b), and 'q' waits for 'p' (b depends on a)",
        ),
        ({"batches": [{**BATCH, "ingestion": {"late_tolerance_seconds": float("inf")}}]}, "batches.0.ingestion.late_tolerance_seconds"),
        ({"batches": []}, "batches"),
        ("batches: [unclosed", "line 1"),
        ("- just\n- a list\n", "must hold a mapping"),
    ],
)
def test_validate_rejects_bad_config_naming_the_field(tmp_path, config, named):
    proc = orchestra("validate", str(_write(tmp_path, "bad.yaml", config)))
    assert proc.returncode == 2
    assert named in _one_line_error(proc)


def test_missing_config_file(tmp_path):
    proc = orchestra("validate", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2
    assert "config file not found" in _one_line_error(proc)


def test_run_json_prints_only_the_report(sample_dir, tmp_path):
    config = _sample_copy(sample_dir, tmp_path)
    proc = orchestra("run", str(config), "--json", "--thread-id", "cli-run-1", "--ledger", str(tmp_path / "ledger.sqlite"))
    assert proc.returncode == 0, proc.stderr
    outcome = json.loads(proc.stdout)  # stdout is JSON and nothing else
    assert outcome["thread_id"] == "cli-run-1" and outcome["status"] == "approved"
    report = outcome["report"]
    assert report["workflow_mode"] in {"parallel", "sequential", "adaptive"}
    assert len(report["branches"]) == 5
    assert report["merge"]["success_rate"] == 1.0
    assert set(report["merge"]["categories"]) == {"ingestion", "validation", "transformation", "aggregation"}
    assert any(e["event"] == "synchronization_checkpoint" for e in report["timeline"])
    # live progress per branch went to stderr
    for branch in report["branches"]:
        assert f"] {branch['branch_id']} " in proc.stderr
    assert Path(report["asset_uri"].removeprefix("file://")).exists()


def test_run_text_report(sample_dir, tmp_path):
    config = _sample_copy(sample_dir, tmp_path)
    proc = orchestra("run", str(config), "--quiet", "--ledger", str(tmp_path / "ledger.sqlite"))
    assert proc.returncode == 0, proc.stderr
    for heading in ("status approved", "merged quality", "branches:", "source attribution:", "timeline:", "integrated output:"):
        assert heading in proc.stdout
    assert "started (" not in proc.stderr  # --quiet


def test_bad_config_fails_before_anything_is_written(tmp_path):
    output = tmp_path / "output"
    config = {
        "batches": [BATCH],
        "storage": {"data_roots": [str(tmp_path)], "output_root": str(output)},
        "quality": {"approve_quality": 0.5, "critical_quality": 0.9},
    }
    proc = orchestra("run", str(_write(tmp_path, "bad.yaml", config)))
    assert proc.returncode == 2
    assert "critical_quality must not exceed approve_quality" in _one_line_error(proc)
    assert not output.exists()


def test_missing_source_is_a_one_line_error(tmp_path):
    config = {"batches": [BATCH], "storage": {"data_roots": [str(tmp_path)], "output_root": str(tmp_path / "out")}}
    proc = orchestra("run", str(_write(tmp_path, "w.yaml", config)), "--ledger", str(tmp_path / "ledger.sqlite"))
    assert proc.returncode == 2
    assert "a.csv" in _one_line_error(proc)


def test_unreachable_checkpoint_store_is_a_one_line_error(sample_dir, tmp_path):
    config = _sample_copy(sample_dir, tmp_path)
    proc = orchestra("run", str(config), "--checkpoint", "postgresql://orchestra:s3cret@127.0.0.1:1/nowhere")
    assert proc.returncode == 2
    line = _one_line_error(proc)
    assert "cannot reach the checkpoint database" in line and "127.0.0.1:1" in line
    assert "s3cret" not in proc.stderr


def test_unknown_checkpoint_scheme(sample_dir, tmp_path):
    proc = orchestra("run", str(_sample_copy(sample_dir, tmp_path)), "--checkpoint", "redis://localhost/0")
    assert proc.returncode == 2
    assert "unsupported checkpoint URL scheme" in proc.stderr and "Traceback" not in proc.stderr


def test_pausing_needs_a_durable_checkpoint(sample_dir, tmp_path):
    proc = orchestra("run", str(_sample_copy(sample_dir, tmp_path)), "--interrupt-before", "quality_validator")
    assert proc.returncode == 2
    assert "--checkpoint" in _one_line_error(proc)


def test_interrupt_then_resume_on_a_sqlite_checkpoint(sample_dir, tmp_path):
    config = _sample_copy(sample_dir, tmp_path)
    store = str(tmp_path / "checkpoints.sqlite")
    ledger = ["--ledger", str(tmp_path / "ledger.sqlite")]
    paused = orchestra("run", str(config), "--checkpoint", store, "--thread-id", "cli-pause", "--interrupt-before", "quality_validator", "--json", *ledger)
    assert paused.returncode == 0, paused.stderr
    assert json.loads(paused.stdout) == {"thread_id": "cli-pause", "status": "paused", "paused_before": ["quality_validator"]}
    assert f"orchestra resume cli-pause --checkpoint {store}" in paused.stderr

    resumed = orchestra("resume", "cli-pause", "--checkpoint", store, "--json", *ledger)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "approved"
    assert "started (" not in resumed.stderr  # no branch ran again

    unknown = orchestra("resume", "no-such-thread", "--checkpoint", store)
    assert unknown.returncode == 2
    assert "no run with thread id 'no-such-thread'" in unknown.stderr


def test_workflow_not_approved_exits_1_with_the_reason(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    # Every row breaks the allowed-values rule: quality 0 is a critical failure.
    (data / "orders.csv").write_text("id,region\n" + "".join(f"{i},atlantis\n" for i in range(200)))
    config = {
        "batches": [
            {
                "batch_id": "orders",
                "type": "data_ingestion",
                "source": {"kind": "csv", "path": "orders.csv"},
                "validation": {"rules": [{"column": "region", "allowed": ["north", "south"]}]},
            }
        ],
        "storage": {"data_roots": [str(data)], "output_root": str(tmp_path / "out")},
    }
    proc = orchestra("run", str(_write(tmp_path, "w.yaml", config)), "--json", "--ledger", str(tmp_path / "ledger.sqlite"))
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["status"] == "critical_failure"
    assert proc.stderr.strip().splitlines()[-1].startswith("orchestra: workflow ended critical_failure: ")


def test_a_config_nested_too_deep_to_read_is_a_one_line_error_naming_the_file(tmp_path: Path):
    from airflow_provider_orchestra.cli import CliError, read_config_file

    path = tmp_path / "deep.yaml"
    path.write_text("sync_points: " + "[" * 3_000 + "]" * 3_000 + "\n")  # past Python's recursion limit
    with pytest.raises(CliError, match=rf"config file {path} nests deeper than it can be read"):
        read_config_file(str(path))
