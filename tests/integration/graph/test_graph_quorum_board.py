"""The round board on its own: real threads standing in for branch workers, the quorum
watcher with real (short) timeouts, the concurrency cap and cancellation."""

from __future__ import annotations

import threading

import pytest

from airflow_provider_orchestra.core.models import SyncPolicy
from airflow_provider_orchestra.graph.quorum import BranchCancelled, RoundBoard, observed_outcomes


def _board(branch_ids, *, conditional=0.2, overall=5.0, cap=10, **kwargs) -> RoundBoard:
    return RoundBoard(
        thread_id="t",
        round=1,
        branch_ids=branch_ids,
        allocated_ids=kwargs.pop("allocated_ids", branch_ids),
        succeeded_before=kwargs.pop("succeeded_before", ()),
        sync_points=kwargs.pop("sync_points", {}),
        branch_dependencies={},
        policy=SyncPolicy(conditional_timeout_seconds=conditional, overall_timeout_seconds=overall),
        max_branches=cap,
        **kwargs,
    )


def _run_until_cancelled(board: RoundBoard, branch_id: str, stopped: threading.Event) -> None:
    """A branch that works until the sync point cancels it (waiting on an event, as a
    specialist would between record batches)."""
    with board.slot(branch_id) as admitted:
        try:
            while admitted:
                board.raise_if_cancelled(branch_id)
                stopped.wait(0.01)
        except BranchCancelled:
            pass
        board.finish(branch_id, "cancelled")


def test_quorum_and_conditional_timeout_cancel_the_straggler():
    board = _board(["a", "b", "c", "slow"], conditional=0.2)
    stopped = threading.Event()
    worker = threading.Thread(target=_run_until_cancelled, args=(board, "slow", stopped))
    worker.start()
    for b in ("a", "b", "c"):
        with board.slot(b):
            board.finish(b, "success")
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert board.decision.next_action == "conditional_proceed"
    assert board.decision.elapsed_seconds >= 0.2
    assert "conditional_proceed" in board.cancellation("slow")
    assert board.pending() == []


def test_below_quorum_waits_for_the_overall_timeout_then_recovers():
    board = _board(["a", "slow1", "slow2"], conditional=0.05, overall=0.3)
    stopped = threading.Event()
    workers = [threading.Thread(target=_run_until_cancelled, args=(board, b, stopped)) for b in ("slow1", "slow2")]
    for w in workers:
        w.start()
    with board.slot("a"):
        board.finish("a", "success")
    for w in workers:
        w.join(timeout=10)
    assert board.decision.next_action == "timeout_recovery"
    assert board.decision.elapsed_seconds >= 0.3
    assert board.cancellation("slow1") and board.cancellation("slow2")


def test_all_done_needs_no_watcher_decision():
    board = _board(["a", "b"])
    for b in ("a", "b"):
        with board.slot(b):
            board.finish(b, "success")
    assert board.evaluate().next_action == "proceed_to_data_merge"
    board.close()
    assert board.decision is None


def test_slots_are_granted_in_allocation_order_within_the_cap():
    board = _board(["a", "b", "c"], cap=1, overall=30.0, conditional=30.0)
    order, lock = [], threading.Lock()

    def branch(branch_id: str) -> None:
        with board.slot(branch_id) as admitted:
            assert admitted
            with lock:
                order.append(branch_id)
            board.finish(branch_id, "success")

    # Started in reverse: the board still admits a, then b, then c.
    threads = [threading.Thread(target=branch, args=(b,)) for b in ("c", "b", "a")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert order == ["a", "b", "c"]
    board.close()


def test_a_branch_cancelled_before_its_turn_never_starts():
    board = _board(["busy", "queued"], cap=1, conditional=0.0, overall=0.2)
    stopped = threading.Event()
    busy = threading.Thread(target=_run_until_cancelled, args=(board, "busy", stopped))
    busy.start()
    result = {}

    def queued() -> None:
        with board.slot("queued") as admitted:
            result["admitted"] = admitted
        board.finish("queued", "cancelled")

    waiting = threading.Thread(target=queued)
    waiting.start()
    busy.join(timeout=10)
    waiting.join(timeout=10)
    assert result == {"admitted": False}
    assert board.decision.next_action == "timeout_recovery"


def test_resumed_round_counts_branches_that_returned_before_the_crash():
    board = _board(["a", "b", "c", "d"], ended={"a": "success", "b": "success", "c": "success"}, conditional=0.1)
    stopped = threading.Event()
    worker = threading.Thread(target=_run_until_cancelled, args=(board, "d", stopped))
    worker.start()
    worker.join(timeout=10)
    assert board.decision.next_action == "conditional_proceed"


@pytest.mark.parametrize(
    ("allocated", "before", "ended", "pending", "succeeded", "failed"),
    [
        # a succeeded earlier and is being re-run: pending, not yet counted
        (["a", "b"], {"a", "b"}, {}, {"a"}, {"b"}, set()),
        # the re-run of a failed: its earlier success stands
        (["a", "b"], {"a", "b"}, {"a": "failed"}, set(), {"a", "b"}, set()),
        # c neither ran this round nor succeeded before: failed, not pending
        (["a", "b", "c"], {"a"}, {"b": "success"}, set(), {"a", "b"}, {"c"}),
        (["a", "b"], set(), {"a": "cancelled"}, {"b"}, set(), {"a"}),
    ],
)
def test_observed_outcomes(allocated, before, ended, pending, succeeded, failed):
    assert observed_outcomes(allocated, before, ended, pending) == (succeeded, failed)
