"""Offset/watermark store: SQLite file and Postgres table behave the same."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from airflow_provider_orchestra.core.models import StorageConfig
from airflow_provider_orchestra.specialists.io import OffsetConflictError, OffsetStore


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> OffsetStore:
    if request.param == "sqlite":
        return OffsetStore(tmp_path / "state" / "offsets.sqlite")
    return OffsetStore(request.getfixturevalue("postgres_url"))


def test_unknown_key_gives_the_default(store: OffsetStore):
    assert store.get("wf", "file:///events.jsonl") is None
    assert store.get("wf", "file:///events.jsonl", 0) == 0


POSITIONS = [4096, 2.5, "cursor-7", datetime(2024, 5, 3, 12, 30, tzinfo=timezone.utc), date(2024, 5, 3), Decimal("10.50")]


def test_positions_round_trip_with_their_type(store: OffsetStore):
    for number, value in enumerate(POSITIONS):
        store.set("wf", f"src{number}", value)
    for number, value in enumerate(POSITIONS):
        back = store.get("wf", f"src{number}")
        assert back == value and type(back) is type(value)


def test_set_overwrites_and_keys_are_separate(store: OffsetStore):
    store.set("wf", "a", 10)
    store.set("wf", "a", 20)
    store.set("wf", "b", 5)
    store.set("other", "a", 1)
    assert (store.get("wf", "a"), store.get("wf", "b"), store.get("other", "a")) == (20, 5, 1)
    store.delete("wf", "a")
    assert store.get("wf", "a") is None


def test_conditional_set_refuses_a_moved_position(store: OffsetStore):
    store.set("wf", "a", 100, expected=None)  # first run: nothing stored yet
    store.set("wf", "a", 200, expected=100)
    with pytest.raises(OffsetConflictError, match="is 200, expected 100"):
        store.set("wf", "a", 300, expected=100)  # a second run read the old position
    assert store.get("wf", "a") == 200
    with pytest.raises(OffsetConflictError):
        store.set("wf", "new", 1, expected=5)
    assert store.get("wf", "new") is None


def test_default_store_lives_under_the_output_root(tmp_path: Path):
    store = OffsetStore.for_storage(StorageConfig(output_root=str(tmp_path / "out")))
    store.set("wf", "k", 1)
    assert (tmp_path / "out" / "_state" / "offsets.sqlite").is_file()
    assert OffsetStore(tmp_path / "out" / "_state" / "offsets.sqlite").get("wf", "k") == 1


def test_unsafe_table_name_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="plain identifier"):
        OffsetStore(tmp_path / "o.sqlite", table='x"; drop table y; --')
