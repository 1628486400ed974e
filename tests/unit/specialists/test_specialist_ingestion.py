"""Streaming ingestion on real JSONL files and a real Postgres table."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from airflow_provider_orchestra.specialists.templates import run_specialist_directly
from specialist_test_support import (
    branch_dir,
    make_task,
    output,
    published_files,
    read_jsonl,
    read_parquet,
    write_jsonl,
)

BASE = datetime(2024, 1, 1, tzinfo=timezone.utc)
TOLERANCE_SECONDS = 3600


def event(event_id: int, hours: float) -> dict:
    return {"id": event_id, "ts": (BASE + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%S"), "value": event_id * 1.5}


def expected_late(events: list[dict], watermark: datetime | None) -> tuple[list[int], list[int], datetime | None]:
    """(on-time ids, late ids, watermark after): the rule written out row by row."""
    on_time, late = [], []
    for e in events:
        ts = datetime.fromisoformat(e["ts"]).replace(tzinfo=timezone.utc)
        watermark = ts if watermark is None else max(watermark, ts)
        (late if ts < watermark - timedelta(seconds=TOLERANCE_SECONDS) else on_time).append(e["id"])
    return on_time, late, watermark


def batch(path: str = "events.jsonl", **ingestion) -> dict:
    return {
        "batch_id": "clicks",
        "type": "data_ingestion",
        "source_type": "streaming",
        "source": {"kind": "jsonl", "path": path},
        "ingestion": {"event_time_column": "ts", "late_tolerance_seconds": TOLERANCE_SECONDS, **ingestion},
    }


FIRST = [event(1, 0), event(2, 1), event(3, 2), event(4, 0.5), event(5, 3), event(6, 2.5), event(7, 4), event(8, 1)]
SECOND = [event(9, 5), event(10, 3.5), event(11, 4.5)]


def test_first_read_splits_late_events_and_quarantines_malformed_lines(tmp_path, data_dir):
    write_jsonl(data_dir / "events.jsonl", FIRST[:5], raw_lines=("{not json",))
    write_jsonl(data_dir / "events.jsonl", FIRST[5:])
    on_time, late, watermark = expected_late(FIRST, None)
    assert late == [4, 8]  # the crafted data does test lateness across record batches

    task = make_task(tmp_path, batch(), record_batch_rows=3)
    result = run_specialist_directly(task)

    assert result.status == "success", result.error
    assert result.category == "ingestion"
    m = result.metrics
    # Late records are output too (their own file): every line read is counted once.
    assert (m.rows_in, m.rows_out, m.rows_rejected) == (9, len(on_time) + len(late), 1)
    assert m.quality == pytest.approx(8 / 9)
    assert m.record_batches == 3  # 8 records in batches of 3
    assert m.iterations == 1
    assert result.details["late_events"] == len(late)
    assert result.details["event_watermark_after"] == watermark.isoformat()

    assert read_parquet(output(result)).column("id").to_pylist() == on_time
    assert output(result).rows == len(on_time)
    assert read_parquet(output(result, "late_events")).column("id").to_pylist() == late
    quarantined = read_jsonl(output(result, "quarantine"))
    assert [q["raw"] for q in quarantined] == ["{not json"]
    assert quarantined[0]["line"] == 6


def test_second_run_reads_only_new_records_and_judges_them_against_the_stored_watermark(tmp_path, data_dir):
    write_jsonl(data_dir / "events.jsonl", FIRST)
    first = run_specialist_directly(make_task(tmp_path, batch(), run_id="run-1"))
    assert first.status == "success", first.error
    first_rows = read_parquet(output(first)).column("id").to_pylist()

    write_jsonl(data_dir / "events.jsonl", SECOND)
    _, _, watermark = expected_late(FIRST, None)
    on_time, late, _ = expected_late(SECOND, watermark)
    assert late == [10]

    second = run_specialist_directly(make_task(tmp_path, batch(), run_id="run-2"))
    assert second.status == "success", second.error
    assert (second.metrics.rows_in, second.metrics.rows_out) == (3, len(on_time) + len(late))
    assert read_parquet(output(second)).column("id").to_pylist() == on_time
    assert read_parquet(output(second, "late_events")).column("id").to_pylist() == late
    # The first run's output is untouched.
    assert read_parquet(output(first)).column("id").to_pylist() == first_rows

    # The same run again (a retry with no checkpoint) re-reads its own range: same rows, once.
    again = run_specialist_directly(make_task(tmp_path, batch(), run_id="run-2"))
    assert again.status == "success", again.error
    assert read_parquet(output(again)).column("id").to_pylist() == on_time
    assert output(again).checksum == output(second).checksum

    # Nothing new: an empty output with the same columns, and an empty branch - not a perfect one.
    third = run_specialist_directly(make_task(tmp_path, batch(), run_id="run-3"))
    assert third.status == "empty", third.error
    assert (third.metrics.rows_in, third.metrics.rows_out, third.metrics.quality) == (0, 0, 0.0)
    assert read_parquet(output(third)).column_names == ["id", "ts", "value"]


def test_a_half_written_last_line_is_reported_pending_and_read_by_the_next_run(tmp_path, data_dir):
    path = data_dir / "events.jsonl"
    write_jsonl(path, FIRST[:3])
    half = '{"id": 4, "ts": "2024-01-01T05:30'
    with path.open("a") as fh:
        fh.write(half)

    first = run_specialist_directly(make_task(tmp_path, batch(), run_id="run-1"))
    assert first.status == "success", first.error
    m = first.metrics
    assert (m.rows_in, m.rows_out, m.rows_rejected, m.rows_pending) == (3, 3, 0, 1)
    assert (first.details["pending_lines"], first.details["pending_bytes"]) == (1, len(half))
    assert read_parquet(output(first)).column("id").to_pylist() == [1, 2, 3]

    with path.open("a") as fh:
        fh.write(':00", "value": 6.0}\n')
    second = run_specialist_directly(make_task(tmp_path, batch(), run_id="run-2"))
    assert (second.metrics.rows_in, second.metrics.rows_pending) == (1, 0)
    assert read_parquet(output(second)).column("id").to_pylist() == [4]


def test_lenient_parsing_recovers_lines_that_do_not_fit_the_schema(tmp_path, data_dir):
    good = [{"id": i, "value": i * 1.5} for i in range(6)]
    misfits = [{"id": 6, "value": "oops"}, {"id": 7, "value": "12.5"}, {"id": 8, "value": "n/a"}, {"id": 9, "value": "x"}]
    write_jsonl(data_dir / "events.jsonl", good + misfits, raw_lines=("[1, 2]",))
    spec = {"batch_id": "clicks", "type": "data_ingestion", "source_type": "streaming", "source": {"kind": "jsonl", "path": "events.jsonl"}}

    result = run_specialist_directly(make_task(tmp_path, spec))

    assert result.status == "success", result.error
    attempts = result.details["attempts"]
    assert [a["strategy"] for a in attempts] == ["strict", "lenient"]
    assert attempts[0]["quality"] == pytest.approx(6 / 11)  # below 0.8: retried
    assert result.metrics.iterations == 2
    assert result.metrics.quality == pytest.approx(10 / 11)
    assert (result.metrics.rows_in, result.metrics.rows_out, result.metrics.rows_rejected) == (11, 10, 1)
    assert result.details["nulled_values"] == 3  # "12.5" converts, the three others do not
    rows = {r["id"]: r["value"] for r in read_parquet(output(result)).to_pylist()}
    assert rows == {**{i: i * 1.5 for i in range(6)}, 6: None, 7: 12.5, 8: None, 9: None}
    assert [q["raw"] for q in read_jsonl(output(result, "quarantine"))] == ["[1, 2]"]


def test_iteration_limit_stops_the_fallback(tmp_path, data_dir):
    write_jsonl(data_dir / "events.jsonl", [{"id": 1, "value": 1.0}, {"id": 2, "value": "bad"}, {"id": 3, "value": "bad"}])
    spec = {"batch_id": "clicks", "type": "data_ingestion", "source_type": "streaming", "source": {"kind": "jsonl", "path": "events.jsonl"}}

    result = run_specialist_directly(make_task(tmp_path, spec), iteration_limit=1)

    assert result.status == "success"
    assert result.metrics.iterations == 1
    assert result.metrics.quality == pytest.approx(1 / 3)
    assert result.details["quality_met"] is False


def test_postgres_table_is_read_from_the_stored_watermark(tmp_path, postgres_url):
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("create table events (id bigint primary key, ts timestamptz, value double precision)")
        for i in range(1, 6):
            conn.execute("insert into events values (%s, %s, %s)", (i, BASE + timedelta(minutes=i), i * 2.0))
    spec = {
        "batch_id": "pg_events",
        "type": "data_ingestion",
        "source_type": "streaming",
        "source": {"kind": "postgres", "table": "events", "conn_id": "pg_src"},
        "ingestion": {"watermark_column": "id", "event_time_column": "ts"},
    }
    connections = {"pg_src": postgres_url}

    first = run_specialist_directly(make_task(tmp_path, spec, run_id="run-1"), connections=connections)
    assert first.status == "success", first.error
    assert sorted(read_parquet(output(first)).column("id").to_pylist()) == [1, 2, 3, 4, 5]

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for i in range(6, 9):
            conn.execute("insert into events values (%s, %s, %s)", (i, BASE + timedelta(minutes=i), i * 2.0))
    second = run_specialist_directly(make_task(tmp_path, spec, run_id="run-2"), connections=connections)

    assert second.status == "success", second.error
    assert sorted(read_parquet(output(second)).column("id").to_pylist()) == [6, 7, 8]
    assert (second.metrics.rows_in, second.metrics.rows_out) == (3, 3)
    assert second.details["start_position"] == "5"
    assert second.details["end_position"] == "8"
    assert "postgres://pg_src/public.events" in second.details["source"]
    assert postgres_url.rsplit("/", 1)[0] not in str(second.model_dump())


@pytest.mark.parametrize(
    "spec_change, message",
    [
        ({"source": {"kind": "jsonl", "path": "missing.jsonl"}}, "does not exist"),
        ({"source": {"kind": "csv", "path": "events.jsonl"}}, "append-only jsonl file or a postgres table"),
        ({"ingestion": {"event_time_column": "happened_at"}}, "event_time_column 'happened_at' is not in the source"),
        ({"source": {"kind": "jsonl", "path": "../outside.jsonl"}}, "outside every data root"),
    ],
)
def test_bad_inputs_fail_clearly_and_write_nothing(tmp_path, data_dir, spec_change, message):
    write_jsonl(data_dir / "events.jsonl", FIRST)
    write_jsonl(tmp_path / "outside.jsonl", FIRST)
    spec = {**batch(), **spec_change}

    result = run_specialist_directly(make_task(tmp_path, spec))

    assert result.status == "failed"
    assert message in result.error
    assert result.error.startswith("clicks: ")
    assert result.outputs == []
    assert published_files(tmp_path) == []


def test_a_file_of_only_malformed_lines_fails_after_both_strategies(tmp_path, data_dir):
    (data_dir / "events.jsonl").write_text("{oops\nnot json either\n")

    result = run_specialist_directly(make_task(tmp_path, batch()))

    assert result.status == "failed"
    assert "every line is malformed" in result.error
    assert not branch_dir(tmp_path, "clicks").exists()
    assert published_files(tmp_path) == []


def test_two_batches_reading_one_file_keep_their_own_positions(tmp_path, data_dir):
    write_jsonl(data_dir / "events.jsonl", FIRST)
    other = {**batch(), "batch_id": "clicks_audit"}

    first = run_specialist_directly(make_task(tmp_path, batch(), run_id="run-1"))
    audit = run_specialist_directly(make_task(tmp_path, other, run_id="run-1"))

    assert first.metrics.rows_in == audit.metrics.rows_in == len(FIRST)
