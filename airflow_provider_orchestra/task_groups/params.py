"""The run's input as Airflow Params: one Param per WorkflowConfig field, each with the
JSON schema pydantic derives from the model, so the trigger form shows the fields with
their types, limits and defaults.

The form's checks are a convenience; the analyzer validates the whole config with the
pydantic model (cross-field rules, unknown keys) and fails the run's first task naming the
offending field.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from airflow.sdk import Param

from airflow_provider_orchestra.core.models import WorkflowConfig


def _inline_refs(schema: Any, defs: Mapping[str, Any]) -> Any:
    """The schema with every local ``#/$defs/X`` reference replaced by its definition
    (the config models are not recursive), so each Param carries a self-contained schema."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = _inline_refs(copy.deepcopy(defs[ref.removeprefix("#/$defs/")]), defs)
            rest = {k: _inline_refs(v, defs) for k, v in schema.items() if k != "$ref"}
            return {**target, **rest}
        return {k: _inline_refs(v, defs) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_inline_refs(v, defs) for v in schema]
    return schema


JSON_SCHEMA_DIALECT = "http://json-schema.org/draft-07/schema#"
"""Airflow checks every Param's schema and default each time it serialises a task; the
draft-07 meta-schema makes that several times cheaper than 2020-12's dynamic references,
and pydantic's schemas of these models use nothing newer."""

SHALLOW_BATCH_OPTIONS = ("ingestion", "validation", "transformation", "aggregation")
"""Per-specialist options of a batch: objects in the form (their full rules are checked by
the analyzer), which keeps the form's schema, and Airflow's per-task checks of it, small."""


def config_field_schemas() -> dict[str, dict[str, Any]]:
    """Field name (as written in a config) -> self-contained JSON schema."""
    full = WorkflowConfig.model_json_schema(by_alias=True)
    defs = dict(full.get("$defs", {}))
    batch = copy.deepcopy(defs["BatchSpec"])
    for option in SHALLOW_BATCH_OPTIONS:
        described = defs.get(batch["properties"][option].get("$ref", "").removeprefix("#/$defs/"), {})
        batch["properties"][option] = {
            "type": "object",
            "title": batch["properties"][option].get("title", option.title()),
            "description": described.get("description") or f"{option} options (checked by the analyzer)",
        }
    defs["BatchSpec"] = batch
    return {
        name: {"$schema": JSON_SCHEMA_DIALECT, **_inline_refs(schema, defs)} for name, schema in full["properties"].items()
    }


def workflow_params(
    defaults: Mapping[str, Any] | WorkflowConfig, fields: Iterable[str] | None = None
) -> dict[str, Param]:
    """Params for a DAG whose runs take a WorkflowConfig, defaulting to ``defaults``.

    ``defaults`` must itself be a valid config (it is validated here, at parse time, with
    no I/O), so the form opens on something that runs. ``fields`` limits the form to some
    top-level fields (e.g. the policies), when the DAG passes the rest to
    ``orchestra_workflow(config=...)``.
    """
    if isinstance(defaults, WorkflowConfig):
        config = defaults
    else:
        config = WorkflowConfig.model_validate(defaults)
    values = config.model_dump(mode="json", by_alias=True)
    schemas = config_field_schemas()
    wanted = list(schemas) if fields is None else list(fields)
    unknown = sorted(set(wanted) - set(schemas))
    if unknown:
        raise ValueError(f"workflow_params: {unknown} are not WorkflowConfig fields")
    params: dict[str, Param] = {}
    for name in wanted:
        schema = schemas[name]
        schema = dict(schema)
        schema.pop("default", None)
        description = schema.pop("description", None) or _describe(name)
        params[name] = Param(values[name], description=description, schema=schema)
    return params


_DESCRIPTIONS = {
    "workflow_id": "Name of the workflow; outputs go to <output_root>/<workflow_id>/<run_id>/.",
    "batches": "The data batch queue: one branch per batch (source, type, options).",
    "sync_points": "Named sets of branch ids the sync point waits for, in dependency order.",
    "branch_dependencies": "branch id -> branch ids it depends on.",
    "sync": "Quorum, conditional and overall timeouts of the sync point, seconds between looks.",
    "quality": "Quality gate thresholds: approve, and critical failure.",
    "iteration_limit": "Rounds a run may take (bounded by the rounds laid out in the DAG).",
    "record_batch_rows": "Rows per Arrow record batch the specialists stream.",
    "storage": "Data roots sources must lie under, and the output root.",
    "interrupt_before": "Native runtime only; in Airflow approvals are laid out with require_approval.",
}


def _describe(name: str) -> str:
    return _DESCRIPTIONS.get(name, name.replace("_", " "))
