"""What an agent can do (see :mod:`airflow_provider_orchestra.core.capabilities`, where the
names live so that the specialist registry in core/ can declare them too)."""

from airflow_provider_orchestra.core.capabilities import (
    Capability,
    UnknownCapabilityError,
    capability_names,
    parse_capabilities,
)

__all__ = ["Capability", "UnknownCapabilityError", "capability_names", "parse_capabilities"]
