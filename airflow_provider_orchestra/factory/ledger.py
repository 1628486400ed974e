"""The resource ledger: how much cpu, memory and how many agents the factory may hand out,
and who holds what, shared by every process that opens the same store.

A holder (for an Airflow mapped task: ``dag_id/run_id/task_id/map_index``) holds at most
one lease. Leases expire unless heartbeated, so a killed process gives its resources back
after its TTL; expired leases stop counting at once and are deleted by the next
allocation or :meth:`ResourceLedger.reap`.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from airflow_provider_orchestra.core.errors import LedgerUnavailableError, ResourceUnavailableError
from airflow_provider_orchestra.core.models import ResourceRequest
from airflow_provider_orchestra.factory.store import DEFAULT_NAMESPACE, Executor, Store, open_store

if TYPE_CHECKING:
    from airflow_provider_orchestra.core.analysis import ResourceSnapshot

DEFAULT_LEASE_TTL_SECONDS = 120.0
"""How long a lease outlives its last heartbeat. A holder that works longer heartbeats
(AgentFactory.agent_for does so in the background); a killed one frees its share after
at most this long."""

# Sums of floats drift; a request that fits to within this is granted.
_EPSILON = 1e-9


class LeaseLostError(ResourceUnavailableError):
    """A heartbeat found the lease gone: it expired and may have been handed to others."""


def _machine_memory_mb() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20


class LedgerCapacity(BaseModel):
    """The pool the ledger hands out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu: float = Field(gt=0)
    memory_mb: float = Field(gt=0)
    max_agents: int = Field(ge=1)

    @classmethod
    def from_machine(cls) -> LedgerCapacity:
        """This machine: every core, all physical memory, one agent per core."""
        cpus = os.cpu_count() or 1
        return cls(cpu=float(cpus), memory_mb=_machine_memory_mb(), max_agents=cpus)


class ResourceUsage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu: float
    memory_mb: float
    agents: int


class LedgerSnapshot(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    capacity: LedgerCapacity
    used: ResourceUsage
    free: ResourceUsage
    active_leases: int

    def resource_snapshot(self, **machine: Any) -> ResourceSnapshot:
        """The ledger part of core.analysis.ResourceSnapshot; ``machine`` adds the
        machine_* fields."""
        from airflow_provider_orchestra.core.analysis import ResourceSnapshot

        return ResourceSnapshot(
            cpu_capacity=self.capacity.cpu,
            memory_capacity_mb=self.capacity.memory_mb,
            max_agents=self.capacity.max_agents,
            cpu_used=self.used.cpu,
            memory_used_mb=self.used.memory_mb,
            agents_used=self.used.agents,
            **machine,
        )


class Lease(BaseModel):
    """Resources held by one holder until released or expired."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lease_id: str
    holder: str
    agent_type: str | None = None
    cpu: float
    memory_mb: float
    ttl_seconds: float
    acquired_at: datetime
    expires_at: datetime

    @property
    def resources(self) -> ResourceRequest:
        return ResourceRequest(cpu=self.cpu, memory_mb=self.memory_mb)


def _ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc)


_LEASE_COLUMNS = "lease_id, holder, agent_type, cpu, memory_mb, ttl_seconds, acquired_at, expires_at"


def _lease(row: Any) -> Lease:
    lease_id, holder, agent_type, cpu, memory_mb, ttl, acquired, expires = row
    return Lease(
        lease_id=lease_id,
        holder=holder,
        agent_type=agent_type,
        cpu=cpu,
        memory_mb=memory_mb,
        ttl_seconds=ttl,
        acquired_at=_ts(acquired),
        expires_at=_ts(expires),
    )


class ResourceLedger:
    """Allocates cpu, memory and agent slots from a shared capacity.

    ``capacity`` given: it is written to the store (every process configured alike agrees).
    Not given: the stored capacity is used, or this machine's on first use.
    """

    def __init__(self, store: Store, capacity: LedgerCapacity | None = None):
        self.store = store
        self._configured_capacity = capacity
        self._capacity_ready = False

    @classmethod
    def open(
        cls,
        url_or_path: str | Path | None = None,
        *,
        capacity: LedgerCapacity | None = None,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> ResourceLedger:
        return cls(open_store(url_or_path, namespace), capacity)

    def __repr__(self) -> str:
        return f"ResourceLedger({self.store!r})"

    # ------------------------------------------------------------------ capacity

    def _ensure_capacity(self) -> None:
        if self._capacity_ready:
            return
        wanted = self._configured_capacity
        with self.store.transaction() as execute:
            if wanted is not None:
                execute(
                    "INSERT INTO {capacity} (id, cpu, memory_mb, max_agents) VALUES (1, %s, %s, %s) "
                    "ON CONFLICT (id) DO UPDATE SET cpu = excluded.cpu, "
                    "memory_mb = excluded.memory_mb, max_agents = excluded.max_agents",
                    (wanted.cpu, wanted.memory_mb, wanted.max_agents),
                )
            else:
                machine = LedgerCapacity.from_machine()
                execute(
                    "INSERT INTO {capacity} (id, cpu, memory_mb, max_agents) VALUES (1, %s, %s, %s) "
                    "ON CONFLICT (id) DO NOTHING",
                    (machine.cpu, machine.memory_mb, machine.max_agents),
                )
        self._capacity_ready = True

    def set_capacity(self, capacity: LedgerCapacity) -> None:
        """Change the shared capacity; leases already granted stay."""
        self._configured_capacity = capacity
        self._capacity_ready = False
        self._ensure_capacity()

    @staticmethod
    def _read_capacity(execute: Executor) -> LedgerCapacity:
        row = execute("SELECT cpu, memory_mb, max_agents FROM {capacity} WHERE id = 1").fetchone()
        if row is None:
            raise LedgerUnavailableError("the ledger has no capacity row; was its table emptied?")
        return LedgerCapacity(cpu=row[0], memory_mb=row[1], max_agents=row[2])

    @property
    def capacity(self) -> LedgerCapacity:
        self._ensure_capacity()
        with self.store.transaction(write=False) as execute:
            return self._read_capacity(execute)

    # ------------------------------------------------------------------ leases

    @staticmethod
    def _usage(execute: Executor, now: float, excluding_holder: str | None = None) -> ResourceUsage:
        row = execute(
            "SELECT COALESCE(SUM(cpu), 0), COALESCE(SUM(memory_mb), 0), COUNT(*) FROM {leases} "
            "WHERE expires_at >= %s AND holder <> %s",
            (now, excluding_holder if excluding_holder is not None else ""),
        ).fetchone()
        assert row is not None
        return ResourceUsage(cpu=float(row[0]), memory_mb=float(row[1]), agents=int(row[2]))

    def allocate(
        self,
        request: ResourceRequest,
        holder: str,
        ttl_seconds: float = DEFAULT_LEASE_TTL_SECONDS,
        *,
        agent_type: str | None = None,
    ) -> Lease:
        """Reserve ``request`` for ``holder``.

        Idempotent per holder: a holder that already has a live lease gets it back with a
        fresh expiry (resized to ``request`` if that still fits), so a retried task does
        not hold twice. Raises ResourceUnavailableError naming each short resource.
        """
        if not holder:
            raise ValueError("a lease needs a non-empty holder")
        if ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds}")
        self._ensure_capacity()
        with self.store.transaction(lock=True) as execute:
            now = self.store.now(execute)
            execute("DELETE FROM {leases} WHERE expires_at < %s", (now,))
            capacity = self._read_capacity(execute)
            others = self._usage(execute, now, excluding_holder=holder)
            short = []
            if others.cpu + request.cpu > capacity.cpu + _EPSILON:
                short.append(
                    f"cpu: requested {request.cpu:g}, free {capacity.cpu - others.cpu:g} "
                    f"of {capacity.cpu:g}"
                )
            if others.memory_mb + request.memory_mb > capacity.memory_mb + _EPSILON:
                short.append(
                    f"memory_mb: requested {request.memory_mb:g}, free "
                    f"{capacity.memory_mb - others.memory_mb:g} of {capacity.memory_mb:g}"
                )
            if others.agents + 1 > capacity.max_agents:
                short.append(
                    f"agents: requested 1, free {capacity.max_agents - others.agents} "
                    f"of {capacity.max_agents}"
                )
            if short:
                raise ResourceUnavailableError(
                    f"not enough resources for {holder!r}"
                    + (f" ({agent_type})" if agent_type else "")
                    + ": "
                    + "; ".join(short)
                )
            execute(
                "INSERT INTO {leases} (" + _LEASE_COLUMNS + ") "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (holder) DO UPDATE SET agent_type = excluded.agent_type, "
                "cpu = excluded.cpu, memory_mb = excluded.memory_mb, "
                "ttl_seconds = excluded.ttl_seconds, expires_at = excluded.expires_at",
                (
                    uuid.uuid4().hex,
                    holder,
                    agent_type,
                    request.cpu,
                    request.memory_mb,
                    ttl_seconds,
                    now,
                    now + ttl_seconds,
                ),
            )
            row = execute(
                "SELECT " + _LEASE_COLUMNS + " FROM {leases} WHERE holder = %s", (holder,)
            ).fetchone()
        return _lease(row)

    def release(self, lease: Lease | str) -> bool:
        """Give the lease back. Idempotent: True if it was still held."""
        lease_id = lease.lease_id if isinstance(lease, Lease) else lease
        with self.store.transaction() as execute:
            cursor = execute("DELETE FROM {leases} WHERE lease_id = %s", (lease_id,))
            return cursor.rowcount > 0

    def heartbeat(self, lease: Lease, ttl_seconds: float | None = None) -> Lease:
        """Push the lease's expiry ``ttl_seconds`` (default: its own TTL) past now.

        Raises LeaseLostError when the lease already expired or was released.
        """
        ttl = lease.ttl_seconds if ttl_seconds is None else ttl_seconds
        if ttl <= 0:
            raise ValueError(f"ttl_seconds must be positive, got {ttl}")
        with self.store.transaction() as execute:
            now = self.store.now(execute)
            cursor = execute(
                "UPDATE {leases} SET expires_at = %s, ttl_seconds = %s "
                "WHERE lease_id = %s AND expires_at >= %s",
                (now + ttl, ttl, lease.lease_id, now),
            )
            if cursor.rowcount == 0:
                raise LeaseLostError(
                    f"lease {lease.lease_id} of {lease.holder!r} expired or was released; "
                    "its resources may be held by others now"
                )
            row = execute(
                "SELECT " + _LEASE_COLUMNS + " FROM {leases} WHERE lease_id = %s",
                (lease.lease_id,),
            ).fetchone()
        return _lease(row)

    def lease_of(self, holder: str) -> Lease | None:
        """The holder's live lease, if any."""
        with self.store.transaction(write=False) as execute:
            now = self.store.now(execute)
            row = execute(
                "SELECT " + _LEASE_COLUMNS + " FROM {leases} WHERE holder = %s AND expires_at >= %s",
                (holder, now),
            ).fetchone()
        return None if row is None else _lease(row)

    def reap(self) -> int:
        """Delete expired leases; returns how many."""
        with self.store.transaction() as execute:
            now = self.store.now(execute)
            return execute("DELETE FROM {leases} WHERE expires_at < %s", (now,)).rowcount

    def snapshot(self) -> LedgerSnapshot:
        """Capacity, what live leases use, what is free (never below zero)."""
        self._ensure_capacity()
        with self.store.transaction(write=False) as execute:
            now = self.store.now(execute)
            capacity = self._read_capacity(execute)
            used = self._usage(execute, now)
        free = ResourceUsage(
            cpu=max(0.0, capacity.cpu - used.cpu),
            memory_mb=max(0.0, capacity.memory_mb - used.memory_mb),
            agents=max(0, capacity.max_agents - used.agents),
        )
        return LedgerSnapshot(capacity=capacity, used=used, free=free, active_leases=used.agents)
