"""Realtime transformation: ``data_transformation_branch_gamma``.

Per record batch, one DuckDB query maps the schema and derives columns::

    SELECT * REPLACE (<derive> AS <existing>), <derive> AS <new>, ...
    FROM (SELECT <col> AS <renamed>, CAST(<col> AS <type>) AS <cast>, ... FROM batch)

``transformation.rename`` maps source columns to new names; ``transformation.cast`` gives
a type by column (its new or its source name): a DuckDB type name, or failing that an
Arrow one such as ``float64`` or ``timestamp[us]`` (note ``int8`` is DuckDB's 8-byte
BIGINT); ``transformation.derive`` adds (or
replaces) columns computed from SQL expressions over the renamed, cast columns. The
output is Parquet partitioned by date: by ``transformation.partition_date_column`` when
set (a date or timestamp column of the output), else by the first date or timestamp
column, else unpartitioned.

Everything is checked before any row is read: an unknown column, a bad type or an
expression that does not bind (e.g. one naming a missing column) fails the branch with a
message naming the offending entry. Expressions run in a DuckDB that cannot touch files
or the network.

Strategies: ``strict`` casts with CAST, so one value that does not convert fails the
attempt; ``lenient_casts`` uses TRY_CAST and counts the values that became null;
``drop_failing_derives`` also leaves out derived columns whose expression failed at run
time (named in ``details.dropped_derives``). Quality is the share of requested output
values produced: values lost to a failed cast, a dropped derive or an unparseable source
line count against it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from langgraph.graph import StateGraph

from airflow_provider_orchestra.core.errors import SourceError, SpecialistError
from airflow_provider_orchestra.core.models import BranchTask
from airflow_provider_orchestra.core.outcomes import share
from airflow_provider_orchestra.specialists.base import (
    Attempt,
    RunContext,
    Specialist,
    build_specialist_graph,
)
from airflow_provider_orchestra.specialists.engine import (
    Meter,
    duckdb_connection,
    duckdb_types,
    open_task_source,
    quote_ident,
)
from airflow_provider_orchestra.specialists.io import (
    arrow_type,
    write_jsonl_quarantine,
    write_parquet,
)

_TYPE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_ ]*(\(\s*\d+\s*(,\s*\d+\s*)?\))?(\[\])?$")
_FAILED_CASTS = "__failed_casts"


def build_subgraph() -> StateGraph:
    """The transformation subgraph: plan (bind every rename, cast and derive against the
    schema) -> act (one DuckDB query per record batch, date-partitioned Parquet) -> check
    -> retry with lenient casts / without failing derives -> finish."""
    return build_specialist_graph()


class TransformationFailure(SpecialistError):
    """A record batch could not be transformed; ``details`` says which casts or derives."""

    def __init__(self, message: str, details: dict[str, Any]):
        super().__init__(message)
        self.details = details


def _locked_duckdb() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:", config={"autoload_known_extensions": False, "autoinstall_known_extensions": False})
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def _duckdb_type(con: duckdb.DuckDBPyConnection, name: str) -> str | None:
    """The DuckDB type for a cast target: a DuckDB type name as given (``INTEGER``,
    ``DECIMAL(12, 2)``, ``TIMESTAMP WITH TIME ZONE``), else an Arrow type name
    (``float64``, ``timestamp[us]``) translated; None when it is neither."""
    text = name.strip()
    if _TYPE_NAME.match(text):
        try:
            con.execute(f"SELECT CAST(NULL AS {text})").fetchall()
            return text
        except duckdb.Error:
            pass
    try:
        arrow = arrow_type(text)
    except SourceError:
        return None
    return duckdb_types(con, pa.schema([("v", arrow)]))["v"]


def _binder_message(exc: Exception) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


class _Query:
    """The SQL of one strategy, built from the validated plan."""

    def __init__(self, plan: dict[str, Any], strategy: str, dropped: list[str]):
        self.lenient = strategy != "strict"
        self.derives = {k: v for k, v in plan["derive"].items() if k not in dropped}
        inner, failures = [], []
        for source_name, out_name, cast_type in plan["columns"]:
            col = quote_ident(source_name)
            if cast_type is None:
                inner.append(f"{col} AS {quote_ident(out_name)}")
                continue
            function = "TRY_CAST" if self.lenient else "CAST"
            inner.append(f"{function}({col} AS {cast_type}) AS {quote_ident(out_name)}")
            if self.lenient:
                failures.append(f"CAST({col} IS NOT NULL AND TRY_CAST({col} AS {cast_type}) IS NULL AS INTEGER)")
        if self.lenient:
            inner.append(f"({' + '.join(failures) or '0'}) AS {_FAILED_CASTS}")
        self.inner = f"SELECT {', '.join(inner)} FROM batch"
        outputs = [name for _, name, _ in plan["columns"]]
        replaced = [f"({expr}) AS {quote_ident(name)}" for name, expr in self.derives.items() if name in outputs]
        added = [f"({expr}) AS {quote_ident(name)}" for name, expr in self.derives.items() if name not in outputs]
        star = "*" + (f" REPLACE ({', '.join(replaced)})" if replaced else "")
        self.sql = f"SELECT {', '.join([star, *added])} FROM ({self.inner})"

    def derive_only(self, name: str) -> str:
        return f"SELECT ({self.derives[name]}) AS v FROM ({self.inner})"


class RealtimeTransformationSpecialist(Specialist):
    """Schema mapping and derived columns, written as date-partitioned Parquet."""

    agent_type = "realtime_transformation_specialist"
    branches = ("data_transformation_branch_gamma",)
    strategies = ("strict", "lenient_casts", "drop_failing_derives")

    def build_subgraph(self) -> StateGraph:
        return build_subgraph()

    # ------------------------------------------------------------------ planning

    def plan(self, task: BranchTask, ctx: RunContext) -> dict[str, Any]:
        options = task.batch.transformation
        schema = open_task_source(task, ctx.connections).schema
        names = schema.names
        problems = [f"rename of unknown column {c!r}" for c in options.rename if c not in names]
        renamed = {c: options.rename.get(c, c) for c in names}
        out_names = list(renamed.values())
        if len(set(out_names)) != len(out_names):
            problems.append(f"rename makes duplicate column names: {out_names}")
        by_source = {v: k for k, v in renamed.items()}
        casts: dict[str, str] = {}
        con = _locked_duckdb()
        try:
            for column, type_name in options.cast.items():
                source_name = column if column in renamed else by_source.get(column)
                if source_name is None:
                    problems.append(f"cast of unknown column {column!r}")
                else:
                    resolved = _duckdb_type(con, type_name)
                    if resolved is None:
                        problems.append(f"cast of {column!r} to {type_name!r}: not a DuckDB or Arrow type name")
                    else:
                        casts[source_name] = resolved
            if problems:
                raise SourceError(f"wrong schema for the transformation: {'; '.join(problems)}; columns {names}")
            for name in options.derive:
                if not name or len(name) > 63:
                    raise SourceError(f"derived column name {name!r} must be 1-63 characters")
            plan: dict[str, Any] = {
                "columns": [[c, renamed[c], casts.get(c)] for c in names],
                "derive": dict(options.derive),
            }
            con.register("batch", schema.empty_table())
            query = _Query(plan, "strict", [])
            try:
                con.sql(query.inner).to_arrow_table()
            except duckdb.Error as exc:
                raise SourceError(f"a cast is invalid: {_binder_message(exc)}") from None
            for name in plan["derive"]:
                text = query.derive_only(name)
                try:
                    if len(con.extract_statements(text)) != 1:
                        raise SourceError(f"derive {name!r} is not a single expression")
                    con.sql(text).to_arrow_table()
                except duckdb.Error as exc:
                    raise SourceError(f"derive {name!r} = {plan['derive'][name]!r} is invalid: {_binder_message(exc)}") from None
            output_schema = con.sql(query.sql).to_arrow_table().schema
        finally:
            con.close()
        plan["partition"] = self._partition_column(options.partition_date_column, output_schema)
        plan["output_columns"] = output_schema.names
        return plan

    @staticmethod
    def _partition_column(requested: str | None, schema: pa.Schema) -> str | None:
        def is_time(t: pa.DataType) -> bool:
            return pa.types.is_date(t) or pa.types.is_timestamp(t)

        if requested:
            index = schema.get_field_index(requested)
            if index < 0:
                raise SourceError(f"partition_date_column {requested!r} is not an output column {schema.names}")
            if not is_time(schema.field(index).type):
                raise SourceError(
                    f"partition_date_column {requested!r} has type {schema.field(index).type}; cast it to DATE or TIMESTAMP"
                )
            return requested
        return next((f.name for f in schema if is_time(f.type)), None)

    def next_strategy(self, plan: dict[str, Any], attempts: list[dict[str, Any]]) -> str | None:
        last = attempts[-1]
        if last["ok"]:
            return None  # quality below threshold: values that do not convert stay lost
        details = last.get("details") or {}
        if last["strategy"] == "strict":
            if details.get("failing_casts"):
                return "lenient_casts"
            return "drop_failing_derives" if details.get("failing_derives") else None
        if last["strategy"] == "lenient_casts" and details.get("failing_derives"):
            return "drop_failing_derives"
        return None

    # ------------------------------------------------------------------ acting

    def _dropped(self, plan: dict[str, Any], strategy: str, ctx_attempts: list[dict[str, Any]]) -> list[str]:
        if strategy != "drop_failing_derives":
            return []
        failing: list[str] = []
        for attempt in ctx_attempts:
            failing.extend((attempt.get("details") or {}).get("failing_derives") or [])
        return sorted(set(failing))

    def _diagnose(self, con: Any, plan: dict[str, Any], query: _Query, exc: Exception) -> TransformationFailure:
        """Which derives (over leniently cast columns) and whether the casts fail on the
        registered batch."""
        failing = []
        lenient = _Query(plan, "lenient_casts", [])
        for name in query.derives:
            try:
                con.sql(lenient.derive_only(name)).to_arrow_table()
            except duckdb.Error:
                failing.append(name)
        try:
            con.sql(query.inner).to_arrow_table()
            failing_casts = False
        except duckdb.Error:
            failing_casts = True
        what = []
        if failing_casts:
            what.append("a cast failed")
        if failing:
            what.append(f"derive(s) {failing} failed")
        return TransformationFailure(
            f"{' and '.join(what) or 'the transformation failed'}: {_binder_message(exc)}",
            {"failing_derives": failing, "failing_casts": failing_casts},
        )

    def act(
        self, task: BranchTask, plan: dict[str, Any], strategy: str, ctx: RunContext, staging: Path, meter: Meter
    ) -> Attempt:
        dropped = self._dropped(plan, strategy, ctx.attempts_so_far)
        query = _Query(plan, strategy, dropped)
        source = open_task_source(task, ctx.connections)
        con = duckdb_connection(staging, cpu=self.lease_cpu, memory_mb=self.lease_memory_mb)
        counts = {"failed_casts": 0, "rows": 0}
        output_columns = [c for c in plan["output_columns"] if c not in dropped]

        def transformed() -> Any:
            for batch in self.batches_of(source):
                meter.tick(batch.num_rows)
                con.register("batch", batch)
                try:
                    result = con.sql(query.sql).to_arrow_table()
                except duckdb.Error as exc:
                    raise self._diagnose(con, plan, query, exc) from None
                finally:
                    con.unregister("batch")
                if query.lenient:
                    counts["failed_casts"] += int(pc.sum(result.column(_FAILED_CASTS)).as_py() or 0)
                    result = result.drop_columns([_FAILED_CASTS])
                counts["rows"] += result.num_rows
                yield from result.to_batches()

        try:
            con.register("batch", source.schema.empty_table())
            schema = con.sql(query.sql).to_arrow_table().schema
            con.unregister("batch")
            if query.lenient:
                schema = schema.remove(schema.get_field_index(_FAILED_CASTS))
            main = write_parquet(
                transformed(), schema, staging / "data", partition_by=plan["partition"], write_behind=self.parallel
            )
        finally:
            con.close()
        outputs = [main]
        if source.rejected:
            lines = write_jsonl_quarantine(source.rejected, staging / "rejected_lines.jsonl")
            outputs.append(lines.model_copy(update={"role": "rejected_lines"}))
        rows_in = source.rows_read + len(source.rejected)
        requested = len(plan["output_columns"])
        lost = counts["failed_casts"] + len(dropped) * source.rows_read + requested * len(source.rejected)
        wanted = rows_in * requested
        return Attempt(
            rows_in=rows_in,
            rows_out=main.rows,
            rows_rejected=len(source.rejected),
            record_batches=meter.batches,
            quality=share(wanted - lost, wanted),
            outputs=outputs,
            details={
                "output_columns": output_columns,
                "partition_column": plan["partition"],
                "failed_casts": counts["failed_casts"],
                "dropped_derives": dropped,
                "malformed_lines": len(source.rejected),
            },
        )
