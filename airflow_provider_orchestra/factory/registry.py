"""Registered agent templates: the only things the factory can ever instantiate.

A template is a callable ``template(spec: AgentSpecification, lease: Lease) -> agent``
(usually a class) registered in code. Configuration may name an agent type or a template
set, never a class path: nothing here imports a name taken from config.
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_orchestra.core.errors import AgentCreationError, OrchestraError
from airflow_provider_orchestra.core.models import ResourceRequest
from airflow_provider_orchestra.factory.capabilities import (
    Capability,
    capability_names,
    parse_capabilities,
)

if TYPE_CHECKING:
    from airflow_provider_orchestra.factory.ledger import Lease
    from airflow_provider_orchestra.factory.specification import AgentSpecification

AgentTemplate = Callable[["AgentSpecification", "Lease"], Any]

_AGENT_TYPE_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")


class UnknownAgentTypeError(AgentCreationError, LookupError):
    """No template is registered under this agent type."""

    def __str__(self) -> str:  # LookupError would quote the message
        return str(self.args[0]) if self.args else ""


class TemplateRegistrationError(OrchestraError, ValueError):
    """A template cannot be registered (bad name, not callable, taken, no capabilities)."""


class UnknownTemplateSetError(OrchestraError, LookupError):
    """No template set of that name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class TemplateEntry:
    agent_type: str
    template: AgentTemplate
    capabilities: frozenset[Capability]
    resources: ResourceRequest = field(default_factory=ResourceRequest)
    description: str = ""
    specialists: frozenset[str] = frozenset()
    """The workflow specialists (core.specialists) this template can run; empty: any."""

    def covers(self, required: Iterable[Capability]) -> bool:
        return frozenset(required) <= self.capabilities

    def runs(self, specialist: str | None) -> bool:
        return specialist is None or not self.specialists or specialist in self.specialists


class TemplateRegistry:
    """Agent templates by agent type. Thread-safe."""

    def __init__(self) -> None:
        self._entries: dict[str, TemplateEntry] = {}
        self._loaded_sets: set[str] = set()
        self._lock = threading.RLock()

    def register_agent_template(
        self,
        agent_type: str,
        template: AgentTemplate,
        capabilities: Iterable[Capability | str],
        resources: ResourceRequest | None = None,
        *,
        description: str = "",
        specialists: Iterable[str] = (),
        replace: bool = False,
    ) -> TemplateEntry:
        """Register ``template`` for ``agent_type``; ``specialists`` limits it to branches
        of those workflow specialists (default: any).

        Registering the same template again is a no-op; a different template under a
        taken name needs ``replace=True``.
        """
        if not isinstance(agent_type, str) or not _AGENT_TYPE_PATTERN.match(agent_type):
            raise TemplateRegistrationError(
                f"invalid agent type {agent_type!r}: use a letter followed by letters, "
                "digits or underscores"
            )
        if isinstance(template, str) or not callable(template):
            raise TemplateRegistrationError(
                f"template for {agent_type!r} must be a class or callable registered in "
                f"code, got {type(template).__name__}; class paths are never imported"
            )
        caps = parse_capabilities(capabilities)
        if not caps:
            raise TemplateRegistrationError(f"template {agent_type!r} declares no capabilities")
        entry = TemplateEntry(
            agent_type=agent_type,
            template=template,
            capabilities=caps,
            resources=resources if resources is not None else ResourceRequest(),
            description=description,
            specialists=frozenset([specialists] if isinstance(specialists, str) else specialists),
        )
        with self._lock:
            existing = self._entries.get(agent_type)
            if existing is not None and not replace:
                if existing == entry:
                    return existing
                raise TemplateRegistrationError(
                    f"agent type {agent_type!r} is already registered with a different "
                    "template; pass replace=True to replace it"
                )
            self._entries[agent_type] = entry
        return entry

    def unregister(self, agent_type: str) -> None:
        with self._lock:
            self._entries.pop(agent_type, None)

    def get(self, agent_type: str) -> TemplateEntry:
        """The entry of ``agent_type``; raises UnknownAgentTypeError listing the known."""
        with self._lock:
            entry = self._entries.get(agent_type)
            if entry is None:
                known = ", ".join(sorted(self._entries)) or "none"
                raise UnknownAgentTypeError(
                    f"no agent template registered for agent type {agent_type!r}; "
                    f"registered: {known}"
                )
            return entry

    def __contains__(self, agent_type: object) -> bool:
        return agent_type in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def agent_types(self) -> list[str]:
        with self._lock:
            return sorted(self._entries)

    def entries(self) -> list[TemplateEntry]:
        with self._lock:
            return [self._entries[name] for name in sorted(self._entries)]

    def candidates_for(self, required: Iterable[Capability], specialist: str | None = None) -> list[TemplateEntry]:
        """Templates whose capabilities cover every required one (and that run
        ``specialist``, when given), by agent type."""
        needed = frozenset(required)
        return [entry for entry in self.entries() if entry.covers(needed) and entry.runs(specialist)]

    def load_template_set(self, name: str) -> None:
        """Register a named set of templates once (see :func:`register_template_set`)."""
        loader = _TEMPLATE_SETS.get(name)
        if loader is None:
            known = ", ".join(sorted(_TEMPLATE_SETS))
            raise UnknownTemplateSetError(f"unknown template set {name!r}; known sets: {known}")
        with self._lock:
            if name in self._loaded_sets:
                return
            loader(self)
            self._loaded_sets.add(name)

    def describe(self) -> list[dict[str, Any]]:
        """JSON-friendly listing, e.g. for a connection test or a UI."""
        return [
            {
                "agent_type": e.agent_type,
                "capabilities": capability_names(e.capabilities),
                "resources": e.resources.model_dump(),
                "description": e.description,
                "specialists": sorted(e.specialists),
            }
            for e in self.entries()
        ]


def _load_default_templates(registry: TemplateRegistry) -> None:
    # Imported here: the specialists pull in pyarrow and LangGraph, which the factory
    # itself must not need.
    module = importlib.import_module("airflow_provider_orchestra.specialists.templates")
    module.register_default_templates(registry)


_TEMPLATE_SETS: dict[str, Callable[[TemplateRegistry], None]] = {"default": _load_default_templates}


def register_template_set(name: str, loader: Callable[[TemplateRegistry], None]) -> None:
    """Make ``loader`` available as template set ``name`` (for ``load_template_set``)."""
    if not callable(loader):
        raise TemplateRegistrationError(f"template set {name!r} needs a callable loader")
    _TEMPLATE_SETS[name] = loader


def template_sets() -> list[str]:
    return sorted(_TEMPLATE_SETS)


default_registry = TemplateRegistry()
"""The process-wide registry the factory uses unless given another."""


def register_agent_template(
    agent_type: str,
    template: AgentTemplate,
    capabilities: Iterable[Capability | str],
    resources: ResourceRequest | None = None,
    *,
    description: str = "",
    specialists: Iterable[str] = (),
    replace: bool = False,
) -> TemplateEntry:
    """Register a template on :data:`default_registry`."""
    return default_registry.register_agent_template(
        agent_type, template, capabilities, resources, description=description, specialists=specialists, replace=replace
    )


def load_template_set(name: str, registry: TemplateRegistry | None = None) -> TemplateRegistry:
    """Load template set ``name`` into ``registry`` (default: :data:`default_registry`)."""
    target = default_registry if registry is None else registry
    target.load_template_set(name)
    return target
