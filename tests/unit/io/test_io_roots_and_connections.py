"""Files stay under their roots; connection ids resolve without leaking URLs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from io_test_support import write_csv_file

from airflow_provider_orchestra.core.errors import SourceError
from airflow_provider_orchestra.core.models import SourceRef, StorageConfig
from airflow_provider_orchestra.specialists.io import (
    ConnectionResolver,
    open_source,
    output_root_for,
    resolve_under_roots,
    safe_name,
)


def test_relative_path_resolves_under_root(data_root: Path, roots: list[str]):
    write_csv_file(data_root / "a.csv", 1)
    assert resolve_under_roots("a.csv", roots) == (data_root / "a.csv").resolve()
    assert resolve_under_roots(str(data_root / "a.csv"), roots) == (data_root / "a.csv").resolve()


def test_relative_path_is_tried_against_each_root_in_order(tmp_path: Path):
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    (second / "only_here.csv").write_text("x\n1\n")
    (first / "both.csv").write_text("x\n1\n")
    (second / "both.csv").write_text("x\n2\n")
    roots = [str(first), str(second)]
    assert resolve_under_roots("only_here.csv", roots) == (second / "only_here.csv").resolve()
    assert resolve_under_roots("both.csv", roots) == (first / "both.csv").resolve()


def test_path_outside_roots_is_refused(tmp_path: Path, data_root: Path, roots: list[str]):
    outside = tmp_path / "secret.csv"
    write_csv_file(outside, 1)
    with pytest.raises(SourceError, match=r"secret\.csv.*outside every data root") as info:
        resolve_under_roots(str(outside), roots)
    assert str(data_root) in str(info.value)


def test_dotdot_escape_is_refused(tmp_path: Path, roots: list[str]):
    write_csv_file(tmp_path / "secret.csv", 1)
    with pytest.raises(SourceError, match="outside every data root"):
        resolve_under_roots("../secret.csv", roots)
    with pytest.raises(SourceError, match="outside every data root"):
        open_source(SourceRef(kind="csv", path="sub/../../secret.csv"), roots=roots, batch_rows=10)


def test_symlink_pointing_outside_is_refused(tmp_path: Path, data_root: Path, roots: list[str]):
    write_csv_file(tmp_path / "secret.csv", 1)
    (data_root / "innocent.csv").symlink_to(tmp_path / "secret.csv")
    (data_root / "linked_dir").symlink_to(tmp_path)
    with pytest.raises(SourceError, match="outside every data root"):
        open_source(SourceRef(kind="csv", path="innocent.csv"), roots=roots, batch_rows=10)
    with pytest.raises(SourceError, match="outside every data root"):
        resolve_under_roots("linked_dir/secret.csv", roots)


def test_symlink_inside_root_is_allowed(data_root: Path, roots: list[str]):
    write_csv_file(data_root / "real.csv", 3)
    (data_root / "alias.csv").symlink_to(data_root / "real.csv")
    assert open_source(SourceRef(kind="csv", path="alias.csv"), roots=roots, batch_rows=10).read_all().num_rows == 3


def test_no_roots_refuses_everything(data_root: Path):
    with pytest.raises(SourceError, match="no data roots"):
        resolve_under_roots(str(data_root / "a.csv"), [])


def test_output_root_for_sanitises_run_ids(tmp_path: Path):
    storage = StorageConfig(output_root=str(tmp_path / "out"))
    run_id = "manual__2024-05-01T00:00:00+00:00"
    path = output_root_for(storage, "wf", run_id, "orders_batch")
    assert path.parent.parent == (tmp_path / "out" / "wf").resolve()
    assert ":" not in path.parent.name and "+" not in path.parent.name
    assert path.name == "orders_batch"
    # Different ids never collapse into one directory, and the mapping is stable.
    assert safe_name("a/b") != safe_name("a_b")
    assert safe_name(run_id) == safe_name(run_id)
    assert safe_name("..") not in {".", ".."}
    evil = output_root_for(storage, "wf", "../../etc", "b")
    assert evil.is_relative_to((tmp_path / "out").resolve())


def test_connection_from_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ORCHESTRA_CONN_WAREHOUSE", "postgres://u:pw@db:5432/wh?__extra__=%7B%7D&sslmode=disable")
    assert ConnectionResolver().resolve("warehouse") == "postgresql://u:pw@db:5432/wh?sslmode=disable"
    monkeypatch.delenv("ORCHESTRA_CONN_WAREHOUSE")
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", "postgresql://u@db/wh")
    assert ConnectionResolver().resolve("warehouse") == "postgresql://u@db/wh"


def test_connection_in_airflow_json_form(monkeypatch: pytest.MonkeyPatch):
    value = {"conn_type": "postgres", "host": "db", "login": "me", "password": "p@ss", "port": 5433, "schema": "wh"}
    monkeypatch.setenv("AIRFLOW_CONN_JSONCONN", json.dumps(value))
    assert ConnectionResolver().resolve("jsonconn") == "postgresql://me:p%40ss@db:5433/wh"


def test_explicit_mapping_and_lookup_win_over_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ORCHESTRA_CONN_X", "postgresql://env/db")
    assert ConnectionResolver({"x": "postgresql://mapped/db"}).resolve("x") == "postgresql://mapped/db"
    assert ConnectionResolver(lookup=lambda cid: "postgresql://hook/db").resolve("x") == "postgresql://hook/db"
    assert ConnectionResolver(lookup=lambda cid: None).resolve("x") == "postgresql://env/db"


def test_unknown_connection_names_the_id():
    with pytest.raises(SourceError, match="unknown connection 'nowhere'"):
        ConnectionResolver(environ={}).resolve("nowhere")


def test_bad_connection_never_shows_the_secret(caplog: pytest.LogCaptureFixture):
    resolver = ConnectionResolver({"mysql": "mysql://user:hunter2@db/x"})
    with caplog.at_level(logging.DEBUG), pytest.raises(SourceError) as info:
        resolver.resolve("mysql")
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in caplog.text
    assert "'mysql'" in str(info.value)


def test_branch_outputs_and_the_integrated_manifest_share_the_run_folder(tmp_path):
    from airflow_provider_orchestra.core.integration import integrated_output_path
    from airflow_provider_orchestra.core.models import StorageConfig
    from airflow_provider_orchestra.specialists.io import output_root_for

    run_id = "manual__2026-01-01T00:00:00+00:00"
    storage = StorageConfig(output_root=str(tmp_path))
    branch_dir = output_root_for(storage, "wf", run_id, "orders")
    manifest = integrated_output_path(tmp_path, "wf", run_id)
    assert branch_dir.parent == manifest.parent.resolve()
    assert ":" not in manifest.parent.name
