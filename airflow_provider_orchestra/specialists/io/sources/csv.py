"""CSV files, read with Arrow's streaming CSV reader.

Rows with the wrong number of fields are quarantined as they are read; a value that does
not convert to its column's type makes the rest of the file be re-read as text and cast
column by column, so only the rows holding such a value are quarantined.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from airflow_provider_orchestra.core.errors import SourceError
from airflow_provider_orchestra.specialists.io.sources.base import (
    MAX_BLOCK,
    RAW_LIMIT,
    FileSource,
    block_bytes,
    check_file,
)
from airflow_provider_orchestra.specialists.io.types import (
    MISFIT_REASON,
    ExpectedColumns,
    RejectedLine,
    check_schema,
    conform,
    normalise_expected,
)

log = logging.getLogger(__name__)


def _failing_positions(values: pa.Array, target: pa.DataType, base: int = 0, fanout: int = 8) -> Iterator[int]:
    """Positions of the values that cannot be cast to ``target`` (split-and-retry)."""
    try:
        pc.cast(values, target)
        return
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        if len(values) == 1:
            yield base
            return
    step = -(-len(values) // fanout)
    for begin in range(0, len(values), step):
        yield from _failing_positions(values.slice(begin, step), target, base + begin, fanout)


def _cast_isolating(batch: pa.RecordBatch, schema: pa.Schema) -> tuple[pa.RecordBatch, list[tuple[int, str]]]:
    """Cast a text batch to ``schema``; rows with a value that does not convert are left
    out and returned as (row index, reason)."""
    reasons: dict[int, str] = {}
    for field in schema:
        column = batch.column(field.name)
        if column.type == field.type:
            continue
        for position in _failing_positions(column, field.type):
            value = column[position].as_py()
            reasons.setdefault(position, f"column {field.name!r}: cannot convert {value!r} to {field.type}")
    if reasons:
        rows = pa.array(range(batch.num_rows), pa.int64())
        batch = batch.filter(pc.invert(pc.is_in(rows, pa.array(sorted(reasons), pa.int64()))))
    return batch.select(schema.names).cast(schema), sorted(reasons.items())


def _row_text(batch: pa.RecordBatch, index: int) -> str:
    """A CSV-like rendering of one row of a text batch (for the quarantine file)."""
    values = ["" if v is None else str(v) for v in batch.slice(index, 1).to_pylist()[0].values()]
    return ",".join(values)


class CsvSource(FileSource):
    kind = "csv"

    def __init__(self, path: Path, batch_rows: int, expected: ExpectedColumns = None) -> None:
        super().__init__(path, batch_rows)
        head = check_file(path, "csv")
        self._expected = normalise_expected(expected)
        self._block = block_bytes(batch_rows, head)
        # Opening reads the first block, so its bad rows are collected here already.
        self._pending_rejected: list[RejectedLine] = []
        reader = self._open(self._pending_rejected)
        self._pending: pacsv.CSVStreamingReader | None = reader
        self.schema = check_schema(reader.schema, self._expected, str(path))

    def _open(self, rejected: list[RejectedLine], *, as_text: bool = False) -> pacsv.CSVStreamingReader:
        def quarantine(row: pacsv.InvalidRow) -> str:
            rejected.append(
                RejectedLine(
                    line=row.number,
                    offset=None,
                    reason=f"expected {row.expected_columns} columns, got {row.actual_columns}",
                    raw=row.text[:RAW_LIMIT],
                )
            )
            return "skip"

        if as_text:
            column_types = {name: pa.string() for name in self.schema.names}
        else:
            column_types = {k: v for k, v in self._expected.items() if v is not None}
        try:
            return pacsv.open_csv(
                self.path,
                # Serial reading keeps physical line numbers for rejected rows.
                read_options=pacsv.ReadOptions(block_size=self._block, use_threads=False),
                parse_options=pacsv.ParseOptions(invalid_row_handler=quarantine),
                # An unquoted empty field is a null; a quoted "" stays an empty string.
                convert_options=pacsv.ConvertOptions(
                    column_types=column_types, strings_can_be_null=True, quoted_strings_can_be_null=False
                ),
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError) as exc:
            raise SourceError(f"{str(self.path)!r} cannot be read as CSV: {exc}") from None

    def _batches(self) -> Iterator[pa.RecordBatch]:
        reader, self._pending = self._pending, None
        if reader is None:
            reader = self._open(self.rejected)
        else:
            self.rejected = self._pending_rejected
        where = str(self.path)
        emitted = 0
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                log.info("%s: a value does not fit its column (%s); re-reading as text", where, exc)
                yield from self._batches_from_text(skip=emitted)
                return
            emitted += batch.num_rows
            yield conform(batch, self.schema, where)

    def _batches_from_text(self, skip: int) -> Iterator[pa.RecordBatch]:
        """Continue after a value failed to convert: read every column as text, cast
        column by column, and quarantine the rows holding a value that does not fit."""
        where = str(self.path)
        known = {r.line for r in self.rejected}
        found: list[RejectedLine] = []
        reader = self._open(found, as_text=True)
        row_number = 0  # data rows, header and skipped lines excluded
        for batch in reader:
            self.rejected.extend(r for r in found if r.line not in known)
            found.clear()
            if skip >= batch.num_rows:
                skip -= batch.num_rows
                row_number += batch.num_rows
                continue
            if skip:
                batch, row_number, skip = batch.slice(skip), row_number + skip, 0
            good, misfits = _cast_isolating(batch, self.schema)
            for index, reason in misfits:
                self.rejected.append(
                    RejectedLine(
                        line=None,
                        offset=None,
                        reason=f"{MISFIT_REASON}: data row {row_number + index + 1}: {reason}",
                        raw=_row_text(batch, index)[:RAW_LIMIT],
                    )
                )
            row_number += batch.num_rows
            if good.num_rows:
                yield conform(good, self.schema, where)
        self.rejected.extend(r for r in found if r.line not in known)

    def count_rows(self) -> int:
        """Rows without converting values: only the first column is read, as text."""
        first_column = self.schema.names[0]
        reader = pacsv.open_csv(
            self.path,
            read_options=pacsv.ReadOptions(block_size=MAX_BLOCK),
            parse_options=pacsv.ParseOptions(invalid_row_handler=lambda row: "skip"),
            convert_options=pacsv.ConvertOptions(
                include_columns=[first_column], column_types={first_column: pa.string()}
            ),
        )
        return sum(batch.num_rows for batch in reader)
