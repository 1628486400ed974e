"""Errors raised by the orchestra. Every message names its cause."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class OrchestraError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(OrchestraError, ValueError):
    """A workflow config (CLI file, DAG run conf, Params) is invalid."""

    def __init__(self, message: str, fields: list[str] | None = None):
        super().__init__(message)
        self.fields = fields or []

    @classmethod
    def from_validation(cls, exc: ValidationError) -> ConfigError:
        lines, fields = [], []
        for err in exc.errors():
            path = ".".join(str(p) for p in err["loc"]) or "<config>"
            fields.append(path)
            lines.append(f"{path}: {err['msg']}")
        return cls("invalid workflow config: " + "; ".join(lines), fields)


class CyclicDependencyError(ConfigError):
    """branch_dependencies contains a cycle."""


class SourceError(OrchestraError):
    """A source cannot be read: missing, empty, outside the roots, wrong schema."""


class SinkError(OrchestraError):
    """A sink could not be written; nothing half-written was left behind."""


class SpecialistError(OrchestraError):
    """A specialist failed after its own retries."""


# The agent factory's three errors (their names come from the reference design).
class NoSuitableAgentError(OrchestraError):
    """No registered template covers the required capabilities."""


class ResourceUnavailableError(OrchestraError):
    """The resource pool cannot satisfy a request."""


class AgentCreationError(OrchestraError):
    """A template failed to instantiate; its resources were released."""


class LedgerUnavailableError(OrchestraError):
    """The resource ledger / performance store cannot be reached."""
