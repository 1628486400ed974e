"""Every input row ends counted - in an output, in quarantine with a reason, or pending -
for each specialist and each file kind, over files holding the usual trouble: a line that
is not CSV/JSON, text that is not UTF-8, a value that does not fit its column, a last line
without its newline. And an input with no row is "empty", never perfect."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_orchestra.specialists.templates import run_specialist_directly
from specialist_test_support import make_task, path_of, read_jsonl, read_parquet

GOOD_ROWS = 20
ROLES_OF_REJECTED = ("quarantine", "rejected_lines")

OPTIONS = {
    "ingestion": {"type": "data_ingestion", "source_type": "streaming"},
    "validation": {
        "type": "data_ingestion",
        "source_type": "batch",
        "validation": {"rules": [{"column": "id", "unique": True}, {"column": "amount", "max": 20}]},
    },
    "transformation": {
        "type": "data_ingestion",
        "source_type": "realtime",
        "transformation": {"derive": {"double_amount": "amount * 2"}},
    },
    "aggregation_primary": {
        "type": "data_aggregation",
        "priority": "high",
        "aggregation": {"group_by": ["grp"], "metrics": [{"column": "id", "fn": "count", "name": "n"}]},
    },
    "aggregation_quality": {
        "type": "data_aggregation",
        "priority": "normal",
        "aggregation": {"group_by": ["grp"], "metrics": [{"column": "id", "fn": "count", "name": "n"}]},
    },
}
CASES = [("ingestion", "jsonl")] + [(s, k) for s in OPTIONS if s != "ingestion" for k in ("csv", "jsonl", "parquet")]


def _good(i: int) -> dict:
    return {"id": i, "grp": f"g{i % 3}", "amount": i * 1.5}


def write_troubled_file(data_dir: Path, kind: str) -> tuple[str, int]:
    """A file of GOOD_ROWS good rows plus trouble; returns (name, rows a reader can see)."""
    name = f"input.{kind}"
    if kind == "jsonl":
        lines = [json.dumps(_good(i)).encode() for i in range(GOOD_ROWS)]
        lines.insert(3, b"{not json")
        lines.insert(7, b'{"id": 100, "grp": "caf\xe9", "amount": 1.0}')  # Latin-1, not UTF-8
        lines.insert(11, b'{"id": 101, "grp": "g1", "amount": "oops"}')  # does not fit a double
        last = json.dumps(_good(GOOD_ROWS)).encode()
        (data_dir / name).write_bytes(b"\n".join(lines) + b"\n" + last)  # no final newline
        return name, len(lines) + 1
    if kind == "csv":
        lines = [f"{r['id']},{r['grp']},{r['amount']}".encode() for r in map(_good, range(GOOD_ROWS))]
        lines.insert(3, b"1,2,3,4")  # a field too many
        lines.insert(7, b"100,caf\xe9,1.0")
        last = f"{GOOD_ROWS},g0,{GOOD_ROWS * 1.5}".encode()
        (data_dir / name).write_bytes(b"id,grp,amount\n" + b"\n".join(lines) + b"\n" + last)
        return name, len(lines) + 1
    rows = [_good(i) for i in range(GOOD_ROWS)]
    groups = [r["grp"].encode() for r in rows] + [b"caf\xe9"]
    offsets = [0]
    for g in groups:
        offsets.append(offsets[-1] + len(g))
    grp = pa.Array.from_buffers(
        pa.string(), len(groups), [None, pa.array(offsets, pa.int32()).buffers()[1], pa.py_buffer(b"".join(groups))]
    )
    table = pa.table({"id": [r["id"] for r in rows] + [100], "grp": grp, "amount": [r["amount"] for r in rows] + [1.0]})
    pq.write_table(table, data_dir / name, row_group_size=7)
    return name, table.num_rows


def _batch(specialist: str, name: str, kind: str) -> dict:
    return {"batch_id": "troubled", "source": {"kind": kind, "path": name}, **OPTIONS[specialist]}


def _rejected_with_reasons(result) -> int:
    """Rows in the quarantine outputs, each checked to carry a reason."""
    total = 0
    for out in (o for o in result.outputs if o.role in ROLES_OF_REJECTED):
        if out.format == "jsonl":
            records = read_jsonl(out)
            assert all(r["reason"] for r in records), records
        else:
            records = read_parquet(out).column("_reasons").to_pylist()
            assert all(records), records
        assert len(records) == out.rows
        total += len(records)
    return total


@pytest.mark.parametrize(("specialist", "kind"), CASES)
def test_every_row_ends_in_an_output_in_quarantine_with_a_reason_or_pending(specialist, kind, tmp_path, data_dir):
    name, rows_written = write_troubled_file(data_dir, kind)

    result = run_specialist_directly(make_task(tmp_path, _batch(specialist, name, kind)))

    assert result.status == "success", result.error
    m = result.metrics
    assert m.rows_in + m.rows_pending == rows_written
    assert m.rows_rejected >= 1  # the line that is not UTF-8, at least
    assert _rejected_with_reasons(result) == m.rows_rejected
    if specialist.startswith("aggregation"):
        assert m.rows_in == result.details["rows_aggregated"] + m.rows_rejected
        groups = read_parquet(next(o for o in result.outputs if o.role == "output"))
        assert sum(groups.column("n").to_pylist()) == result.details["rows_aggregated"]
    else:
        assert m.rows_in == m.rows_out + m.rows_rejected
    # A stream's last line without its newline waits; a batch read reads it.
    assert m.rows_pending == (1 if specialist == "ingestion" else 0)
    assert m.quality < 1.0
    for out in result.outputs:
        if out.format == "parquet":
            read_parquet(out).validate(full=True)


@pytest.mark.parametrize("specialist", [s for s in OPTIONS if s != "ingestion"])
@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_an_input_with_no_row_is_empty_with_quality_zero_not_perfect(specialist, kind, tmp_path, data_dir):
    name = f"none.{kind}"
    if kind == "csv":
        (data_dir / name).write_text("id,grp,amount\n")  # a header: columns, but no row
    else:
        columns = {"id": pa.int64(), "grp": pa.string(), "amount": pa.float64()}
        pq.write_table(pa.table({c: pa.array([], t) for c, t in columns.items()}), data_dir / name)

    result = run_specialist_directly(make_task(tmp_path, _batch(specialist, name, kind)))

    assert result.status == "empty", result.error
    assert (result.metrics.rows_in, result.metrics.quality, result.metrics.iterations) == (0, 0.0, 1)
    assert result.details["quality_met"] is False
    assert result.details["empty"] == "no row to read"


def test_a_jsonl_file_of_blank_lines_fails_like_an_empty_file(tmp_path, data_dir):
    (data_dir / "blank.jsonl").write_text("\n  \n")  # no record, so no column to plan with
    result = run_specialist_directly(make_task(tmp_path, _batch("validation", "blank.jsonl", "jsonl")))
    assert result.status == "failed"
    assert "holds no record (blank lines only)" in result.error


def test_a_stream_with_only_a_half_written_line_is_empty_and_says_it_is_pending(tmp_path, data_dir):
    (data_dir / "half.jsonl").write_text('{"id": 1, "grp": "g1", "amo')

    result = run_specialist_directly(make_task(tmp_path, _batch("ingestion", "half.jsonl", "jsonl")))

    assert result.status == "empty", result.error
    assert (result.metrics.rows_in, result.metrics.rows_pending, result.metrics.quality) == (0, 1, 0.0)
    assert result.details["empty"] == "no row to read; 1 pending (not complete yet)"
    assert not path_of(result.outputs[0]).exists() if result.outputs else True


def test_a_run_id_longer_than_a_file_name_writes_under_a_bounded_folder(tmp_path, data_dir):
    name, _ = write_troubled_file(data_dir, "parquet")
    result = run_specialist_directly(make_task(tmp_path, _batch("transformation", name, "parquet"), run_id="r" * 300))
    assert result.status == "success", result.error
    assert len(path_of(result.outputs[0]).parent.parent.name) <= 109


def test_a_state_folder_symlinked_away_fails_the_stream_naming_it(tmp_path, data_dir):
    name, _ = write_troubled_file(data_dir, "jsonl")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "_state").symlink_to(tmp_path / "elsewhere")
    result = run_specialist_directly(make_task(tmp_path, _batch("ingestion", name, "jsonl")))
    assert result.status == "failed"
    assert "_state" in result.error and "resolves outside the output root" in result.error
    assert list((tmp_path / "elsewhere").iterdir()) == []
