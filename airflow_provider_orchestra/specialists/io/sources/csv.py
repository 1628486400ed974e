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
    failing_positions,
    invalid_utf8_reasons,
    row_value,
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


def _misfits(batch: pa.RecordBatch, schema: pa.Schema, rows_before: int) -> dict[int, str]:
    """Row index -> reason, for the rows of a text batch holding a value that does not
    convert to its column's type in ``schema``."""
    reasons: dict[int, str] = {}
    for field in schema:
        column = batch.column(field.name)
        if column.type == field.type:
            continue
        for index in failing_positions(column, field.type):
            reasons.setdefault(
                index,
                f"{MISFIT_REASON}: data row {rows_before + index + 1}: column {field.name!r}: "
                f"cannot convert {row_value(column, index)!r} to {field.type}",
            )
    return reasons


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
                # Text is read as text even where it is not UTF-8 (never as binary): the
                # rows holding such bytes are rejected batch by batch.
                convert_options=pacsv.ConvertOptions(
                    column_types=column_types,
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,
                    check_utf8=False,
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
        read = 0
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                log.info("%s: a value does not fit its column (%s); re-reading as text", where, exc)
                yield from self._batches_from_text(skip=read)
                return
            good = self._reject_rows(batch, invalid_utf8_reasons(batch, read, where))
            read += batch.num_rows
            yield conform(good, self.schema, where)

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
            # Text that is not UTF-8 first: such a value cannot be judged as a number either.
            reasons = {**_misfits(batch, self.schema, row_number), **invalid_utf8_reasons(batch, row_number, where)}
            good = self._reject_rows(batch, reasons).select(self.schema.names).cast(self.schema)
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
                include_columns=[first_column], column_types={first_column: pa.string()}, check_utf8=False
            ),
        )
        return sum(batch.num_rows for batch in reader)
