"""The sync point policy: named sync points, progress and the quorum decision.

Both runtimes (the native graph's sync_point_manager and the Airflow quorum sensor) call
``evaluate_sync`` with what they observe; neither keeps a policy of its own.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from airflow_provider_orchestra.core.dependencies import topological_order
from airflow_provider_orchestra.core.errors import CyclicDependencyError
from airflow_provider_orchestra.core.models import SyncDecision, SyncPolicy

ALL_BRANCHES = "all_branches"
REMAINING_BRANCHES = "remaining_branches"
RESERVED_SYNC_POINTS = (ALL_BRANCHES, REMAINING_BRANCHES)
"""Names of the implicit sync points; a config may not use them for its own."""
COMPLETE = 1.0


def sync_point_members(sync_points: Mapping[str, Sequence[str]], branch_ids: Sequence[str]) -> dict[str, list[str]]:
    """Every sync point of the run with its members, implicit ones included.

    Every branch belongs to a sync point. With none declared, all branches form one named
    ``all_branches``; otherwise the branches no declared sync point names form a final one
    named ``remaining_branches`` (waited for like any other, never cancelled for being left
    out). Members that are not among ``branch_ids`` are ignored.
    """
    if not sync_points:
        return {ALL_BRANCHES: list(branch_ids)}
    known = set(branch_ids)
    members = {name: [b for b in bs if b in known] for name, bs in sync_points.items()}
    named = {b for bs in members.values() for b in bs}
    left_out = [b for b in branch_ids if b not in named]
    if left_out:
        members[REMAINING_BRANCHES] = left_out
    return members


def order_sync_points(
    sync_points: Mapping[str, Sequence[str]],
    branch_dependencies: Mapping[str, Sequence[str]],
    branch_ids: Sequence[str],
) -> list[tuple[str, list[str]]]:
    """The run's sync points (see sync_point_members) in the order branch_dependencies imply.

    Sync point Q comes after P when a member of Q depends on a member of P; otherwise the
    declared order holds and the implicit final point stays last. Raises
    CyclicDependencyError naming the cycle in branch terms when the dependencies order two
    sync points both ways.
    """
    members = sync_point_members(sync_points, branch_ids)
    owner: dict[str, set[str]] = {}
    for name, bs in members.items():
        for b in bs:
            owner.setdefault(b, set()).add(name)
    # point -> {point it waits for: (member, the member of that point it depends on)}
    waits: dict[str, dict[str, tuple[str, str]]] = {name: {} for name in members}
    for name, bs in members.items():
        for b in bs:
            for needed in branch_dependencies.get(b, ()):
                for earlier in sorted(owner.get(needed, set()) - {name}):
                    waits[name].setdefault(earlier, (b, needed))
    try:
        order = topological_order(list(members), waits)
    except CyclicDependencyError:
        raise CyclicDependencyError(_describe_cycle(waits), ["sync_points"]) from None
    return [(name, members[name]) for name in order]


def _describe_cycle(waits: Mapping[str, Mapping[str, tuple[str, str]]]) -> str:
    """``sync_points: cycle 'q' waits for 'p' (b depends on a), and 'p' waits for 'q' (...)``."""
    cycle = _find_cycle(waits)
    steps = [
        f"{later!r} waits for {earlier!r} ({waits[later][earlier][0]} depends on {waits[later][earlier][1]})"
        for later, earlier in zip(cycle, cycle[1:])
    ]
    return (
        "sync_points: the branch dependencies order these sync points both ways, so no sync point can "
        "be waited for first: " + ", and ".join(steps) + ". Move the branches so each sync point only "
        "depends on earlier ones (batches no sync point names form the implicit "
        f"{REMAINING_BRANCHES!r} sync point)"
    )


def _find_cycle(waits: Mapping[str, Mapping[str, tuple[str, str]]]) -> list[str]:
    """One cycle of the wait graph as [a, b, ..., a] (a waits for b, ...)."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in waits.get(node, {}):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for start in waits:
        if start not in state and (found := visit(start)):
            return found
    raise ValueError("no cycle among the sync points")


def sync_progress(required: Collection[str], succeeded: Collection[str]) -> float:
    """Completed required branches / required branches; an empty sync point is complete."""
    if not required:
        return COMPLETE
    return sum(1 for b in required if b in succeeded) / len(required)


def evaluate_sync(
    *,
    sync_points: Mapping[str, Sequence[str]],
    branch_dependencies: Mapping[str, Sequence[str]],
    branch_ids: Sequence[str],
    succeeded: Collection[str],
    failed: Collection[str],
    elapsed_seconds: float,
    policy: SyncPolicy,
) -> SyncDecision:
    """Decide what the sync point does now.

    Walk the sync points in order; the first one not at 100% is the current one.
    - progress >= 1.0 everywhere -> completed / proceed_to_data_merge
    - progress >= quorum (0.75) -> waiting_final; conditional_proceed once the conditional
      timeout has passed (or nothing is left running), else continue_waiting. Every later
      sync point must be at quorum too before the run goes on.
    - below quorum -> waiting / continue_waiting; past the overall timeout, or when nothing
      is left running, timeout / timeout_recovery.
    Timeouts count from the start of the round. ``failed`` are branches that ended without
    success (after their retries); they never count as completed.
    """
    succeeded, failed = set(succeeded), set(failed)
    ordered = order_sync_points(sync_points, branch_dependencies, branch_ids)
    current: tuple[str, list[str], float] | None = None
    status, action = "completed", "proceed_to_data_merge"
    for name, required in ordered:
        progress = sync_progress(required, succeeded)
        if progress >= COMPLETE:
            continue
        pending = [b for b in required if b not in succeeded and b not in failed]
        if progress >= policy.quorum:
            point_status = "waiting_final"
            timed_out = elapsed_seconds >= policy.conditional_timeout_seconds
            point_action = "conditional_proceed" if timed_out or not pending else "continue_waiting"
        else:
            timed_out = elapsed_seconds >= policy.overall_timeout_seconds
            point_status = "timeout" if timed_out or not pending else "waiting"
            point_action = "timeout_recovery" if point_status == "timeout" else "continue_waiting"
        if current is None:
            current = (name, required, progress)
            status, action = point_status, point_action
        elif action == "conditional_proceed" and point_action != "conditional_proceed":
            # A later sync point below quorum holds the run back.
            action = point_action
            if point_action == "timeout_recovery":
                status = "timeout"
        if action != "conditional_proceed":
            break
    if current is None:
        name, required = ordered[-1] if ordered else (ALL_BRANCHES, [])
        current = (name, required, COMPLETE)
    name, required, progress = current
    return SyncDecision(
        sync_point=name,
        progress=progress,
        status=status,
        next_action=action,
        completed_branches=[b for b in required if b in succeeded],
        remaining_branches=[b for b in required if b not in succeeded],
        failed_branches=sorted(b for b in failed if b in set(branch_ids)),
        elapsed_seconds=elapsed_seconds,
    )
