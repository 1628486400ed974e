"""The agent factory: requirements -> specification -> lease -> agent -> release.

Every specification, allocation, creation, release, outcome and error is appended to
``AgentFactory.timeline`` as a dict with an ISO timestamp, and to every
:meth:`AgentFactory.recording` open in the context that caused it (so a branch gets back
exactly its own events, also when branches share a factory across threads).
"""

from __future__ import annotations

import contextvars
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow_provider_orchestra.core.errors import (
    AgentCreationError,
    NoSuitableAgentError,
    OrchestraError,
    ResourceUnavailableError,
)
from airflow_provider_orchestra.factory.capabilities import capability_names
from airflow_provider_orchestra.factory.history import PerformanceHistory, TemplateStats
from airflow_provider_orchestra.factory.ledger import (
    DEFAULT_LEASE_TTL_SECONDS,
    Lease,
    LeaseLostError,
    LedgerCapacity,
    ResourceLedger,
)
from airflow_provider_orchestra.factory.registry import (
    TemplateRegistry,
    UnknownAgentTypeError,
    default_registry,
)
from airflow_provider_orchestra.factory.selection import CandidateScore, score_candidates
from airflow_provider_orchestra.factory.specification import AgentSpecification, TaskRequirements, specify
from airflow_provider_orchestra.factory.store import DEFAULT_NAMESPACE, open_store

# A background heartbeat renews a lease this many times per TTL, so one missed beat
# (a slow store) does not lose it.
HEARTBEATS_PER_TTL = 3

# (factory, event list) pairs of the recordings open in the current context.
_RECORDINGS: contextvars.ContextVar[tuple[tuple[AgentFactory, list[dict[str, Any]]], ...]] = contextvars.ContextVar(
    "orchestra_factory_recordings", default=()
)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def new_agent_id(agent_type: str, created_at: datetime) -> str:
    return f"{agent_type}_{created_at:%Y%m%dT%H%M%SZ}_{uuid.uuid4().hex[:8]}"


class _LeaseKeeper:
    """Heartbeats a lease from a daemon thread while its holder works."""

    def __init__(self, factory: AgentFactory, lease: Lease):
        self._factory = factory
        self._lease = lease
        self._stop = threading.Event()
        # Run in a copy of the holder's context: its recordings get the heartbeat's errors.
        self._thread = threading.Thread(
            target=contextvars.copy_context().run,
            args=(self._run,),
            name=f"lease-keeper-{lease.lease_id[:8]}",
            daemon=True,
        )

    def start(self) -> _LeaseKeeper:
        self._thread.start()
        return self

    def _run(self) -> None:
        interval = self._lease.ttl_seconds / HEARTBEATS_PER_TTL
        while not self._stop.wait(interval):
            try:
                self._lease = self._factory.ledger.heartbeat(self._lease)
            except LeaseLostError as exc:
                self._factory._error("heartbeat", exc, holder=self._lease.holder)
                return
            except OrchestraError as exc:
                # A store that is briefly away may come back before the lease runs out.
                self._factory._error("heartbeat", exc, holder=self._lease.holder)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class AgentFactory:
    """Creates agents from registered templates within a shared resource ledger."""

    def __init__(
        self,
        registry: TemplateRegistry,
        ledger: ResourceLedger,
        history: PerformanceHistory,
    ):
        self.registry = registry
        self.ledger = ledger
        self.history = history
        self.timeline: list[dict[str, Any]] = []

    @classmethod
    def from_url(
        cls,
        url_or_path: str | Path | None = None,
        *,
        capacity: LedgerCapacity | Mapping[str, Any] | None = None,
        template_set: str | None = "default",
        namespace: str = DEFAULT_NAMESPACE,
        registry: TemplateRegistry | None = None,
    ) -> AgentFactory:
        """A factory whose ledger and history share one store (a SQLite path,
        ``sqlite:///path`` or ``postgresql://`` URL), over ``registry`` (default: the
        process-wide one) with ``template_set`` loaded into it (None: load nothing)."""
        if capacity is not None and not isinstance(capacity, LedgerCapacity):
            capacity = LedgerCapacity.model_validate(capacity)
        registry = default_registry if registry is None else registry
        if template_set is not None:
            registry.load_template_set(template_set)
        store = open_store(url_or_path, namespace)
        return cls(registry, ResourceLedger(store, capacity), PerformanceHistory(store))

    def __repr__(self) -> str:
        return f"AgentFactory({self.ledger.store!r}, templates={self.registry.agent_types()})"

    # ------------------------------------------------------------------ timeline

    def _event(self, event: str, **details: Any) -> dict[str, Any]:
        entry = {"timestamp": _now().isoformat(), "event": event, **details}
        self.timeline.append(entry)
        for factory, events in _RECORDINGS.get():
            if factory is self:
                events.append(entry)
        return entry

    @contextmanager
    def recording(self) -> Iterator[list[dict[str, Any]]]:
        """A list that receives, in order, the events this factory emits for work done in
        the current context (thread, or asyncio task) while the block runs, including the
        heartbeats of leases taken inside it."""
        events: list[dict[str, Any]] = []
        token = _RECORDINGS.set((*_RECORDINGS.get(), (self, events)))
        try:
            yield events
        finally:
            _RECORDINGS.reset(token)

    def _error(self, stage: str, exc: BaseException, **details: Any) -> None:
        self._event("agent_factory_error", stage=stage, error_type=type(exc).__name__, error=str(exc), **details)

    # ------------------------------------------------------------------ steps

    def rank(self, requirements: TaskRequirements) -> list[CandidateScore]:
        """Every template able to meet ``requirements``, best first."""
        candidates = self.registry.candidates_for(requirements.required, requirements.specialist)
        rates = self.history.success_rates(c.agent_type for c in candidates)
        free = self.ledger.snapshot().free
        return score_candidates(self.registry, requirements.required, rates, free, requirements.specialist)

    def generate_spec(
        self, requirements: TaskRequirements | Mapping[str, Any], context: Mapping[str, Any] | None = None
    ) -> AgentSpecification:
        """Select the best template for ``requirements`` and specify an agent of it.

        ``context`` travels into the spec as ``task_context``; its ``monitoring_required``
        (default True) sets ``monitoring_enabled``. Raises NoSuitableAgentError.
        """
        context = dict(context or {})
        try:
            if not isinstance(requirements, TaskRequirements):
                requirements = TaskRequirements.model_validate(requirements)
            ranked = self.rank(requirements)
        except NoSuitableAgentError as exc:
            self._error("select", exc)
            raise
        best = ranked[0]
        entry = self.registry.get(best.agent_type)
        created_at = _now()
        spec = specify(
            entry.agent_type,
            entry.capabilities,
            entry.resources,
            requirements,
            agent_id=new_agent_id(entry.agent_type, created_at),
            context=context,
            created_at=created_at,
        )
        self._event(
            "agent_specified",
            agent_type=spec.agent_type,
            agent_id=spec.agent_id,
            capabilities=capability_names(spec.capabilities),
            score=best.score,
            candidates={c.agent_type: round(c.score, 6) for c in ranked},
        )
        return spec

    def allocate(
        self, spec: AgentSpecification, holder: str, ttl_seconds: float = DEFAULT_LEASE_TTL_SECONDS
    ) -> Lease:
        """Reserve the spec's resources for ``holder`` (idempotent per holder).
        Raises ResourceUnavailableError."""
        try:
            lease = self.ledger.allocate(
                spec.resource_requirements, holder, ttl_seconds, agent_type=spec.agent_type
            )
        except ResourceUnavailableError as exc:
            self._error("allocate", exc, agent_type=spec.agent_type, holder=holder)
            raise
        self._event(
            "resources_allocated",
            agent_type=spec.agent_type,
            agent_id=spec.agent_id,
            holder=holder,
            lease_id=lease.lease_id,
            cpu=lease.cpu,
            memory_mb=lease.memory_mb,
            expires_at=lease.expires_at.isoformat(),
        )
        return lease

    def instantiate(self, spec: AgentSpecification, lease: Lease) -> Any:
        """Build the agent from its registered template. On any failure the lease is
        released and AgentCreationError (UnknownAgentTypeError for an unregistered type)
        is raised."""
        try:
            entry = self.registry.get(spec.agent_type)
        except UnknownAgentTypeError as exc:
            self._error("instantiate", exc, agent_type=spec.agent_type, agent_id=spec.agent_id)
            self.release(lease)
            raise
        try:
            agent = entry.template(spec, lease)
        except Exception as exc:
            error = AgentCreationError(
                f"template {spec.agent_type!r} failed to create agent {spec.agent_id}: "
                f"{type(exc).__name__}: {exc}"
            )
            self._error("instantiate", error, agent_type=spec.agent_type, agent_id=spec.agent_id)
            self.release(lease)
            raise error from exc
        self._event(
            "agent_created",
            agent_type=spec.agent_type,
            agent_id=spec.agent_id,
            holder=lease.holder,
            lease_id=lease.lease_id,
        )
        return agent

    def release(self, lease: Lease) -> bool:
        """Give the lease back (idempotent)."""
        released = self.ledger.release(lease)
        self._event(
            "resources_released",
            holder=lease.holder,
            lease_id=lease.lease_id,
            agent_type=lease.agent_type,
            was_held=released,
        )
        return released

    def record_outcome(
        self, agent_type: str, success: bool, seconds: float, quality: float | None = None
    ) -> TemplateStats:
        stats = self.history.record(agent_type, success, seconds, quality)
        self._event(
            "outcome_recorded",
            agent_type=agent_type,
            success=success,
            seconds=seconds,
            quality=quality,
            success_rate=stats.success_rate,
        )
        return stats

    @contextmanager
    def agent_for(
        self,
        requirements: TaskRequirements | Mapping[str, Any],
        holder: str,
        context: Mapping[str, Any] | None = None,
        *,
        ttl_seconds: float = DEFAULT_LEASE_TTL_SECONDS,
        keep_alive: bool = True,
    ) -> Iterator[Any]:
        """spec -> allocate -> instantiate -> yield the agent -> release (also on exception).

        The agent was built as ``template(spec, lease)``, so it carries both. While the
        block runs the lease is heartbeated in the background (``keep_alive``). If the block
        raises, a failed run of the template is recorded; after a block that returns, call
        :meth:`record_outcome` with what the agent achieved.
        """
        spec = self.generate_spec(requirements, context)
        lease = self.allocate(spec, holder, ttl_seconds)
        agent = self.instantiate(spec, lease)
        started = time.monotonic()
        keeper = _LeaseKeeper(self, lease).start() if keep_alive else None
        try:
            yield agent
        except Exception as exc:
            self._error("run", exc, agent_type=spec.agent_type, agent_id=spec.agent_id)
            # A run stopped from outside (e.g. a straggler cancelled at quorum) says
            # nothing about the template, so it does not count against its success rate.
            if getattr(exc, "counts_against_template", True):
                try:
                    self.record_outcome(spec.agent_type, False, time.monotonic() - started)
                except OrchestraError as record_exc:
                    self._error("record", record_exc, agent_type=spec.agent_type)
            raise
        finally:
            if keeper is not None:
                keeper.stop()
            self.release(lease)
