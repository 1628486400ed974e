"""Batch validation: ``data_validation_branch_beta``.

Checks every row against ``validation.rules`` (not null, range, allowed values,
uniqueness; a rule naming a column the source lacks is a wrong schema and fails the branch
at once) and flags anomalies in ``validation.anomaly_columns``: a value is anomalous when
``|x - mean| / sd`` exceeds the two-sided normal critical value for
``validation.confidence`` (1.96 at 0.95), mean and sample standard deviation taken over
the whole column.

Rows that pass go to the main Parquet output; failing rows go to a Parquet quarantine
(role ``quarantine``) with a ``_reasons`` column naming every rule they broke; lines the
source could not parse go to a JSONL file (role ``rejected_lines``). Quality is the share
of input rows (parsed or not) that pass.

Two passes, memory bounded by the record batch and progress reported per record batch in
both (the ``scan`` field of an event names the pass). The first reads the source once:
it copies the key and anomaly columns into a DuckDB table (which spills to disk past the
lease's memory), computes the column statistics and, with GROUP BY, the set of duplicated
keys, and keeps every record batch it read in an Arrow IPC file in the attempt's scratch
space. The second evaluates the rules on those same batches (memory-mapped, not read or
parsed again, so both passes see exactly the same rows) with pyarrow compute, looking keys
up in the duplicate set (held as an Arrow array when it is small, else probed in DuckDB).
Uniqueness is order independent: every row whose key occurs more than once fails (nulls
are left to ``not_null``). With a lease of two cores or more, the next record batch is read
while the current one is checked and the previous one written.

Strategies: ``per_row`` tests each value at the configured confidence, so about 5% of
perfectly normal values are flagged at 0.95. When that leaves quality below the threshold
and anomalies were flagged, ``familywise`` tests the column as a whole at that confidence
(Bonferroni: critical value for (1 - confidence) / n per value), which flags only values
that are anomalous for the column.
"""

from __future__ import annotations

import math
from pathlib import Path
from statistics import NormalDist
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from langgraph.graph import StateGraph

from airflow_provider_orchestra.core.errors import SourceError
from airflow_provider_orchestra.core.models import BranchTask, ColumnRule
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
    ParquetSideWriter,
    duckdb_connection,
    open_task_source,
    quote_ident,
    stream,
)
from airflow_provider_orchestra.specialists.io import (
    write_jsonl_quarantine,
    write_parquet,
)

REASONS_COLUMN = "_reasons"
# The ``scan`` field of progress events: which of the two passes a record batch belongs to.
_STATISTICS_SCAN = "statistics"
_RULES_SCAN = "rules"


def build_subgraph() -> StateGraph:
    """The validation subgraph: plan (check the rules against the schema) -> act (statistics
    and duplicate keys, then rules per record batch) -> check -> retry with a familywise
    anomaly test -> finish."""
    return build_specialist_graph()


def critical_value(confidence: float, tests: int = 1) -> float:
    """Two-sided standard-normal critical value; with ``tests`` > 1, Bonferroni-corrected."""
    alpha = (1.0 - confidence) / max(1, tests)
    return NormalDist().inv_cdf(1.0 - alpha / 2.0)


def outside_bound(column: pa.Array, bound: int | float, *, below: bool) -> pa.Array:
    """``column < bound`` (``below``) or ``column > bound``, compared in the column's own
    type: an integer column is never converted to double (above 2**53 that loses the
    difference between neighbours, and Arrow refuses it). A fractional bound on an
    integer column is rounded inward (x < 6.5 is x < 7); a bound beyond the type's range
    holds for every value or for none."""
    data_type = column.type
    if not pa.types.is_integer(data_type) or isinstance(bound, bool):
        return pc.less(column, bound) if below else pc.greater(column, bound)
    bits = data_type.bit_width
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if pa.types.is_signed_integer(data_type) else (0, 2**bits - 1)
    whole = math.ceil(bound) if below else math.floor(bound)
    if whole > high or whole < low:
        answer = (whole > high) == below  # below a bound above every value / above one below them all
        return pc.and_(pc.is_valid(column), pa.scalar(answer))
    threshold = pa.scalar(whole, data_type)
    return pc.less(column, threshold) if below else pc.greater(column, threshold)


IN_MEMORY_DUPLICATE_KEYS = 1 << 16
"""Duplicated keys up to this many are looked up with pyarrow (the set is rebuilt per
record batch, cheap at this size); more stay in DuckDB and are probed there."""


class _DuplicateKeys:
    """The duplicated keys of one column, found by the first pass."""

    def __init__(self, con: Any, column: str):
        self.con = con
        self.table = quote_ident("dup_" + column)
        count = con.execute(f"SELECT count(*) FROM {self.table}").fetchall()[0][0]
        self.keys: pa.Array | None = None
        if count <= IN_MEMORY_DUPLICATE_KEYS:
            keys = con.sql(f"SELECT key FROM {self.table}").to_arrow_table().column("key")
            self.keys = keys.combine_chunks() if keys.num_chunks else pa.array([], keys.type)
        self._positions = pa.array([], pa.int64())

    def hits(self, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        if self.keys is not None:
            return pc.is_in(values, value_set=self.keys)
        if len(self._positions) < len(values):
            self._positions = pa.array(range(len(values)), pa.int64())
        probe = pa.table({"__i": self._positions.slice(0, len(values)), "key": values})
        self.con.register("__probe", probe)
        try:
            found = self.con.sql(
                f"SELECT __i FROM __probe WHERE key IN (SELECT key FROM {self.table})"
            ).to_arrow_table().column("__i")
        finally:
            self.con.unregister("__probe")
        return pc.is_in(probe.column("__i"), value_set=found.combine_chunks() if found.num_chunks else pa.array([], pa.int64()))


class _Spool:
    """The record batches of the first pass in an Arrow IPC file, for the second pass to
    memory-map instead of reading and parsing the source again. Its batches stay valid
    until ``close``."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.path = path
        self.schema = schema
        self._writer: Any = None
        self._map: Any = None

    def write(self, batch: pa.RecordBatch) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pa.ipc.new_file(str(self.path), self.schema)
        self._writer.write_batch(batch)

    def finish(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def batches(self) -> Any:
        if not self.path.exists():
            return
        self._map = pa.memory_map(str(self.path))
        reader = pa.ipc.open_file(self._map)
        for index in range(reader.num_record_batches):
            yield reader.get_batch(index)

    def close(self) -> None:
        self.finish()
        if self._map is not None:
            self._map.close()
            self._map = None
        self.path.unlink(missing_ok=True)


class _RowChecks:
    """Evaluates the rules on one record batch: which rows fail, and the reasons of those
    rows (reason strings are built for the failing rows only, not for the whole batch)."""

    def __init__(self, rules: list[ColumnRule], schema: pa.Schema, anomaly: dict[str, dict[str, float]], con: Any):
        self.rules = rules
        self.schema = schema
        self.anomaly = anomaly
        self.duplicates = {rule.column: _DuplicateKeys(con, rule.column) for rule in rules if rule.unique}
        self.counts: dict[str, int] = {}

    def _add(self, name: str, mask: pa.Array, reason: str, masks: list, reasons: list) -> None:
        mask = pc.fill_null(mask, False)
        hits = int(pc.sum(mask).as_py() or 0)
        self.counts[name] = self.counts.get(name, 0) + hits
        if hits:
            masks.append(mask)
            reasons.append(reason)

    def evaluate(self, batch: pa.RecordBatch) -> tuple[pa.Array, pa.Array | None]:
        """(failure mask over the batch, reasons of the failing rows in their order;
        None when no row fails)."""
        masks: list[pa.Array] = []
        reasons: list[pa.Array] = []
        for rule in self.rules:
            column = batch.column(rule.column)
            if rule.not_null:
                self._add(f"{rule.column}.not_null", pc.is_null(column), f"{rule.column}: null", masks, reasons)
            if rule.min is not None:
                self._add(f"{rule.column}.min", outside_bound(column, rule.min, below=True), f"{rule.column}: below min {rule.min}", masks, reasons)
            if rule.max is not None:
                self._add(f"{rule.column}.max", outside_bound(column, rule.max, below=False), f"{rule.column}: above max {rule.max}", masks, reasons)
            if rule.allowed is not None and not pa.types.is_null(column.type):  # a null is never outside
                allowed = pa.array(rule.allowed).cast(column.type)
                outside = pc.and_(pc.is_valid(column), pc.invert(pc.is_in(column, value_set=allowed)))
                self._add(f"{rule.column}.allowed", outside, f"{rule.column}: not an allowed value", masks, reasons)
            if rule.unique:
                self._add(f"{rule.column}.unique", self.duplicates[rule.column].hits(column), f"{rule.column}: duplicate key", masks, reasons)
        for name, stats in self.anomaly.items():
            if not stats["sd"]:
                continue
            # z-scores are approximate anyway: an int64 beyond 2**53 may round here.
            values = pc.cast(batch.column(name), pa.float64(), safe=False)
            z = pc.divide(pc.abs(pc.subtract(values, stats["mean"])), stats["sd"])
            self._add(f"{name}.anomaly", pc.greater(z, stats["critical"]), f"{name}: anomaly (|z| > {stats['critical']:.3f})", masks, reasons)
        if not masks:
            return pa.nulls(batch.num_rows, pa.bool_()).fill_null(False), None
        failed = masks[0]
        for mask in masks[1:]:
            failed = pc.or_(failed, mask)
        joined = None
        for mask, reason in zip(masks, reasons):
            text = pc.if_else(mask.filter(failed), pa.scalar(reason), pa.scalar(None, pa.string()))
            # "a; b" where both failed, else whichever did (join alone would give null).
            joined = text if joined is None else pc.coalesce(pc.binary_join_element_wise(joined, text, "; "), joined, text)
        return failed, joined


class BatchValidationSpecialist(Specialist):
    """Rule and anomaly validation with a quarantine of failing rows."""

    agent_type = "batch_validation_specialist"
    branches = ("data_validation_branch_beta",)
    strategies = ("per_row", "familywise")

    def build_subgraph(self) -> StateGraph:
        return build_subgraph()

    def plan(self, task: BranchTask, ctx: RunContext) -> dict[str, Any]:
        options = task.batch.validation
        schema = open_task_source(task, ctx.connections).schema
        problems = []
        for rule in options.rules:
            index = schema.get_field_index(rule.column)
            if index < 0:
                problems.append(f"rule on unknown column {rule.column!r}")
                continue
            data_type = schema.field(index).type
            if (rule.min is not None or rule.max is not None) and not is_numeric(data_type):
                problems.append(f"range rule on {rule.column!r} of non-numeric type {data_type}")
            if rule.allowed is not None and not pa.types.is_null(data_type):
                try:
                    pa.array(rule.allowed).cast(data_type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                    problems.append(f"allowed values of {rule.column!r} do not fit its type {data_type}")
        for name in options.anomaly_columns:
            index = schema.get_field_index(name)
            if index < 0:
                problems.append(f"anomaly column {name!r} is not in the source")
            elif not is_numeric(schema.field(index).type):
                problems.append(f"anomaly column {name!r} has non-numeric type {schema.field(index).type}")
        if problems:
            raise SourceError(f"wrong schema for the validation rules: {'; '.join(problems)}; columns {schema.names}")
        return {
            "unique_columns": sorted({r.column for r in options.rules if r.unique}),
            "anomaly_columns": list(dict.fromkeys(options.anomaly_columns)),
            "confidence": options.confidence,
        }

    def next_strategy(self, plan: dict[str, Any], attempts: list[dict[str, Any]]) -> str | None:
        last = attempts[-1]
        if last["strategy"] == "per_row" and last["ok"] and last["details"].get("anomalies", 0) > 0:
            return "familywise"
        return None

    def _first_pass(
        self, source: Any, plan: dict[str, Any], con: Any, strategy: str, meter: Meter, spool: _Spool
    ) -> dict[str, dict[str, float]]:
        """Read the source into ``spool`` and its key and anomaly columns into DuckDB;
        return the anomaly statistics. Progress is reported per record batch (``scan:
        statistics``), counted apart from the second pass so that ``batch`` and ``rows``
        never exceed the input."""
        columns = list(dict.fromkeys([*plan["unique_columns"], *plan["anomaly_columns"]]))
        narrow = source.schema.empty_table().select(columns).schema
        scan_meter = Meter(base_event=meter.base_event, on_progress=meter.on_progress)

        def narrowed() -> Any:
            for batch in self.batches_of(source):
                scan_meter.tick(batch.num_rows, scan=_STATISTICS_SCAN)
                spool.write(batch)
                yield batch.select(columns)

        con.register("__scan", stream(narrow, narrowed()))
        try:
            con.execute("CREATE TABLE scan AS SELECT * FROM __scan")
        except duckdb.Error:
            # DuckDB reports what the progress callback raised as its own error; the
            # callback's exception (e.g. a cancellation) is what stops the attempt.
            if scan_meter.stopped_by is not None:
                raise scan_meter.stopped_by from None
            raise
        finally:
            con.unregister("__scan")
            spool.finish()
            meter.peak_arrow_bytes = max(meter.peak_arrow_bytes, scan_meter.peak_arrow_bytes)
        for column in plan["unique_columns"]:
            col = quote_ident(column)
            con.execute(
                f"CREATE TABLE {quote_ident('dup_' + column)} AS SELECT {col} AS key FROM scan "
                f"WHERE {col} IS NOT NULL GROUP BY {col} HAVING count(*) > 1"
            )
        anomaly: dict[str, dict[str, float]] = {}
        for column in plan["anomaly_columns"]:
            col = quote_ident(column)
            n, mean, sd = con.execute(
                f"SELECT count({col}), avg(CAST({col} AS DOUBLE)), stddev_samp(CAST({col} AS DOUBLE)) FROM scan"
            ).fetchone()
            tests = n if strategy == "familywise" else 1
            anomaly[column] = {
                "n": int(n),
                "mean": float(mean) if mean is not None else 0.0,
                "sd": float(sd) if sd else 0.0,
                "critical": critical_value(plan["confidence"], tests),
            }
        con.execute("DROP TABLE scan")
        return anomaly

    def act(
        self, task: BranchTask, plan: dict[str, Any], strategy: str, ctx: RunContext, staging: Path, meter: Meter
    ) -> Attempt:
        rules = task.batch.validation.rules
        source = open_task_source(task, ctx.connections)
        schema = source.schema
        con = duckdb_connection(staging, cpu=self.lease_cpu, memory_mb=self.lease_memory_mb)
        quarantine = ParquetSideWriter(
            staging / "quarantine", schema.append(pa.field(REASONS_COLUMN, pa.string())), role="quarantine"
        )
        # Without keys or anomaly columns there are no statistics to gather: one pass.
        two_passes = bool(plan["unique_columns"] or plan["anomaly_columns"])
        spool = _Spool(staging / "duckdb_tmp" / "validation_scan.arrow", schema)
        try:
            anomaly = self._first_pass(source, plan, con, strategy, meter, spool) if two_passes else {}
            checks = _RowChecks(rules, schema, anomaly, con)
            failed_rows = 0

            def passing() -> Any:
                nonlocal failed_rows
                for batch in spool.batches() if two_passes else self.batches_of(source):
                    meter.tick(batch.num_rows, scan=_RULES_SCAN)
                    failed, reasons = checks.evaluate(batch)
                    if reasons is None:
                        yield batch
                        continue
                    bad = batch.filter(failed)
                    failed_rows += bad.num_rows
                    quarantine.write(bad.append_column(REASONS_COLUMN, reasons))
                    yield batch.filter(pc.invert(failed))

            main = write_parquet(passing(), schema, staging / "data", write_behind=self.parallel)
            outputs = [main]
            quarantined = quarantine.close()
        finally:
            quarantine.abort()
            con.close()
            spool.close()
        if quarantined is not None:
            outputs.append(quarantined)
        if source.rejected:
            lines = write_jsonl_quarantine(source.rejected, staging / "rejected_lines.jsonl")
            outputs.append(lines.model_copy(update={"role": "rejected_lines"}))
        rows_in = source.rows_read + len(source.rejected)
        anomalies = sum(v for k, v in checks.counts.items() if k.endswith(".anomaly"))
        return Attempt(
            rows_in=rows_in,
            rows_out=main.rows,
            rows_rejected=failed_rows + len(source.rejected),
            record_batches=meter.batches,
            quality=share(main.rows, rows_in),
            outputs=outputs,
            details={
                "rule_failures": checks.counts,
                "anomalies": anomalies,
                "anomaly_test": {
                    name: {k: stats[k] for k in ("n", "mean", "sd", "critical")} for name, stats in anomaly.items()
                },
                "confidence": plan["confidence"],
                "uniqueness": "duckdb group-by over the stream; every row of a duplicated key fails",
                "malformed_lines": len(source.rejected),
                "failed_rows": failed_rows,
            },
        )
