import pytest

from airflow_provider_orchestra.core.errors import CyclicDependencyError
from airflow_provider_orchestra.core.models import SyncPolicy
from airflow_provider_orchestra.core.sync import evaluate_sync, order_sync_points, sync_progress

POLICY = SyncPolicy(quorum=0.75, conditional_timeout_seconds=30, overall_timeout_seconds=120)
BRANCHES = ["a", "b", "c", "d"]


def decide(succeeded, failed=(), elapsed=0.0, sync_points=None, deps=None, branches=BRANCHES, policy=POLICY):
    return evaluate_sync(
        sync_points=sync_points or {},
        branch_dependencies=deps or {},
        branch_ids=branches,
        succeeded=succeeded,
        failed=failed,
        elapsed_seconds=elapsed,
        policy=policy,
    )


def test_all_done_proceeds_to_merge():
    d = decide({"a", "b", "c", "d"})
    assert (d.status, d.next_action, d.progress) == ("completed", "proceed_to_data_merge", 1.0)
    assert d.sync_point == "all_branches" and d.remaining_branches == []


def test_exactly_75_percent_waits_then_proceeds_after_the_conditional_timeout():
    before = decide({"a", "b", "c"}, elapsed=29.9)
    assert before.progress == 0.75
    assert (before.status, before.next_action) == ("waiting_final", "continue_waiting")
    after = decide({"a", "b", "c"}, elapsed=30.0)
    assert (after.status, after.next_action) == ("waiting_final", "conditional_proceed")
    assert after.remaining_branches == ["d"]


def test_just_below_quorum_keeps_waiting_until_the_overall_timeout():
    branches = [f"b{i}" for i in range(100)]
    done = set(branches[:74])
    d = decide(done, elapsed=60, branches=branches)
    assert d.progress == 0.74 and (d.status, d.next_action) == ("waiting", "continue_waiting")
    d = decide(done, elapsed=120, branches=branches)
    assert (d.status, d.next_action) == ("timeout", "timeout_recovery")


def test_failed_branches_do_not_count_and_end_the_wait_early():
    # 3 of 4 succeeded and the 4th failed after its retries: nothing left to wait for
    d = decide({"a", "b", "c"}, failed={"d"}, elapsed=1)
    assert (d.status, d.next_action) == ("waiting_final", "conditional_proceed")
    assert d.failed_branches == ["d"]
    # half failed: below quorum and nothing running -> recovery now, not at the timeout
    d = decide({"a", "b"}, failed={"c", "d"}, elapsed=1)
    assert (d.status, d.next_action) == ("timeout", "timeout_recovery")


def test_all_branches_failed_is_recovery():
    d = decide(set(), failed=set(BRANCHES), elapsed=0)
    assert d.progress == 0 and d.next_action == "timeout_recovery"


def test_empty_sync_point_is_complete():
    assert sync_progress([], set()) == 1.0
    d = decide({"a", "b", "c", "d"}, sync_points={"empty": [], "all": BRANCHES})
    assert d.next_action == "proceed_to_data_merge"


def test_named_sync_points_are_ordered_by_dependencies():
    points = {"aggregates": ["c", "d"], "ingest": ["a", "b"]}
    deps = {"c": ["a"], "d": ["b"]}
    assert [name for name, _ in order_sync_points(points, deps, BRANCHES)] == ["ingest", "aggregates"]
    d = decide({"c", "d", "a"}, sync_points=points, deps=deps, elapsed=5)
    assert d.sync_point == "ingest" and d.progress == 0.5 and d.next_action == "continue_waiting"


def test_a_later_sync_point_below_quorum_holds_a_conditional_proceed():
    points = {"first": ["a", "b", "c", "d"], "second": ["e", "f"]}
    branches = ["a", "b", "c", "d", "e", "f"]
    d = decide({"a", "b", "c"}, sync_points=points, branches=branches, elapsed=31)
    assert d.sync_point == "first" and d.next_action == "continue_waiting"
    d = decide({"a", "b", "c", "e", "f"}, sync_points=points, branches=branches, elapsed=31)
    assert d.next_action == "conditional_proceed"
    d = decide({"a", "b", "c"}, sync_points=points, branches=branches, elapsed=121)
    assert (d.status, d.next_action) == ("timeout", "timeout_recovery")


def test_cyclic_sync_point_order_is_refused():
    with pytest.raises(CyclicDependencyError):
        order_sync_points({"x": ["a"], "y": ["b"]}, {"a": ["b"], "b": ["a"]}, ["a", "b"])


def test_branches_outside_the_named_sync_points_form_an_implicit_final_one():
    assert order_sync_points({"fast": ["a"]}, {}, BRANCHES) == [("fast", ["a"]), ("remaining_branches", ["b", "c", "d"])]
    # The fast one alone is not enough: the others are waited for, not cancelled.
    d = decide({"a"}, sync_points={"fast": ["a"]}, elapsed=1)
    assert (d.sync_point, d.next_action) == ("remaining_branches", "continue_waiting")
    assert d.remaining_branches == ["b", "c", "d"]
    d = decide(set(BRANCHES), sync_points={"fast": ["a"]}, elapsed=1)
    assert d.next_action == "proceed_to_data_merge"


def test_an_empty_sync_point_leaves_every_batch_to_the_final_one():
    assert order_sync_points({"empty": []}, {}, BRANCHES) == [("empty", []), ("remaining_branches", BRANCHES)]
    d = decide({"a"}, sync_points={"empty": []}, elapsed=1)
    assert (d.sync_point, d.progress, d.next_action) == ("remaining_branches", 0.25, "continue_waiting")


def test_the_implicit_sync_point_follows_dependencies_like_a_named_one():
    # "a" (named) needs "b" (left out): the left-out batches are synchronised first.
    points = order_sync_points({"late": ["a"]}, {"a": ["b"]}, BRANCHES)
    assert points == [("remaining_branches", ["b", "c", "d"]), ("late", ["a"])]


def test_a_sync_point_cycle_is_named_in_branch_terms():
    with pytest.raises(CyclicDependencyError) as info:
        order_sync_points({"p": ["a", "d"], "q": ["b", "c"]}, {"b": ["a"], "d": ["c"]}, BRANCHES)
    message = str(info.value)
    assert "sync_points" in message
    assert "'q' waits for 'p' (b depends on a)" in message
    assert "'p' waits for 'q' (d depends on c)" in message
