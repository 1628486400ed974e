"""The workflow's steps as Airflow operators: thin adapters over ``runtime`` (which joins
core/, factory/ and specialists/). Each reads small descriptors from XCom, calls one runtime
function and returns a small descriptor.

How the steps connect (trigger rules) is the workflow builder's business
(``airflow_provider_orchestra.task_groups``); see its module docstring.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseBranchOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_orchestra.core.errors import OrchestraError
from airflow_provider_orchestra.core import flow
from airflow_provider_orchestra.core.models import (
    GateResult,
    MergeReport,
    SyncDecision,
    WorkflowConfig,
)
from airflow_provider_orchestra.hooks.agent_factory import DEFAULT_FACTORY_CONN_ID, AgentFactoryHook, holder_for
from airflow_provider_orchestra.operators.base import OrchestraBaseOperator
from airflow_provider_orchestra.operators.layout import GATE_RESULT_KEY, branch_tasks_key

if TYPE_CHECKING:
    from airflow.sdk import Asset, Context


def config_from_params(context: Context) -> dict[str, Any]:
    """The run's config from its params (the DAG's Params form merged with the run's conf).

    Params the DAG declares for other purposes are left out; every other key is config,
    so a misspelt conf key is reported by name instead of being ignored.
    """
    from airflow_provider_orchestra.core.models import WorkflowConfig

    fields = set(WorkflowConfig.model_fields)
    declared = set(context["dag"].params) if context.get("dag") is not None else set()
    other = declared - fields
    return {k: v for k, v in dict(context["params"]).items() if k not in other}


class OrchestraAnalyzerOperator(OrchestraBaseOperator):
    """data_batch_analyzer: validate the run's config (a bad one fails here, naming the
    field, before any branch starts), measure the batches, pick the mode, allocate.

    :param workflow_config: the config (dict, JSON text or WorkflowConfig; templated, so
        a DAG author may write per-run paths such as ``slices/{{ ds }}/orders.parquet``).
        The run's params (the Params form merged with the run's conf; never rendered) are
        laid over its top-level fields; None takes the whole config from the params.
    :param factory_conn_id: the agent-factory connection (its ledger feeds the resource
        assessment).

    Returns ``{"config": ..., "analysis": ...}`` (JSON): the validated config every later
    step reads, and the AnalysisResult with the round-1 allocations.
    """

    template_fields: Sequence[str] = ("workflow_config",)
    ui_color = "#d2e3fc"

    def __init__(
        self,
        *,
        workflow_config: Any = None,
        factory_conn_id: str = DEFAULT_FACTORY_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.workflow_config = workflow_config
        self.factory_conn_id = factory_conn_id

    def config_source(self, context: Context) -> dict[str, Any]:
        """The DAG author's config (rendered) with the run's params laid over its
        top-level fields."""
        overrides = config_from_params(context)
        base = self.workflow_config
        if base is None:
            return overrides
        if isinstance(base, WorkflowConfig):
            base = base.model_dump(mode="json", by_alias=True)
        elif isinstance(base, (str, bytes)):
            try:
                base = json.loads(base)
            except ValueError as exc:
                raise AirflowFailException(f"invalid workflow config: not JSON ({exc})") from None
            except RecursionError:
                raise AirflowFailException("invalid workflow config: nested deeper than it can be read") from None
        if not isinstance(base, dict):
            raise AirflowFailException(f"invalid workflow config: expected an object, got {type(base).__name__}")
        return {**base, **overrides}

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_orchestra import runtime
        from airflow_provider_orchestra.hooks.connections import AirflowConnectionResolver

        try:
            config = runtime.load_config(self.config_source(context))
            descriptors = runtime.describe_batches(config, connections=AirflowConnectionResolver())
        except OrchestraError as exc:
            # Nothing a retry could change: stop the run here with the reason.
            raise AirflowFailException(str(exc)) from None
        factory = AgentFactoryHook(self.factory_conn_id, config=config).get_factory()
        analysis = runtime.analyze_run(config, descriptors, factory)
        self.log.info(
            "Workflow %s: %d batch(es), %d row(s); mode %s with up to %d branch(es) at once "
            "(complexity %.3f, cluster cpu %.3f)",
            config.workflow_id,
            len(descriptors),
            sum(d.rows for d in descriptors),
            analysis.workflow_mode,
            analysis.max_branches,
            analysis.complexity.complexity_score,
            analysis.resources.cluster_cpu,
        )
        return {
            "config": config.model_dump(mode="json", by_alias=True),
            "analysis": analysis.model_dump(mode="json"),
        }


class OrchestraCoordinatorOperator(OrchestraBaseOperator):
    """parallel_coordinator: plan one BranchTask per allocation of this round and leave
    each specialist's kwargs list for its routing task.

    Returns the round plan the sync point reads: ``{"round", "started_at", "branches":
    {branch_id: [specialist task id, map index]}, "sync_points", "branch_dependencies",
    "sync", "workflow_mode"}``. From round 2 on, ``branches`` also names the branches that
    succeeded in an earlier round and are not run again (at their earlier instance), and
    ``succeeded_before`` lists every earlier success (a weak one re-run for a revision keeps
    it if the re-run fails), so the quorum is over the run's branches, as in the native graph.
    ``factory_events`` are the agent factory's events of a coordinating agent (created when
    requirement analysis asks for one; see ``runtime.plan_round``).

    :param factory_conn_id: the agent-factory connection.
    """

    ui_color = "#d2e3fc"

    def __init__(self, *, factory_conn_id: str = DEFAULT_FACTORY_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.factory_conn_id = factory_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_orchestra import runtime

        rl = self.round_layout
        config = self.workflow_config(context)
        allocations = self.round_allocations(context, rl)
        if allocations is None:
            raise AirflowFailException(f"round {rl.round}: {rl.planner!r} returned no allocations")
        tasks, factory_events = runtime.plan_round(
            config,
            allocations,
            run_id=context["ti"].run_id,
            factory=AgentFactoryHook(self.factory_conn_id, config=config).get_factory(),
            holder=holder_for(context),
        )
        try:
            grouped = runtime.group_by_specialist(tasks, self.layout.specialists)
        except OrchestraError as exc:
            raise AirflowFailException(str(exc)) from None
        # The sync point counts the run's branches: those that succeeded in an earlier round
        # and are not run again stand as done, pointing at the instance that did them.
        earlier = self.earlier_successes(context, rl.round)
        branches: dict[str, list[Any]] = {
            branch_id: [task_id, map_index]
            for branch_id, (task_id, map_index) in earlier.items()
            if branch_id not in {t.branch_id for t in tasks}
        }
        for specialist, planned in grouped.items():
            context["ti"].xcom_push(
                key=branch_tasks_key(specialist),
                value=[{"branch_task": t.model_dump(mode="json", by_alias=True)} for t in planned],
            )
            for map_index, t in enumerate(planned):
                branches[t.branch_id] = [rl.specialists[specialist], map_index]
            self.log.info("Round %d: %s <- %s", rl.round, specialist, [t.branch_id for t in planned] or "nothing")
        return {
            "round": rl.round,
            "started_at": datetime.now(timezone.utc).isoformat(),
            "branches": branches,
            "sync_points": config.sync_points,
            "branch_dependencies": config.branch_dependencies,
            "sync": config.sync.model_dump(mode="json"),
            "succeeded_before": sorted(earlier),
            "workflow_mode": self.analysis(context).workflow_mode,
            "factory_events": factory_events,
        }


class OrchestraRouteOperator(OrchestraBaseOperator):
    """Hands one specialist its kwargs list as a plain return value, which is what
    ``expand_kwargs`` maps over (Airflow refuses to map over a custom XCom key)."""

    ui_color = "#f1f3f4"

    def __init__(self, *, specialist: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.specialist = specialist

    def execute(self, context: Context) -> list[dict[str, Any]]:
        kwargs_list = context["ti"].xcom_pull(
            task_ids=self.round_layout.coordinator, key=branch_tasks_key(self.specialist)
        )
        return list(kwargs_list or [])


class OrchestraMergerOperator(OrchestraBaseOperator):
    """branch_merger: merge every round's results so far (latest success per branch) into
    a MergeReport: per-category weights, attribution and quality; failed and cancelled
    branches named."""

    ui_color = "#fce8e6"

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_orchestra import runtime

        rl = self.round_layout
        allocated = [a.branch_id for a in self.analysis(context).allocations]
        results = self.results_through(context, rl.round)
        report = runtime.merge(allocated, results, rl.round)
        self.log.info(
            "Round %d merge: %d/%d branch(es) successful, overall quality %.3f, success rate %.3f; "
            "failed %s, cancelled %s, empty (read no row; not merged) %s",
            rl.round,
            report.successful_branches,
            report.allocated_branches,
            report.overall_quality,
            report.success_rate,
            report.failed_branch_ids,
            report.cancelled_branch_ids,
            report.empty_branch_ids,
        )
        return report.model_dump(mode="json")


class OrchestraQualityGateOperator(OrchestraBaseOperator, BaseBranchOperator):
    """quality_validator (a branch operator): approved -> this round's ``approved`` marker
    (the final integrator follows it); needs_revision with rounds left -> the next round's
    load balancer; critical failure or the last allowed round -> ``stop_workflow``.

    Leaves the GateResult (JSON) plus ``follow``, the task it branched to, under the XCom
    key ``gate_result``.
    """

    ui_color = "#fef7e0"

    def choose(self, context: Context) -> tuple[GateResult, str]:
        from airflow_provider_orchestra import runtime

        rl = self.round_layout
        raw = context["ti"].xcom_pull(task_ids=rl.merger)
        if raw is None:
            raise AirflowFailException(f"round {rl.round}: no merge report from {rl.merger!r}")
        config = self.workflow_config(context)
        report = MergeReport.model_validate(raw)
        result = runtime.gate(config, report, rl.round, self.iteration_limit(config))
        # iteration_limit() is bounded by the rounds laid out, so the last round is final.
        step = flow.next_after_gate(result)
        follow = {"integrate": rl.approved, "stop": rl.stop}.get(step) or self.layout.round(rl.round + 1).load_balancer
        self.log.info("Round %d: %s (%s) -> %s", rl.round, result.decision, result.reason, follow)
        return result, follow

    def choose_branch(self, context: Context) -> str:
        return self.choose(context)[1]

    def execute(self, context: Context) -> Any:
        result, follow = self.choose(context)
        # Pushed before branching: skipping the other branches ends execute() early.
        context["ti"].xcom_push(key=GATE_RESULT_KEY, value={**result.model_dump(mode="json"), "follow": follow})
        rl = self.round_layout
        if rl.last or follow == self.layout.round(rl.round + 1).load_balancer:
            return self.do_branch(context, follow)
        # The run ends after this round: skip the later rounds at once instead of letting
        # the skip travel through them task by task (same end states, fewer scheduler passes).
        later = tuple(f"{r.group}." for r in self.layout.rounds[rl.round :])
        self.log.info(
            "Round %d: %s -> %s; skipping rounds %d..%d",
            rl.round,
            result.decision,
            follow,
            rl.round + 1,
            self.layout.iteration_limit,
        )
        skipped = [t for t in self.downstream_list if t.task_id != follow]
        skipped += [t for t in self.dag.tasks if t.task_id.startswith(later)]
        return self.skip(context["ti"], skipped)


class OrchestraLoadBalancerOperator(OrchestraBaseOperator):
    """load_balancer of round r: after round r-1 needed a revision or lost its quorum,
    re-plan every branch without a success (and, for a revision, the weak ones) with the
    fallback strategy. Branches that did well keep their result.

    Returns this round's allocations (JSON list).
    """

    ui_color = "#e6f4ea"

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from airflow_provider_orchestra import runtime

        rl = self.round_layout
        previous = self.layout.round(rl.round - 1)
        raw_gate = self.gate_result(context, previous)
        gate = None if raw_gate is None else GateResult.model_validate(_without_follow(raw_gate))
        revision = flow.is_revision_round(gate, previous.round)
        config = self.workflow_config(context)
        results = self.results_through(context, previous.round)
        allocations = self.analysis(context).allocations
        planned = runtime.replan(config, allocations, results, rl.round, revision)
        self.log.info(
            "Round %d after %s: re-planning %s",
            rl.round,
            "a revision" if revision else "timeout recovery",
            [a.branch_id for a in planned] or "nothing",
        )
        return [a.model_dump(mode="json") for a in planned]


class OrchestraTimeoutRecoveryOperator(OrchestraBaseOperator, BaseBranchOperator):
    """timeout_recovery (trigger rule one_failed, a branch operator): the round's sync
    point did not hold (below quorum at the overall timeout, or the round could not
    start). With rounds left it hands over to the next round's load balancer (through the
    ``recover_next_round`` marker); in the last
    allowed round it lets the merger merge what finished, and the quality gate gives the
    final status (core.flow.next_after_sync decides, as in the native graph)."""

    ui_color = "#fad2cf"

    def choose_branch(self, context: Context) -> str:
        from airflow_provider_orchestra.branch_states import fetch_task_states

        rl = self.round_layout
        ti = context["ti"]
        states = fetch_task_states(ti.get_task_states, dag_id=ti.dag_id, run_id=ti.run_id, task_ids=[rl.sync_point])
        state = states[rl.sync_point].bare_state
        # The sensor fails only for timeout recovery; it returns no decision then.
        not_held = SyncDecision(
            sync_point=None,
            progress=0.0,
            status="timeout",
            next_action="timeout_recovery",
            completed_branches=[],
            remaining_branches=[],
        )
        limit = self.iteration_limit(self.workflow_config(context))
        step = flow.next_after_sync(not_held, rl.round, limit)
        follow = rl.recover if step == "recover" and not rl.last else rl.merger
        self.log.info(
            "Round %d: the sync point ended %s; %s",
            rl.round,
            state,
            "the next round re-plans" if follow != rl.merger else "last allowed round: merging what finished",
        )
        return follow


class _ReportingOperator(OrchestraBaseOperator):
    def write_report(self, context: Context, rl_round: int, gate: GateResult):
        from airflow_provider_orchestra import runtime

        rl = self.layout.round(rl_round)
        config = self.workflow_config(context)
        raw = context["ti"].xcom_pull(task_ids=rl.merger)
        if raw is None:
            raise AirflowFailException(f"round {rl.round}: no merge report from {rl.merger!r}")
        return runtime.integrate(
            config,
            run_id=context["ti"].run_id,
            mode=self.analysis(context).workflow_mode,
            merge_report=MergeReport.model_validate(raw),
            gate_result=gate,
            results=self.results_through(context, rl.round),
            timeline=self.timeline(context, rl.round),
        )


class OrchestraStopOperator(_ReportingOperator):
    """stop_workflow: the gate's final word was not an approval (critical failure, or the
    revision limit reached). Writes the final report, then fails with its reason, so the
    run ends failed and says why; no asset event is emitted."""

    ui_color = "#f28b82"

    def execute(self, context: Context) -> None:
        rl = self.round_layout
        raw = self.gate_result(context, rl)
        if raw is None:
            raise AirflowFailException(f"round {rl.round}: no gate result from {rl.gate!r}")
        gate = GateResult.model_validate(_without_follow(raw))
        report = self.write_report(context, rl.round, gate)
        raise AirflowFailException(
            f"workflow {report.workflow_id} stopped in round {rl.round}: {report.status} - {gate.reason}; "
            f"failed branches {report.merge.failed_branch_ids}; empty branches (read no row) "
            f"{report.merge.empty_branch_ids}; report: {report.asset_uri}"
        )


class OrchestraFinalIntegratorOperator(_ReportingOperator):
    """final_integrator (trigger rule none_failed_min_one_success over the rounds'
    ``approved`` markers): write the integrated output of the approved round and emit the
    workflow's Asset, with the report's headline figures as the event's extra.

    Returns ``{"status", "manifest_uri", "asset_uri", "summary"}``.
    """

    ui_color = "#ceead6"

    def __init__(self, *, asset: Asset | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.asset = asset

    def approved_round(self, context: Context) -> tuple[int, GateResult]:
        for rl in self.layout.rounds:
            raw = self.gate_result(context, rl)
            if raw is not None and raw.get("decision") == "approved":
                return rl.round, GateResult.model_validate(_without_follow(raw))
        raise AirflowFailException("no round was approved in this run")

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_orchestra.core.integration import report_summary

        round_, gate = self.approved_round(context)
        report = self.write_report(context, round_, gate)
        self._integrated = report
        summary = report_summary(report)
        self.log.info("Integrated output of round %d: %s (%s)", round_, report.asset_uri, summary)
        if self.asset is not None:
            context["outlet_events"][self.asset].extra = {**summary, "manifest_uri": report.asset_uri}
        return {
            "status": report.status,
            "manifest_uri": report.asset_uri,
            "asset_uri": self.asset.uri if self.asset is not None else None,
            "summary": summary,
        }

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage (with apache-airflow-providers-openlineage): the integrated manifest
        as output, the branch outputs it integrates as inputs."""
        from airflow_provider_orchestra.core.integration import describe_integrated_output
        from airflow_provider_orchestra.hooks.connections import AirflowConnectionResolver
        from airflow_provider_orchestra.operators.lineage import integration_lineage

        report = getattr(self, "_integrated", None)
        if report is None:
            return None
        return integration_lineage(report, describe_integrated_output(report), AirflowConnectionResolver())


def _without_follow(gate: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in gate.items() if k != "follow"}
