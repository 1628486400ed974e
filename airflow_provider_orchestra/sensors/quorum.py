"""The sync point of an orchestra round as an Airflow sensor.

``OrchestraQuorumSensor`` sits downstream of the round's coordinator only (never of the
specialists) and watches the mapped specialist instances through the Task SDK's
task-state API. Every look goes through ``core.sync.evaluate_sync``:

- ``proceed_to_data_merge`` (100%) or ``conditional_proceed`` (>= quorum once the
  conditional timeout passed): the sensor succeeds; its return value (XCom) is the
  ``SyncDecision`` as JSON, naming the completed, remaining and failed branches.
- ``continue_waiting``: it keeps waiting.
- ``timeout_recovery``: it fails (AirflowFailException, no retry), so the next round's
  load balancer (trigger rule ``one_failed``) re-plans the unfinished branches.

How it waits:

- ``deferrable=True`` (default): after one inline look it defers to
  ``OrchestraQuorumTrigger``; the triggerer does the polling and the sensor holds no
  worker slot while it waits.
- ``deferrable=False``: a classic sensor; pass ``mode="reschedule"`` to free the worker
  slot between looks (``mode="poke"`` holds it).
- Under ``dag.test()`` (tasks run one at a time in-process, and a deferred trigger would
  run inline and block every branch) the sensor switches itself to reschedule mode, so
  the branches run between its looks. Nothing is needed from the DAG author for that.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException
from pydantic import ValidationError

from airflow_provider_orchestra.core.models import SyncDecision, SyncPolicy
from airflow_provider_orchestra.branch_states import (
    RoundObservation,
    RoundPlan,
    observe_round,
)
from airflow_provider_orchestra.triggers.quorum import (
    EVENT_DECIDED,
    EVENT_ERROR,
    OrchestraQuorumTrigger,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

PROCEED_ACTIONS = frozenset({"proceed_to_data_merge", "conditional_proceed"})
DEFAULT_POKE_INTERVAL = SyncPolicy.model_fields["poke_interval_seconds"].default
# How long past the round's overall timeout a deferral may last before Airflow fails the
# sensor itself (the trigger normally reports timeout_recovery first); covers a triggerer
# that is down or busy.
DEFERRAL_GRACE_SECONDS = 120.0


def runs_in_process_test() -> bool:
    """True inside ``dag.test()`` without an executor: the task runs in the test's own
    process, one task at a time, and a deferral would run its trigger inline."""
    try:
        from airflow.sdk.execution_time import task_runner
        from airflow.sdk.execution_time.supervisor import InProcessSupervisorComms
    except ImportError:  # pragma: no cover - a Task SDK without the in-process runner
        return False
    return isinstance(getattr(task_runner, "SUPERVISOR_COMMS", None), InProcessSupervisorComms)


class OrchestraQuorumSensor(BaseSensorOperator):
    """Wait until the round's sync point lets the merge go on.

    :param specialist_task_ids: the specialist tasks (mapped or not) whose instances form
        the round's branches.
    :param round_started_task_id: the coordinator task; its return value is the round plan
        (``RoundPlan``: round, started_at, branches {branch_id: [task_id, map_index]},
        sync_points, branch_dependencies, sync policy).
    :param deferrable: wait in the triggerer instead of a worker slot (default True).
    :param poke_interval: seconds between looks; None (default) takes the plan's
        ``sync.poke_interval_seconds``.
    """

    ui_color = "#f3e8ff"
    template_fields: Sequence[str] = ()

    def __init__(
        self,
        *,
        specialist_task_ids: Sequence[str],
        round_started_task_id: str,
        deferrable: bool = True,
        poke_interval: float | timedelta | None = None,
        **kwargs: Any,
    ) -> None:
        if deferrable and kwargs.get("mode", "poke") == "reschedule":
            raise ValueError(
                "OrchestraQuorumSensor: mode='reschedule' is for deferrable=False; "
                "a deferrable sensor already frees its worker slot while it waits"
            )
        super().__init__(
            poke_interval=DEFAULT_POKE_INTERVAL if poke_interval is None else poke_interval, **kwargs
        )
        if isinstance(specialist_task_ids, str) or not specialist_task_ids:
            raise ValueError("OrchestraQuorumSensor: specialist_task_ids must be a non-empty list of task ids")
        self.specialist_task_ids = list(specialist_task_ids)
        self.round_started_task_id = round_started_task_id
        self.deferrable = deferrable
        self.poke_interval_from_plan = poke_interval is None

    # ------------------------------------------------------------------ the round plan

    def load_plan(self, context: Context) -> RoundPlan:
        raw = context["ti"].xcom_pull(task_ids=self.round_started_task_id)
        if raw is None:
            raise AirflowFailException(
                f"no round plan: task {self.round_started_task_id!r} returned nothing in this run"
            )
        try:
            plan = RoundPlan.model_validate(raw)
        except ValidationError as exc:
            raise AirflowFailException(
                f"invalid round plan from {self.round_started_task_id!r}: {exc}"
            ) from None
        unknown = sorted({tid for tid in plan.task_ids() if tid not in self.specialist_task_ids})
        if unknown:
            raise AirflowFailException(
                f"round plan from {self.round_started_task_id!r} names task(s) {unknown} "
                f"that this sensor does not watch (specialist_task_ids={self.specialist_task_ids})"
            )
        if self.poke_interval_from_plan:
            self.poke_interval = plan.sync.poke_interval_seconds
        return plan

    def observe(self, context: Context, plan: RoundPlan) -> RoundObservation:
        ti = context["ti"]
        observation = observe_round(
            plan, read_states=ti.get_task_states, dag_id=ti.dag_id, run_id=ti.run_id
        )
        self.log.info("Round %s: %s", plan.round, observation.summary())
        return observation

    # ------------------------------------------------------------------ outcomes

    def finish(self, decision: SyncDecision) -> dict[str, Any]:
        """Succeed with the decision as return value, or fail for timeout recovery."""
        if decision.next_action in PROCEED_ACTIONS:
            self.log.info(
                "Sync point %r: %s with %d/%d branches (remaining %s, failed %s)",
                decision.sync_point,
                decision.next_action,
                len(decision.completed_branches),
                len(decision.completed_branches) + len(decision.remaining_branches),
                decision.remaining_branches,
                decision.failed_branches,
            )
            return decision.model_dump(mode="json")
        if decision.next_action == "timeout_recovery":
            raise AirflowFailException(
                f"sync point {decision.sync_point!r} below quorum: progress {decision.progress:.0%} "
                f"after {decision.elapsed_seconds:.1f}s (status {decision.status}); "
                f"completed {decision.completed_branches}, remaining {decision.remaining_branches}, "
                f"failed {decision.failed_branches}. The load balancer re-plans the unfinished branches."
            )
        raise AirflowFailException(f"sync point {decision.sync_point!r}: unexpected final action {decision.next_action!r}")

    # ------------------------------------------------------------------ Airflow entry points

    def execute(self, context: Context) -> Any:
        plan = self.load_plan(context)
        if runs_in_process_test():
            if self.mode != "reschedule":
                self.log.info("Running under dag.test(): waiting in reschedule mode instead of deferring")
                self.mode = "reschedule"
            return super().execute(context)
        if not self.deferrable:
            return super().execute(context)
        observation = self.observe(context, plan)
        if observation.decision.next_action != "continue_waiting":
            return self.finish(observation.decision)
        self.defer_to_trigger(context, plan, observation.decision)

    def defer_to_trigger(self, context: Context, plan: RoundPlan, decision: SyncDecision) -> None:
        ti = context["ti"]
        remaining = max(0.0, plan.sync.overall_timeout_seconds - decision.elapsed_seconds)
        self.defer(
            trigger=OrchestraQuorumTrigger(
                dag_id=ti.dag_id,
                run_id=ti.run_id,
                plan=plan.model_dump(mode="json"),
                poke_interval=self.poke_interval,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=remaining + max(DEFERRAL_GRACE_SECONDS, 3 * self.poke_interval)),
        )

    def poke(self, context: Context) -> PokeReturnValue:
        observation = self.observe(context, self.load_plan(context))
        if observation.decision.next_action == "continue_waiting":
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value=self.finish(observation.decision))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after the trigger fired: validate its event, then succeed or fail."""
        if not isinstance(event, dict) or event.get("status") not in (EVENT_DECIDED, EVENT_ERROR):
            raise AirflowFailException(f"unexpected event from the quorum trigger: {event!r}")
        if event["status"] == EVENT_ERROR:
            raise AirflowFailException(f"quorum trigger failed: {event.get('message')}")
        try:
            decision = SyncDecision.model_validate(event.get("decision"))
        except ValidationError as exc:
            raise AirflowFailException(f"invalid decision from the quorum trigger: {exc}") from None
        if decision.next_action == "continue_waiting":
            # Never sent by the trigger; if it ever is, wait on rather than decide on it.
            plan = self.load_plan(context)
            return self.defer_to_trigger(context, plan, decision)
        self.log.info(
            "Resumed after the quorum trigger fired; branch states %s; longest hold of the triggerer's "
            "event loop by one look: %s ms",
            event.get("branch_states"),
            event.get("loop_hold_ms"),
        )
        return self.finish(decision)
