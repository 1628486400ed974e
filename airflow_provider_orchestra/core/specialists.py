"""The workflow's specialists by name: the five built-in ones of the reference design and
those a DAG author registers, in code or through the ``orchestra.specialists`` entry point
group of an installed package.

This registry holds what the rest of the workflow keys on: a specialist's name (a routing
target, a graph node, an Airflow routing task + mapped task), its merge category and the
capabilities its branches ask of an agent. The code that does the work registers itself as
an agent-factory template (``airflow_provider_orchestra.specialists``).

Entry points are discovered once per process, on first use of the registry. Loading one
imports the module it names, whose ``@orchestra_specialist`` definitions register
themselves; nothing here reads data, a database or the network.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_orchestra.core.capabilities import Capability, capability_names, parse_capabilities
from airflow_provider_orchestra.core.errors import OrchestraError
from airflow_provider_orchestra.core.models import CATEGORIES, SPECIALISTS, Category

ENTRY_POINT_GROUP = "orchestra.specialists"

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")


class SpecialistRegistrationError(OrchestraError, ValueError):
    """A specialist cannot be registered (bad name, taken, unknown category or capability),
    or an entry point of ``orchestra.specialists`` failed to load."""


class UnknownSpecialistError(OrchestraError, LookupError, ValueError):
    """No specialist is registered under this name."""

    def __str__(self) -> str:  # LookupError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class SpecialistInfo:
    """A specialist as the workflow sees it.

    :param name: routing target, graph node and Airflow task id.
    :param category: which merge category its results join.
    :param capabilities: what its branches ask of an agent (the factory picks a template
        covering them that runs this specialist).
    """

    name: str
    category: Category
    capabilities: frozenset[Capability]
    description: str = ""
    builtin: bool = False


BUILTIN_SPECIALISTS: tuple[SpecialistInfo, ...] = (
    SpecialistInfo(
        SPECIALISTS[0], "ingestion", frozenset({Capability.DATA_INGESTION}),
        "streaming ingestion (incremental by offset or watermark)", True,
    ),
    SpecialistInfo(
        SPECIALISTS[1], "validation", frozenset({Capability.DATA_VALIDATION}),
        "batch validation against column rules, with anomaly detection", True,
    ),
    SpecialistInfo(
        SPECIALISTS[2], "transformation", frozenset({Capability.DATA_TRANSFORMATION}),
        "schema mapping and derived columns to partitioned Parquet", True,
    ),
    SpecialistInfo(
        SPECIALISTS[3], "aggregation", frozenset({Capability.DATA_AGGREGATION}),
        "group-by aggregation for high-priority batches", True,
    ),
    SpecialistInfo(
        SPECIALISTS[4], "aggregation",
        frozenset({Capability.DATA_AGGREGATION, Capability.QUALITY_MONITORING}),
        "group-by aggregation that measures its input's completeness", True,
    ),
)
"""The reference design's five, in the order of core.models.SPECIALISTS."""


class SpecialistRegistry:
    """Specialists by name, the built-in five first, then in order of registration.
    Thread-safe."""

    def __init__(self, *, discover: bool = True) -> None:
        self._lock = threading.RLock()
        self._infos: dict[str, SpecialistInfo] = {s.name: s for s in BUILTIN_SPECIALISTS}
        self._discovered = not discover
        self._discovering = False

    # ------------------------------------------------------------------ registration

    def register(
        self,
        name: str,
        *,
        category: str,
        capabilities: Iterable[Capability | str],
        description: str = "",
        replace: bool = False,
    ) -> SpecialistInfo:
        """Register a specialist. Registering the same again is a no-op; different
        settings under a taken name need ``replace=True``; a built-in is never replaced."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise SpecialistRegistrationError(
                f"invalid specialist name {name!r}: use a letter followed by up to 62 letters, "
                "digits or underscores (it becomes a task id and a graph node)"
            )
        if category not in CATEGORIES:
            raise SpecialistRegistrationError(
                f"specialist {name!r}: unknown merge category {category!r}; choose from {list(CATEGORIES)}"
            )
        try:
            caps = parse_capabilities(capabilities)
        except ValueError as exc:
            raise SpecialistRegistrationError(f"specialist {name!r}: {exc}") from None
        if not caps:
            raise SpecialistRegistrationError(f"specialist {name!r} declares no capabilities")
        info = SpecialistInfo(name, category, caps, description)  # type: ignore[arg-type]
        with self._lock:
            existing = self._infos.get(name)
            if existing is not None:
                if existing.builtin:
                    raise SpecialistRegistrationError(f"{name!r} is a built-in specialist; choose another name")
                if existing != info and not replace:
                    raise SpecialistRegistrationError(
                        f"specialist {name!r} is already registered with other settings "
                        f"({existing.category}, {capability_names(existing.capabilities)}); "
                        "pass replace=True to replace it"
                    )
            self._infos[name] = info
        return info

    def unregister(self, name: str) -> None:
        """Forget a registered specialist (built-ins stay)."""
        with self._lock:
            info = self._infos.get(name)
            if info is not None and not info.builtin:
                del self._infos[name]

    # ------------------------------------------------------------------ lookups

    def names(self) -> tuple[str, ...]:
        self._ensure_discovered()
        with self._lock:
            return tuple(self._infos)

    def infos(self) -> tuple[SpecialistInfo, ...]:
        self._ensure_discovered()
        with self._lock:
            return tuple(self._infos.values())

    def get(self, name: str) -> SpecialistInfo:
        """The specialist ``name``; UnknownSpecialistError lists the registered ones."""
        self._ensure_discovered()
        with self._lock:
            info = self._infos.get(name)
            if info is None:
                raise UnknownSpecialistError(
                    f"unknown specialist {name!r}; registered: {', '.join(self._infos)} "
                    f"(register one with @orchestra_specialist, or install a package with an "
                    f"{ENTRY_POINT_GROUP!r} entry point)"
                )
            return info

    def __contains__(self, name: object) -> bool:
        self._ensure_discovered()
        return name in self._infos

    # ------------------------------------------------------------------ entry points

    def _ensure_discovered(self) -> None:
        if self._discovered or self._discovering:
            return
        with self._lock:
            if self._discovered or self._discovering:
                return
            self._discovering = True  # a loading module registers through this registry
            try:
                self._load_entry_points()
                self._discovered = True
            finally:
                self._discovering = False

    def _load_entry_points(self) -> None:
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                ep.load()
            except Exception as exc:
                dist = getattr(getattr(ep, "dist", None), "name", None) or "unknown package"
                raise SpecialistRegistrationError(
                    f"entry point {ep.name!r} = {ep.value!r} of group {ENTRY_POINT_GROUP!r} "
                    f"({dist}) failed to load: {type(exc).__name__}: {exc}"
                ) from exc
            if ep.name not in self._infos:
                raise SpecialistRegistrationError(
                    f"entry point {ep.name!r} = {ep.value!r} of group {ENTRY_POINT_GROUP!r} loaded "
                    f"but registered no specialist named {ep.name!r}"
                )


class _CategoryView(Mapping[str, Category]):
    """specialist name -> merge category, live over the registry."""

    def __init__(self, registry: SpecialistRegistry) -> None:
        self._registry = registry

    def __getitem__(self, name: str) -> Category:
        try:
            return self._registry.get(name).category
        except UnknownSpecialistError:
            raise KeyError(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._registry.names())

    def __len__(self) -> int:
        return len(self._registry.names())


specialist_registry = SpecialistRegistry()
"""The process-wide registry every runtime reads."""

CATEGORY_OF: Mapping[str, Category] = _CategoryView(specialist_registry)
"""Merge category of every registered specialist (a live view)."""


def register_specialist(
    name: str,
    *,
    category: str,
    capabilities: Iterable[Capability | str],
    description: str = "",
    replace: bool = False,
) -> SpecialistInfo:
    """Register a specialist's name on :data:`specialist_registry` (see
    :meth:`SpecialistRegistry.register`). DAG authors use ``@orchestra_specialist``,
    which also registers the code."""
    return specialist_registry.register(
        name, category=category, capabilities=capabilities, description=description, replace=replace
    )


def specialist_names() -> tuple[str, ...]:
    """Every registered specialist, the built-in five first."""
    return specialist_registry.names()


def specialist_info(name: str) -> SpecialistInfo:
    return specialist_registry.get(name)


def category_of(name: str) -> Category:
    return specialist_registry.get(name).category


def describe_specialists() -> list[dict[str, Any]]:
    """JSON-friendly listing (CLI, docs)."""
    return [
        {
            "name": s.name,
            "category": s.category,
            "capabilities": capability_names(s.capabilities),
            "builtin": s.builtin,
            "description": s.description,
        }
        for s in specialist_registry.infos()
    ]
