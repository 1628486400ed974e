from __future__ import annotations

import os
import sqlite3
import time
from datetime import timedelta

import psycopg
import pytest

from airflow_provider_orchestra.core.errors import LedgerUnavailableError, ResourceUnavailableError
from airflow_provider_orchestra.core.models import ResourceRequest
from airflow_provider_orchestra.factory import (
    LeaseLostError,
    LedgerCapacity,
    PostgresStore,
    ResourceLedger,
    SQLiteStore,
    open_store,
)
from factory_test_support import TEST_CAPACITY

ONE = ResourceRequest(cpu=1, memory_mb=1024)


def test_allocate_and_release(ledger):
    lease = ledger.allocate(ONE, "dag/run/task/0", agent_type="ingestion_agent")
    assert (lease.cpu, lease.memory_mb, lease.agent_type) == (1, 1024, "ingestion_agent")
    assert lease.expires_at - lease.acquired_at == timedelta(seconds=lease.ttl_seconds)
    snap = ledger.snapshot()
    assert snap.capacity == TEST_CAPACITY
    assert (snap.used.cpu, snap.used.memory_mb, snap.used.agents) == (1, 1024, 1)
    assert (snap.free.cpu, snap.free.memory_mb, snap.free.agents) == (3, 7168, 3)
    assert snap.active_leases == 1
    assert ledger.release(lease) is True
    assert ledger.release(lease) is False  # idempotent
    assert ledger.snapshot().used.agents == 0


def test_same_holder_gets_its_lease_back_refreshed(ledger):
    first = ledger.allocate(ONE, "dag/run/task/3", ttl_seconds=30)
    again = ledger.allocate(ONE, "dag/run/task/3", ttl_seconds=60)
    assert again.lease_id == first.lease_id
    assert again.acquired_at == first.acquired_at
    assert again.expires_at > first.expires_at
    assert ledger.snapshot().used.cpu == 1  # held once, not twice
    resized = ledger.allocate(ResourceRequest(cpu=4, memory_mb=10), "dag/run/task/3")
    assert resized.lease_id == first.lease_id and resized.cpu == 4


@pytest.mark.parametrize(
    ("request_", "short", "not_short"),
    [
        (ResourceRequest(cpu=3.5, memory_mb=1), "cpu: requested 3.5, free 3 of 4", ["memory_mb", "agents"]),
        (ResourceRequest(cpu=0.1, memory_mb=8000), "memory_mb: requested 8000, free 7168 of 8192", ["cpu", "agents"]),
    ],
)
def test_exhausted_pool_names_what_is_short(ledger, request_, short, not_short):
    held = ledger.allocate(ONE, "holder-a")
    with pytest.raises(ResourceUnavailableError) as info:
        ledger.allocate(request_, "holder-b", agent_type="big_agent")
    message = str(info.value)
    assert short in message and "'holder-b' (big_agent)" in message
    for other in not_short:
        assert f"{other}:" not in message
    assert ledger.lease_of("holder-b") is None  # nothing half-granted
    ledger.release(held)
    assert ledger.allocate(request_, "holder-b").holder == "holder-b"


def test_agent_slots_run_out(ledger):
    tiny = ResourceRequest(cpu=0.01, memory_mb=1)
    for i in range(TEST_CAPACITY.max_agents):
        ledger.allocate(tiny, f"h{i}")
    with pytest.raises(ResourceUnavailableError, match="agents: requested 1, free 0 of 4"):
        ledger.allocate(tiny, "one-too-many")
    # the holders already in still get their leases back
    assert ledger.allocate(tiny, "h0").holder == "h0"


def test_fractional_requests_fill_the_pool_exactly(ledger):
    for i, cpu in enumerate([0.1, 0.2, 0.3, 3.4]):
        ledger.allocate(ResourceRequest(cpu=cpu, memory_mb=1), f"f{i}")
    assert ledger.snapshot().free.cpu == pytest.approx(0.0)
    with pytest.raises(ResourceUnavailableError, match="agents"):
        ledger.allocate(ResourceRequest(cpu=0.001, memory_mb=1), "more")


def test_expired_leases_stop_counting_and_are_reaped(ledger):
    ledger.allocate(ResourceRequest(cpu=4, memory_mb=1), "short-lived", ttl_seconds=0.2)
    with pytest.raises(ResourceUnavailableError):
        ledger.allocate(ONE, "waiting")
    time.sleep(0.3)  # let the TTL pass
    assert ledger.snapshot().used.cpu == 0
    assert ledger.lease_of("short-lived") is None
    assert ledger.reap() == 1
    assert ledger.reap() == 0
    assert ledger.allocate(ResourceRequest(cpu=4, memory_mb=1), "waiting").cpu == 4


def test_heartbeat_extends_and_detects_loss(ledger):
    lease = ledger.allocate(ONE, "beating", ttl_seconds=0.3)
    renewed = ledger.heartbeat(lease, ttl_seconds=30)
    assert renewed.expires_at > lease.expires_at and renewed.ttl_seconds == 30
    short = ledger.allocate(ONE, "lapsing", ttl_seconds=0.1)
    time.sleep(0.2)
    with pytest.raises(LeaseLostError, match="expired or was released"):
        ledger.heartbeat(short)
    ledger.release(renewed)
    with pytest.raises(LeaseLostError):
        ledger.heartbeat(renewed)


def test_bad_arguments(ledger):
    with pytest.raises(ValueError, match="holder"):
        ledger.allocate(ONE, "")
    with pytest.raises(ValueError, match="ttl_seconds"):
        ledger.allocate(ONE, "h", ttl_seconds=0)


def test_capacity_is_shared_and_defaults_to_the_machine(location):
    machine = ResourceLedger.open(location, namespace="machine")
    capacity = machine.capacity
    assert capacity.cpu == os.cpu_count()
    assert capacity.max_agents == os.cpu_count()
    expected_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    assert capacity.memory_mb == pytest.approx(expected_mb)
    configured = ResourceLedger.open(location, namespace="machine", capacity=TEST_CAPACITY)
    assert configured.capacity == TEST_CAPACITY
    # a process opening the store without a capacity sees the configured one
    assert ResourceLedger.open(location, namespace="machine").capacity == TEST_CAPACITY


def test_namespaces_isolate(location):
    a = ResourceLedger.open(location, namespace="team_a", capacity=LedgerCapacity(cpu=1, memory_mb=10, max_agents=1))
    b = ResourceLedger.open(location, namespace="team_b", capacity=LedgerCapacity(cpu=1, memory_mb=10, max_agents=1))
    a.allocate(ResourceRequest(cpu=1, memory_mb=10), "x")
    assert b.allocate(ResourceRequest(cpu=1, memory_mb=10), "x").cpu == 1
    assert a.snapshot().used.agents == b.snapshot().used.agents == 1


def test_invalid_namespace():
    with pytest.raises(LedgerUnavailableError, match="invalid ledger namespace"):
        open_store("x.db", namespace='a"; drop table x; --')


def test_sqlite_store_uses_wal_and_creates_tables_once(sqlite_location):
    ResourceLedger.open(sqlite_location, capacity=TEST_CAPACITY).snapshot()
    ResourceLedger.open(sqlite_location).snapshot()  # second opening: tables exist
    with sqlite3.connect(sqlite_location) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
    assert tables == {"orchestra_capacity", "orchestra_leases", "orchestra_template_stats", "orchestra_run_claims"}


def test_postgres_tables_are_created_in_the_database(postgres_url):
    ResourceLedger.open(postgres_url, capacity=TEST_CAPACITY, namespace="pg_check").snapshot()
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute(
            "select table_name from information_schema.tables where table_name like 'pg_check_%'"
        ).fetchall()
    assert {r[0] for r in rows} == {"pg_check_capacity", "pg_check_leases", "pg_check_template_stats", "pg_check_run_claims"}


def test_locations():
    assert isinstance(open_store("/tmp/a.db"), SQLiteStore)
    assert open_store("sqlite:////tmp/a.db").path.as_posix() == "/tmp/a.db"
    assert open_store("sqlite:///rel/a.db").path.as_posix() == "rel/a.db"
    assert isinstance(open_store("postgres://u@h/db"), PostgresStore)
    assert isinstance(open_store("postgresql+psycopg://u@h/db"), PostgresStore)


def test_unreachable_postgres_is_a_clear_error_without_the_password():
    ledger = ResourceLedger.open("postgresql://postgres:Sup3rSecret@127.0.0.1:1/x")
    with pytest.raises(LedgerUnavailableError) as info:
        ledger.snapshot()
    message = str(info.value)
    assert "127.0.0.1:1" in message and "unavailable" in message and "refused" in message.lower()
    assert "Sup3rSecret" not in message and "***" in message
    assert "Sup3rSecret" not in repr(ledger)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres:Sup3rSecret@127.0.0.1:notaport/x",
        "postgresql://postgres@127.0.0.1:1/x?password=Sup3rSecret",
    ],
)
def test_invalid_postgres_urls_never_echo_the_password(url):
    with pytest.raises(LedgerUnavailableError) as info:
        ResourceLedger.open(url).allocate(ONE, "h")
    assert "Sup3rSecret" not in str(info.value)


def test_unsupported_scheme_is_refused_without_the_password():
    with pytest.raises(LedgerUnavailableError) as info:
        open_store("mysql://root:Sup3rSecret@db/ledger")
    assert "unsupported ledger URL scheme 'mysql'" in str(info.value)
    assert "Sup3rSecret" not in str(info.value)


def test_unusable_sqlite_paths(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    with pytest.raises(LedgerUnavailableError, match="not_a_dir"):
        ResourceLedger.open(blocker / "ledger.db").snapshot()
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerUnavailableError, match="garbage.db"):
        ResourceLedger.open(garbage).snapshot()
    assert garbage.read_bytes() == b"this is not a database" * 100


def test_snapshot_feeds_the_core_resource_assessment(ledger):
    from airflow_provider_orchestra.core.analysis import assess_resources

    ledger.allocate(ONE, "busy")
    core_view = ledger.snapshot().resource_snapshot(machine_cpus=4)
    assert (core_view.cpu_capacity, core_view.cpu_used, core_view.agents_used) == (4, 1, 1)
    assert assess_resources(core_view, ONE).max_concurrent_workers == 3
