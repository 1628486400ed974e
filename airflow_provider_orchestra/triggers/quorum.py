"""The quorum sensor's trigger: watches a round's specialist instances from the triggerer,
so the waiting sensor holds no worker slot.

It reads task states through the Task SDK (``RuntimeTaskInstance.get_task_states``, the
call the standard provider's WorkflowTrigger makes) and asks ``core.sync`` after every
read; it fires once the decision is anything but ``continue_waiting``.

The triggerer runs every trigger on one event loop, so nothing here may block it:

- This module imports only what the triggerer has already loaded. The triggerer imports
  a trigger's class and builds it on its event loop; the workflow's models (pydantic,
  ~0.3-0.8 s to import on a busy machine) are imported, and the plan validated, on a
  worker thread when the trigger starts.
- Each look (a round trip to the supervisor for the task states, then the decision) runs
  on a worker thread of its own (``thread_sensitive=False``: never queued behind other
  triggers' calls on asgiref's one shared thread).
- What stays on the loop is measured: every look logs how long it held the event loop,
  and the event carries the longest hold (``loop_hold_ms``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from asgiref.sync import sync_to_async

if TYPE_CHECKING:
    from airflow_provider_orchestra.branch_states import RoundPlan, TaskStatesReader

EVENT_DECIDED = "decided"
EVENT_ERROR = "error"


class OrchestraQuorumTrigger(BaseTrigger):
    """Poll the states of a round's branches until the sync point decides.

    :param dag_id: the DAG of the run being watched.
    :param run_id: the run being watched.
    :param plan: the round plan (``RoundPlan`` as JSON: round, started_at, branches,
        sync_points, branch_dependencies, sync policy); validated when the trigger starts
        (an invalid one ends it with an ``error`` event naming the field).
    :param poke_interval: seconds between two reads.
    """

    # The state reader used by run(); None means the Task SDK's
    # RuntimeTaskInstance.get_task_states. Not serialised: tests set it on an instance.
    read_task_states: TaskStatesReader | None = None

    def __init__(self, *, dag_id: str, run_id: str, plan: dict[str, Any], poke_interval: float) -> None:
        super().__init__()
        if not isinstance(plan, dict):
            raise TypeError(f"plan must be a dict (the round plan as JSON), not {type(plan).__name__}")
        self.dag_id = dag_id
        self.run_id = run_id
        self.plan = plan
        self.poke_interval = float(poke_interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "dag_id": self.dag_id,
                "run_id": self.run_id,
                "plan": self.plan,
                "poke_interval": self.poke_interval,
            },
        )

    def _reader(self) -> TaskStatesReader:
        if self.read_task_states is not None:
            return self.read_task_states
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        return RuntimeTaskInstance.get_task_states

    def _prepare(self) -> tuple[RoundPlan, Any]:
        """On a worker thread: import the models, validate the plan."""
        from airflow_provider_orchestra.branch_states import RoundPlan, observe_round

        return RoundPlan.model_validate(self.plan), observe_round

    async def run(self) -> AsyncIterator[TriggerEvent]:
        in_thread = sync_to_async  # thread_sensitive=False below: a worker thread of its own
        try:
            plan, observe_round = await in_thread(self._prepare, thread_sensitive=False)()
        except Exception as exc:
            yield TriggerEvent({"status": EVENT_ERROR, "message": f"invalid round plan: {exc}"})
            return
        reader = self._reader()
        observe = in_thread(observe_round, thread_sensitive=False)
        longest_hold = 0.0
        while True:
            try:
                observation = await observe(plan, read_states=reader, dag_id=self.dag_id, run_id=self.run_id)
            except Exception as exc:
                # Reported to the sensor, which fails with this message on resume.
                self.log.exception("Reading the branch states of %s failed", self.run_id)
                yield TriggerEvent(
                    {"status": EVENT_ERROR, "message": f"reading branch states failed: {type(exc).__name__}: {exc}"}
                )
                return
            resumed = time.perf_counter()  # from here to the next await, this look holds the loop
            decided = observation.decision.next_action != "continue_waiting"
            payload = None
            if decided:
                payload = {
                    "status": EVENT_DECIDED,
                    "decision": observation.decision.model_dump(mode="json"),
                    "branch_states": observation.states,
                }
            hold = time.perf_counter() - resumed
            self.log.info("Round %s: %s; this look held the event loop %.2f ms", plan.round, observation.summary(), hold * 1e3)
            longest_hold = max(longest_hold, time.perf_counter() - resumed)
            if payload is not None:
                yield TriggerEvent({**payload, "loop_hold_ms": round(longest_hold * 1e3, 3)})
                return
            await asyncio.sleep(self.poke_interval)
