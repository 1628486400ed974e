"""The quorum sensor's trigger: watches a round's specialist instances from the triggerer,
so the waiting sensor holds no worker slot.

It reads task states through the Task SDK (``RuntimeTaskInstance.get_task_states``, the
call the standard provider's WorkflowTrigger makes) and asks ``core.sync`` after every
read; it fires once the decision is anything but ``continue_waiting``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_orchestra.branch_states import (
    RoundPlan,
    TaskStatesReader,
    observe_round,
)

EVENT_DECIDED = "decided"
EVENT_ERROR = "error"


class OrchestraQuorumTrigger(BaseTrigger):
    """Poll the states of a round's branches until the sync point decides.

    :param dag_id: the DAG of the run being watched.
    :param run_id: the run being watched.
    :param plan: the round plan (``RoundPlan`` as JSON: round, started_at, branches,
        sync_points, branch_dependencies, sync policy).
    :param poke_interval: seconds between two reads.
    """

    # The state reader used by run(); None means the Task SDK's
    # RuntimeTaskInstance.get_task_states. Not serialised: tests set it on an instance.
    read_task_states: TaskStatesReader | None = None

    def __init__(self, *, dag_id: str, run_id: str, plan: dict[str, Any], poke_interval: float) -> None:
        super().__init__()
        self.dag_id = dag_id
        self.run_id = run_id
        self.plan = RoundPlan.model_validate(plan).model_dump(mode="json")
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

    async def run(self) -> AsyncIterator[TriggerEvent]:
        plan = RoundPlan.model_validate(self.plan)
        reader = self._reader()
        observe = sync_to_async(observe_round)
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
            self.log.info("Round %s: %s", plan.round, observation.summary())
            if observation.decision.next_action != "continue_waiting":
                yield TriggerEvent(
                    {
                        "status": EVENT_DECIDED,
                        "decision": observation.decision.model_dump(mode="json"),
                        "branch_states": observation.states,
                    }
                )
                return
            await asyncio.sleep(self.poke_interval)
