"""Code run in separate processes by the ledger tests (importable by spawned children)."""

from __future__ import annotations

import time

from airflow_provider_orchestra.core.errors import ResourceUnavailableError
from airflow_provider_orchestra.core.models import ResourceRequest
from airflow_provider_orchestra.factory import ResourceLedger

CONTENDED_REQUEST = ResourceRequest(cpu=1, memory_mb=64)


def contend(location: str, namespace: str, worker: int, rounds: int, barrier, results) -> None:
    """Each round every worker asks for a lease at once and keeps what it got until all
    have asked, so the ledger must refuse everyone beyond capacity."""
    ledger = ResourceLedger.open(location, namespace=namespace)
    ledger.snapshot()  # connect and create tables before the race
    report = {"worker": worker, "granted": [], "denied": [], "intervals": [], "max_used_cpu": 0.0}
    try:
        for round_ in range(rounds):
            barrier.wait()
            try:
                lease = ledger.allocate(CONTENDED_REQUEST, f"w{worker}-r{round_}", ttl_seconds=60)
            except ResourceUnavailableError:
                lease = None
                report["denied"].append(round_)
            else:
                start = time.monotonic()
                report["granted"].append(round_)
                report["max_used_cpu"] = max(report["max_used_cpu"], ledger.snapshot().used.cpu)
            barrier.wait()  # everyone has asked while the winners hold
            if lease is not None:
                report["intervals"].append((start, time.monotonic()))
                ledger.release(lease)
    except BaseException as exc:  # reported to the test instead of dying silently
        report["error"] = repr(exc)
        barrier.abort()
    results.put(report)


HOLD_UNTIL_KILLED = """
import sys
from airflow_provider_orchestra.core.models import ResourceRequest
from airflow_provider_orchestra.factory import ResourceLedger

location, namespace, ttl = sys.argv[1], sys.argv[2], float(sys.argv[3])
ledger = ResourceLedger.open(location, namespace=namespace)
lease = ledger.allocate(ResourceRequest(cpu=2, memory_mb=64), "doomed-holder", ttl_seconds=ttl)
print(lease.model_dump_json(), flush=True)
sys.stdin.read()  # hold the lease until this process is killed
"""
