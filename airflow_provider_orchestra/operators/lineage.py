"""OpenLineage datasets of the orchestra operators.

Imported only by the operators' ``get_openlineage_facets_on_complete``, which only
``apache-airflow-providers-openlineage``'s listener calls: without that provider (the
``[openlineage]`` extra) nothing here, and nothing of OpenLineage, is ever imported.

Dataset names follow OpenLineage's naming: a file or folder is namespace ``file`` and its
absolute path; a Postgres table is namespace ``postgres://host:port`` and
``database.schema.table``. A branch reports its source as input (schema, rows read, and
its own quality figures as data-quality metrics and assertions) and every output it
wrote (schema, rows and bytes written); the final integrator reports the branch outputs it
integrated as inputs and the integrated manifest as its output.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from airflow.providers.openlineage.extractors import OperatorLineage
from openlineage.client.event_v2 import InputDataset, OutputDataset
from openlineage.client.facet_v2 import (
    data_quality_assertions_dataset,
    data_quality_metrics_input_dataset,
    input_statistics_input_dataset,
    output_statistics_output_dataset,
    schema_dataset,
)

from airflow_provider_orchestra.core.models import BranchResult, BranchTask, ColumnInfo, FinalReport, OutputDescriptor
from airflow_provider_orchestra.specialists.io import ConnectionResolver, resolve_under_roots
from airflow_provider_orchestra.specialists.io.types import columns_of

log = logging.getLogger(__name__)

FILE_NAMESPACE = "file"
POSTGRES_PORT = 5432


@dataclass(frozen=True)
class DatasetName:
    namespace: str
    name: str


def postgres_dataset(url: str, db_schema: str, table: str) -> DatasetName:
    parts = urlsplit(url)
    database = unquote(parts.path.lstrip("/"))
    return DatasetName(
        f"postgres://{parts.hostname or 'localhost'}:{parts.port or POSTGRES_PORT}", f"{database}.{db_schema}.{table}"
    )


def file_dataset(path: str | Path) -> DatasetName:
    return DatasetName(FILE_NAMESPACE, str(Path(path)))


def source_dataset(task: BranchTask, connections: ConnectionResolver) -> DatasetName:
    """The branch's source: a file under the data roots, or a table behind a connection."""
    source = task.batch.source
    if source.kind == "postgres":
        return postgres_dataset(connections.resolve(source.conn_id or ""), source.db_schema, source.table or "")
    return file_dataset(resolve_under_roots(source.path or "", task.storage.data_roots))


def output_dataset(output: OutputDescriptor, connections: ConnectionResolver) -> DatasetName:
    """An output descriptor's dataset: ``file://`` URIs are files or folders; a Postgres
    sink's URI names its connection (``postgres://<conn_id>/<schema>.<table>?...``) or,
    loaded from a URL, its server (``postgresql://host:port/<db>/<schema>.<table>?...``)."""
    parts = urlsplit(output.uri)
    if parts.scheme == "file":
        return file_dataset(unquote(parts.path))
    path = unquote(parts.path).strip("/")
    if parts.scheme == "postgres":
        url = connections.resolve(parts.netloc)
        qualified = path
    else:
        database, _, qualified = path.partition("/")
        url = f"postgresql://{parts.netloc}/{database}"
    db_schema, _, table = qualified.rpartition(".")
    return postgres_dataset(url, db_schema, table)


def _schema_facet(columns: list[ColumnInfo]) -> dict[str, Any]:
    if not columns:
        return {}
    return {
        "schema": schema_dataset.SchemaDatasetFacet(
            fields=[schema_dataset.SchemaDatasetFacetFields(name=c.name, type=c.type) for c in columns]
        )
    }


def _source_columns(task: BranchTask, connections: ConnectionResolver) -> list[ColumnInfo]:
    """The source's columns as a reader sees them (a header, a footer or the catalog)."""
    from airflow_provider_orchestra.specialists.engine import DATA_ERRORS, open_task_source

    try:
        return columns_of(open_task_source(task, connections).schema)
    except DATA_ERRORS as exc:
        log.info("lineage: no schema for %s's source: %s", task.branch_id, exc)
        return []


def _quality_facets(result: BranchResult) -> tuple[dict[str, Any], dict[str, Any]]:
    """The specialist's own figures: rows read and null counts as data-quality metrics,
    its quality against its threshold and its rejected rows as assertions."""
    m, details = result.metrics, result.details
    rows_read = max(m.rows_in - m.rows_rejected, 0)
    column_metrics = {
        column: data_quality_metrics_input_dataset.ColumnMetrics(nullCount=round(share * rows_read))
        for column, share in (details.get("null_share") or {}).items()
    }
    input_facets: dict[str, Any] = {
        "inputStatistics": input_statistics_input_dataset.InputStatisticsInputDatasetFacet(rowCount=m.rows_in),
        "dataQualityMetrics": data_quality_metrics_input_dataset.DataQualityMetricsInputDatasetFacet(
            columnMetrics=column_metrics, rowCount=m.rows_in
        ),
    }
    assertions = [
        data_quality_assertions_dataset.Assertion(
            assertion="rows_rejected", success=m.rows_rejected == 0, expected="0", actual=str(m.rows_rejected),
            severity="warn", name=f"{result.branch_id}: rows quarantined or unreadable",
        )
    ]
    if m.quality is not None and details.get("quality_threshold") is not None:
        assertions.append(
            data_quality_assertions_dataset.Assertion(
                assertion="quality_threshold", success=bool(details.get("quality_met")),
                expected=f">= {details['quality_threshold']}", actual=f"{m.quality:.6f}", severity="warn",
                name=f"{result.branch_id}: quality measured by {result.agent_type or result.specialist}",
            )
        )
    facets = {"dataQualityAssertions": data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(assertions=assertions)}
    return facets, input_facets


def _output(output: OutputDescriptor, connections: ConnectionResolver) -> OutputDataset:
    name = output_dataset(output, connections)
    return OutputDataset(
        namespace=name.namespace,
        name=name.name,
        facets=_schema_facet(output.columns),
        outputFacets={
            "outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                rowCount=output.rows, size=output.size_bytes
            )
        },
    )


def branch_lineage(task: BranchTask, result: BranchResult, connections: ConnectionResolver) -> OperatorLineage:
    """A branch's source as input and its outputs as outputs."""
    source = source_dataset(task, connections)
    facets, input_facets = _quality_facets(result)
    inputs = [
        InputDataset(
            namespace=source.namespace,
            name=source.name,
            facets={**_schema_facet(_source_columns(task, connections)), **facets},
            inputFacets=input_facets,
        )
    ]
    return OperatorLineage(inputs=inputs, outputs=[_output(o, connections) for o in result.outputs])


def integration_lineage(report: FinalReport, integrated: OutputDescriptor, connections: ConnectionResolver) -> OperatorLineage:
    """The branch outputs the report integrates as inputs; the manifest as output."""
    inputs: dict[DatasetName, InputDataset] = {}
    for output in report.outputs:
        name = output_dataset(output, connections)  # branches loading one table name it once
        inputs.setdefault(name, InputDataset(namespace=name.namespace, name=name.name, facets=_schema_facet(output.columns)))
    return OperatorLineage(inputs=list(inputs.values()), outputs=[_output(integrated, connections)])
