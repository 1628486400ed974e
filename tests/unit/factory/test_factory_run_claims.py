"""A run owns its thread id: claims in the factory store, on SQLite and on Postgres."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from airflow_provider_orchestra.factory import open_store
from airflow_provider_orchestra.factory.claims import RunClaims, RunInUseError


def test_a_second_claim_of_a_live_run_names_its_holder(location):
    claims = RunClaims(open_store(location, "claims"))
    first = claims.claim("t-1")
    with pytest.raises(RunInUseError, match=r"thread id 't-1' is being run by another process \(pid \d+ on "):
        claims.claim("t-1")
    assert claims.holder("t-1") == first
    assert claims.claim("t-2").thread_id == "t-2"  # other thread ids are free
    assert claims.release(first) and not claims.release(first)
    assert claims.claim("t-1").owner != first.owner


def test_a_claim_left_by_a_dead_process_on_this_host_is_taken_over_at_once(location):
    store = open_store(location, "claims")
    claims = RunClaims(store)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=30)
    with store.transaction() as execute:
        now = store.now(execute)
        execute(
            "INSERT INTO {runs} (thread_id, owner, host, pid, acquired_at, expires_at) VALUES (%s, %s, %s, %s, %s, %s)",
            ("t-dead", "gone", socket.gethostname(), dead.pid, now, now + 3600),
        )
    taken = claims.claim("t-dead")
    assert taken.owner != "gone"


def test_a_claim_from_another_host_blocks_until_it_lapses(location):
    store = open_store(location, "claims")
    claims = RunClaims(store, ttl_seconds=1.0)
    with store.transaction() as execute:
        now = store.now(execute)
        execute(
            "INSERT INTO {runs} (thread_id, owner, host, pid, acquired_at, expires_at) VALUES (%s, %s, %s, %s, %s, %s)",
            ("t-away", "elsewhere", "another-host.invalid", 1, now, now + 0.5),
        )
    with pytest.raises(RunInUseError, match="another-host.invalid"):
        claims.claim("t-away")
    time.sleep(0.6)
    assert claims.claim("t-away").host == socket.gethostname()


def test_a_held_claim_is_heartbeated_past_its_ttl_and_released_after(location):
    claims = RunClaims(open_store(location, "claims"), ttl_seconds=0.6)
    with claims.owning("t-long") as claim:
        time.sleep(1.5)  # more than two TTLs: only the heartbeat keeps it
        with pytest.raises(RunInUseError):
            claims.claim("t-long")
        assert claims.holder("t-long").owner == claim.owner
    assert claims.holder("t-long") is None


def test_of_claims_made_at_once_exactly_one_wins(location):
    """Each contender has its own store object (its own connections), as separate
    processes would; threads keep the test cheap."""
    contenders = [RunClaims(open_store(location, "claims")) for _ in range(4)]
    contenders[0].store.ensure_schema()
    start = threading.Barrier(len(contenders))

    def contend(claims: RunClaims) -> str:
        start.wait()
        try:
            claims.claim("t-race")
            return "won"
        except RunInUseError:
            return "refused"

    with ThreadPoolExecutor(len(contenders)) as pool:
        outcomes = sorted(pool.map(contend, contenders))
    assert outcomes == ["refused", "refused", "refused", "won"]
