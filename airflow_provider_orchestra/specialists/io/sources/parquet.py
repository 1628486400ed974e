"""Parquet files, streamed row group by row group."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from airflow_provider_orchestra.core.errors import SourceError
from airflow_provider_orchestra.specialists.io.sources.base import FileSource, check_file, invalid_utf8_reasons
from airflow_provider_orchestra.specialists.io.types import ExpectedColumns, check_schema, conform, normalise_expected


class ParquetSource(FileSource):
    kind = "parquet"

    def __init__(self, path: Path, batch_rows: int, expected: ExpectedColumns = None) -> None:
        super().__init__(path, batch_rows)
        check_file(path, "parquet")
        try:
            # Without pre-buffering: pre_buffer reads every row group's column chunks up
            # front, which would hold the whole file in memory.
            self._file = pq.ParquetFile(path, pre_buffer=False)
        except (pa.ArrowInvalid, OSError) as exc:
            raise SourceError(f"{str(path)!r} is not a readable Parquet file: {exc}") from None
        self.schema = check_schema(self._file.schema_arrow, normalise_expected(expected), str(path))

    def _batches(self) -> Iterator[pa.RecordBatch]:
        where = str(self.path)
        read = 0
        for batch in self._file.iter_batches(batch_size=self.batch_rows):
            good = self._reject_rows(batch, invalid_utf8_reasons(batch, read, where))
            read += batch.num_rows
            yield conform(good, self.schema, where)

    def count_rows(self) -> int:
        return self._file.metadata.num_rows
