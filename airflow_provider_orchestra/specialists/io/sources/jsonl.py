"""Append-only newline-delimited JSON, read incrementally from a byte offset.

A block of complete lines is parsed by Arrow's JSON reader in one go; a block holding a
bad line takes the slow path, which classifies lines in bulk (Arrow split + DuckDB
``json_valid``) and isolates lines that do not fit the schema by splitting.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from airflow_provider_orchestra.core.errors import SourceError
from airflow_provider_orchestra.specialists.io.sources.base import (
    MAX_BLOCK,
    RAW_LIMIT,
    SNIFF_BYTES,
    FileSource,
    block_bytes,
    check_file,
    failing_positions,
    is_utf8,
)
from airflow_provider_orchestra.specialists.io.types import (
    INVALID_UTF8_REASON,
    MISFIT_REASON,
    ExpectedColumns,
    RejectedLine,
    check_schema,
    conform,
    normalise_expected,
)

MAX_LINE = 64 * 1024 * 1024


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


_checker: Any = None
_checker_lock = threading.Lock()


def _json_checker() -> Any:
    """A connection of its own (a cursor) to one in-process DuckDB kept for checking JSON
    lines: opening a database per block costs more than checking the block. One thread
    keeps row order (the blocks are small)."""
    global _checker
    import duckdb

    with _checker_lock:
        if _checker is None:
            _checker = duckdb.connect(config={"threads": 1, "autoload_known_extensions": False, "autoinstall_known_extensions": False})
        return _checker.cursor()


def _classify_lines(lines: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(good, bad) masks: good lines hold one JSON object; blank lines are neither.
    A line that is not valid UTF-8 is bad."""
    not_utf8 = list(failing_positions(lines, pa.string()))
    if not_utf8:
        broken = pc.is_in(pa.array(range(len(lines)), pa.int64()), pa.array(not_utf8, pa.int64()))
        lines = pc.if_else(broken, pa.scalar(b"", pa.binary()), lines)
    text = lines.cast(pa.string())
    blank = pc.equal(pc.utf8_trim_whitespace(text), "")
    con = _json_checker()
    try:
        con.register("lines", pa.table({"line": text}))
        valid = con.sql(_IS_JSON_OBJECT).to_arrow_table().column("ok").combine_chunks()
    finally:
        con.close()
    valid = pc.fill_null(valid, False)
    good, bad = pc.and_(valid, pc.invert(blank)), pc.and_(pc.invert(valid), pc.invert(blank))
    if not_utf8:
        bad = pc.or_(bad, broken)
    return good, bad


def _json_problem(raw: bytes) -> str | None:
    """Why a line is not one JSON object (None if it is)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"{INVALID_UTF8_REASON} at byte {exc.start} of the line"
    try:
        value = json.loads(text)
    except ValueError as exc:
        return f"invalid JSON: {exc}"
    if not isinstance(value, dict):
        return f"not a JSON object ({type(value).__name__})"
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return "invalid JSON: a \\u escape names a lone surrogate, not a character"
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


class JsonlSource(FileSource):
    """Append-only newline-delimited JSON, read from a byte offset.

    The file size is taken once when the source is opened: lines appended later wait for
    the next read; ``end_offset`` is where the next read starts. A batch read reads every
    record, the last one also without its newline. A ``tail`` read (streaming ingestion)
    follows a file that is still being written: a last line without its newline may be
    half written, so it is held back and reported (``pending_rows``, ``pending_bytes``),
    and the next read, starting at ``end_offset``, reads it once it is complete.
    The schema comes from the first parseable block (or ``expected_columns`` types) and
    is then held fixed: later lines whose values do not fit it are quarantined, and so
    are lines that are not valid UTF-8.
    """

    kind = "jsonl"

    def __init__(
        self,
        path: Path,
        batch_rows: int,
        start_offset: int | None = None,
        expected: ExpectedColumns = None,
        *,
        tail: bool = False,
    ) -> None:
        super().__init__(path, batch_rows)
        self.tail = tail
        if not path.exists():
            raise SourceError(f"jsonl source {str(path)!r} does not exist")
        self._start = int(start_offset or 0)
        size = path.stat().st_size
        if self._start == 0:
            head = check_file(path, "jsonl")
        else:
            if self._start < 0:
                raise SourceError(f"negative start offset {self._start} for {str(path)!r}")
            with path.open("rb") as fh:
                fh.seek(self._start)
                head = fh.read(SNIFF_BYTES)
        if self._start > size:
            raise SourceError(
                f"{str(path)!r} is shorter ({size} bytes) than the stored offset {self._start}: "
                "the file was truncated or replaced; reset the offset to re-read it"
            )
        self._size = size
        self._block = block_bytes(batch_rows, head)
        self._expected = normalise_expected(expected)
        self.end_offset = self._start
        self.schema = self._probe_schema()

    # -- reading blocks of complete lines

    def _blocks(self) -> Iterator[tuple[int, bytes]]:
        """(absolute offset of the block, bytes made of newline-terminated lines).

        A last line without a newline ends a batch read as a line of its own (given its
        newline here); a tail read holds it back as pending."""
        self.pending_rows = self.pending_bytes = 0
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
                    if len(buffer) > MAX_LINE:
                        raise SourceError(
                            f"{str(self.path)!r}: a line at byte {carry_offset} is longer "
                            f"than {MAX_LINE} bytes"
                        )
                    carry = buffer
                    continue
                yield carry_offset, buffer[: cut + 1]
                carry = buffer[cut + 1 :]
                carry_offset += cut + 1
        if not carry.strip():
            return
        if self.tail:
            self.pending_rows, self.pending_bytes = 1, len(carry)
        else:
            yield carry_offset, carry + b"\n"

    # -- parsing

    def _parse_options(self, schema: pa.Schema | None) -> pajson.ParseOptions:
        if schema is None:
            return pajson.ParseOptions(newlines_in_values=False)
        return pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")

    @staticmethod
    def _read(data: bytes | pa.Buffer, options: pajson.ParseOptions) -> pa.Table:
        buffer = data if isinstance(data, pa.Buffer) else pa.py_buffer(data)
        # With the schema fixed, 1 MiB blocks let pyarrow parse a read block on every core;
        # inferring a schema reads it as one block so one inference covers all its lines.
        if options.explicit_schema is not None:
            block = 1 << 20
        else:
            block = max(1 << 20, min(buffer.size + 1, 1 << 26))
        return pajson.read_json(
            pa.BufferReader(buffer), read_options=pajson.ReadOptions(block_size=block), parse_options=options
        )

    def _parse_block(
        self, block: bytes, offset: int, first_line: int, schema: pa.Schema | None
    ) -> tuple[pa.Table | None, list[RejectedLine]]:
        options = self._parse_options(schema)
        # Arrow's JSON reader copies string bytes as they are: a block that is not valid
        # UTF-8 takes the slow path, which rejects the lines that are not.
        if is_utf8(block):
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
            line=line, offset=offset, reason=reason, raw=raw[:RAW_LIMIT].decode("utf-8", "replace")
        )

    def _probe_schema(self) -> pa.Schema:
        typed = {k: v for k, v in self._expected.items() if v is not None}
        first_line = 1
        malformed = 0
        for offset, block in self._blocks():
            table, rejected = self._parse_block(block, offset, first_line, None)
            first_line += block.count(b"\n")
            malformed += len(rejected)
            if table is None or table.num_rows == 0:
                continue
            fields = []
            for field in table.schema:
                data_type = typed.get(field.name, field.type)
                if pa.types.is_null(data_type):  # all-null in the first block: keep as text
                    data_type = pa.string()
                fields.append(pa.field(field.name, data_type))
            return check_schema(pa.schema(fields), self._expected, str(self.path))
        if malformed and self._start == 0:
            raise SourceError(f"{str(self.path)!r}: every line is malformed; nothing to read")
        if self._start == 0 and not self.tail:
            # Like an empty file: no record, so no column either.
            raise SourceError(f"{str(self.path)!r} holds no record (blank lines only)")
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
            self.end_offset = min(offset + len(block), self._size)  # a last line's added newline
        if self.rows_read == 0 and self.rejected:
            first = self.rejected[0]
            raise SourceError(
                f"{where}: every line read ({len(self.rejected)}) is malformed; first at line "
                f"{first.line}: {first.reason}"
            )

    def count_rows(self) -> int:
        """Lines from the start offset (malformed ones included), the last one also
        without its newline."""
        total = 0
        unterminated = False  # text after the last newline so far
        with self.path.open("rb") as fh:
            fh.seek(self._start)
            while chunk := fh.read(MAX_BLOCK):
                total += chunk.count(b"\n")
                cut = chunk.rfind(b"\n")
                after = chunk[cut + 1 :]
                unterminated = bool(after.strip()) or (cut < 0 and unterminated)
        return total + int(unterminated)
