"""``orchestra_workflow(...)``: the whole workflow laid out in the current DAG.

Layout (``orchestra`` is the group id; rounds 2.. add a load balancer in front)::

    orchestra.data_batch_analyzer                                  (setup task)
    orchestra.round_r.load_balancer                      (r > 1)   one_success
      -> parallel_coordinator -> route_<specialist> x5 -> <specialist> (mapped) x5
                                                              -> branches_done  all_done
      -> [approve_sync_point] -> sync_point_manager (quorum sensor)
           -> timeout_recovery (branch)                             one_failed
                -> recover_next_round -> round_{r+1}.load_balancer | branch_merger
           -> branch_merger                                         one_success
                -> [approve_quality_validation] -> quality_validator (branch)
                     -> approved | round_{r+1}.load_balancer | stop_workflow
    orchestra.final_integrator   <- every round's ``approved``      none_failed_min_one_success

Why these trigger rules (checked against Airflow 3.3's trigger_rule_dep, the branch
operators' skip rule, and the DAG run's leaf rule: a run fails iff a leaf task ends failed
or upstream_failed):

- The analyzer is a *setup* task. A bad config fails it, and Airflow's setup rule marks
  every later task upstream_failed regardless of its own trigger rule: nothing else runs,
  the run fails naming the field. (Without it, the one_failed recovery below would fire.)
- Specialists feed only ``branches_done`` (all_done), a leaf that succeeds whatever the
  branches did; the sync sensor watches them without depending on them. A branch that
  fails after its retries therefore fails neither the run nor the round: the quorum
  decides, and the merge report names the failed branch.
- The sensor fails when the quorum is not reached by the overall timeout (or the round
  could not start). ``timeout_recovery`` (one_failed) then branches: with rounds left to
  the ``recover_next_round`` marker and on to the next round's load balancer (one_success
  over {previous gate, previous marker}), which re-plans what did not succeed; in the last
  allowed round to the merger, so the run merges what finished and the gate gives the
  final status (core.flow.next_after_sync, as in the native graph). The marker matters: a
  branch operator spares everything downstream of its choice, and the load balancer lies
  downstream of the merger (through the gate), so only a marker that is skipped when the
  merger is chosen keeps it from starting early. The merger (one_success over {sensor,
  timeout_recovery}) thus runs after a held sync point or a last-round timeout, and is
  *skipped*, not upstream_failed, when a round recovers: an earlier round's lost quorum
  never travels on to the final integrator.
- The gate branches to exactly one of: this round's ``approved`` marker, the next round's
  load balancer (needs_revision with rounds left) or ``stop_workflow`` (critical failure,
  or the revision limit). When the run ends there it skips every later round at once;
  otherwise skips propagate by the usual rules (recovery and load balancer skip on
  all-skipped too).
- ``stop_workflow`` writes the final report and fails: the run ends failed and says why
  (critical failure or revision limit), and no asset event is emitted.
- The final integrator (none_failed_min_one_success over the ``approved`` markers) runs
  exactly once, when one round approved; a marker is upstream_failed only if a gate
  itself failed, which fails the run as it should.

No I/O at parse time: the builder only creates operators; all planning happens in tasks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import Asset, TaskGroup, TriggerRule

from airflow_provider_orchestra.core.models import WorkflowConfig
from airflow_provider_orchestra.hooks.agent_factory import DEFAULT_FACTORY_CONN_ID
from airflow_provider_orchestra.operators.layout import (
    ANALYZER,
    APPROVE_QUALITY,
    APPROVE_SYNC,
    APPROVED,
    BRANCHES_DONE,
    COORDINATOR,
    INTEGRATOR,
    LOAD_BALANCER,
    MERGER,
    QUALITY_GATE,
    ROUTE_PREFIX,
    STOP,
    SYNC_POINT,
    RECOVER,
    TIMEOUT_RECOVERY,
    WorkflowLayout,
    round_group_id,
)
from airflow_provider_orchestra.operators.specialist import (
    BRANCH_ID_TEMPLATE,
    DEFAULT_RETRIES,
    OrchestraSpecialistOperator,
)
from airflow_provider_orchestra.operators.workflow import (
    OrchestraAnalyzerOperator,
    OrchestraCoordinatorOperator,
    OrchestraFinalIntegratorOperator,
    OrchestraLoadBalancerOperator,
    OrchestraMergerOperator,
    OrchestraQualityGateOperator,
    OrchestraRouteOperator,
    OrchestraStopOperator,
    OrchestraTimeoutRecoveryOperator,
)
from airflow_provider_orchestra.sensors.quorum import OrchestraQuorumSensor

DEFAULT_ITERATION_LIMIT: int = WorkflowConfig.model_fields["iteration_limit"].default
DEFAULT_GROUP_ID = "orchestra"
DEFAULT_SPECIALIST_RETRY_DELAY = timedelta(seconds=30)
APPROVAL_POINTS = ("sync_point_manager", "quality_validator")


def default_asset(dag_id: str, group_id: str | None = DEFAULT_GROUP_ID) -> Asset:
    """The Asset a workflow's final integrator emits unless one is given."""
    scope = group_id or "workflow"
    return Asset(name=f"{dag_id}.{scope}.integrated", uri=f"x-orchestra://integrated/{dag_id}/{scope}")


def _approval_points(require_approval: bool | Sequence[str]) -> set[str]:
    if require_approval is True:
        return set(APPROVAL_POINTS)
    if not require_approval:
        return set()
    points = set(require_approval)
    unknown = points - set(APPROVAL_POINTS)
    if unknown:
        raise ValueError(f"require_approval: unknown approval point(s) {sorted(unknown)}; use {list(APPROVAL_POINTS)}")
    return points


def _current_dag():
    from airflow.sdk.definitions._internal.contextmanager import DagContext

    dag = DagContext.get_current()
    if dag is None:
        raise RuntimeError("orchestra_workflow() must be called inside a DAG (with DAG(...) or @dag)")
    return dag


def orchestra_workflow(
    config: Mapping[str, Any] | WorkflowConfig | str | None = None,
    factory_conn_id: str = DEFAULT_FACTORY_CONN_ID,
    iteration_limit: int = DEFAULT_ITERATION_LIMIT,
    require_approval: bool | Sequence[str] = False,
    group_id: str | None = DEFAULT_GROUP_ID,
    asset: Asset | None = None,
    *,
    specialist_retries: int = DEFAULT_RETRIES,
    specialist_retry_delay: timedelta = DEFAULT_SPECIALIST_RETRY_DELAY,
    sensor_deferrable: bool = True,
    checkpoint_url: str | None = None,
    approval_kwargs: Mapping[str, Any] | None = None,
) -> TaskGroup | None:
    """Lay the orchestra workflow out in the current DAG and return its TaskGroup (None
    when ``group_id`` is None and the tasks sit at the DAG's top level).

    :param config: the WorkflowConfig (dict, JSON text or model; strings inside may be Jinja
        templates rendered per run). None: each run's params are the config (see
        ``workflow_params``).
    :param factory_conn_id: the agent-factory connection (optional; embedded SQLite ledger
        without it).
    :param iteration_limit: revision rounds laid out; a run uses at most
        min(config.iteration_limit, iteration_limit).
    :param require_approval: True, or a subset of ("sync_point_manager",
        "quality_validator"): the standard provider's ApprovalOperator before those steps
        in every round, as the native graph's interrupt_before. A rejection skips
        everything after it (no output); ``approval_kwargs={"fail_on_reject": True}``
        fails the run instead.
    :param group_id: the outer TaskGroup's id.
    :param asset: the Asset the final integrator emits (default: ``default_asset``).
    :param specialist_retries: retries of each mapped specialist (default: the agent
        specification's retry_attempts).
    :param specialist_retry_delay: delay between a specialist's attempts.
    :param sensor_deferrable: the quorum sensor waits in the triggerer (default).
    :param checkpoint_url: specialists' checkpoint store where Airflow's task state store
        is unavailable.
    :param approval_kwargs: extra arguments of the ApprovalOperators (e.g.
        response_timeout, defaults, assigned_users, fail_on_reject).
    """
    dag = _current_dag()
    approvals = _approval_points(require_approval)
    asset = asset or default_asset(dag.dag_id, group_id)

    outer = TaskGroup(group_id, tooltip="orchestra workflow") if group_id else None
    if outer is not None:
        outer.__enter__()
    try:
        prefix = outer.group_id if outer is not None else None
        layout = WorkflowLayout.build(prefix, iteration_limit)
        common = {"layout": layout}

        analyzer = OrchestraAnalyzerOperator(
            task_id=ANALYZER, workflow_config=config, factory_conn_id=factory_conn_id, **common
        ).as_setup()
        _expect(analyzer, layout.analyzer)

        approved_markers = []
        previous: dict[str, Any] | None = None
        for rl in layout.rounds:
            with TaskGroup(round_group_id(rl.round), tooltip=f"round {rl.round}"):
                if rl.load_balancer is not None:
                    planner = OrchestraLoadBalancerOperator(
                        task_id=LOAD_BALANCER, round=rl.round, trigger_rule=TriggerRule.ONE_SUCCESS, **common
                    )
                    _expect(planner, rl.load_balancer)
                    assert previous is not None
                    [previous["gate"], previous["recover"]] >> planner
                else:
                    planner = analyzer
                coordinator = OrchestraCoordinatorOperator(
                    task_id=COORDINATOR, round=rl.round, factory_conn_id=factory_conn_id, **common
                )
                _expect(coordinator, rl.coordinator)
                planner >> coordinator

                specialists = []
                for name in layout.specialists:
                    route = OrchestraRouteOperator(
                        task_id=ROUTE_PREFIX + name, specialist=name, round=rl.round, **common
                    )
                    _expect(route, rl.routes[name])
                    coordinator >> route
                    mapped = OrchestraSpecialistOperator.partial(
                        task_id=name,
                        specialist=name,
                        factory_conn_id=factory_conn_id,
                        checkpoint_url=checkpoint_url,
                        retries=specialist_retries,
                        retry_delay=specialist_retry_delay,
                        map_index_template=BRANCH_ID_TEMPLATE,
                    ).expand_kwargs(route.output)
                    _expect(mapped, rl.specialists[name])
                    specialists.append(mapped)
                branches_done = EmptyOperator(task_id=BRANCHES_DONE, trigger_rule=TriggerRule.ALL_DONE)
                specialists >> branches_done

                before_sync = coordinator
                if "sync_point_manager" in approvals:
                    before_sync = _approval(
                        APPROVE_SYNC, f"Round {rl.round}: let the sync point proceed?", approval_kwargs
                    )
                    coordinator >> before_sync
                sync = OrchestraQuorumSensor(
                    task_id=SYNC_POINT,
                    # this round's specialists, and earlier rounds' for the branches that
                    # succeeded there and are not run again
                    specialist_task_ids=[t for r in layout.rounds[: rl.round] for t in r.specialists.values()],
                    round_started_task_id=rl.coordinator,
                    deferrable=sensor_deferrable,
                )
                before_sync >> sync
                recovery = OrchestraTimeoutRecoveryOperator(
                    task_id=TIMEOUT_RECOVERY, round=rl.round, trigger_rule=TriggerRule.ONE_FAILED, **common
                )
                sync >> recovery
                recover = None
                if not rl.last:
                    # The marker keeps the next round's load balancer out of reach of the
                    # merger branch: a branch operator spares what follows its choice.
                    recover = EmptyOperator(task_id=RECOVER)
                    _expect(recover, rl.recover)
                    recovery >> recover
                merger = OrchestraMergerOperator(
                    task_id=MERGER, round=rl.round, trigger_rule=TriggerRule.ONE_SUCCESS, **common
                )
                [sync, recovery] >> merger

                before_gate = merger
                if "quality_validator" in approvals:
                    before_gate = _approval(
                        APPROVE_QUALITY, f"Round {rl.round}: run the quality validation?", approval_kwargs
                    )
                    merger >> before_gate
                gate = OrchestraQualityGateOperator(task_id=QUALITY_GATE, round=rl.round, **common)
                before_gate >> gate
                approved = EmptyOperator(task_id=APPROVED)
                stop = OrchestraStopOperator(task_id=STOP, round=rl.round, **common)
                gate >> [approved, stop]
                for task, expected in (
                    (sync, rl.sync_point),
                    (merger, rl.merger),
                    (gate, rl.gate),
                    (approved, rl.approved),
                    (stop, rl.stop),
                    (recovery, rl.recovery),
                    (branches_done, rl.branches_done),
                ):
                    _expect(task, expected)
                approved_markers.append(approved)
                previous = {"gate": gate, "recover": recover}

        integrator = OrchestraFinalIntegratorOperator(
            task_id=INTEGRATOR,
            asset=asset,
            outlets=[asset],
            trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
            **common,
        )
        _expect(integrator, layout.integrator)
        approved_markers >> integrator
    finally:
        if outer is not None:
            outer.__exit__(None, None, None)
    return outer


def _approval(task_id: str, subject: str, approval_kwargs: Mapping[str, Any] | None):
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    kwargs = {"ignore_downstream_trigger_rules": True, **dict(approval_kwargs or {})}
    return ApprovalOperator(task_id=task_id, subject=subject, **kwargs)


def _expect(task: Any, task_id: str) -> None:
    if task.task_id != task_id:  # the layout and the TaskGroup prefixes disagree
        raise RuntimeError(f"orchestra_workflow laid out {task.task_id!r} where {task_id!r} was expected")
