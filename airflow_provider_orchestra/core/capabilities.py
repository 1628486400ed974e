"""What an agent can do. Templates declare capabilities; requirements and specialists ask for them."""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

from airflow_provider_orchestra.core.errors import OrchestraError


class UnknownCapabilityError(OrchestraError, ValueError):
    """A capability name that is not one of :class:`Capability`."""


class Capability(str, Enum):
    DATA_INGESTION = "data_ingestion"
    DATA_VALIDATION = "data_validation"
    DATA_TRANSFORMATION = "data_transformation"
    DATA_AGGREGATION = "data_aggregation"
    QUALITY_MONITORING = "quality_monitoring"
    PIPELINE_COORDINATION = "pipeline_coordination"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def _missing_(cls, value: object) -> Capability:
        # Accept the member name or any letter case ("DATA_INGESTION", "Data_Ingestion");
        # anything else is refused with the list of known capabilities.
        if isinstance(value, str):
            key = value.strip().lower()
            for member in cls:
                if member.value == key:
                    return member
        known = ", ".join(member.value for member in cls)
        raise UnknownCapabilityError(f"unknown capability {value!r}; known capabilities: {known}")

    @classmethod
    def parse(cls, value: str | Capability) -> Capability:
        """One capability from its value or name; raises UnknownCapabilityError."""
        return value if isinstance(value, cls) else cls(value)


def parse_capabilities(values: Iterable[str | Capability]) -> frozenset[Capability]:
    """A set of capabilities from names or members; raises UnknownCapabilityError."""
    if isinstance(values, (str, Capability)):
        values = [values]
    return frozenset(Capability.parse(v) for v in values)


def capability_names(capabilities: Iterable[Capability]) -> list[str]:
    """Sorted values, for messages and stable output."""
    return sorted(c.value for c in capabilities)
