"""Streaming sources: CSV, JSONL (incremental by byte offset), Parquet and Postgres.

Every source yields ``pyarrow.RecordBatch`` objects of at most ``batch_rows`` rows and
holds at most one read block plus one batch in memory, whatever the size of the data.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from airflow_provider_orchestra.core.errors import SourceError
from airflow_provider_orchestra.core.models import BatchDescriptor, BatchSpec, ColumnInfo, SourceRef
from airflow_provider_orchestra.specialists.io.connections import ConnectionResolver
from airflow_provider_orchestra.specialists.io.paths import resolve_under_roots
from airflow_provider_orchestra.specialists.io.types import (
    MISFIT_REASON,
    ExpectedColumns,
    RejectedLine,
    check_schema,
    conform,
    normalise_expected,
    type_name,
)

log = logging.getLogger(__name__)

_MIN_BLOCK = 64 * 1024
_MAX_BLOCK = 16 * 1024 * 1024
_MAX_LINE = 64 * 1024 * 1024
_SNIFF = 4096
_RAW_LIMIT = 2000  # characters of a rejected line kept for the quarantine file


def _block_bytes(batch_rows: int, sample: bytes) -> int:
    """Read-block size giving roughly ``batch_rows`` rows, clamped to sane bounds."""
    lines = max(sample.count(b"\n"), 1)
    row_bytes = max(len(sample) // lines, 16)
    return max(_MIN_BLOCK, min(_MAX_BLOCK, batch_rows * row_bytes))


def _slices(batch: pa.RecordBatch, batch_rows: int) -> Iterator[pa.RecordBatch]:
    if batch.num_rows <= batch_rows:
        if batch.num_rows:
            yield batch
        return
    for start in range(0, batch.num_rows, batch_rows):
        yield batch.slice(start, batch_rows)


def _split_lines(block: bytes) -> pa.Array:
    """The lines of a newline-terminated block as a binary array (newlines removed)."""
    lines = pc.split_pattern(pa.array([block], pa.binary()), "\n").flatten()
    return lines.slice(0, len(lines) - 1)


def _offsets(lines: pa.Array) -> pa.Array:
    """Value offsets of a binary array; line i starts at offsets[i] + i in its block."""
    return pa.Array.from_buffers(pa.int32(), len(lines) + 1, [None, lines.buffers()[1]], offset=lines.offset)


def _joined(lines: pa.Array) -> pa.Buffer:
    """The lines as one newline-terminated buffer, built without a Python loop."""
    terminated = pc.binary_join_element_wise(
        lines, pa.scalar(b"", pa.binary()), pa.scalar(b"\n", pa.binary())
    )
    offsets = _offsets(terminated)
    begin, end = offsets[0].as_py(), offsets[-1].as_py()
    return terminated.buffers()[2].slice(begin, end - begin)


_IS_JSON_OBJECT = (
    "select case when json_valid(line) then json_type(line) = 'OBJECT' else false end as ok from lines"
)


def _classify_lines(lines: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(good, bad) masks: good lines hold one JSON object; blank lines are neither."""
    try:
        text = lines.cast(pa.string())
    except pa.ArrowInvalid:  # invalid UTF-8 somewhere: classify line by line instead
        return _classify_lines_slowly(lines)
    blank = pc.equal(pc.utf8_trim_whitespace(text), "")
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("set threads to 1")  # keeps row order; the block is small
        con.register("lines", pa.table({"line": text}))
        valid = con.sql(_IS_JSON_OBJECT).to_arrow_table().column("ok").combine_chunks()
    finally:
        con.close()
    valid = pc.fill_null(valid, False)
    return pc.and_(valid, pc.invert(blank)), pc.and_(pc.invert(valid), pc.invert(blank))


def _classify_lines_slowly(lines: pa.Array) -> tuple[pa.Array, pa.Array]:
    good, bad = [], []
    for raw in lines.to_pylist():
        is_blank = not raw.strip()
        ok = not is_blank and _json_problem(raw) is None
        good.append(ok)
        bad.append(not ok and not is_blank)
    return pa.array(good, pa.bool_()), pa.array(bad, pa.bool_())


def _json_problem(raw: bytes) -> str | None:
    """Why a line is not one JSON object (None if it is)."""
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"invalid JSON: {exc}"
    if not isinstance(value, dict):
        return f"not a JSON object ({type(value).__name__})"
    return None


def _parse_isolating(
    lines: pa.Array,
    index: pa.Array,
    options: pajson.ParseOptions,
    tables: list[pa.Table],
    misfits: list[tuple[int, str]],
    read: Any,
    fanout: int = 8,
) -> None:
    """Parse ``lines`` into ``tables``; lines that fail alone go to ``misfits``.

    Splits a failing range into ``fanout`` parts, so a few misfits among many lines
    cost a few extra parses rather than one parse per line.
    """
    if not len(lines):
        return
    try:
        tables.append(read(_joined(lines), options))
        return
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        if len(lines) == 1:
            misfits.append((index[0].as_py(), str(exc)))
            return
    step = -(-len(lines) // fanout)
    for begin in range(0, len(lines), step):
        _parse_isolating(
            lines.slice(begin, step), index.slice(begin, step), options, tables, misfits, read, fanout
        )


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


class RecordBatchSource:
    """A readable source. ``iter_batches()`` streams; call it again to re-read.

    ``rejected`` holds the lines quarantined by the last iteration (CSV/JSONL),
    ``end_offset`` the byte offset reached (JSONL) and ``max_watermark`` the largest
    watermark value seen (Postgres), each valid once iteration has finished.
    """

    kind: str = ""

    def __init__(self, uri: str, batch_rows: int) -> None:
        if batch_rows < 1:
            raise SourceError(f"batch_rows must be positive, got {batch_rows}")
        self.uri = uri
        self.batch_rows = batch_rows
        self.schema: pa.Schema = pa.schema([])
        self.rejected: list[RejectedLine] = []
        self.end_offset: int | None = None
        self.max_watermark: Any = None
        self.rows_read = 0
        self.batches_read = 0

    def _batches(self) -> Iterator[pa.RecordBatch]:  # pragma: no cover - abstract
        raise NotImplementedError

    def iter_batches(self) -> Iterator[pa.RecordBatch]:
        self.rejected = []
        self.rows_read = 0
        self.batches_read = 0
        for batch in self._batches():
            for piece in _slices(batch, self.batch_rows):
                self.rows_read += piece.num_rows
                self.batches_read += 1
                yield piece

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return self.iter_batches()

    def read_all(self) -> pa.Table:
        """Everything at once: for tests and small inputs only."""
        return pa.Table.from_batches(list(self.iter_batches()), schema=self.schema)

    def rejected_as_dicts(self) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self.rejected]


# --------------------------------------------------------------------------- files


def _check_file(path: Path, kind: str) -> bytes:
    """Existence, emptiness and a look at the first bytes; returns those bytes."""
    if not path.exists():
        raise SourceError(f"{kind} source {str(path)!r} does not exist")
    if not path.is_file():
        raise SourceError(f"{kind} source {str(path)!r} is not a regular file")
    if path.stat().st_size == 0:
        raise SourceError(f"{kind} source {str(path)!r} is empty")
    with path.open("rb") as fh:
        head = fh.read(_SNIFF)
    if kind == "parquet":
        if not head.startswith(b"PAR1"):
            raise SourceError(f"{str(path)!r} is not a Parquet file (no PAR1 magic)")
    elif head.startswith(b"PAR1") or b"\x00" in head:
        raise SourceError(f"{str(path)!r} is not a {kind.upper()} text file (binary content)")
    return head


class CsvSource(RecordBatchSource):
    kind = "csv"

    def __init__(self, path: Path, batch_rows: int, expected: ExpectedColumns = None) -> None:
        super().__init__(path.as_uri(), batch_rows)
        self.path = path
        head = _check_file(path, "csv")
        self._expected = normalise_expected(expected)
        self._block = _block_bytes(batch_rows, head)
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
                    raw=row.text[:_RAW_LIMIT],
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
                        raw=_row_text(batch, index)[:_RAW_LIMIT],
                    )
                )
            row_number += batch.num_rows
            if good.num_rows:
                yield conform(good, self.schema, where)
        self.rejected.extend(r for r in found if r.line not in known)


class ParquetSource(RecordBatchSource):
    kind = "parquet"

    def __init__(self, path: Path, batch_rows: int, expected: ExpectedColumns = None) -> None:
        super().__init__(path.as_uri(), batch_rows)
        self.path = path
        _check_file(path, "parquet")
        try:
            # Without pre-buffering: pre_buffer reads every row group's column chunks up
            # front, which would hold the whole file in memory.
            self._file = pq.ParquetFile(path, pre_buffer=False)
        except (pa.ArrowInvalid, OSError) as exc:
            raise SourceError(f"{str(path)!r} is not a readable Parquet file: {exc}") from None
        self.schema = check_schema(self._file.schema_arrow, normalise_expected(expected), str(path))

    def _batches(self) -> Iterator[pa.RecordBatch]:
        for batch in self._file.iter_batches(batch_size=self.batch_rows):
            yield conform(batch, self.schema, str(self.path))


class JsonlSource(RecordBatchSource):
    """Append-only newline-delimited JSON, read from a byte offset.

    The file size is taken once when the source is opened: lines appended later wait for
    the next read. Only complete lines (ending in a newline) are consumed, so a line
    being written is left for next time; ``end_offset`` is where the next read starts.
    The schema comes from the first parseable block (or ``expected_columns`` types) and
    is then held fixed: later lines whose values do not fit it are quarantined.
    """

    kind = "jsonl"

    def __init__(
        self,
        path: Path,
        batch_rows: int,
        start_offset: int | None = None,
        expected: ExpectedColumns = None,
    ) -> None:
        super().__init__(path.as_uri(), batch_rows)
        self.path = path
        if not path.exists():
            raise SourceError(f"jsonl source {str(path)!r} does not exist")
        self._start = int(start_offset or 0)
        size = path.stat().st_size
        if self._start == 0:
            head = _check_file(path, "jsonl")
        else:
            if self._start < 0:
                raise SourceError(f"negative start offset {self._start} for {str(path)!r}")
            with path.open("rb") as fh:
                fh.seek(self._start)
                head = fh.read(_SNIFF)
        if self._start > size:
            raise SourceError(
                f"{str(path)!r} is shorter ({size} bytes) than the stored offset {self._start}: "
                "the file was truncated or replaced; reset the offset to re-read it"
            )
        self._size = size
        self._block = _block_bytes(batch_rows, head)
        self._expected = normalise_expected(expected)
        self.end_offset = self._start
        self.schema = self._probe_schema()

    # -- reading blocks of complete lines

    def _blocks(self) -> Iterator[tuple[int, bytes]]:
        """(absolute offset of the block, bytes made of complete lines)."""
        with self.path.open("rb") as fh:
            fh.seek(self._start)
            position = self._start
            carry = b""
            carry_offset = self._start
            while position < self._size:
                data = fh.read(min(self._block, self._size - position))
                if not data:
                    break  # the file shrank while we read; stop at what we have
                position += len(data)
                buffer = carry + data
                cut = buffer.rfind(b"\n")
                if cut < 0:
                    if len(buffer) > _MAX_LINE:
                        raise SourceError(
                            f"{str(self.path)!r}: a line at byte {carry_offset} is longer "
                            f"than {_MAX_LINE} bytes"
                        )
                    carry = buffer
                    continue
                yield carry_offset, buffer[: cut + 1]
                carry = buffer[cut + 1 :]
                carry_offset += cut + 1

    # -- parsing

    def _parse_options(self, schema: pa.Schema | None) -> pajson.ParseOptions:
        if schema is None:
            return pajson.ParseOptions(newlines_in_values=False)
        return pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")

    @staticmethod
    def _read(data: bytes | pa.Buffer, options: pajson.ParseOptions) -> pa.Table:
        buffer = data if isinstance(data, pa.Buffer) else pa.py_buffer(data)
        block = max(1 << 20, min(buffer.size + 1, 1 << 26))
        return pajson.read_json(
            pa.BufferReader(buffer), read_options=pajson.ReadOptions(block_size=block), parse_options=options
        )

    def _parse_block(
        self, block: bytes, offset: int, first_line: int, schema: pa.Schema | None
    ) -> tuple[pa.Table | None, list[RejectedLine]]:
        options = self._parse_options(schema)
        try:
            return self._read(block, options), []
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
        # Slow path, only for blocks holding a bad line. Lines are classified in bulk
        # (Arrow split + DuckDB json_valid), the good ones parsed together; lines that
        # are valid JSON but do not fit the schema are then isolated by splitting.
        lines = _split_lines(block)
        good_mask, bad_mask = _classify_lines(lines)
        starts = _offsets(lines)
        rejected = [
            self._reject(
                first_line + i,
                offset + starts[i].as_py() + i,
                _json_problem(lines[i].as_py()) or "not a single JSON object",
                lines[i].as_py(),
            )
            for i in pc.indices_nonzero(bad_mask).to_pylist()
        ]
        good = lines.filter(good_mask)
        good_index = pc.indices_nonzero(good_mask)
        tables: list[pa.Table] = []
        misfits: list[tuple[int, str]] = []
        _parse_isolating(good, good_index, options, tables, misfits, self._read)
        for index, reason in misfits:
            rejected.append(
                self._reject(
                    first_line + index, offset + starts[index].as_py() + index,
                    f"{MISFIT_REASON}: {reason}", lines[index].as_py(),
                )
            )
        rejected.sort(key=lambda r: r.offset or 0)
        if not tables:
            return None, rejected
        if schema is None:
            # Probing only: pieces may disagree on a type; the first piece's type wins and
            # the main read then quarantines lines that do not fit it.
            try:
                return pa.concat_tables(tables, promote_options="permissive").combine_chunks(), rejected
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                return tables[0], rejected
        return pa.concat_tables(tables).combine_chunks(), rejected

    @staticmethod
    def _reject(line: int, offset: int, reason: str, raw: bytes) -> RejectedLine:
        return RejectedLine(
            line=line, offset=offset, reason=reason, raw=raw[:_RAW_LIMIT].decode("utf-8", "replace")
        )

    def _probe_schema(self) -> pa.Schema:
        typed = {k: v for k, v in self._expected.items() if v is not None}
        first_line = 1
        for offset, block in self._blocks():
            table, _ = self._parse_block(block, offset, first_line, None)
            first_line += block.count(b"\n")
            if table is None or table.num_rows == 0:
                continue
            fields = []
            for field in table.schema:
                data_type = typed.get(field.name, field.type)
                if pa.types.is_null(data_type):  # all-null in the first block: keep as text
                    data_type = pa.string()
                fields.append(pa.field(field.name, data_type))
            return check_schema(pa.schema(fields), self._expected, str(self.path))
        if first_line > 1 and self._start == 0:
            raise SourceError(f"{str(self.path)!r}: every line is malformed; nothing to read")
        # Nothing new to read (an incremental read at the end of the file): the declared
        # types are all we know.
        return pa.schema(list(typed.items()))

    def _batches(self) -> Iterator[pa.RecordBatch]:
        self.end_offset = self._start
        first_line = 1
        lines_seen = 0
        where = str(self.path)
        for offset, block in self._blocks():
            table, rejected = self._parse_block(block, offset, first_line, self.schema)
            line_count = block.count(b"\n")
            first_line += line_count
            lines_seen += line_count
            self.rejected.extend(rejected)
            if table is not None:
                for batch in table.to_batches(max_chunksize=self.batch_rows):
                    yield conform(batch, self.schema, where)
            self.end_offset = offset + len(block)
        if self.rows_read == 0 and self.rejected:
            first = self.rejected[0]
            raise SourceError(
                f"{where}: every line read ({len(self.rejected)}) is malformed; first at line "
                f"{first.line}: {first.reason}"
            )


# --------------------------------------------------------------------------- postgres

_PG_TYPES: dict[str, pa.DataType] = {
    "int2": pa.int16(),
    "int4": pa.int32(),
    "int8": pa.int64(),
    "float4": pa.float32(),
    "float8": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
}


def _pg_arrow_type(udt_name: str, precision: int | None, scale: int | None) -> pa.DataType:
    if udt_name == "numeric":
        if precision and precision <= 38:
            return pa.decimal128(precision, scale or 0)
        return pa.float64()
    return _PG_TYPES.get(udt_name, pa.string())


class _CopyStream(io.RawIOBase):
    """A read-only file over the chunks of a psycopg ``COPY ... TO STDOUT``."""

    def __init__(self, copy: Any) -> None:
        self._copy = copy
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = self._copy.read()
            if not chunk:
                return 0
            self._pending = memoryview(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


class PostgresSource(RecordBatchSource):
    """A table streamed with ``COPY (SELECT ...) TO STDOUT`` into Arrow's CSV reader.

    Identifiers are quoted with psycopg.sql; a watermark read selects rows whose
    ``watermark_column`` is greater than ``watermark`` and records the largest value seen.
    """

    kind = "postgres"

    def __init__(
        self,
        ref: SourceRef,
        url: str,
        batch_rows: int,
        *,
        watermark: Any = None,
        watermark_column: str | None = None,
        expected: ExpectedColumns = None,
    ) -> None:
        super().__init__(postgres_uri(ref), batch_rows)
        self.ref = ref
        self._url = url
        self._watermark = watermark
        self._watermark_column = watermark_column
        self._columns = self._describe_columns()
        names = [name for name, _ in self._columns]
        if watermark_column and watermark_column not in names:
            raise SourceError(
                f"{self._where()}: watermark column {watermark_column!r} not found; columns {names}"
            )
        self.schema = check_schema(pa.schema(self._columns), normalise_expected(expected), self._where())

    def _where(self) -> str:
        return f"table {self.ref.db_schema}.{self.ref.table} (connection {self.ref.conn_id!r})"

    def _connect(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(self._url, connect_timeout=10, application_name="orchestra-source")
        except psycopg.Error as exc:
            raise SourceError(
                f"cannot connect through connection {self.ref.conn_id!r}: {type(exc).__name__}"
            ) from None

    def _describe_columns(self) -> list[tuple[str, pa.DataType]]:
        import psycopg

        with self._connect() as conn:
            try:
                rows = conn.execute(
                    "select column_name, udt_name, numeric_precision, numeric_scale "
                    "from information_schema.columns where table_schema = %s and table_name = %s "
                    "order by ordinal_position",
                    (self.ref.db_schema, self.ref.table),
                ).fetchall()
            except psycopg.Error as exc:
                raise SourceError(f"{self._where()}: {exc}") from None
        if not rows:
            raise SourceError(f"{self._where()} does not exist or has no visible columns")
        return [(name, _pg_arrow_type(udt, prec, scale)) for name, udt, prec, scale in rows]

    def _query(self) -> Any:
        from psycopg import sql

        columns = sql.SQL(", ").join(sql.Identifier(name) for name, _ in self._columns)
        target = sql.Identifier(self.ref.db_schema, self.ref.table)
        select = sql.SQL("select {} from {}").format(columns, target)
        if self._watermark_column:
            column = sql.Identifier(self._watermark_column)
            if self._watermark is not None:
                # COPY takes no bind parameters; Literal quotes the value safely.
                select += sql.SQL(" where {} > {}").format(column, sql.Literal(self._watermark))
            select += sql.SQL(" order by {}").format(column)
        return sql.SQL("copy ({}) to stdout (format csv)").format(select)

    def _batches(self) -> Iterator[pa.RecordBatch]:
        import psycopg

        names = [name for name, _ in self._columns]
        read_options = pacsv.ReadOptions(
            column_names=names, block_size=max(_MIN_BLOCK, min(_MAX_BLOCK, self.batch_rows * 128))
        )
        convert = pacsv.ConvertOptions(
            column_types=dict(self._columns),
            true_values=["t"],
            false_values=["f"],
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,  # COPY writes '' as "" and NULL as nothing
        )
        parse = pacsv.ParseOptions(newlines_in_values=True)
        where = self._where()
        conn = self._connect()
        try:
            with conn:
                conn.execute("set datestyle to 'ISO, YMD'")
                conn.execute("set intervalstyle to 'iso_8601'")
                with conn.cursor() as cur, cur.copy(self._query()) as copy:
                    stream = io.BufferedReader(_CopyStream(copy), buffer_size=1 << 20)
                    if not stream.peek(1):
                        return
                    reader = pacsv.open_csv(
                        stream, read_options=read_options, parse_options=parse, convert_options=convert
                    )
                    for batch in reader:
                        batch = conform(batch, self.schema, where)
                        if self._watermark_column and batch.num_rows:
                            top = pc.max(batch.column(self._watermark_column)).as_py()
                            if top is not None and (self.max_watermark is None or top > self.max_watermark):
                                self.max_watermark = top
                        yield batch
        except psycopg.Error as exc:
            raise SourceError(f"{where}: read failed: {type(exc).__name__}: {exc}") from None
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise SourceError(f"{where}: cannot convert the copied rows: {exc}") from None
        finally:
            conn.close()

    def iter_batches(self) -> Iterator[pa.RecordBatch]:
        self.max_watermark = None
        return super().iter_batches()


def postgres_uri(ref: SourceRef) -> str:
    """A credential-free URI naming a table by connection id."""
    return f"postgres://{ref.conn_id}/{ref.db_schema}.{ref.table}"


# --------------------------------------------------------------------------- entry points


def open_source(
    ref: SourceRef,
    *,
    roots: list[str],
    batch_rows: int,
    connections: ConnectionResolver | None = None,
    start_offset: int | None = None,
    watermark: Any = None,
    watermark_column: str | None = None,
    expected_columns: ExpectedColumns = None,
) -> RecordBatchSource:
    """Open a source for streaming. Files must resolve under ``roots``.

    ``expected_columns`` (names, or name -> type) makes a wrong schema a SourceError
    and, where types are given, pins those column types.
    """
    if ref.kind == "postgres":
        resolver = connections or ConnectionResolver()
        url = resolver.resolve(ref.conn_id or "")
        return PostgresSource(
            ref,
            url,
            batch_rows,
            watermark=watermark,
            watermark_column=watermark_column,
            expected=expected_columns,
        )
    path = resolve_under_roots(ref.path or "", roots)
    if ref.kind == "csv":
        return CsvSource(path, batch_rows, expected_columns)
    if ref.kind == "parquet":
        return ParquetSource(path, batch_rows, expected_columns)
    if ref.kind == "jsonl":
        return JsonlSource(path, batch_rows, start_offset, expected_columns)
    raise SourceError(f"unsupported source kind {ref.kind!r}")


def _columns(schema: pa.Schema) -> list[ColumnInfo]:
    return [ColumnInfo(name=field.name, type=type_name(field.type)) for field in schema]


def _count_csv_rows(path: Path, first_column: str) -> int:
    """Rows of a CSV without converting values: read only the first column, as text."""
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=_MAX_BLOCK),
        parse_options=pacsv.ParseOptions(invalid_row_handler=lambda row: "skip"),
        convert_options=pacsv.ConvertOptions(
            include_columns=[first_column], column_types={first_column: pa.string()}
        ),
    )
    return sum(batch.num_rows for batch in reader)


def _count_lines(path: Path) -> int:
    """Complete lines of a text file (malformed ones included), counted block by block."""
    total = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_MAX_BLOCK):
            total += chunk.count(b"\n")
    return total


def describe_source(
    batch: BatchSpec,
    *,
    roots: list[str],
    connections: ConnectionResolver | None = None,
) -> BatchDescriptor:
    """Measure a batch cheaply: rows, bytes and columns, without loading the data."""
    ref = batch.source
    if ref.kind == "postgres":
        return _describe_postgres(batch, connections or ConnectionResolver())
    path = resolve_under_roots(ref.path or "", roots)
    _check_file(path, ref.kind)
    size = path.stat().st_size
    try:
        if ref.kind == "parquet":
            try:
                meta = pq.ParquetFile(path)
            except (pa.ArrowInvalid, OSError) as exc:
                raise SourceError(f"{str(path)!r} is not a readable Parquet file: {exc}") from None
            rows, schema = meta.metadata.num_rows, meta.schema_arrow
        elif ref.kind == "csv":
            schema = CsvSource(path, 1024).schema
            rows = _count_csv_rows(path, schema.names[0])
        else:
            schema = JsonlSource(path, 1024).schema
            rows = _count_lines(path)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise SourceError(f"{str(path)!r} cannot be measured: {exc}") from None
    return BatchDescriptor(
        batch_id=batch.batch_id,
        source_kind=ref.kind,
        uri=path.as_uri(),
        rows=rows,
        size_bytes=size,
        columns=_columns(schema),
    )


def _describe_postgres(batch: BatchSpec, connections: ConnectionResolver) -> BatchDescriptor:
    import psycopg
    from psycopg import sql

    ref = batch.source
    source = PostgresSource(ref, connections.resolve(ref.conn_id or ""), 1024)
    target = sql.Identifier(ref.db_schema, ref.table)
    with source._connect() as conn:
        try:
            rows = conn.execute(sql.SQL("select count(*) from {}").format(target)).fetchone()[0]
            size = conn.execute(
                "select pg_total_relation_size(format('%%I.%%I', %s::text, %s::text)::regclass)",
                (ref.db_schema, ref.table),
            ).fetchone()[0]
        except psycopg.Error as exc:
            raise SourceError(f"{source._where()}: cannot be measured: {exc}") from None
    return BatchDescriptor(
        batch_id=batch.batch_id,
        source_kind="postgres",
        uri=source.uri,
        rows=int(rows),
        size_bytes=int(size or 0),
        columns=_columns(source.schema),
    )


def source_key(ref: SourceRef, roots: list[str] | None = None) -> str:
    """A stable key for a source in the offset store."""
    if ref.kind == "postgres":
        return postgres_uri(ref)
    if roots:
        return resolve_under_roots(ref.path or "", roots).as_uri()
    return f"{ref.kind}:{ref.path}"
