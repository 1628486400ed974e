"""Files stay under their roots; connection ids resolve without leaking URLs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from io_test_support import write_csv_file

from airflow_provider_orchestra.core.errors import ConfigError, SinkError, SourceError
from airflow_provider_orchestra.core.secrets import redact_text, redact_url
from airflow_provider_orchestra.core.models import SourceRef, StorageConfig
from airflow_provider_orchestra.specialists.io import (
    ConnectionResolver,
    open_source,
    output_root_for,
    resolve_under_roots,
    safe_name,
)
from airflow_provider_orchestra.specialists.io.offsets import OffsetStore
from airflow_provider_orchestra.specialists.io.paths import state_path


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


SECRET_URL = "postgresql://postgres:s3cretPW@127.0.0.1:5432/test"


def test_a_url_given_as_a_connection_id_is_refused_without_its_password(caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.DEBUG), pytest.raises(SourceError) as info:
        ConnectionResolver(environ={}).resolve(SECRET_URL)
    message = str(info.value)
    assert "s3cretPW" not in message and "s3cretPW" not in caplog.text
    assert "postgresql://postgres:***@127.0.0.1:5432/test" in message and "is a URL" in message
    ref = SourceRef(kind="postgres", table="orders", conn_id=SECRET_URL)
    with pytest.raises(SourceError) as info:
        open_source(ref, roots=[], batch_rows=10)
    assert "s3cretPW" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (SECRET_URL, "postgresql://postgres:***@127.0.0.1:5432/test"),
        ("user:p@ss:w0rd in postgres://me:p@ss:w0rd@db/x", "user:p@ss:w0rd in postgres://me:***@db/x"),
        ("postgresql://db/x?sslmode=require&password=hunter2", "postgresql://db/x?sslmode=require&password=***"),
        ("warehouse", "warehouse"),
        ("http://host:8080/path", "http://host:8080/path"),
    ],
)
def test_redact_text_masks_every_password_of_a_url_in_free_text(text: str, shown: str):
    assert redact_text(text) == shown


def test_redact_url_masks_userinfo_and_query_passwords():
    assert redact_url("postgresql://u:pw@db:5432/x?password=pw2&sslmode=disable") == (
        "postgresql://u:***@db:5432/x?password=***&sslmode=disable"
    )


def test_ids_longer_than_a_file_name_become_bounded_distinct_folders(tmp_path: Path):
    storage = StorageConfig(output_root=str(tmp_path / "out"))
    long_ids = ["t" * 300, "t" * 299 + "u", "thread/" + "x" * 400]
    folders = [output_root_for(storage, "wf", run_id, "orders") for run_id in long_ids]
    for folder in folders:
        folder.mkdir(parents=True)  # a name over 255 bytes would fail here
        assert len(folder.parent.name) <= 109
    assert len({f.parent.name for f in folders}) == 3
    assert safe_name("short_id") == "short_id"


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"storage": {"output_root": "out\x00put"}}, "storage.output_root"),
        ({"storage": {"data_roots": ["data", "da\x00ta"]}}, "storage.data_roots.1"),
        ({"source": {"kind": "csv", "path": "a\x00.csv"}}, "batches.0.source.path"),
    ],
)
def test_a_nul_byte_in_a_storage_path_is_refused_naming_the_field(config: dict, field: str):
    from airflow_provider_orchestra.core.models import parse_config

    batch = {"batch_id": "b", "type": "data_ingestion", "source": config.pop("source", {"kind": "csv", "path": "b.csv"})}
    with pytest.raises(ConfigError, match="NUL byte") as info:
        parse_config({"batches": [batch], **config})
    assert info.value.fields == [field]


def test_a_state_folder_symlinked_out_of_the_output_root_is_refused(tmp_path: Path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "_state").symlink_to(outside)
    storage = StorageConfig(output_root=str(tmp_path / "out"))
    with pytest.raises(SinkError, match="_state.*resolves outside the output root"):
        OffsetStore.for_storage(storage)
    with pytest.raises(SinkError, match="resolves outside"):
        state_path(tmp_path / "out", "ledger.sqlite")
    assert list(outside.iterdir()) == []
