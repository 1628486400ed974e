"""Partitioned Parquet writes stream: rows leave memory with their record batch, open
partition files are bounded, and writing behind in a second thread changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from airflow_provider_orchestra.core.errors import SinkError
from airflow_provider_orchestra.specialists.io import sinks, write_parquet


def day_batch(b: int, rows: int, days: int) -> pa.RecordBatch:
    """Batch ``b``: rows of every one of ``days`` days, so no partition is complete early."""
    numbers = range(b * rows, (b + 1) * rows)
    return pa.record_batch(
        {
            "n": pa.array(numbers, pa.int64()),
            "day": pa.array([19844 + (i % days) for i in numbers], pa.date32()),
            "payload": pa.array([f"row-{i:08d}-" + "x" * 40 for i in numbers]),
        }
    )


def interleaved_days(batches: int, rows: int, days: int) -> list[pa.RecordBatch]:
    return [day_batch(b, rows, days) for b in range(batches)]


def read_back(dest: Path) -> pa.Table:
    return ds.dataset(dest, format="parquet", partitioning="hive").to_table()


def test_rows_leave_memory_with_their_batch_whatever_the_number_of_partitions(tmp_path: Path):
    batch_bytes = day_batch(0, 2_000, 50).nbytes
    held: list[int] = []
    baseline = pa.total_allocated_bytes()

    def made_on_the_fly() -> Iterator[pa.RecordBatch]:
        for b in range(40):
            held.append(pa.total_allocated_bytes() - baseline)
            yield day_batch(b, 2_000, 50)

    out = write_parquet(made_on_the_fly(), day_batch(0, 1, 1).schema, tmp_path / "parts", partition_by="day")

    assert out.rows == 80_000
    # Once the partition files are open (after the first batch) what the write holds stays
    # flat: a partition held back until it is complete would keep every batch (40 here).
    assert max(held) - held[2] < 3 * batch_bytes, (held, batch_bytes)
    back = read_back(tmp_path / "parts")
    assert back.num_rows == 80_000
    assert sorted(back.column("n").to_pylist()) == list(range(80_000))
    assert len({p.name for p in (tmp_path / "parts").iterdir()}) == 50


def test_open_partitions_are_bounded_and_a_revisited_partition_gets_another_file(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(sinks, "MAX_OPEN_PARTITIONS", 2)
    days = pa.array([19844, 19845, 19846, 19844, 19845, 19846], pa.date32())
    batches = [pa.record_batch({"day": days.slice(i, 1), "v": pa.array([i], pa.int64())}) for i in range(6)]
    dest = tmp_path / "parts"
    out = write_parquet(batches, batches[0].schema, dest, partition_by="day")

    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*.parquet"))
    assert files == [
        "day=2024-05-01/part-0.parquet",
        "day=2024-05-01/part-1.parquet",
        "day=2024-05-02/part-0.parquet",
        "day=2024-05-02/part-1.parquet",
        "day=2024-05-03/part-0.parquet",
        "day=2024-05-03/part-1.parquet",
    ]
    back = read_back(dest).sort_by("v")
    assert back.column("v").to_pylist() == list(range(6))
    assert [str(d) for d in back.column("day").to_pylist()] == ["2024-05-01", "2024-05-02", "2024-05-03"] * 2
    again = write_parquet(batches, batches[0].schema, dest, partition_by="day")
    assert again.checksum == out.checksum


def test_partition_values_keep_their_order_and_nulls_go_to_the_hive_default(tmp_path: Path):
    table = pa.table(
        {
            "region": pa.array(["b", "a", None, "b", "a c/d", None, "a"]),
            "v": pa.array(range(7), pa.int64()),
        }
    )
    dest = tmp_path / "parts"
    write_parquet(table.to_batches(max_chunksize=4), table.schema, dest, partition_by="region")

    names = sorted(p.name for p in dest.iterdir())
    assert names == ["region=__HIVE_DEFAULT_PARTITION__", "region=a", "region=a%20c%2Fd", "region=b"]
    # Within a partition, rows keep the input order.
    assert pq.read_table(dest / "region=a").column("v").to_pylist() == [1, 6]
    assert pq.read_table(dest / "region=__HIVE_DEFAULT_PARTITION__").column("v").to_pylist() == [2, 5]
    back = read_back(dest)
    assert sorted(zip(back.column("v").to_pylist(), back.column("region").to_pylist())) == sorted(
        zip(table.column("v").to_pylist(), table.column("region").to_pylist())
    )


@pytest.mark.parametrize("partition_by", [None, "day"])
def test_writing_behind_gives_the_same_files(tmp_path: Path, partition_by: str | None):
    batches = interleaved_days(batches=6, rows=500, days=3)
    plain = write_parquet(batches, batches[0].schema, tmp_path / "plain", partition_by=partition_by)
    behind = write_parquet(batches, batches[0].schema, tmp_path / "behind", partition_by=partition_by, write_behind=True)
    assert (behind.rows, behind.checksum, behind.size_bytes) == (plain.rows, plain.checksum, plain.size_bytes)


class Stopped(Exception):
    pass


def test_writing_behind_an_input_that_stops_propagates_it_and_leaves_nothing(tmp_path: Path):
    batches = interleaved_days(batches=3, rows=100, days=2)

    def stops() -> Iterator[pa.RecordBatch]:
        yield from batches
        raise Stopped("cancelled")

    with pytest.raises(Stopped, match="cancelled"):
        write_parquet(stops(), batches[0].schema, tmp_path / "parts", partition_by="day", write_behind=True)
    assert list(tmp_path.iterdir()) == []


def test_a_write_failing_behind_is_a_sink_error_and_keeps_the_previous_copy(tmp_path: Path, monkeypatch):
    batches = interleaved_days(batches=4, rows=100, days=2)
    dest = tmp_path / "parts"
    previous = write_parquet(batches[:1], batches[0].schema, dest, partition_by="day")
    written = []
    real = sinks._PartitionFiles.write

    def fails_on_third(self, batch):
        written.append(batch.num_rows)
        if len(written) == 3:
            raise OSError(28, "No space left on device")
        real(self, batch)

    monkeypatch.setattr(sinks._PartitionFiles, "write", fails_on_third)
    with pytest.raises(SinkError, match="nothing was replaced: OSError: .*No space left"):
        write_parquet(batches, batches[0].schema, dest, partition_by="day", write_behind=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parts"]
    monkeypatch.undo()
    assert write_parquet(batches[:1], batches[0].schema, dest, partition_by="day").checksum == previous.checksum


def test_only_text_columns_are_dictionary_encoded_and_values_round_trip(tmp_path: Path):
    table = pa.table({"n": pa.array(range(5_000), pa.int64()), "region": pa.array(["north", "south"] * 2_500)})
    write_parquet(table.to_batches(max_chunksize=1_000), table.schema, tmp_path / "out")
    file = pq.ParquetFile(tmp_path / "out" / "part-0.parquet")
    chunks = {file.schema_arrow.field(i).name: file.metadata.row_group(0).column(i) for i in range(2)}
    assert chunks["region"].has_dictionary_page
    assert not chunks["n"].has_dictionary_page
    assert pq.read_table(tmp_path / "out").equals(table)
