"""Task ids of one orchestra workflow inside a DAG.

The workflow builder lays the tasks out with these names and hands the layout to every
operator, so an operator finds the XComs and states it reads without guessing ids. Names
follow the reference workflow's nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

ANALYZER = "data_batch_analyzer"
COORDINATOR = "parallel_coordinator"
ROUTE_PREFIX = "route_"
BRANCHES_DONE = "branches_done"
APPROVE_SYNC = "approve_sync_point"
SYNC_POINT = "sync_point_manager"
TIMEOUT_RECOVERY = "timeout_recovery"
RECOVER = "recover_next_round"
MERGER = "branch_merger"
APPROVE_QUALITY = "approve_quality_validation"
QUALITY_GATE = "quality_validator"
APPROVED = "approved"
STOP = "stop_workflow"
LOAD_BALANCER = "load_balancer"
INTEGRATOR = "final_integrator"

_STEP_NAMES = frozenset(
    {ANALYZER, COORDINATOR, BRANCHES_DONE, APPROVE_SYNC, SYNC_POINT, TIMEOUT_RECOVERY, RECOVER, MERGER,
     APPROVE_QUALITY, QUALITY_GATE, APPROVED, STOP, LOAD_BALANCER, INTEGRATOR}
)

BRANCH_TASKS_KEY_PREFIX = "branch_tasks."
"""XCom key under which the coordinator leaves one specialist's kwargs list."""
GATE_RESULT_KEY = "gate_result"
"""XCom key of the quality gate's decision (a branch operator returns no value)."""
FAILED_RESULT_KEY = "failed_branch_result"
"""XCom key of the BranchResult a specialist leaves behind when its attempt failed."""


def branch_tasks_key(specialist: str) -> str:
    return f"{BRANCH_TASKS_KEY_PREFIX}{specialist}"


def round_group_id(round: int) -> str:
    return f"round_{round}"


def _join(*parts: str | None) -> str:
    return ".".join(p for p in parts if p)


@dataclass(frozen=True)
class RoundLayout:
    round: int
    group: str
    planner: str
    """The task whose return value is this round's allocations: the analyzer in round 1
    (its ``analysis.allocations``), this round's load balancer afterwards."""
    coordinator: str
    routes: dict[str, str]
    specialists: dict[str, str]
    branches_done: str
    approve_sync: str
    sync_point: str
    recovery: str
    recover: str
    """Marker the timeout recovery branches to when the next round re-plans (only
    ``recover`` itself and what follows it escape the branch's skip)."""
    merger: str
    approve_quality: str
    gate: str
    approved: str
    stop: str
    load_balancer: str | None
    last: bool

    def specialist_of(self, task_id: str) -> str:
        for name, tid in self.specialists.items():
            if tid == task_id:
                return name
        raise KeyError(task_id)


@dataclass(frozen=True)
class WorkflowLayout:
    prefix: str | None
    analyzer: str
    integrator: str
    rounds: tuple[RoundLayout, ...] = field(default_factory=tuple)

    specialists: tuple[str, ...] = field(default_factory=tuple)
    """The specialists laid out in every round (a routing task + a mapped task each)."""

    @classmethod
    def build(
        cls, prefix: str | None, iteration_limit: int, specialists: Sequence[str] | None = None
    ) -> WorkflowLayout:
        """Ids of a workflow whose tasks live under ``prefix`` (the enclosing TaskGroup's
        id, or None at the DAG's top level), with ``iteration_limit`` rounds and a routing
        + mapped task per specialist (default: every specialist registered now)."""
        if iteration_limit < 1:
            raise ValueError(f"iteration_limit must be at least 1, got {iteration_limit}")
        if specialists is None:
            from airflow_provider_orchestra.core.specialists import specialist_names

            specialists = specialist_names()
        specialists = tuple(specialists)
        taken = sorted(set(specialists) & (_STEP_NAMES | {ROUTE_PREFIX + s for s in specialists}))
        if taken:
            raise ValueError(f"specialist name(s) {taken} are task ids of the workflow's own steps; rename them")
        analyzer = _join(prefix, ANALYZER)
        rounds = []
        for r in range(1, iteration_limit + 1):
            group = _join(prefix, round_group_id(r))
            lb = _join(group, LOAD_BALANCER) if r > 1 else None
            rounds.append(
                RoundLayout(
                    round=r,
                    group=group,
                    planner=lb or analyzer,
                    coordinator=_join(group, COORDINATOR),
                    routes={s: _join(group, ROUTE_PREFIX + s) for s in specialists},
                    specialists={s: _join(group, s) for s in specialists},
                    branches_done=_join(group, BRANCHES_DONE),
                    approve_sync=_join(group, APPROVE_SYNC),
                    sync_point=_join(group, SYNC_POINT),
                    recovery=_join(group, TIMEOUT_RECOVERY),
                    recover=_join(group, RECOVER),
                    merger=_join(group, MERGER),
                    approve_quality=_join(group, APPROVE_QUALITY),
                    gate=_join(group, QUALITY_GATE),
                    approved=_join(group, APPROVED),
                    stop=_join(group, STOP),
                    load_balancer=lb,
                    last=r == iteration_limit,
                )
            )
        return cls(
            prefix=prefix,
            analyzer=analyzer,
            integrator=_join(prefix, INTEGRATOR),
            rounds=tuple(rounds),
            specialists=specialists,
        )

    @property
    def iteration_limit(self) -> int:
        return len(self.rounds)

    def round(self, r: int) -> RoundLayout:
        if not 1 <= r <= len(self.rounds):
            raise KeyError(f"round {r} is not in this workflow (1..{len(self.rounds)})")
        return self.rounds[r - 1]
