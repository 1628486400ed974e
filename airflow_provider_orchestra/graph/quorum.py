"""The sync point's live half: a board per (workflow thread, round) that the round's
branch nodes report to while they run, and a watcher that applies the quorum policy
(``core.sync.evaluate_sync``) to what the board shows.

Why a board: a LangGraph superstep ends only when every Send worker of it has returned,
so a node that runs after the superstep can never see "75% done, the rest still running".
The branches therefore run as Send workers (their results land in checkpointed state the
moment each finishes) and the board lets the sync point watch them *during* the superstep:

- ``slot`` admits branches in allocation order, at most ``max_branches`` at a time (the
  analysis' concurrency cap); a branch cancelled before its turn never starts.
- the watcher thread sleeps on a condition variable until a branch ends or the next
  timeout of the policy falls due (no polling), then re-evaluates. Once the policy says
  the run goes on (all done, quorum plus conditional timeout, or timeout recovery) while
  branches are still pending, it cancels them.
- cancellation is cooperative: a branch's progress callback calls ``raise_if_cancelled``
  once per record batch, which raises :class:`BranchCancelled` and unwinds the
  specialist (its staging output is discarded, its lease released). A branch blocked
  inside one long call stops at its next record batch.

Timeouts count from when the board opened in this process: a run resumed after its
process died gives the branches it resumes a fresh window, since the time the process
was down is no branch's fault.
"""

from __future__ import annotations


import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from airflow_provider_orchestra.core.flow import observed_outcomes
from airflow_provider_orchestra.core.models import SyncDecision, SyncPolicy
from airflow_provider_orchestra.core.sync import evaluate_sync

Clock = Callable[[], float]
_PROCEED_ACTIONS = frozenset({"proceed_to_data_merge", "conditional_proceed", "timeout_recovery"})


class BranchCancelled(Exception):
    """Raised inside a branch the sync point no longer waits for. Deliberately not an
    OrchestraError: specialists turn those into a failed attempt and try a fallback,
    whereas a cancelled branch must stop."""

    counts_against_template = False  # the agent factory keeps the template's record clean

    def __init__(self, branch_id: str, reason: str):
        super().__init__(f"{branch_id}: cancelled, {reason}")
        self.branch_id = branch_id
        self.reason = reason


class RoundBoard:
    """What one round's branches are doing, shared by their worker threads."""

    def __init__(
        self,
        *,
        thread_id: str,
        round: int,
        branch_ids: Sequence[str],
        allocated_ids: Sequence[str],
        succeeded_before: Collection[str],
        ended: Mapping[str, str] | None = None,
        sync_points: Mapping[str, Sequence[str]],
        branch_dependencies: Mapping[str, Sequence[str]],
        policy: SyncPolicy,
        max_branches: int,
        clock: Clock = time.monotonic,
    ):
        self.thread_id = thread_id
        self.round = round
        self.branch_ids = list(branch_ids)
        self._index = {b: i for i, b in enumerate(self.branch_ids)}
        self._allocated = list(dict.fromkeys([*allocated_ids, *self.branch_ids]))
        self._succeeded_before = set(succeeded_before)
        self._sync_points = sync_points
        self._dependencies = branch_dependencies
        self._policy = policy
        self._cap = max(1, int(max_branches))
        self._clock = clock
        self._cond = threading.Condition()
        self._ended: dict[str, str] = dict(ended or {})
        self._running: set[str] = set()
        self._unstarted: set[str] = {b for b in self.branch_ids if b not in self._ended}
        self._cancelled: dict[str, str] = {}
        self._closed = False
        self.decision: SyncDecision | None = None
        self.workflow_config: Any = None  # the run's WorkflowConfig, for whoever holds the board
        self.started_at = clock()
        self._watcher = threading.Thread(
            target=self._watch, name=f"orchestra-sync-{thread_id}-r{round}", daemon=True
        )
        self._watcher.start()

    # ------------------------------------------------------------------ observing

    def elapsed(self) -> float:
        return max(0.0, self._clock() - self.started_at)

    def evaluate(self) -> SyncDecision:
        """The policy's verdict on what the board shows now."""
        with self._cond:
            return self._evaluate()

    def _evaluate(self) -> SyncDecision:
        pending = [b for b in self.branch_ids if b not in self._ended]
        succeeded, failed = observed_outcomes(
            self._allocated, self._succeeded_before, self._ended, pending
        )
        return evaluate_sync(
            sync_points=self._sync_points,
            branch_dependencies=self._dependencies,
            branch_ids=self._allocated,
            succeeded=succeeded,
            failed=failed,
            elapsed_seconds=self.elapsed(),
            policy=self._policy,
        )

    def pending(self) -> list[str]:
        with self._cond:
            return [b for b in self.branch_ids if b not in self._ended]

    def cancellation(self, branch_id: str) -> str | None:
        """Why ``branch_id`` was cancelled, or None while it is still wanted."""
        with self._cond:
            return self._cancelled.get(branch_id)

    def raise_if_cancelled(self, branch_id: str) -> None:
        reason = self.cancellation(branch_id)
        if reason is not None:
            raise BranchCancelled(branch_id, reason)

    # ------------------------------------------------------------------ branch side

    @contextmanager
    def slot(self, branch_id: str) -> Iterator[bool]:
        """Wait for this branch's turn; yields False if it was cancelled first."""
        admitted = self._admit(branch_id)
        try:
            yield admitted
        finally:
            if admitted:
                with self._cond:
                    self._running.discard(branch_id)
                    self._cond.notify_all()

    def _admit(self, branch_id: str) -> bool:
        with self._cond:
            while True:
                if branch_id in self._cancelled or self._closed:
                    self._unstarted.discard(branch_id)
                    self._cond.notify_all()
                    return False
                first_waiting = min(self._unstarted, key=self._index.__getitem__, default=None)
                if len(self._running) < self._cap and first_waiting in (branch_id, None):
                    self._unstarted.discard(branch_id)
                    self._running.add(branch_id)
                    return True
                self._cond.wait()

    def wait_for_change(self, branch_id: str, timeout: float) -> bool:
        """Sleep until another branch ends, this one is cancelled, or ``timeout`` passes
        (used while the resource ledger is full). Returns False once cancelled."""
        with self._cond:
            if branch_id in self._cancelled:
                return False
            ended = len(self._ended)
            self._cond.wait_for(
                lambda: branch_id in self._cancelled or len(self._ended) != ended or self._closed,
                timeout=timeout,
            )
            return branch_id not in self._cancelled

    def finish(self, branch_id: str, status: str) -> None:
        with self._cond:
            self._ended[branch_id] = status
            self._unstarted.discard(branch_id)
            self._cond.notify_all()

    # ------------------------------------------------------------------ the watcher

    def _next_deadline(self) -> float | None:
        """Seconds until the next timeout of the policy, None when none is left."""
        elapsed = self.elapsed()
        upcoming = [
            t
            for t in (self._policy.conditional_timeout_seconds, self._policy.overall_timeout_seconds)
            if t > elapsed
        ]
        return min(upcoming) - elapsed if upcoming else None

    def _watch(self) -> None:
        with self._cond:
            while not self._closed:
                pending = [b for b in self.branch_ids if b not in self._ended]
                if not pending:
                    return
                decision = self._evaluate()
                if decision.next_action in _PROCEED_ACTIONS:
                    self.decision = decision
                    reason = (
                        f"sync point {decision.sync_point!r} chose {decision.next_action} "
                        f"at {decision.progress:.0%} after {decision.elapsed_seconds:.2f}s"
                    )
                    for b in pending:
                        self._cancelled.setdefault(b, reason)
                    self._cond.notify_all()
                    return
                self._cond.wait(timeout=self._next_deadline())

    def close(self) -> None:
        """Stop the watcher; branches still waiting for a slot give up."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._watcher is not threading.current_thread():
            self._watcher.join(timeout=5)


class BoardRegistry:
    """The boards of one compiled graph, by (workflow thread id, round)."""

    def __init__(self) -> None:
        self._boards: dict[tuple[str, int], RoundBoard] = {}
        self._lock = threading.Lock()

    def replace(self, board: RoundBoard) -> RoundBoard:
        with self._lock:
            old = self._boards.get((board.thread_id, board.round))
            self._boards[(board.thread_id, board.round)] = board
        if old is not None:
            old.close()
        return board

    def get_or_open(self, thread_id: str, round: int, opener: Callable[[], RoundBoard]) -> RoundBoard:
        with self._lock:
            board = self._boards.get((thread_id, round))
            if board is None:
                board = self._boards[(thread_id, round)] = opener()
            return board

    def get(self, thread_id: str, round: int) -> RoundBoard | None:
        with self._lock:
            return self._boards.get((thread_id, round))

    def discard(self, thread_id: str, round: int | None = None) -> None:
        with self._lock:
            keys = [k for k in self._boards if k[0] == thread_id and (round is None or k[1] == round)]
            boards = [self._boards.pop(k) for k in keys]
        for board in boards:
            board.close()
