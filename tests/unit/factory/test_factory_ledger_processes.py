"""The ledger shared by real processes: a killed holder's lease expires, and concurrent
allocations never exceed capacity. On SQLite and on Postgres."""

from __future__ import annotations

import multiprocessing
import signal
import subprocess
import sys
import time

import pytest

from airflow_provider_orchestra.core.errors import ResourceUnavailableError
from airflow_provider_orchestra.core.models import ResourceRequest
from airflow_provider_orchestra.factory import Lease, LedgerCapacity, ResourceLedger
from factory_ledger_workers import HOLD_UNTIL_KILLED, contend

TTL_SECONDS = 1.5


def test_killed_holder_gives_resources_back_after_its_ttl(location):
    ledger = ResourceLedger.open(
        location, namespace="killed", capacity=LedgerCapacity(cpu=2, memory_mb=1024, max_agents=2)
    )
    ledger.snapshot()
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_UNTIL_KILLED, location, "killed", str(TTL_SECONDS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lease = Lease.model_validate_json(child.stdout.readline())
        assert ledger.snapshot().used.cpu == 2
        with pytest.raises(ResourceUnavailableError, match="cpu: requested 1, free 0 of 2"):
            ledger.allocate(ResourceRequest(cpu=1, memory_mb=64), "survivor")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL

    deadline = time.monotonic() + TTL_SECONDS + 10
    while ledger.snapshot().used.cpu and time.monotonic() < deadline:
        time.sleep(0.1)  # waiting for the dead holder's TTL to run out
    assert ledger.snapshot().used.cpu == 0
    survivor = ledger.allocate(ResourceRequest(cpu=2, memory_mb=64), "survivor")
    assert survivor.acquired_at >= lease.expires_at  # not handed out before the TTL
    assert ledger.lease_of("doomed-holder") is None
    assert ledger.snapshot().active_leases == 1  # the dead lease was reaped


WORKERS = 4
ROUNDS = 4
CAPACITY = LedgerCapacity(cpu=2, memory_mb=100_000, max_agents=WORKERS)


def test_concurrent_processes_never_exceed_capacity(location):
    ResourceLedger.open(location, namespace="race", capacity=CAPACITY).snapshot()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS, timeout=60)
    results = ctx.Queue()
    workers = [
        ctx.Process(target=contend, args=(location, "race", w, ROUNDS, barrier, results))
        for w in range(WORKERS)
    ]
    for process in workers:
        process.start()
    reports = [results.get(timeout=120) for _ in workers]
    for process in workers:
        process.join(timeout=30)
        assert process.exitcode == 0
    assert [r.get("error") for r in reports] == [None] * WORKERS

    for round_ in range(ROUNDS):
        granted = sum(round_ in r["granted"] for r in reports)
        denied = sum(round_ in r["denied"] for r in reports)
        # all asked at once while the winners held: exactly the capacity is granted
        assert (granted, denied) == (CAPACITY.cpu, WORKERS - CAPACITY.cpu), round_
    assert max(r["max_used_cpu"] for r in reports) <= CAPACITY.cpu

    # holding intervals seen from outside never overlap more than capacity
    edges = sorted(
        [(start, 1) for r in reports for start, _ in r["intervals"]]
        + [(end, -1) for r in reports for _, end in r["intervals"]],
        key=lambda edge: (edge[0], edge[1]),
    )
    held = peak = 0
    for _, step in edges:
        held += step
        peak = max(peak, held)
    assert peak <= CAPACITY.cpu
    assert ResourceLedger.open(location, namespace="race").snapshot().used.agents == 0
