"""Parquet and quarantine sinks: atomic, idempotent, never half-written."""

from __future__ import annotations

import json
import os
import resource
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from io_test_support import numbers_table

from airflow_provider_orchestra.core.errors import SinkError, SourceError
from airflow_provider_orchestra.specialists.io import RejectedLine, write_jsonl_quarantine, write_parquet


def _siblings(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir())


def test_rewrite_leaves_exactly_one_copy(tmp_path: Path):
    table = numbers_table(1_000)
    dest = tmp_path / "out" / "run_1" / "branch_a"
    first = write_parquet(table.to_batches(max_chunksize=100), table.schema, dest)
    second = write_parquet(table.to_batches(max_chunksize=100), table.schema, dest)

    assert first.rows == second.rows == 1_000
    assert first.checksum == second.checksum and first.checksum.startswith("sha256:")
    assert _siblings(dest) == ["branch_a"]  # no temp or old copies beside it
    assert [p.name for p in dest.iterdir()] == ["part-0.parquet"]
    assert pq.read_table(dest).equals(table)
    assert first.size_bytes == sum(p.stat().st_size for p in dest.iterdir())
    assert first.uri == dest.as_uri()


def test_rewrite_with_new_data_replaces_the_old(tmp_path: Path):
    dest = tmp_path / "b"
    write_parquet(numbers_table(10).to_batches(), numbers_table(10).schema, dest)
    smaller = numbers_table(3)
    out = write_parquet(smaller.to_batches(), smaller.schema, dest)
    assert out.rows == 3
    assert pq.read_table(dest).num_rows == 3


@contextmanager
def _file_size_limit(max_bytes: int) -> Iterator[None]:
    """Writes past ``max_bytes`` in any file fail with EFBIG, as on a full disk (not
    even root is exempt)."""
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)


def _random_text_table(rows: int) -> pa.Table:
    return pa.table({"id": pa.array(range(rows), pa.int64()), "text": [os.urandom(32).hex() for _ in range(rows)]})


class UpstreamStopped(Exception):
    """Raised by an input iterator, e.g. from a progress callback that stops the stream."""


def test_exception_from_the_input_propagates_unchanged_and_keeps_the_previous_copy(tmp_path: Path):
    table = numbers_table(100)
    dest = tmp_path / "b"
    before = write_parquet(table.to_batches(), table.schema, dest)
    raised = RuntimeError("disk went away")

    def breaks() -> Iterator[pa.RecordBatch]:
        yield table.slice(0, 10).to_batches()[0]
        raise raised

    with pytest.raises(RuntimeError) as caught:
        write_parquet(breaks(), table.schema, dest)
    assert caught.value is raised  # not wrapped into a SinkError
    assert _siblings(dest) == ["b"]
    assert pq.read_table(dest).equals(table)
    again = write_parquet(table.to_batches(), table.schema, dest)
    assert again.checksum == before.checksum


def test_exception_from_the_input_of_a_partitioned_write_propagates_unchanged(tmp_path: Path):
    table = pa.table({"day": pa.array([19844, 19845, 19846], pa.date32()), "v": [1, 2, 3]})

    def breaks() -> Iterator[pa.RecordBatch]:
        yield from table.slice(0, 2).to_batches()
        raise UpstreamStopped("branch cancelled")

    with pytest.raises(UpstreamStopped, match="branch cancelled"):
        write_parquet(breaks(), table.schema, tmp_path / "parts", partition_by="day")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_mid_stream_is_a_sink_error_and_keeps_the_previous_copy(tmp_path: Path):
    dest = tmp_path / "b"
    previous = numbers_table(10)
    write_parquet(previous.to_batches(), previous.schema, dest)
    bigger = _random_text_table(40_000)

    with _file_size_limit(1 << 20), pytest.raises(SinkError, match=r"nothing was replaced: OSError: .*File too large"):
        write_parquet(bigger.to_batches(max_chunksize=5_000), bigger.schema, dest, compression="none", row_group_rows=5_000)
    assert _siblings(dest) == ["b"]
    assert pq.read_table(dest).equals(previous)


def test_a_write_refused_mid_stream_is_a_sink_error_and_keeps_the_previous_copy(tmp_path: Path):
    table = pa.table({"k": pa.array(range(2_000), pa.int64())})
    dest = tmp_path / "parts"
    write_parquet(table.slice(0, 3).to_batches(), table.schema, dest, partition_by="k")

    def too_many_partitions() -> Iterator[pa.RecordBatch]:
        yield table.slice(0, 10).to_batches()[0]
        yield table.to_batches()[0]  # more partitions in one batch than pyarrow writes

    with pytest.raises(SinkError, match="nothing was replaced: ArrowInvalid: .*partitions"):
        write_parquet(too_many_partitions(), table.schema, dest, partition_by="k")
    assert _siblings(dest) == ["parts"]
    assert sorted(p.name for p in dest.iterdir()) == ["k=0", "k=1", "k=2"]


def test_an_unwritable_destination_is_a_sink_error(tmp_path: Path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the parent directory should be")
    table = numbers_table(3)
    with pytest.raises(SinkError, match="cannot prepare"):
        write_parquet(table.to_batches(), table.schema, blocker / "b")
    with pytest.raises(SinkError, match="writing quarantine .* failed: FileExistsError"):
        write_jsonl_quarantine([{"line": 1}], blocker / "q.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not_a_dir"]
    assert blocker.read_text() == "a file where the parent directory should be"


def test_source_error_mid_stream_passes_through_and_writes_nothing(tmp_path: Path):
    table = numbers_table(5)

    def breaks() -> Iterator[pa.RecordBatch]:
        yield table.to_batches()[0]
        raise SourceError("bad value in line 9")

    with pytest.raises(SourceError, match="line 9"):
        write_parquet(breaks(), table.schema, tmp_path / "fresh")
    assert list(tmp_path.iterdir()) == []


def test_partition_by_date_gives_hive_directories(tmp_path: Path):
    table = pa.table(
        {
            "order_date": pa.array([19844, 19844, 19845, 19846], pa.date32()),
            "amount": [1.0, 2.0, 3.0, 4.0],
        }
    )
    dest = tmp_path / "parts"
    out = write_parquet(table.to_batches(max_chunksize=1), table.schema, dest, partition_by="order_date")
    assert sorted(p.name for p in dest.iterdir()) == [
        "order_date=2024-05-01",
        "order_date=2024-05-02",
        "order_date=2024-05-03",
    ]
    assert out.rows == 4
    back = ds.dataset(dest, format="parquet", partitioning="hive").to_table()
    assert sorted(back.column("amount").to_pylist()) == [1.0, 2.0, 3.0, 4.0]
    rerun = write_parquet(table.to_batches(max_chunksize=1), table.schema, dest, partition_by="order_date")
    assert rerun.checksum == out.checksum
    assert _siblings(dest) == ["parts"]


def test_partition_by_timestamp_keeps_the_timestamp(tmp_path: Path):
    day = 86_400
    table = pa.table({"ts": pa.array([0, 10, day + 5], pa.timestamp("s", tz="UTC")), "v": [1, 2, 3]})
    dest = tmp_path / "p"
    write_parquet(table.to_batches(), table.schema, dest, partition_by="ts")
    assert sorted(p.name for p in dest.iterdir()) == ["ts_date=1970-01-01", "ts_date=1970-01-02"]
    back = ds.dataset(dest, format="parquet", partitioning="hive").to_table()
    assert back.column("ts").type.tz == "UTC"  # Parquet has no seconds unit: read back as ms
    assert sorted(back.column("ts").cast(table.schema.field("ts").type).to_pylist()) == table.column("ts").to_pylist()


def test_unknown_partition_column_is_refused_without_leftovers(tmp_path: Path):
    table = numbers_table(3)
    with pytest.raises(SinkError, match="partition column 'nope'"):
        write_parquet(table.to_batches(), table.schema, tmp_path / "x", partition_by="nope")
    assert list(tmp_path.iterdir()) == []


def test_batches_not_matching_the_schema_are_refused(tmp_path: Path):
    table = numbers_table(3)
    other = pa.record_batch({"unrelated": [1]})
    with pytest.raises(SinkError, match="does not match"):
        write_parquet([other], table.schema, tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


def test_empty_input_writes_a_readable_empty_file(tmp_path: Path):
    schema = numbers_table(0).schema
    out = write_parquet([], schema, tmp_path / "e")
    assert out.rows == 0
    assert pq.read_table(tmp_path / "e").schema.names == schema.names


def test_quarantine_is_written_atomically(tmp_path: Path):
    rejected = [
        RejectedLine(line=2, offset=17, reason="invalid JSON", raw="{oops"),
        {"line": 5, "offset": 80, "reason": "not a JSON object (list)", "raw": "[1]"},
    ]
    dest = tmp_path / "q" / "rejected.jsonl"
    out = write_jsonl_quarantine(rejected, dest)
    rows = [json.loads(line) for line in dest.read_text().splitlines()]
    assert rows[0] == {"line": 2, "offset": 17, "reason": "invalid JSON", "raw": "{oops"}
    assert rows[1]["raw"] == "[1]"
    assert out.rows == 2 and out.role == "quarantine" and out.format == "jsonl"
    assert out.size_bytes == dest.stat().st_size
    again = write_jsonl_quarantine(rejected, dest)
    assert again.checksum == out.checksum
    assert sorted(p.name for p in dest.parent.iterdir()) == ["rejected.jsonl"]



def test_quarantine_input_failure_propagates_unchanged_and_keeps_the_previous_file(tmp_path: Path):
    dest = tmp_path / "q" / "rejected.jsonl"
    write_jsonl_quarantine([{"line": 1}, {"line": 2}], dest)
    before = dest.read_bytes()
    raised = RuntimeError("stream broke")

    class Breaks:
        def __iter__(self):
            yield {"line": 1}
            raise raised

    with pytest.raises(RuntimeError) as caught:
        write_jsonl_quarantine(Breaks(), dest)
    assert caught.value is raised
    assert dest.read_bytes() == before
    assert sorted(p.name for p in dest.parent.iterdir()) == ["rejected.jsonl"]


def test_quarantine_on_a_full_disk_is_a_sink_error_and_keeps_the_previous_file(tmp_path: Path):
    dest = tmp_path / "q" / "rejected.jsonl"
    write_jsonl_quarantine([{"line": 1}], dest)
    before = dest.read_bytes()
    many = [{"line": i, "raw": "x" * 1_000} for i in range(2_000)]

    with _file_size_limit(1 << 20), pytest.raises(SinkError, match="failed: OSError: .*File too large"):
        write_jsonl_quarantine(many, dest)
    assert dest.read_bytes() == before
    assert sorted(p.name for p in dest.parent.iterdir()) == ["rejected.jsonl"]
