"""Checks of a config's sources and sinks that need no data scan: the data roots exist,
every file source lies under them and exists, every connection a batch names is defined
as a usable Postgres connection. Nothing is read from files or databases."""

from __future__ import annotations

from pathlib import Path

from airflow_provider_orchestra.core.errors import SourceError
from airflow_provider_orchestra.core.models import WorkflowConfig
from airflow_provider_orchestra.specialists.io.connections import ConnectionResolver
from airflow_provider_orchestra.specialists.io.paths import resolve_under_roots


def _root_problems(config: WorkflowConfig) -> list[str]:
    problems = []
    for index, root in enumerate(config.storage.data_roots):
        path = Path(root).expanduser()
        if not path.exists():
            problems.append(f"storage.data_roots.{index}: {root!r} does not exist")
        elif not path.is_dir():
            problems.append(f"storage.data_roots.{index}: {root!r} is not a directory")
    output = Path(config.storage.output_root).expanduser()
    if output.exists() and not output.is_dir():
        problems.append(f"storage.output_root: {config.storage.output_root!r} is not a directory")
    return problems


def _connection_problem(field: str, conn_id: str, connections: ConnectionResolver) -> str | None:
    try:
        connections.resolve(conn_id)
    except SourceError as exc:
        return f"{field}: {exc}"
    return None


def source_problems(config: WorkflowConfig, connections: ConnectionResolver | None = None) -> list[str]:
    """Every problem found, each naming the config field; empty when none."""
    connections = connections or ConnectionResolver()
    problems = _root_problems(config)
    roots = config.storage.data_roots
    for index, batch in enumerate(config.batches):
        field = f"batches.{index}"
        source = batch.source
        if source.kind == "postgres":
            problem = _connection_problem(f"{field}.source.conn_id ({batch.batch_id})", source.conn_id or "", connections)
        else:
            try:
                path = resolve_under_roots(source.path or "", roots)
            except SourceError as exc:
                problem = f"{field}.source.path ({batch.batch_id}): {exc}"
            else:
                if not path.exists():
                    problem = f"{field}.source.path ({batch.batch_id}): {source.kind} file {str(path)!r} does not exist"
                elif not path.is_file():
                    problem = f"{field}.source.path ({batch.batch_id}): {str(path)!r} is not a regular file"
                else:
                    problem = None
        if problem:
            problems.append(problem)
        aggregation = batch.aggregation
        if aggregation.sink_table:
            conn_id = aggregation.sink_conn_id or config.storage.sink_conn_id
            if not conn_id:
                problems.append(
                    f"{field}.aggregation ({batch.batch_id}): sink_table is set but neither "
                    "aggregation.sink_conn_id nor storage.sink_conn_id is"
                )
            elif problem := _connection_problem(f"{field}.aggregation.sink_conn_id ({batch.batch_id})", conn_id, connections):
                problems.append(problem)
    return problems
