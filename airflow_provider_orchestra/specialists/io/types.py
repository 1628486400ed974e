"""Arrow type names, expected-column checks and the rejected-line record."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Union

import pyarrow as pa

from airflow_provider_orchestra.core.errors import SourceError
from airflow_provider_orchestra.core.models import ColumnInfo

TypeSpec = Union[str, pa.DataType]
ExpectedColumns = Union[Sequence[str], Mapping[str, Union[TypeSpec, None]], None]

_TIMESTAMP = re.compile(r"^timestamp\[(s|ms|us|ns)(?:,\s*tz=([^\]]+))?\]$")
_DECIMAL = re.compile(r"^decimal(?:128)?\((\d+),\s*(\d+)\)$")
_ALIASES = {
    "integer": "int64", "int": "int64", "bigint": "int64", "smallint": "int16",
    "float": "float64", "real": "float32", "number": "float64",
    "text": "string", "str": "string", "varchar": "string",
    "boolean": "bool", "date": "date32", "timestamp": "timestamp[us]",
    "timestamptz": "timestamp[us, tz=UTC]",
}


def arrow_type(spec: TypeSpec) -> pa.DataType:
    """An Arrow type from a DataType or a name such as ``int64``, ``double``,
    ``timestamp[us, tz=UTC]``, ``decimal128(12, 2)`` or a common SQL alias."""
    if isinstance(spec, pa.DataType):
        return spec
    name = str(spec).strip().lower()
    name = _ALIASES.get(name, name)
    match = _TIMESTAMP.match(name)
    if match:
        tz = match.group(2)
        return pa.timestamp(match.group(1), tz="UTC" if tz and tz.lower() == "utc" else tz)
    match = _DECIMAL.match(name)
    if match:
        return pa.decimal128(int(match.group(1)), int(match.group(2)))
    try:
        return pa.type_for_alias(name)
    except (ValueError, KeyError):
        raise SourceError(f"unknown column type {spec!r}") from None


def normalise_expected(expected: ExpectedColumns) -> dict[str, pa.DataType | None]:
    if expected is None:
        return {}
    if isinstance(expected, Mapping):
        return {str(k): (None if v is None else arrow_type(v)) for k, v in expected.items()}
    if isinstance(expected, str):
        return {expected: None}
    return {str(name): None for name in expected}


def check_schema(
    schema: pa.Schema, expected: dict[str, pa.DataType | None], where: str
) -> pa.Schema:
    """Return the schema batches will have after applying expected types.

    Missing columns raise SourceError naming them and what was found.
    """
    if not expected:
        return schema
    missing = [name for name in expected if schema.get_field_index(name) < 0]
    if missing:
        raise SourceError(
            f"{where}: wrong schema, missing expected column(s) {missing}; found {schema.names}"
        )
    fields = []
    for field in schema:
        wanted = expected.get(field.name)
        fields.append(field.with_type(wanted) if wanted is not None else field)
    return pa.schema(fields, metadata=schema.metadata)


def conform(batch: pa.RecordBatch, schema: pa.Schema, where: str) -> pa.RecordBatch:
    """Cast ``batch`` to ``schema`` (a no-op when it already matches)."""
    if batch.schema.equals(schema, check_metadata=False):
        return batch
    try:
        return batch.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SourceError(f"{where}: wrong schema, cannot convert to {schema}: {exc}") from None


def type_name(data_type: pa.DataType) -> str:
    return str(data_type)


INVALID_UTF8_REASON = "invalid UTF-8"
"""Prefix of the reason of a line or row whose text is not valid UTF-8: it is rejected,
never copied into a string column."""


def columns_of(schema: pa.Schema) -> list[ColumnInfo]:
    """A schema as the small column list descriptors carry."""
    return [ColumnInfo(name=field.name, type=type_name(field.type)) for field in schema]


MISFIT_REASON = "does not fit the schema"
"""Prefix of the reason of a line that parsed but whose values do not fit the columns
(as opposed to a line that is not valid JSON/CSV at all)."""


@dataclass(frozen=True)
class RejectedLine:
    """A line a source could not parse, kept for the quarantine file.

    ``line`` is 1-based and counts from where the read started (the file start unless
    an incremental read resumed from a byte offset); ``offset`` is the absolute byte
    offset of the line in the file, when known.
    """

    line: int | None
    offset: int | None
    reason: str
    raw: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


REJECTED_SCHEMA = pa.schema(
    [("line", pa.int64()), ("offset", pa.int64()), ("reason", pa.string()), ("raw", pa.string())]
)


def rejected_table(rejected: Sequence[RejectedLine]) -> pa.Table:
    return pa.Table.from_pylist([r.as_dict() for r in rejected], schema=REJECTED_SCHEMA)
