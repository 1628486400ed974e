"""File sources: bounded batches, incremental JSONL, quarantine, bad input."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from io_test_support import (
    append_text,
    event_line,
    numbers_table,
    write_csv_file,
    write_events,
    write_parquet_file,
)

from airflow_provider_orchestra.core.errors import SourceError
from airflow_provider_orchestra.core.models import BatchSpec, SourceRef
from airflow_provider_orchestra.specialists.io import describe_source, open_source


def _ref(kind: str, path: str) -> SourceRef:
    return SourceRef(kind=kind, path=path)


@pytest.mark.parametrize("kind", ["csv", "parquet", "jsonl"])
def test_each_kind_streams_in_bounded_batches(kind: str, data_root: Path, roots: list[str]):
    rows = 1_000
    name = f"numbers.{kind}"
    if kind == "csv":
        write_csv_file(data_root / name, rows)
    elif kind == "parquet":
        write_parquet_file(data_root / name, rows)
    else:
        write_events(data_root / name, range(rows))

    source = open_source(_ref(kind, name), roots=roots, batch_rows=128)
    sizes = []
    ids = []
    for batch in source.iter_batches():
        assert batch.schema.equals(source.schema)
        sizes.append(batch.num_rows)
        ids.extend(batch.column(0).to_pylist())

    assert max(sizes) <= 128
    assert sum(sizes) == rows == source.rows_read
    assert len(sizes) >= rows // 128
    assert ids == list(range(rows))
    assert source.rejected == []


def test_csv_values_and_types_are_read(data_root: Path, roots: list[str]):
    (data_root / "o.csv").write_text('id,label,price,ts\n1,a,2.5,2024-05-01 10:00:00Z\n2,"",,\n3,,7,2024-05-02 00:00:00Z\n')
    table = open_source(_ref("csv", "o.csv"), roots=roots, batch_rows=10).read_all()
    assert table.schema.field("price").type == pa.float64()
    assert pa.types.is_timestamp(table.schema.field("ts").type)
    assert table.column("label").to_pylist() == ["a", "", None]
    assert table.column("price").to_pylist() == [2.5, None, 7.0]


def test_csv_rows_with_wrong_field_count_are_quarantined(data_root: Path, roots: list[str]):
    (data_root / "bad.csv").write_text("id,name\n1,a\n2\n3,c\n4,d,extra\n5,e\n")
    source = open_source(_ref("csv", "bad.csv"), roots=roots, batch_rows=2)
    table = source.read_all()
    assert table.column("id").to_pylist() == [1, 3, 5]
    assert [(r.line, r.raw) for r in source.rejected] == [(3, "2"), (5, "4,d,extra")]
    assert "expected 2 columns, got 1" in source.rejected[0].reason


def test_csv_value_that_does_not_fit_its_column_is_quarantined(data_root: Path, roots: list[str]):
    # Types are inferred from the first block; the bad values come blocks later.
    lines = ["id,qty,note"] + [f"{i},{i},n{i}" for i in range(30_000)]
    lines[25_001] = "25000,lots,n25000"
    lines[29_001] = "29000,12.5,n29000"
    lines.insert(27_000, "short,row")
    (data_root / "late_text.csv").write_text("\n".join(lines) + "\n")
    source = open_source(_ref("csv", "late_text.csv"), roots=roots, batch_rows=4_096)
    assert source.schema.field("qty").type == pa.int64()
    table = source.read_all()
    assert table.schema.equals(source.schema)
    ids = table.column("id").to_pylist()
    assert ids == [i for i in range(30_000) if i not in {25_000, 29_000}]
    reasons = [r.reason for r in source.rejected]
    assert len(reasons) == 3
    assert any("expected 3 columns, got 2" in r for r in reasons)
    assert any(r.startswith("does not fit the schema") and "'lots'" in r and "'qty'" in r for r in reasons)
    assert any("12.5" in r for r in reasons)
    assert {r.raw for r in source.rejected} >= {"25000,lots,n25000", "short,row"}


def test_jsonl_incremental_read_gets_only_appended_lines(data_root: Path, roots: list[str]):
    path = data_root / "events.jsonl"
    write_events(path, range(10))
    first = open_source(_ref("jsonl", "events.jsonl"), roots=roots, batch_rows=4)
    assert first.read_all().column("event_id").to_pylist() == list(range(10))
    assert first.end_offset == path.stat().st_size

    append_text(path, "".join(event_line(i) + "\n" for i in range(10, 15)))
    second = open_source(_ref("jsonl", "events.jsonl"), roots=roots, batch_rows=4, start_offset=first.end_offset)
    assert second.read_all().column("event_id").to_pylist() == list(range(10, 15))
    assert second.end_offset == path.stat().st_size

    nothing_new = open_source(
        _ref("jsonl", "events.jsonl"), roots=roots, batch_rows=4, start_offset=second.end_offset
    )
    assert nothing_new.read_all().num_rows == 0
    assert nothing_new.end_offset == second.end_offset


def test_jsonl_tail_holds_back_a_partial_last_line_and_reports_it_pending(data_root: Path, roots: list[str]):
    path = data_root / "events.jsonl"
    complete = event_line(3)
    write_events(path, range(3), tail=complete[:12])  # a writer is half way through line 4
    first = open_source(_ref("jsonl", "events.jsonl"), roots=roots, batch_rows=100, tail=True)
    assert first.read_all().column("event_id").to_pylist() == [0, 1, 2]
    assert first.rejected == []
    assert (first.pending_rows, first.pending_bytes) == (1, 12)
    assert first.end_offset == path.stat().st_size - 12

    append_text(path, complete[12:] + "\n")
    second = open_source(
        _ref("jsonl", "events.jsonl"), roots=roots, batch_rows=100, start_offset=first.end_offset, tail=True
    )
    assert second.read_all().column("event_id").to_pylist() == [3]
    assert second.pending_rows == 0


def test_jsonl_batch_read_reads_the_last_record_without_a_newline(data_root: Path, roots: list[str]):
    (data_root / "three.jsonl").write_text("\n".join(event_line(i) for i in range(3)))
    source = open_source(_ref("jsonl", "three.jsonl"), roots=roots, batch_rows=2)
    assert source.read_all().column("event_id").to_pylist() == [0, 1, 2]
    assert (source.rejected, source.pending_rows) == ([], 0)
    assert source.end_offset == (data_root / "three.jsonl").stat().st_size

    # One line longer than a read block and no newline at all: one record, not none.
    long_line = '{"event_id": 7, "note": "' + "x" * 300_000 + '"}'
    (data_root / "long.jsonl").write_text(long_line)
    long = open_source(_ref("jsonl", "long.jsonl"), roots=roots, batch_rows=10)
    assert long.read_all().column("event_id").to_pylist() == [7]
    tail = open_source(_ref("jsonl", "long.jsonl"), roots=roots, batch_rows=10, tail=True)
    assert (tail.read_all().num_rows, tail.pending_rows, tail.end_offset) == (0, 1, 0)

    batch = BatchSpec(batch_id="three", type="data_ingestion", source=_ref("jsonl", "three.jsonl"))
    assert describe_source(batch, roots=roots).rows == 3


def test_jsonl_malformed_lines_are_quarantined_with_reason(data_root: Path, roots: list[str]):
    lines = [event_line(0), "{not json", event_line(1), "[1, 2]", "", event_line(2), '{"event_id": "x"}', event_line(3)]
    path = data_root / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    source = open_source(_ref("jsonl", "events.jsonl"), roots=roots, batch_rows=2)
    table = source.read_all()
    assert table.column("event_id").to_pylist() == [0, 1, 2, 3]
    rejected = {r.line: r for r in source.rejected}
    assert sorted(rejected) == [2, 4, 7]
    assert rejected[2].reason.startswith("invalid JSON")
    assert rejected[2].raw == "{not json"
    assert "not a JSON object" in rejected[4].reason
    assert "schema" in rejected[7].reason
    raw = path.read_bytes()
    assert raw[rejected[4].offset :].startswith(b"[1, 2]")


def test_jsonl_where_every_line_is_bad_fails(data_root: Path, roots: list[str]):
    (data_root / "junk.jsonl").write_text("nope\n{broken\n")
    with pytest.raises(SourceError, match="every line"):
        open_source(_ref("jsonl", "junk.jsonl"), roots=roots, batch_rows=10)


def test_jsonl_truncated_file_is_refused(data_root: Path, roots: list[str]):
    write_events(data_root / "e.jsonl", range(2))
    with pytest.raises(SourceError, match="truncated or replaced"):
        open_source(_ref("jsonl", "e.jsonl"), roots=roots, batch_rows=10, start_offset=10_000)


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet"])
def test_missing_file_names_the_path(kind: str, roots: list[str]):
    with pytest.raises(SourceError, match=rf"nope\.{kind}.*does not exist"):
        open_source(_ref(kind, f"nope.{kind}"), roots=roots, batch_rows=10)


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet"])
def test_empty_file_is_refused(kind: str, data_root: Path, roots: list[str]):
    (data_root / f"empty.{kind}").write_bytes(b"")
    with pytest.raises(SourceError, match="is empty"):
        open_source(_ref(kind, f"empty.{kind}"), roots=roots, batch_rows=10)


def test_file_that_is_not_its_kind_is_refused(data_root: Path, roots: list[str]):
    write_parquet_file(data_root / "really_parquet.csv", 10)
    (data_root / "really_text.parquet").write_text("id,name\n1,a\n")
    with pytest.raises(SourceError, match="not a CSV text file"):
        open_source(_ref("csv", "really_parquet.csv"), roots=roots, batch_rows=10)
    with pytest.raises(SourceError, match="not a Parquet file"):
        open_source(_ref("parquet", "really_text.parquet"), roots=roots, batch_rows=10)
    truncated = (data_root / "really_parquet.csv").read_bytes()[:40]
    (data_root / "cut.parquet").write_bytes(truncated)
    with pytest.raises(SourceError, match="not a readable Parquet file"):
        open_source(_ref("parquet", "cut.parquet"), roots=roots, batch_rows=10)


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet"])
def test_wrong_schema_names_missing_columns(kind: str, data_root: Path, roots: list[str]):
    name = f"n.{kind}"
    if kind == "csv":
        write_csv_file(data_root / name, 5)
    elif kind == "parquet":
        write_parquet_file(data_root / name, 5)
    else:
        write_events(data_root / name, range(5))
    with pytest.raises(SourceError, match=r"wrong schema.*\['customer_id'\]"):
        open_source(_ref(kind, name), roots=roots, batch_rows=10, expected_columns=["customer_id"])


def test_expected_types_are_applied(data_root: Path, roots: list[str]):
    write_csv_file(data_root / "n.csv", 5)
    source = open_source(
        _ref("csv", "n.csv"), roots=roots, batch_rows=10, expected_columns={"id": "int32", "amount": None}
    )
    assert source.schema.field("id").type == pa.int32()
    assert source.read_all().column("id").type == pa.int32()

    write_parquet_file(data_root / "n.parquet", 5)
    with pytest.raises(SourceError, match="wrong schema"):
        open_source(
            _ref("parquet", "n.parquet"), roots=roots, batch_rows=10, expected_columns={"name": "int64"}
        ).read_all()


def test_describe_source_measures_each_kind(data_root: Path, roots: list[str]):
    write_csv_file(data_root / "n.csv", 250)
    write_parquet_file(data_root / "n.parquet", 300)
    write_events(data_root / "n.jsonl", range(40))
    for kind, rows in [("csv", 250), ("parquet", 300), ("jsonl", 40)]:
        batch = BatchSpec(batch_id=f"b_{kind}", type="data_ingestion", source=_ref(kind, f"n.{kind}"))
        described = describe_source(batch, roots=roots)
        assert described.rows == rows
        assert described.size_bytes == (data_root / f"n.{kind}").stat().st_size
        assert described.source_kind == kind
        assert described.depends_on == []
        assert described.uri.startswith("file://")
        names = [c.name for c in described.columns]
        assert names[0] in {"id", "event_id"}
    parquet = describe_source(
        BatchSpec(batch_id="p", type="data_ingestion", source=_ref("parquet", "n.parquet")), roots=roots
    )
    assert {c.name: c.type for c in parquet.columns} == {"id": "int64", "name": "string", "amount": "double"}


def test_parquet_source_reads_what_was_written(data_root: Path, roots: list[str]):
    table = numbers_table(77)
    pq.write_table(table, data_root / "t.parquet")
    assert open_source(_ref("parquet", "t.parquet"), roots=roots, batch_rows=10).read_all().equals(table)


def test_jsonl_many_misfits_and_invalid_utf8_are_isolated(data_root: Path, roots: list[str]):
    lines = [event_line(i).encode() for i in range(2_000)]
    for i in range(3, 2_000, 97):  # valid JSON whose event_id is text: does not fit int64
        lines[i] = b'{"event_id": "id-%d", "user": "u", "value": 1.0}' % i
    lines[500] = b'{"event_id": 500, "user": "\xff\xfe", "value": 1.0}'
    path = data_root / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    source = open_source(_ref("jsonl", "mixed.jsonl"), roots=roots, batch_rows=256)
    table = source.read_all()
    misfit_lines = {i + 1 for i in range(3, 2_000, 97)}
    rejected = {r.line: r for r in source.rejected}
    assert set(rejected) == misfit_lines | {501}
    assert all(rejected[n].reason.startswith("does not fit the schema") for n in misfit_lines)
    assert rejected[501].reason.startswith("invalid UTF-8")
    assert table.num_rows == 2_000 - len(rejected)
    kept = set(table.column("event_id").to_pylist())
    assert kept == set(range(2_000)) - {n - 1 for n in rejected}
    raw = path.read_bytes()
    for number, record in rejected.items():
        assert raw[record.offset :].startswith(lines[number - 1][:20])


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet"])
def test_streaming_memory_is_bounded_by_batch_size(kind: str, data_root: Path, roots: list[str]):
    rows = 200_000
    name = f"big.{kind}"
    if kind == "csv":
        write_csv_file(data_root / name, rows)
    elif kind == "parquet":
        pq.write_table(numbers_table(rows), data_root / name, row_group_size=2_000)
    else:
        write_events(data_root / name, range(rows))
    whole = open_source(_ref(kind, name), roots=roots, batch_rows=rows).read_all()
    whole_bytes = whole.nbytes
    del whole

    source = open_source(_ref(kind, name), roots=roots, batch_rows=2_000)
    baseline = pa.total_allocated_bytes()
    peak = 0
    total = 0
    for batch in source.iter_batches():
        total += batch.num_rows
        peak = max(peak, pa.total_allocated_bytes() - baseline)
        del batch
    assert total == rows
    assert peak < whole_bytes / 4, (peak, whole_bytes)


def test_jsonl_lines_that_are_not_utf8_are_rejected_and_what_is_read_validates(data_root: Path, roots: list[str]):
    # Every line is a well-formed object of the same shape: only the bytes are wrong.
    lines = [b'{"id": %d, "group": "g%d"}' % (i, i % 3) for i in range(6)]
    lines[2] = b'{"id": 2, "group": "caf\xe9"}'  # Latin-1, not UTF-8
    (data_root / "latin.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    source = open_source(_ref("jsonl", "latin.jsonl"), roots=roots, batch_rows=10)
    table = source.read_all()
    table.validate(full=True)
    assert table.column("id").to_pylist() == [0, 1, 3, 4, 5]
    assert [(r.line, r.reason) for r in source.rejected] == [(3, "invalid UTF-8 at byte 23 of the line")]


@pytest.mark.parametrize("where", ["first block", "later block"])
def test_csv_rows_that_are_not_utf8_are_rejected_and_columns_stay_text(where: str, data_root: Path, roots: list[str]):
    rows = [b"%d,g%d" % (i, i % 3) for i in range(40_000)]
    bad = 1 if where == "first block" else 39_000
    rows[bad] = b"%d,caf\xe9" % bad
    (data_root / "latin.csv").write_bytes(b"id,group\n" + b"\n".join(rows) + b"\n")
    source = open_source(_ref("csv", "latin.csv"), roots=roots, batch_rows=4_096)
    assert source.schema.field("group").type == pa.string()
    table = source.read_all()
    table.validate(full=True)
    assert table.num_rows == 39_999
    assert bad not in set(table.column("id").to_pylist())
    [rejected] = source.rejected
    assert rejected.reason == f"invalid UTF-8: data row {bad + 1}: column 'group'"
    assert rejected.raw == f"{bad},caf\ufffd"
    # Measuring it (only the first column, as text) counts that row too, and does not fail.
    (data_root / "latin_first.csv").write_bytes(b"group,id\ncaf\xe9,1\ntea,2\n")
    batch = BatchSpec(batch_id="latin", type="data_ingestion", source=_ref("csv", "latin_first.csv"))
    assert describe_source(batch, roots=roots).rows == 2


def test_parquet_strings_that_are_not_utf8_are_rejected(data_root: Path, roots: list[str]):
    values = [b"a", b"caf\xe9", b"c"]
    offsets = pa.array([0, 1, 5, 6], pa.int32()).buffers()[1]
    broken = pa.Array.from_buffers(pa.string(), 3, [None, offsets, pa.py_buffer(b"".join(values))])
    pq.write_table(pa.table({"id": [1, 2, 3], "name": broken}), data_root / "latin.parquet")
    source = open_source(_ref("parquet", "latin.parquet"), roots=roots, batch_rows=10)
    table = source.read_all()
    table.validate(full=True)
    assert table.column("id").to_pylist() == [1, 3]
    assert [r.reason for r in source.rejected] == ["invalid UTF-8: data row 2: column 'name'"]
