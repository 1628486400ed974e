"""The specialist operator: one branch of the workflow, mapped once per planned branch.

Each mapped instance asks the agent-factory hook for an agent (specification -> lease ->
instance -> run -> record -> release, also on failure; a killed task's lease expires),
runs it over the branch's data in record batches, and returns the BranchResult (a small
descriptor: URIs, counts, checksums, metrics). A failed branch leaves its failed result
under the XCom key ``failed_branch_result`` and fails the attempt, so Airflow retries it
(``retries`` defaults to the agent specification's ``retry_attempts``; when mapping,
pass ``retries`` and ``map_index_template`` to ``.partial()`` as ``orchestra_workflow``
does, since a mapped task takes them from there).

Resume: the specialist's LangGraph subgraph checkpoints under thread id
``dag_id/run_id/task_id/map_index`` into the task instance's state store, which survives
retries; a retried attempt continues where the failed one stopped. Without a task state
store (an older Airflow) it uses the saver at ``checkpoint_url``,
``$ORCHESTRA_CHECKPOINT_URL`` or ``<output_root>/_state/checkpoints.sqlite``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_orchestra.core.errors import SpecialistError
from airflow_provider_orchestra.core.models import BranchTask, WorkflowConfig
from airflow_provider_orchestra.core.outcomes import COMPLETED, SUCCESS
from airflow_provider_orchestra.hooks.agent_factory import (
    DEFAULT_FACTORY_CONN_ID,
    AgentFactoryHook,
    holder_for,
)
from airflow_provider_orchestra.operators.layout import FAILED_RESULT_KEY
from airflow_provider_orchestra.runtime import BRANCH_RETRIES

if TYPE_CHECKING:
    from airflow.sdk import Context

CHECKPOINT_URL_ENV = "ORCHESTRA_CHECKPOINT_URL"
DEFAULT_RETRIES: int = BRANCH_RETRIES
BRANCH_ID_TEMPLATE = "{{ task.branch_task['branch_id'] }}"
"""map_index_template: each mapped instance is labelled with its branch id."""


class OrchestraSpecialistOperator(BaseOperator):
    """Run one planned branch through an agent from the factory.

    :param branch_task: the BranchTask (JSON dict) planned by the coordinator; the mapped
        argument (``.partial(...).expand_kwargs(route_task.output)``).
    :param specialist: which specialist this task is; a branch planned for another one is
        refused.
    :param factory_conn_id: the agent-factory connection.
    :param checkpoint_url: where to checkpoint when the task state store is unavailable.
    """

    ui_color = "#fff4d6"

    def __init__(
        self,
        *,
        branch_task: Mapping[str, Any] | None = None,
        specialist: str | None = None,
        factory_conn_id: str = DEFAULT_FACTORY_CONN_ID,
        checkpoint_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("retries", DEFAULT_RETRIES)
        kwargs.setdefault("map_index_template", BRANCH_ID_TEMPLATE)
        super().__init__(**kwargs)
        self.branch_task = branch_task
        self.specialist = specialist
        self.factory_conn_id = factory_conn_id
        self.checkpoint_url = checkpoint_url

    def _saver(self, context: Context, task: BranchTask):
        from airflow_provider_orchestra.operators.checkpoint import TaskStateCheckpointSaver
        from airflow_provider_orchestra.specialists.checkpoint import make_saver

        store = context.get("task_state_store")
        if store is not None:
            return TaskStateCheckpointSaver(store), True
        url = self.checkpoint_url or os.environ.get(CHECKPOINT_URL_ENV)
        if not url:
            from airflow_provider_orchestra.specialists.io.paths import state_path

            url = str(state_path(task.storage.output_root, "checkpoints.sqlite"))
        return make_saver(url), False

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_orchestra import runtime
        from airflow_provider_orchestra.hooks.connections import AirflowConnectionResolver
        from airflow_provider_orchestra.specialists.checkpoint import close_saver

        if self.branch_task is None:
            raise ValueError(f"{self.task_id}: no branch_task given")
        task = BranchTask.model_validate(self.branch_task)
        if self.specialist is not None and task.specialist != self.specialist:
            raise ValueError(f"{self.task_id} runs {self.specialist}, not a branch planned for {task.specialist}")
        holder = holder_for(context)
        # The embedded ledger lives under the run's output root, as for the analyzer.
        scope = WorkflowConfig(workflow_id=task.workflow_id, batches=[task.batch], storage=task.storage)
        hook = AgentFactoryHook(self.factory_conn_id, config=scope)
        saver, in_task_state = self._saver(context, task)
        self.log.info(
            "Branch %s (round %d, %s, strategy %s) as %s; checkpoints in %s",
            task.branch_id,
            task.round,
            task.specialist,
            task.allocation.strategy,
            holder,
            "the task state store" if in_task_state else type(saver).__name__,
        )
        try:
            result = runtime.execute_branch(
                task,
                factory=hook.get_factory(),
                holder=holder,
                saver=saver,
                thread_id=holder,
                connections=AirflowConnectionResolver(),
                on_progress=self._log_progress(task.branch_id),
            )
            if result.status in COMPLETED:
                saver.delete_thread(holder)  # a cleared and re-run task starts afresh
        finally:
            if not in_task_state:
                close_saver(saver)
        m = result.metrics
        if result.status not in COMPLETED:
            context["ti"].xcom_push(key=FAILED_RESULT_KEY, value=result.model_dump(mode="json"))
            raise SpecialistError(
                f"branch {task.branch_id} ({task.specialist}, round {task.round}) {result.status}: {result.error}"
            )
        self._lineage = (task, result)
        self.log.info(
            "Branch %s %s: %d row(s) in, %d out, %d rejected, %d pending, %d record batch(es), quality %s, %.2fs",
            task.branch_id,
            "done" if result.status == SUCCESS else "read no row (empty: quality 0, left out of the merge)",
            m.rows_in,
            m.rows_out,
            m.rows_rejected,
            m.rows_pending,
            m.record_batches,
            "n/a" if m.quality is None else f"{m.quality:.3f}",
            m.execution_seconds or 0.0,
        )
        return result.model_dump(mode="json")

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage (with apache-airflow-providers-openlineage): the branch's source and
        outputs as datasets, with schema, row counts and its quality figures."""
        from airflow_provider_orchestra.hooks.connections import AirflowConnectionResolver
        from airflow_provider_orchestra.operators.lineage import branch_lineage

        task, result = getattr(self, "_lineage", (None, None))
        if task is None:
            return None
        return branch_lineage(task, result, AirflowConnectionResolver())

    def _log_progress(self, branch_id: str):
        def on_progress(event: dict[str, Any]) -> None:
            fields = " ".join(f"{k}={v}" for k, v in event.items())
            self.log.info("Branch %s: %s", branch_id, fields)

        return on_progress
