"""What every orchestra operator reads from the run: the validated config and analysis
(the analyzer's return value), the round plans, and the branch results of the mapped
specialists (through the Task SDK's task-state API and XCom; never the metadata DB)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_orchestra.core.models import (
    AnalysisResult,
    BranchAllocation,
    BranchResult,
    BranchTask,
    WorkflowConfig,
)
from airflow_provider_orchestra.operators.layout import FAILED_RESULT_KEY, GATE_RESULT_KEY, RoundLayout, WorkflowLayout

if TYPE_CHECKING:
    from airflow.sdk import Context

ORCHESTRA_UI_COLOR = "#e8f0fe"


class OrchestraBaseOperator(BaseOperator):
    """An operator of one orchestra workflow: knows the workflow's layout and reads what
    earlier steps returned."""

    ui_color = ORCHESTRA_UI_COLOR

    def __init__(self, *, layout: WorkflowLayout, round: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.layout = layout
        self.round = round

    @property
    def round_layout(self) -> RoundLayout:
        if self.round is None:
            raise ValueError(f"{self.task_id} is not bound to a round")
        return self.layout.round(self.round)

    # ------------------------------------------------------------------ analyzer output

    def analyzer_output(self, context: Context) -> dict[str, Any]:
        out = context["ti"].xcom_pull(task_ids=self.layout.analyzer)
        if not isinstance(out, Mapping):
            raise AirflowFailException(f"no analysis: {self.layout.analyzer!r} returned nothing in this run")
        return dict(out)

    def workflow_config(self, context: Context) -> WorkflowConfig:
        return WorkflowConfig.model_validate(self.analyzer_output(context)["config"])

    def analysis(self, context: Context) -> AnalysisResult:
        return AnalysisResult.model_validate(self.analyzer_output(context)["analysis"])

    def iteration_limit(self, config: WorkflowConfig) -> int:
        """Rounds this run may use: the config's limit, bounded by the rounds laid out."""
        return min(config.iteration_limit, self.layout.iteration_limit)

    # ------------------------------------------------------------------ rounds

    def round_allocations(self, context: Context, round_layout: RoundLayout) -> list[BranchAllocation] | None:
        """The allocations round ``round_layout`` ran (None if its planner returned nothing)."""
        if round_layout.planner == self.layout.analyzer:
            return self.analysis(context).allocations
        raw = context["ti"].xcom_pull(task_ids=round_layout.planner)
        if raw is None:
            return None
        return [BranchAllocation.model_validate(a) for a in raw]

    def round_plan(self, context: Context, round_layout: RoundLayout) -> dict[str, Any] | None:
        return context["ti"].xcom_pull(task_ids=round_layout.coordinator)

    def round_results(self, context: Context, round_layout: RoundLayout) -> list[BranchResult]:
        """One result per branch a round ran (if it has a plan): the success a
        specialist returned, the failure it left behind (or one naming its end state), and
        ``cancelled`` for a branch still running or waiting. Skipped instances are no
        branches."""
        from airflow_provider_orchestra import runtime
        from airflow_provider_orchestra.branch_states import (
            RoundPlan,
            branch_state,
            fetch_task_states,
            outcome_of,
        )

        raw_plan = self.round_plan(context, round_layout)
        if raw_plan is None:
            return []
        plan = RoundPlan.model_validate(raw_plan)
        ti = context["ti"]
        own = set(round_layout.specialists.values())
        # A plan also names earlier rounds' successes; those are that round's results.
        branches = {b: where for b, where in plan.branches.items() if where[0] in own}
        task_ids = sorted({task_id for task_id, _ in branches.values()})
        if not task_ids:
            return []
        instances = fetch_task_states(ti.get_task_states, dag_id=ti.dag_id, run_id=ti.run_id, task_ids=task_ids)
        kwargs_by_task = {
            tid: ti.xcom_pull(task_ids=round_layout.routes[round_layout.specialist_of(tid)]) or [] for tid in task_ids
        }

        def planned_task(tid: str, map_index: int | None) -> BranchTask:
            return BranchTask.model_validate(kwargs_by_task[tid][map_index or 0]["branch_task"])

        results: list[BranchResult] = []
        succeeded: dict[str, list[tuple[str, int | None]]] = {}
        for branch_id, (tid, map_index) in branches.items():
            state = branch_state(instances.get(tid), map_index)
            outcome = outcome_of(state)
            if outcome == "skipped":
                continue
            if outcome == "succeeded":
                succeeded.setdefault(tid, []).append((branch_id, map_index))
                continue
            if outcome == "failed":
                left = ti.xcom_pull(task_ids=tid, key=FAILED_RESULT_KEY, map_indexes=map_index)
                if left is not None:
                    results.append(BranchResult.model_validate(left))
                else:
                    results.append(
                        runtime.failed_result(planned_task(tid, map_index), f"task {tid}[{map_index}] ended {state}")
                    )
                continue
            results.append(
                runtime.failed_result(
                    planned_task(tid, map_index),
                    f"still {state or 'waiting'} when round {round_layout.round} was merged",
                    status="cancelled",
                )
            )
        for tid, branches in succeeded.items():
            values = ti.xcom_pull(task_ids=tid, map_indexes=[m for _, m in branches])
            for (branch_id, map_index), value in zip(branches, values, strict=True):
                if value is None:
                    raise AirflowFailException(f"branch {branch_id!r} ({tid}[{map_index}]) succeeded without a result")
                results.append(BranchResult.model_validate(value))
        return results

    def earlier_successes(self, context: Context, before_round: int) -> dict[str, tuple[str, int | None]]:
        """Branch id -> (task id, map index) of its latest successful instance in rounds
        before ``before_round``."""
        from airflow_provider_orchestra.branch_states import (
            RoundPlan,
            branch_state,
            fetch_task_states,
        )

        ti = context["ti"]
        found: dict[str, tuple[str, int | None]] = {}
        for r in range(before_round - 1, 0, -1):
            raw_plan = self.round_plan(context, self.layout.round(r))
            if raw_plan is None:
                continue
            plan = RoundPlan.model_validate(raw_plan)
            instances = fetch_task_states(ti.get_task_states, dag_id=ti.dag_id, run_id=ti.run_id, task_ids=plan.task_ids())
            for branch_id, (task_id, map_index) in plan.branches.items():
                if branch_id not in found and branch_state(instances.get(task_id), map_index) == "success":
                    found[branch_id] = (task_id, map_index)
        return found

    def results_through(self, context: Context, last_round: int) -> list[BranchResult]:
        """Every round's results up to ``last_round`` (core.merging keeps each branch's latest
        success, else its latest attempt)."""
        results: list[BranchResult] = []
        for r in range(1, last_round + 1):
            results.extend(self.round_results(context, self.layout.round(r)))
        return results

    def gate_result(self, context: Context, round_layout: RoundLayout) -> dict[str, Any] | None:
        return context["ti"].xcom_pull(task_ids=round_layout.gate, key=GATE_RESULT_KEY)

    def timeline(self, context: Context, last_round: int) -> list[dict[str, Any]]:
        """The run's decisions, from what each step returned: plans, the agent factory's
        events (of the coordinator and of every branch attempt), sync decisions, gates.
        Event names are the native graph's, so timelines read the same in both runtimes."""
        from airflow_provider_orchestra.core.integration import branch_timeline, factory_timeline

        ti = context["ti"]
        events: list[dict[str, Any]] = []
        analysis = self.analysis(context)
        events.append(
            {
                "event": "data_batch_analysis",
                "timestamp": analysis.analyzed_at.isoformat(),
                "workflow_mode": analysis.workflow_mode,
                "max_branches": analysis.max_branches,
                "complexity_score": analysis.complexity.complexity_score,
                "allocated_branches": len(analysis.allocations),
            }
        )
        for r in range(1, last_round + 1):
            rl = self.layout.round(r)
            plan = self.round_plan(context, rl)
            if plan is None:
                continue
            own = set(rl.specialists.values())
            ran = sorted(b for b, (task_id, _) in plan["branches"].items() if task_id in own)
            events.append({"event": "parallel_coordination", "round": r, "timestamp": plan["started_at"], "branches": ran})
            events += factory_timeline(plan.get("factory_events") or [], round=r)
            for result in sorted(self.round_results(context, rl), key=lambda b: b.completed_at):
                events += branch_timeline(result)
            if (sync := ti.xcom_pull(task_ids=rl.sync_point)) is not None:
                events.append(
                    {
                        "event": "synchronization_checkpoint",
                        "round": r,
                        **_pick(sync, ("sync_point", "status", "next_action", "progress", "failed_branches", "remaining_branches")),
                        **_timestamp(sync),
                    }
                )
            else:
                # the sensor failed past the overall timeout: the round went to recovery
                events.append({"event": "synchronization_checkpoint", "round": r, "status": "timeout", "next_action": "timeout_recovery"})
            if (gate := self.gate_result(context, rl)) is not None:
                events.append({"event": "quality_gate", "round": r, **_pick(gate, ("decision", "reason", "final")), **_timestamp(gate)})
        return events


def _timestamp(decision: Mapping[str, Any]) -> dict[str, Any]:
    return {"timestamp": decision["decided_at"]} if decision.get("decided_at") else {}


def _pick(data: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {k: data[k] for k in keys if k in data}
