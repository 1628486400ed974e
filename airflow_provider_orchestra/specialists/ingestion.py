"""Streaming ingestion: ``data_ingestion_branch_alpha``.

Reads what is new in an append-only JSONL file (from the byte offset where the previous
run of the same batch stopped) or in a Postgres table (rows whose ``ingestion.watermark_column`` is above the
stored watermark) and writes those records to Parquet. Positions live in the
:class:`~airflow_provider_orchestra.specialists.io.OffsetStore` and advance only after the
output was published, so a failed run re-reads the same records next time. A run that is
repeated (an Airflow retry, a resumed graph, a revision round) re-reads the range it read
the first time rather than the empty range after it: its output is replaced, never lost.

Late events: with ``ingestion.event_time_column`` set, the event-time watermark is the
largest event time read so far (by earlier runs, then by this one in file or watermark
order). A record whose event time is older than the watermark before it minus
``late_tolerance_seconds`` is late: late records are counted (``details.late_events``) and
written to their own Parquet output (role ``late_events``) instead of the main output,
never dropped silently. The watermark is stored with the offset, so the next run judges
its records against everything read before. Event times without a zone are taken as UTC;
a record without an event time is on time. Lines recovered by lenient parsing are judged
after the block they came from.

Strategies: ``strict`` keeps the column types of the first run (or of the first block
read) and quarantines lines that do not fit them; ``lenient`` also recovers those lines,
reading each value that does not convert as null (counted in ``details.nulled_values``).
Lines that are not JSON objects (or not UTF-8) stay quarantined (JSONL, role
``quarantine``) either way. Quality is the share of lines read that became records.

The file is followed as it grows: a last line without its newline may still be being
written, so it is not read but reported pending (``metrics.rows_pending``,
``details.pending_lines``); the position stays before it and the next run reads it.
Every line read ends counted: ``rows_in`` = ``rows_out`` (on-time and late records) +
``rows_rejected``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from langgraph.graph import StateGraph

from airflow_provider_orchestra.core.errors import SourceError
from airflow_provider_orchestra.core.models import BranchTask, IngestionOptions
from airflow_provider_orchestra.core.outcomes import share
from airflow_provider_orchestra.specialists.base import (
    Attempt,
    RunContext,
    Specialist,
    build_specialist_graph,
)
from airflow_provider_orchestra.specialists.engine import (
    Meter,
    ParquetSideWriter,
    duckdb_connection,
    duckdb_types,
    open_task_source,
    quote_ident,
    quote_literal,
)
from airflow_provider_orchestra.specialists.io import (
    OffsetConflictError,
    OffsetStore,
    RejectedLine,
    arrow_type,
    source_key,
    write_jsonl_quarantine,
    write_parquet,
)
from airflow_provider_orchestra.specialists.io.offsets import (
    decode_position,
    encode_position,
)

INCREMENTAL_KINDS = ("jsonl", "postgres")
_MISFIT = "does not fit the schema"
_STATE_VERSION = 1


def build_subgraph() -> StateGraph:
    """The ingestion subgraph: plan (find the stored position, probe the schema) -> act
    (read the new records, split late events, write Parquet) -> check -> retry with
    lenient parsing -> finish (commit the new position)."""
    return build_specialist_graph()


# --------------------------------------------------------------------------- positions


def offset_key(task: BranchTask) -> str:
    """Where a batch's position is stored: per source and per batch, so two batches
    reading one source each keep their own position (as consumer groups do)."""
    return f"{source_key(task.batch.source, task.storage.data_roots)}#{task.batch.batch_id}"


def _pinnable_schema(schema: pa.Schema) -> dict[str, str | None]:
    """Column -> type name for the offset store; types that do not round-trip through
    their name keep only the column."""
    pinned: dict[str, str | None] = {}
    for field in schema:
        name = str(field.type)
        try:
            pinned[field.name] = name if arrow_type(name) == field.type else None
        except SourceError:
            pinned[field.name] = None
    return pinned


def _read_state(raw: Any) -> dict[str, Any] | None:
    """The stored ingestion state; a bare position stored by other means is accepted."""
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("version") == _STATE_VERSION:
            return data
    return {"position": encode_position(raw)}


def _state_text(state: dict[str, Any]) -> str:
    return json.dumps({"version": _STATE_VERSION, **state}, sort_keys=True)


def _iso(micros: int | None) -> str | None:
    if micros is None:
        return None
    return datetime.fromtimestamp(micros / 1_000_000, tz=timezone.utc).isoformat()


_STRING_TIME_TARGETS = (pa.timestamp("us", tz="UTC"), pa.timestamp("us"))


def event_time_micros(
    values: pa.Array | pa.ChunkedArray, column: str, string_targets: list[pa.DataType] | None = None
) -> pa.Array | pa.ChunkedArray:
    """Event times as int64 microseconds since the epoch (UTC; zone-less values taken as
    UTC). Numbers are epoch seconds; strings are ISO 8601, with or without a zone.

    ``string_targets`` (a list the caller keeps between batches) is reordered so the
    string form that parsed last is tried first next time."""
    data_type = values.type
    if pa.types.is_timestamp(data_type):
        return pc.cast(pc.cast(values, pa.timestamp("us", tz=data_type.tz)), pa.int64())
    if pa.types.is_date(data_type):
        return pc.cast(pc.cast(values, pa.timestamp("us")), pa.int64())
    if pa.types.is_integer(data_type) or pa.types.is_floating(data_type):
        return pc.cast(pc.multiply(pc.cast(values, pa.float64()), 1_000_000.0), pa.int64())
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type):
        targets = string_targets if string_targets is not None else list(_STRING_TIME_TARGETS)
        for target in list(targets):
            try:
                micros = pc.cast(pc.cast(values, target), pa.int64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
            targets.remove(target)
            targets.insert(0, target)
            return micros
        raise SourceError(f"event_time_column {column!r} holds values that are not ISO 8601 timestamps")
    raise SourceError(f"event_time_column {column!r} has type {data_type}, not a time")


# --------------------------------------------------------------------------- lenient parsing


class _Salvager:
    """Recovers quarantined lines that are valid JSON objects but whose values do not fit
    the schema: each value is converted with DuckDB's TRY_CAST, so what does not convert
    becomes null. Works on the rejected lines only, as one vectorised query per block."""

    def __init__(self, con: Any, schema: pa.Schema):
        self.con = con
        self.schema = schema
        types = duckdb_types(con, schema)
        columns, nulled = [], []
        for field in schema:
            path = quote_literal('$."' + field.name.replace("\\", "\\\\").replace('"', '\\"') + '"')
            text = f"json_extract_string(raw, {path})"
            value = f"TRY_CAST({text} AS {types[field.name]})"
            columns.append(f"{value} AS {quote_ident(field.name)}")
            nulled.append(f"CAST({text} IS NOT NULL AND {value} IS NULL AS INTEGER)")
        self.sql = (
            f"SELECT idx, {', '.join(columns)}, ({' + '.join(nulled) or '0'}) AS __nulled "
            "FROM __rejected WHERE json_valid(raw) AND json_type(raw) = 'OBJECT' ORDER BY idx"
        )

    def salvage(self, lines: list[tuple[int, RejectedLine]]) -> tuple[pa.Table, set[int], int]:
        """(recovered rows in the schema, indexes recovered, values read as null)."""
        candidates = [(i, r) for i, r in lines if r.reason.startswith(_MISFIT)]
        if not candidates:
            return self.schema.empty_table(), set(), 0
        raw = pa.table({"idx": [i for i, _ in candidates], "raw": [r.raw for _, r in candidates]})
        self.con.register("__rejected", raw)
        try:
            table = self.con.sql(self.sql).to_arrow_table()
        finally:
            self.con.unregister("__rejected")
        recovered = set(table.column("idx").to_pylist())
        nulled = int(pc.sum(table.column("__nulled")).as_py() or 0)
        rows = table.select(self.schema.names).cast(self.schema)
        return rows, recovered, nulled


# --------------------------------------------------------------------------- the specialist


class StreamingIngestionSpecialist(Specialist):
    """Incremental ingestion of new records from an append-only JSONL file or a Postgres table."""

    agent_type = "streaming_ingestion_specialist"
    branches = ("data_ingestion_branch_alpha",)
    strategies = ("strict", "lenient")

    def build_subgraph(self) -> StateGraph:
        return build_subgraph()

    @staticmethod
    def _store(task: BranchTask) -> OffsetStore:
        return OffsetStore.for_storage(task.storage)

    def _open(self, task: BranchTask, ctx: RunContext, plan: dict[str, Any]) -> Any:
        ref = task.batch.source
        position = decode_position(plan["start"]) if plan["start"] is not None else None
        if ref.kind == "jsonl":
            # A tail read: the file may be being written, so a last line without its
            # newline waits (reported pending) for the run after the writer finished it.
            return open_task_source(
                task, ctx.connections, start_offset=position, expected_columns=plan.get("schema") or None, tail=True
            )
        return open_task_source(
            task,
            ctx.connections,
            watermark=position,
            watermark_column=task.batch.ingestion.watermark_column,
        )

    def plan(self, task: BranchTask, ctx: RunContext) -> dict[str, Any]:
        ref = task.batch.source
        options: IngestionOptions = task.batch.ingestion
        if ref.kind not in INCREMENTAL_KINDS:
            raise SourceError(
                f"streaming ingestion reads an append-only jsonl file or a postgres table, not a {ref.kind} source"
            )
        if ref.kind == "postgres" and not options.watermark_column:
            raise SourceError("a postgres source for streaming ingestion needs ingestion.watermark_column")
        key = offset_key(task)
        raw = self._store(task).get(task.workflow_id, key)
        stored = _read_state(raw) or {}
        if stored.get("run_id") == task.run_id:
            # This run read before (a retry or a new round): read the same range again.
            start, watermark = stored.get("run_start"), stored.get("run_start_event_watermark_us")
        else:
            start, watermark = stored.get("position"), stored.get("event_watermark_us")
        plan: dict[str, Any] = {
            "kind": ref.kind,
            "source_key": key,
            "stored": raw,
            "start": start,
            "event_watermark_us": watermark,
            "schema": stored.get("schema"),
        }
        source = self._open(task, ctx, plan)
        schema = source.schema
        if options.event_time_column and len(schema) and schema.get_field_index(options.event_time_column) < 0:
            raise SourceError(
                f"event_time_column {options.event_time_column!r} is not in the source columns {schema.names}"
            )
        if len(schema):
            plan["schema"] = plan["schema"] or _pinnable_schema(schema)
        plan["source_uri"] = source.uri
        return plan

    def next_strategy(self, plan: dict[str, Any], attempts: list[dict[str, Any]]) -> str | None:
        last = attempts[-1]
        if last["strategy"] != "strict" or plan["kind"] != "jsonl":
            return None
        misfits = (last.get("details") or {}).get("schema_misfits", 0)
        return "lenient" if (misfits or not last["ok"]) else None

    def act(
        self, task: BranchTask, plan: dict[str, Any], strategy: str, ctx: RunContext, staging: Path, meter: Meter
    ) -> Attempt:
        options = task.batch.ingestion
        source = self._open(task, ctx, plan)
        schema = source.schema
        lenient = strategy == "lenient" and plan["kind"] == "jsonl" and len(schema) > 0
        con = duckdb_connection(staging, cpu=self.lease_cpu, memory_mb=self.lease_memory_mb) if lenient else None
        salvager = _Salvager(con, schema) if con is not None else None
        event_column = options.event_time_column
        tolerance_us = int(options.late_tolerance_seconds * 1_000_000)
        before_us = plan.get("event_watermark_us")
        late_writer = ParquetSideWriter(staging / "late_events", schema, role="late_events")
        counts = {"late": 0, "recovered": 0, "nulled": 0, "no_event_time": 0, "watermark_us": before_us}
        recovered_indexes: set[int] = set()
        checked = 0
        string_targets = list(_STRING_TIME_TARGETS)

        def route(batch: pa.RecordBatch | pa.Table) -> pa.RecordBatch | pa.Table:
            """Send late records to their own output; return the on-time ones. The
            watermark before a record is the largest event time read before it (this run,
            in file order, after the previous run's)."""
            if not event_column or batch.num_rows == 0:
                return batch
            micros = event_time_micros(batch.column(event_column), event_column, string_targets)
            counts["no_event_time"] += micros.null_count
            watermark = pc.cumulative_max(micros, skip_nulls=True)
            if counts["watermark_us"] is not None:
                watermark = pc.max_element_wise(watermark, pa.scalar(counts["watermark_us"], pa.int64()))
            top = pc.max(watermark).as_py()
            if top is not None:
                counts["watermark_us"] = top
            late = pc.fill_null(pc.less(micros, pc.subtract(watermark, tolerance_us)), False)
            late_rows = batch.filter(late)
            if late_rows.num_rows == 0:
                return batch
            counts["late"] += late_rows.num_rows
            late_writer.write(late_rows)
            return batch.filter(pc.invert(late))

        def recover() -> pa.Table | None:
            nonlocal checked
            if salvager is None or checked >= len(source.rejected):
                return None
            fresh = list(enumerate(source.rejected[checked:], start=checked))
            checked = len(source.rejected)
            rows, indexes, nulled = salvager.salvage(fresh)
            recovered_indexes.update(indexes)
            counts["recovered"] += rows.num_rows
            counts["nulled"] += nulled
            return rows if rows.num_rows else None

        def records() -> Any:
            # Lenient recovery reads the lines quarantined so far after each batch, so the
            # source must not run ahead of it.
            iterator = source.iter_batches() if salvager is not None else self.batches_of(source)
            while True:
                try:
                    batch = next(iterator)
                except StopIteration:
                    break
                except SourceError:
                    # Every line misfit the schema: in lenient mode they are recovered below.
                    if lenient and source.rows_read == 0 and source.rejected:
                        break
                    raise
                meter.tick(batch.num_rows)
                yield route(batch)
                extra = recover()
                if extra is not None:
                    yield from route(extra).to_batches()
            extra = recover()
            if extra is not None:
                yield from route(extra).to_batches()

        outputs = []
        try:
            if len(schema):
                main = write_parquet(records(), schema, staging / "data", write_behind=self.parallel)
                outputs.append(main)
                rows_out = main.rows
            else:  # nothing new and no schema known yet
                rows_out = sum(b.num_rows for b in records())
            rows_out += late_writer.rows  # late records are output too, in their own file
            late_output = late_writer.close()
        finally:
            late_writer.abort()
            if con is not None:
                con.close()
        if late_output is not None:
            outputs.append(late_output)
        rejected = [r for i, r in enumerate(source.rejected) if i not in recovered_indexes]
        if rejected:
            outputs.append(write_jsonl_quarantine(rejected, staging / "quarantine.jsonl"))

        lines_in = source.rows_read + len(source.rejected)
        kept = source.rows_read + counts["recovered"]
        start = decode_position(plan["start"]) if plan["start"] is not None else None
        end = source.end_offset if plan["kind"] == "jsonl" else source.max_watermark
        if end is None:  # no new rows in the table: the watermark stays
            end = start
        after_us = counts["watermark_us"]
        details = {
            "source": plan["source_uri"],
            "start_position": None if start is None else str(start),
            "end_position": None if end is None else str(end),
            "new_records": kept,
            "late_events": counts["late"],
            "late_tolerance_seconds": options.late_tolerance_seconds,
            "event_watermark_before": _iso(before_us),
            "event_watermark_after": _iso(after_us),
            "records_without_event_time": counts["no_event_time"] if event_column else None,
            "schema_misfits": sum(1 for r in source.rejected if r.reason.startswith(_MISFIT)),
            "recovered_records": counts["recovered"],
            "nulled_values": counts["nulled"],
            "quarantined_lines": len(rejected),
            "pending_lines": source.pending_rows,
            "pending_bytes": source.pending_bytes,
            "_commit": {
                "position": None if end is None else encode_position(end),
                "event_watermark_us": after_us,
                "schema": plan.get("schema") or (_pinnable_schema(schema) if len(schema) else None),
            },
        }
        return Attempt(
            rows_in=lines_in,
            rows_out=rows_out,
            rows_rejected=len(rejected),
            rows_pending=source.pending_rows,
            record_batches=meter.batches,
            quality=share(kept, lines_in),
            outputs=outputs,
            details=details,
        )

    def on_success(self, task: BranchTask, plan: dict[str, Any], attempt: dict[str, Any], ctx: RunContext) -> None:
        commit = attempt["details"]["_commit"]
        state = {
            "position": commit["position"],
            "event_watermark_us": commit["event_watermark_us"],
            "schema": commit["schema"],
            "run_id": task.run_id,
            "run_start": plan["start"],
            "run_start_event_watermark_us": plan.get("event_watermark_us"),
        }
        text = _state_text(state)
        store = self._store(task)
        expected = plan["stored"]
        try:
            store.set(task.workflow_id, plan["source_key"], text, expected=expected)
        except OffsetConflictError:
            # Committed already by this very run before it was interrupted: nothing to do.
            if store.get(task.workflow_id, plan["source_key"]) != text:
                raise
