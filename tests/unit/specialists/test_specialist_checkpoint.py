"""make_saver: in-memory, SQLite and Postgres checkpointers, and clear errors."""

from __future__ import annotations

import json

import psycopg
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.sqlite import SqliteSaver

from airflow_provider_orchestra.core.errors import OrchestraError
from airflow_provider_orchestra.specialists.checkpoint import close_saver, make_saver
from airflow_provider_orchestra.specialists.templates import run_specialist_directly
from specialist_test_support import make_task, write_jsonl

BATCH = {
    "batch_id": "clicks",
    "type": "data_ingestion",
    "source_type": "streaming",
    "source": {"kind": "jsonl", "path": "events.jsonl"},
}


@pytest.mark.parametrize("url", [None, "", "memory"])
def test_no_url_gives_an_in_memory_saver(url):
    assert isinstance(make_saver(url), InMemorySaver)


def test_sqlite_saver_from_a_path_or_url_persists_across_savers(tmp_path, data_dir):
    write_jsonl(data_dir / "events.jsonl", [{"id": i} for i in range(5)])
    path = tmp_path / "state" / "nested" / "checkpoints.sqlite"
    first = make_saver(str(path))
    assert isinstance(first, SqliteSaver) and path.exists()
    try:
        result = run_specialist_directly(make_task(tmp_path, BATCH), saver=first, thread_id="t-1")
    finally:
        close_saver(first)
    assert result.status == "success"

    second = make_saver(f"sqlite:///{path}")
    try:
        stored = [c.config["configurable"]["thread_id"] for c in second.list(None)]
        assert "t-1" in stored
    finally:
        close_saver(second)


def test_postgres_saver_sets_up_its_tables_once(postgres_url):
    first = make_saver(postgres_url)
    second = make_saver(postgres_url)  # setup already done in this process: no error, same tables
    try:
        assert isinstance(first, PostgresSaver)
        with psycopg.connect(postgres_url) as conn:
            tables = {r[0] for r in conn.execute("select tablename from pg_tables where schemaname = 'public'")}
        assert {"checkpoints", "checkpoint_writes", "checkpoint_blobs"} <= tables
    finally:
        close_saver(first)
        close_saver(second)


def test_unreachable_postgres_names_the_target_without_its_password():
    with pytest.raises(OrchestraError) as caught:
        make_saver("postgresql://orchestra:hunter2-secret@127.0.0.1:1/checkpoints")
    message = str(caught.value)
    assert "hunter2-secret" not in message
    assert "postgresql://orchestra:***@127.0.0.1:1/checkpoints" in message


@pytest.mark.parametrize(
    "url, message",
    [
        ("redis://127.0.0.1:6379/0", "unsupported checkpoint URL scheme"),
        ("sqlite://host/path.db", "has a host part"),
    ],
)
def test_unsupported_urls_are_refused(url, message):
    with pytest.raises(OrchestraError, match=message):
        make_saver(url)


def test_an_unusable_sqlite_path_is_an_orchestra_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(OrchestraError, match="cannot open the SQLite checkpoint store"):
        make_saver(str(blocker / "checkpoints.sqlite"))


def test_graph_state_holds_descriptors_whose_size_does_not_grow_with_the_data(tmp_path, data_dir):
    """The checkpointed state of a run over 50 rows and over 20 000 rows differ by a few
    bytes (numbers get longer), never by the data."""
    sizes = []
    for rows in (50, 20_000):
        write_jsonl(data_dir / f"events-{rows}.jsonl", [{"id": i, "value": i * 0.5} for i in range(rows)])
        saver = InMemorySaver()
        batch = {**BATCH, "source": {"kind": "jsonl", "path": f"events-{rows}.jsonl"}}
        result = run_specialist_directly(make_task(tmp_path, batch, run_id=f"run-{rows}", record_batch_rows=5000), saver=saver, thread_id=f"t-{rows}")
        assert result.status == "success" and result.metrics.rows_out == rows
        state = saver.get_tuple({"configurable": {"thread_id": f"t-{rows}"}}).checkpoint["channel_values"]
        sizes.append(len(json.dumps(state, default=str)))
    assert abs(sizes[1] - sizes[0]) < 200
    assert sizes[1] < 10_000
