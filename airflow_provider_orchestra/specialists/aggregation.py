"""Aggregation: ``data_aggregation_branch_primary`` (priority) and
``data_quality_branch_secondary`` (quality monitored).

DuckDB runs ``aggregation.metrics`` grouped by ``aggregation.group_by`` over the source's
record batches as they stream (its hash aggregate spills to disk past its memory limit).
The groups, ordered by their keys, go to Parquet and, when ``aggregation.sink_table`` is
set, to Postgres through the connection ``aggregation.sink_conn_id`` (or the storage's
``sink_conn_id``): a COPY swapped in the batch's ``write_mode`` (``specialists.io.
postgres_load``), so a rerun never duplicates rows. The load happens in ``act``: no strategy
follows a successful load (only running out of memory, which fails the attempt before its
load commits, leads to another attempt), so one run commits one load. Sums of integer
columns are BIGINT; means are DOUBLE.

Quality: the priority specialist reports the share of input lines it could read. The
quality-monitoring specialist measures its input: the share of rows complete in every
grouping and metric column (lines the source could not parse count as incomplete), with
the null share of each of those columns in ``details.null_share``.

Strategies: ``standard``; after running out of memory, ``small_batches`` (an eighth of the
record batch rows, one DuckDB thread). Nothing else would change a measured aggregate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from langgraph.graph import StateGraph

from airflow_provider_orchestra.core.errors import SourceError
from airflow_provider_orchestra.core.models import BranchTask, Metric
from airflow_provider_orchestra.core.outcomes import share
from airflow_provider_orchestra.specialists.base import (
    Attempt,
    RunContext,
    Specialist,
    build_specialist_graph,
)
from airflow_provider_orchestra.specialists.engine import (
    Meter,
    is_numeric,
    duckdb_connection,
    is_out_of_memory,
    open_task_source,
    quote_ident,
    resolver_for,
    stream,
)
from airflow_provider_orchestra.specialists.io import (
    load_postgres,
    write_jsonl_quarantine,
    write_parquet,
)

_NUMERIC_FUNCTIONS = {"sum", "mean"}
_SQL = {"sum": "sum", "mean": "avg", "min": "min", "max": "max", "count": "count"}
_SMALL_BATCH_DIVISOR = 8


def build_subgraph() -> StateGraph:
    """The aggregation subgraph: plan (check group-by and metric columns, the sink) -> act
    (DuckDB GROUP BY over the stream, Parquet, Postgres COPY) -> check -> retry with
    smaller record batches after running out of memory -> finish."""
    return build_specialist_graph()


def metric_name(metric: Metric) -> str:
    return metric.name or f"{metric.fn}_{metric.column}"


def _metric_sql(metric: Metric, data_type: pa.DataType) -> str:
    col = quote_ident(metric.column)
    if metric.fn == "count_distinct":
        expression = f"count(DISTINCT {col})"
    else:
        expression = f"{_SQL[metric.fn]}({col})"
    if metric.fn == "sum" and pa.types.is_integer(data_type):
        expression = f"CAST({expression} AS BIGINT)"
    return f"{expression} AS {quote_ident(metric_name(metric))}"


class _AggregationSpecialist(Specialist):
    branches = ("data_aggregation_branch_primary", "data_quality_branch_secondary")
    strategies = ("standard", "small_batches")
    measures_input_quality = False

    def build_subgraph(self) -> StateGraph:
        return build_subgraph()

    def plan(self, task: BranchTask, ctx: RunContext) -> dict[str, Any]:
        options = task.batch.aggregation
        schema = open_task_source(task, ctx.connections).schema
        names = schema.names
        problems = [f"group_by column {c!r} is not in the source" for c in options.group_by if c not in names]
        metrics = []
        for metric in options.metrics:
            if metric.column not in names:
                problems.append(f"metric {metric_name(metric)!r} reads unknown column {metric.column!r}")
                continue
            data_type = schema.field(metric.column).type
            if metric.fn in _NUMERIC_FUNCTIONS and not is_numeric(data_type):
                problems.append(f"metric {metric_name(metric)!r}: {metric.fn} of non-numeric column {metric.column!r} ({data_type})")
            metrics.append(_metric_sql(metric, data_type))
        outputs = [*options.group_by, *(metric_name(m) for m in options.metrics)] if metrics else [*options.group_by, "row_count"]
        if len(set(outputs)) != len(outputs):
            problems.append(f"output column names repeat: {outputs}")
        unknown_key = [c for c in task.batch.key if c not in outputs]
        if unknown_key:
            problems.append(f"upsert key column(s) {unknown_key} are not among the output columns {outputs}")
        if problems:
            raise SourceError(f"wrong schema for the aggregation: {'; '.join(problems)}; columns {names}")
        if not metrics:
            metrics = ['count(*) AS "row_count"']
        keys = ", ".join(quote_ident(c) for c in options.group_by)
        select = ", ".join([*(quote_ident(c) for c in options.group_by), *metrics])
        sql = f"SELECT {select} FROM __source"
        if options.group_by:
            sql += f" GROUP BY {keys} ORDER BY {keys} NULLS LAST"
        sink = None
        if options.sink_table:
            conn_id = options.sink_conn_id or task.storage.sink_conn_id
            if not conn_id:
                raise SourceError("aggregation.sink_table is set but neither aggregation.sink_conn_id nor storage.sink_conn_id is")
            db_schema, _, table = options.sink_table.rpartition(".")
            sink = {"conn_id": conn_id, "db_schema": db_schema or "public", "table": table}
        watched = list(dict.fromkeys([*options.group_by, *(m.column for m in options.metrics)]))
        return {"sql": sql, "sink": sink, "watched_columns": watched}

    def next_strategy(self, plan: dict[str, Any], attempts: list[dict[str, Any]]) -> str | None:
        last = attempts[-1]
        if last["strategy"] == "standard" and not last["ok"] and is_out_of_memory(last.get("error_kind"), last.get("error")):
            return "small_batches"
        return None

    def act(
        self, task: BranchTask, plan: dict[str, Any], strategy: str, ctx: RunContext, staging: Path, meter: Meter
    ) -> Attempt:
        small = strategy == "small_batches"
        batch_rows = max(1, task.record_batch_rows // _SMALL_BATCH_DIVISOR) if small else task.record_batch_rows
        source = open_task_source(task, ctx.connections, batch_rows=batch_rows)
        watched = plan["watched_columns"]
        nulls = {c: 0 for c in watched}
        complete = 0

        def measured() -> Any:
            nonlocal complete
            for batch in self.batches_of(source):
                meter.tick(batch.num_rows)
                if watched:
                    valid = None
                    for column in watched:
                        values = batch.column(column)
                        nulls[column] += values.null_count
                        mask = pc.is_valid(values)
                        valid = mask if valid is None else pc.and_(valid, mask)
                    complete += int(pc.sum(valid).as_py() or 0)
                else:
                    complete += batch.num_rows
                yield batch

        con = duckdb_connection(staging, cpu=1 if small else self.lease_cpu, memory_mb=self.lease_memory_mb)
        try:
            con.register("__source", stream(source.schema, measured()))
            reader = con.sql(plan["sql"]).to_arrow_reader(batch_rows)
            main = write_parquet(reader, reader.schema, staging / "data")
        finally:
            con.close()
        outputs = [main]
        if plan["sink"] is not None:
            sink = plan["sink"]
            url = resolver_for(ctx.connections).resolve(sink["conn_id"])
            written = pq.ParquetDataset(staging / "data")
            schema = written.schema
            batches = (b for f in sorted((staging / "data").rglob("*.parquet")) for b in pq.ParquetFile(f).iter_batches(batch_size=batch_rows))
            outputs.append(
                load_postgres(
                    batches,
                    schema,
                    url=url,
                    table=sink["table"],
                    db_schema=sink["db_schema"],
                    run_id=task.run_id,
                    branch_id=task.branch_id,
                    conn_id=sink["conn_id"],
                    write_mode=task.batch.write_mode,
                    key=task.batch.key,
                    on_progress=lambda rows: meter.report(stage="load", rows_loaded=rows),
                )
            )
        if source.rejected:
            lines = write_jsonl_quarantine(source.rejected, staging / "rejected_lines.jsonl")
            outputs.append(lines.model_copy(update={"role": "rejected_lines"}))
        rows_in = source.rows_read + len(source.rejected)
        details: dict[str, Any] = {
            "groups": main.rows,
            # Every row read went into a group: rows_in = rows_aggregated + rows_rejected.
            "rows_aggregated": source.rows_read,
            "record_batch_rows": batch_rows,
            "malformed_lines": len(source.rejected),
            "sink": None if plan["sink"] is None else f"{plan['sink']['db_schema']}.{plan['sink']['table']}",
        }
        if self.measures_input_quality:
            quality = share(complete, rows_in)
            details.update(
                input_quality=quality,
                complete_rows=complete,
                null_share={c: (n / source.rows_read if source.rows_read else 0.0) for c, n in nulls.items()},
                rejected_rows=len(source.rejected),
            )
        else:
            quality = share(source.rows_read, rows_in)
        return Attempt(
            rows_in=rows_in,
            rows_out=main.rows,
            rows_rejected=len(source.rejected),
            record_batches=meter.batches,
            quality=quality,
            outputs=outputs,
            details=details,
        )


class PriorityAggregationSpecialist(_AggregationSpecialist):
    """Group-by aggregation to Parquet and Postgres for high-priority batches."""

    agent_type = "priority_aggregation_specialist"


class QualityAggregationSpecialist(_AggregationSpecialist):
    """Group-by aggregation that also measures and reports the quality of its input."""

    agent_type = "quality_aggregation_specialist"
    measures_input_quality = True
