"""What the quorum sensor, its trigger and the operators observe: the states of a round's
mapped specialist instances, read through the Task SDK and turned into the sets that
``core.sync.evaluate_sync`` decides on.

This module holds no policy. It imports neither Airflow nor LangGraph: the state reader is
passed in (``RuntimeTaskInstance.get_task_states`` in a worker or in the triggerer, a plain
function in tests), so the sensor and the trigger share one code path. It sits outside
``sensors/`` and ``operators/`` so that each of them, and the triggerer, reads it without
loading the other's package.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from airflow_provider_orchestra.core.flow import observed_outcomes
from airflow_provider_orchestra.core.models import Identifier, SyncDecision, SyncPolicy
from airflow_provider_orchestra.core.sync import evaluate_sync

BranchOutcome = Literal["succeeded", "failed", "pending", "skipped"]

# Task instance states (airflow TaskInstanceState values) by what they mean for a branch.
# ``failed`` is only reached after the task's own retries; a retrying branch is
# ``up_for_retry`` and still pending. Any state not listed (including None, and states a
# later Airflow may add) counts as pending: a branch is never done by default.
SUCCEEDED_STATES = frozenset({"success"})
FAILED_STATES = frozenset({"failed", "upstream_failed", "removed"})
SKIPPED_STATES = frozenset({"skipped"})

TaskStatesReader = Callable[..., Mapping[str, Mapping[str, Any]]]
"""Signature of ``RuntimeTaskInstance.get_task_states``: keyword arguments ``dag_id``,
``task_ids`` and ``run_ids``; returns ``{run_id: {key: state}}`` where key is
``<task_id>_<map_index>`` for a mapped instance and ``<task_id>`` for an unmapped or a
not yet expanded task."""


class RoundPlan(BaseModel):
    """The coordinator's return value for one round, as far as the sync point needs it.

    Unknown keys are kept: the coordinator may carry more than the sync point reads.
    """

    model_config = ConfigDict(extra="allow")

    round: int = Field(ge=1)
    started_at: datetime
    branches: dict[Identifier, tuple[str, int | None]] = Field(
        description="branch id -> (specialist task id, map index; None for an unmapped task)"
    )
    sync_points: dict[str, list[str]] = Field(default_factory=dict)
    branch_dependencies: dict[str, list[str]] = Field(default_factory=dict)
    sync: SyncPolicy = Field(default_factory=SyncPolicy)
    succeeded_before: list[str] = Field(
        default_factory=list,
        description="branches that succeeded in an earlier round (a failed re-run keeps that success)",
    )

    @field_validator("started_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        # A naive timestamp is taken as UTC, the only zone the coordinator writes.
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)

    def task_ids(self) -> list[str]:
        return sorted({task_id for task_id, _ in self.branches.values()})


@dataclass(frozen=True)
class TaskInstances:
    """The states of one task in one run, parsed out of a get_task_states answer."""

    task_id: str
    bare_present: bool = False
    bare_state: str | None = None
    mapped: dict[int, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class RoundObservation:
    """One look at a round: each branch's outcome and the sync point's decision on it."""

    decision: SyncDecision
    outcomes: dict[str, BranchOutcome]
    states: dict[str, str | None]

    def summary(self) -> str:
        d = self.decision
        counts = {o: sum(1 for v in self.outcomes.values() if v == o) for o in ("succeeded", "failed", "pending", "skipped")}
        return (
            f"sync point {d.sync_point!r}: progress {d.progress:.0%}, status {d.status}, "
            f"next action {d.next_action}; branches {counts}; elapsed {d.elapsed_seconds:.1f}s"
        )


def _ambiguous_ids(task_ids: Sequence[str]) -> set[str]:
    """Task ids whose keys could be confused: ``a`` and ``a_1`` make ``a_1`` either the
    unmapped task ``a_1`` or instance 1 of ``a``."""
    ids = set(task_ids)
    ambiguous: set[str] = set()
    for tid in ids:
        for other in ids:
            if other != tid and re.fullmatch(re.escape(tid) + r"_\d+", other):
                ambiguous |= {tid, other}
    return ambiguous


def parse_task_states(run_states: Mapping[str, Any], task_ids: Sequence[str]) -> dict[str, TaskInstances]:
    """Split one run's ``{key: state}`` into per-task instances.

    Keys are anchored on the requested task ids (which contain underscores themselves):
    ``<task_id>`` is the unmapped or not yet expanded instance, ``<task_id>_<n>`` is map
    index n. A key that matches no requested task id is ignored. The caller must not mix
    ambiguous task ids in one answer (see ``fetch_task_states``).
    """
    if ambiguous := _ambiguous_ids(task_ids):
        raise ValueError(f"task ids {sorted(ambiguous)} cannot be told apart in one answer")
    # Longest ids first, so a key is claimed by the most specific task id.
    patterns = [(tid, re.compile(re.escape(tid) + r"_(\d+)")) for tid in sorted(task_ids, key=len, reverse=True)]
    bare: dict[str, str | None] = {}
    mapped: dict[str, dict[int, str | None]] = {tid: {} for tid in task_ids}
    for key, state in run_states.items():
        state = None if state is None else str(state)
        if key in mapped:
            bare[key] = state
            continue
        for tid, pattern in patterns:
            if m := pattern.fullmatch(key):
                mapped[tid][int(m.group(1))] = state
                break
    return {
        tid: TaskInstances(task_id=tid, bare_present=tid in bare, bare_state=bare.get(tid), mapped=mapped[tid])
        for tid in task_ids
    }


def fetch_task_states(
    read_states: TaskStatesReader, *, dag_id: str, run_id: str, task_ids: Sequence[str]
) -> dict[str, TaskInstances]:
    """Read the states of ``task_ids`` in one run through the Task SDK.

    One call for all unambiguous ids; an id that another id extends by ``_<digits>`` is
    read on its own so its keys cannot be misattributed.
    """
    task_ids = sorted(set(task_ids))
    ambiguous = _ambiguous_ids(task_ids)
    groups = [[t for t in task_ids if t not in ambiguous]] + [[t] for t in sorted(ambiguous)]
    parsed: dict[str, TaskInstances] = {}
    for group in groups:
        if not group:
            continue
        answer = read_states(dag_id=dag_id, task_ids=group, run_ids=[run_id])
        parsed.update(parse_task_states((answer or {}).get(run_id, {}), group))
    return parsed


def branch_state(instances: TaskInstances | None, map_index: int | None) -> str | None:
    """The state of one planned branch (task id, map index) among its task's instances."""
    if instances is None:
        return None  # the task has no instance yet in this run
    if map_index is None or map_index < 0:
        return instances.bare_state
    if map_index in instances.mapped:
        return instances.mapped[map_index]
    if instances.mapped:
        # The task expanded without this index: the planned branch will never run.
        return "removed"
    # Not expanded yet: the bare key stands for every planned instance. Its state is None
    # while waiting (pending, never done), or e.g. upstream_failed / skipped for all.
    return instances.bare_state


def outcome_of(state: str | None) -> BranchOutcome:
    if state in SUCCEEDED_STATES:
        return "succeeded"
    if state in FAILED_STATES:
        return "failed"
    if state in SKIPPED_STATES:
        return "skipped"
    return "pending"


def decide(plan: RoundPlan, instances: Mapping[str, TaskInstances], now: datetime) -> RoundObservation:
    """Map the branches' states to outcomes and ask ``core.sync.evaluate_sync``.

    A skipped branch is not part of the round: it leaves the sync points' denominators.
    What counts as succeeded or failed across rounds is core.flow.observed_outcomes, as in
    the native graph.
    """
    states = {
        branch_id: branch_state(instances.get(task_id), map_index)
        for branch_id, (task_id, map_index) in plan.branches.items()
    }
    outcomes = {branch_id: outcome_of(state) for branch_id, state in states.items()}
    elapsed = max(0.0, (now - plan.started_at).total_seconds())
    allocated = [b for b in plan.branches if outcomes[b] != "skipped"]
    ended = {b: "success" if o == "succeeded" else "failed" for b, o in outcomes.items() if o in ("succeeded", "failed")}
    pending = {b for b, o in outcomes.items() if o == "pending"}
    succeeded, failed = observed_outcomes(allocated, plan.succeeded_before, ended, pending)
    decision = evaluate_sync(
        sync_points=plan.sync_points,
        branch_dependencies=plan.branch_dependencies,
        branch_ids=allocated,
        succeeded=succeeded,
        failed=failed,
        elapsed_seconds=elapsed,
        policy=plan.sync,
    )
    return RoundObservation(decision=decision, outcomes=outcomes, states=states)


def observe_round(
    plan: RoundPlan,
    *,
    read_states: TaskStatesReader,
    dag_id: str,
    run_id: str,
    now: datetime | None = None,
) -> RoundObservation:
    """Read the round's specialist states once and decide. Shared by sensor and trigger."""
    instances = fetch_task_states(read_states, dag_id=dag_id, run_id=run_id, task_ids=plan.task_ids())
    return decide(plan, instances, now or datetime.now(timezone.utc))
