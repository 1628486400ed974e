"""Run claims: a run owns its thread id while it runs.

Two processes running (or resuming) the same thread id would run the same branches twice
and remove each other's staging files. Before a native run starts, it claims its thread id
in the factory's store, which every process of a deployment shares (the same SQLite file
or Postgres database as the resource ledger); a second claim fails with
:class:`RunInUseError` naming the holder. Claiming is one atomic upsert, so of two
processes starting at the same moment exactly one wins.

A claim is heartbeated while the run goes on and released at its end. A holder that died
without releasing is recognised at once on its own host (its process is gone) and
elsewhere once the claim lapses (``DEFAULT_CLAIM_TTL_SECONDS`` after its last heartbeat).
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

from pydantic import BaseModel, ConfigDict

from airflow_provider_orchestra.core.errors import OrchestraError
from airflow_provider_orchestra.factory.store import Executor, Store

DEFAULT_CLAIM_TTL_SECONDS = 30.0
"""How long a claim outlives its last heartbeat (the keeper renews it three times as often)."""


class RunInUseError(OrchestraError):
    """Another process is running this thread id."""


class RunClaim(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    thread_id: str
    owner: str
    host: str
    pid: int
    acquired_at: datetime
    expires_at: datetime


def _ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class RunClaims:
    """Claims of thread ids in a factory store."""

    def __init__(self, store: Store, ttl_seconds: float = DEFAULT_CLAIM_TTL_SECONDS):
        if ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds}")
        self.store = store
        self.ttl_seconds = ttl_seconds

    def _row(self, execute: Executor, thread_id: str) -> RunClaim | None:
        row = execute(
            "SELECT thread_id, owner, host, pid, acquired_at, expires_at FROM {runs} WHERE thread_id = %s",
            (thread_id,),
        ).fetchone()
        if row is None:
            return None
        return RunClaim(
            thread_id=row[0], owner=row[1], host=row[2], pid=row[3], acquired_at=_ts(row[4]), expires_at=_ts(row[5])
        )

    def claim(self, thread_id: str) -> RunClaim:
        """Own ``thread_id`` or raise RunInUseError naming who does."""
        if not thread_id:
            raise ValueError("a run claim needs a thread id")
        owner, host, pid = uuid.uuid4().hex, socket.gethostname(), os.getpid()
        with self.store.transaction(lock=True) as execute:
            now = self.store.now(execute)
            held = self._row(execute, thread_id)
            if held is not None and held.expires_at.timestamp() >= now:
                if held.host != host or _process_alive(held.pid):
                    raise RunInUseError(
                        f"thread id {thread_id!r} is being run by another process (pid {held.pid} on "
                        f"{held.host}, since {held.acquired_at:%Y-%m-%d %H:%M:%S} UTC); wait for it to end. "
                        f"A process that died frees it at once on its own host, elsewhere "
                        f"{self.ttl_seconds:g}s after its last heartbeat"
                    )
            # Taken only if nobody holds it live (checked above under the store's lock;
            # the WHERE keeps the upsert safe on its own as well).
            cursor = execute(
                "INSERT INTO {runs} (thread_id, owner, host, pid, acquired_at, expires_at) "
                "VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (thread_id) DO UPDATE SET owner = excluded.owner, host = excluded.host, "
                "pid = excluded.pid, acquired_at = excluded.acquired_at, expires_at = excluded.expires_at "
                "WHERE {runs}.owner = %s",
                (thread_id, owner, host, pid, now, now + self.ttl_seconds, held.owner if held else owner),
            )
            if cursor.rowcount != 1:
                raise RunInUseError(f"thread id {thread_id!r} was claimed by another process at the same moment")
            claim = self._row(execute, thread_id)
        assert claim is not None and claim.owner == owner
        return claim

    def renew(self, claim: RunClaim) -> bool:
        """Push the claim's expiry a TTL past now; False when it is no longer ours."""
        with self.store.transaction() as execute:
            now = self.store.now(execute)
            cursor = execute(
                "UPDATE {runs} SET expires_at = %s WHERE thread_id = %s AND owner = %s",
                (now + self.ttl_seconds, claim.thread_id, claim.owner),
            )
            return cursor.rowcount == 1

    def release(self, claim: RunClaim) -> bool:
        """Give the thread id back (idempotent); True if it was still ours."""
        with self.store.transaction() as execute:
            cursor = execute("DELETE FROM {runs} WHERE thread_id = %s AND owner = %s", (claim.thread_id, claim.owner))
            return cursor.rowcount == 1

    def holder(self, thread_id: str) -> RunClaim | None:
        """The live claim of ``thread_id``, if any."""
        with self.store.transaction(write=False) as execute:
            now = self.store.now(execute)
            claim = self._row(execute, thread_id)
        return claim if claim is not None and claim.expires_at.timestamp() >= now else None

    @contextmanager
    def owning(self, thread_id: str) -> Iterator[RunClaim]:
        """Claim ``thread_id`` for the block, heartbeating it; released at the end."""
        claim = self.claim(thread_id)
        stop = threading.Event()

        def keep() -> None:
            while not stop.wait(self.ttl_seconds / 3):
                try:
                    if not self.renew(claim):
                        return
                except OrchestraError:
                    pass  # a store briefly away may come back before the claim lapses

        keeper = threading.Thread(target=keep, name=f"run-claim-{thread_id[:24]}", daemon=True)
        keeper.start()
        try:
            yield claim
        finally:
            stop.set()
            keeper.join()
            self.release(claim)
