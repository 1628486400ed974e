"""The whole workflow as one LangGraph StateGraph.

::

    START -> data_batch_analyzer -> parallel_coordinator --Send per branch--> <specialist>
                                           |                                      |
                                           +--(no branch)--> sync_point_manager <-+
    sync_point_manager:  proceed / conditional proceed -> branch_merger
                         timeout recovery              -> load_balancer (last round: merger)
    branch_merger -> quality_validator:  approved       -> final_integrator -> END
                                         needs_revision -> load_balancer -> parallel_coordinator
                                         critical failure / revision limit -> END
    specialists: data_ingestion_branch_alpha, data_validation_branch_beta,
                 data_transformation_branch_gamma, data_aggregation_branch_primary,
                 data_quality_branch_secondary

Nodes are thin: each calls one step of ``runtime`` (or core/ directly) and returns small
descriptors.

Quorum, cancellation and checkpoints
------------------------------------
The coordinator fans out one ``Send(<specialist>, BranchTask)`` per allocated branch, so
each branch is a LangGraph task of one superstep. LangGraph runs those tasks in parallel
threads and saves each task's writes (its BranchResult) to the checkpointer the moment it
returns. A process killed mid-round and resumed with the same thread id therefore re-runs
only the branches that had not returned; their specialist subgraphs resume from their own
checkpoints (thread id ``<workflow thread>/<branch>/<round>``) and the sinks, written by
staging and atomic swap, never hold a branch twice.

A superstep ends only when all its tasks have returned, so the sync point cannot wait for
a quorum from the *next* step. It is split in two:

- during the round, a :class:`~airflow_provider_orchestra.graph.quorum.RoundBoard` (opened
  by the coordinator, or re-opened from the checkpoint by the first branch of a resumed
  round) admits branches up to the analysis' ``max_branches`` and runs a watcher that
  applies ``core.sync.evaluate_sync`` with real timeouts, sleeping on a condition
  variable between branch completions and deadlines. When the policy lets the run go on
  (everything done, quorum plus conditional timeout, or the overall timeout below
  quorum) the watcher cancels the stragglers: their progress callback raises at the next
  record batch, and they return a ``cancelled`` result, so the superstep ends;
- after the round, the ``sync_point_manager`` node evaluates the same policy on the
  checkpointed results (every branch has ended, so ``continue_waiting`` is served by the
  watcher and never returned by the node) and routes on. The report names cancelled
  branches under ``merge.cancelled_branch_ids`` and with status ``cancelled``.

An optional ``interrupt_before`` pauses before ``sync_point_manager`` (the round's results
are in; the decision is not yet taken) and/or before ``quality_validator``; the run
continues with ``invoke(None, same thread id)``.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import RunnableConfig, Send

from airflow_provider_orchestra import runtime
from airflow_provider_orchestra.core import balancing, integration, merging
from airflow_provider_orchestra.core.flow import concurrency_cap, observed_outcomes
from airflow_provider_orchestra.core.errors import ConfigError, OrchestraError, ResourceUnavailableError
from airflow_provider_orchestra.core.models import (
    SPECIALISTS,
    BranchResult,
    BranchTask,
    TimelineEvent,
    WorkflowConfig,
    parse_config,
    utcnow,
)
from airflow_provider_orchestra.core.outcomes import COMPLETED, outcomes
from airflow_provider_orchestra.core.specialists import specialist_names
from airflow_provider_orchestra.core.sync import evaluate_sync
from airflow_provider_orchestra.graph import routes
from airflow_provider_orchestra.graph.checkpointing import open_checkpointer, restricted
from airflow_provider_orchestra.graph.quorum import (
    BoardRegistry,
    BranchCancelled,
    RoundBoard,
)
from airflow_provider_orchestra.graph.state import GraphState

log = logging.getLogger(__name__)

DATA_BATCH_ANALYZER = "data_batch_analyzer"
PARALLEL_COORDINATOR = "parallel_coordinator"
SYNC_POINT_MANAGER = routes.SYNC_POINT_MANAGER
LOAD_BALANCER = routes.LOAD_BALANCER
BRANCH_MERGER = routes.BRANCH_MERGER
QUALITY_VALIDATOR = "quality_validator"
FINAL_INTEGRATOR = routes.FINAL_INTEGRATOR
INTERRUPTIBLE = (SYNC_POINT_MANAGER, QUALITY_VALIDATOR)
STEP_NAMES = (
    DATA_BATCH_ANALYZER,
    PARALLEL_COORDINATOR,
    SYNC_POINT_MANAGER,
    LOAD_BALANCER,
    BRANCH_MERGER,
    QUALITY_VALIDATOR,
    FINAL_INTEGRATOR,
)
"""The workflow's own nodes; every registered specialist adds one more."""
NODE_NAMES = (*STEP_NAMES[:4], *SPECIALISTS, *STEP_NAMES[4:])
"""The reference workflow's nodes (with the five built-in specialists)."""

# While the resource ledger is full, a branch retries when another branch of the round
# ends, and otherwise after a backoff (other processes may release leases too).
_LEDGER_RETRY_FIRST_SECONDS = 0.25
_LEDGER_RETRY_MAX_SECONDS = 5.0


def _event(name: str, **details: Any) -> dict[str, Any]:
    return TimelineEvent(event=name, **details).model_dump(mode="json")


def _value(values: Any, name: str, default: Any = None) -> Any:
    """A field of a state snapshot (a dict of channel values) or of a GraphState."""
    if isinstance(values, Mapping):
        return values.get(name, default)
    return getattr(values, name, default)


def chronological(timeline: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Timeline entries by time (branches of a round append in the order LangGraph
    applies their writes, not the order they happened)."""
    return sorted(timeline, key=lambda e: str(e.get("timestamp", "")))


def _progress_writer() -> Callable[[dict], None]:
    """The node's stream writer, callable from inside the specialist (which runs in a
    context of its own). A progress report that cannot be delivered never fails a branch."""
    writer = get_stream_writer()
    node_context = contextvars.copy_context()

    def write(event: dict) -> None:
        try:
            node_context.run(writer, event)
        except Exception:  # the consumer went away; the branch's work goes on
            log.debug("progress event dropped", exc_info=True)

    return write


def branch_thread_id(workflow_thread_id: str, branch_id: str, round: int) -> str:
    """The thread id of a branch's specialist subgraph (also its ledger holder)."""
    return f"{workflow_thread_id}/{branch_id}/{round}"


def coordinator_holder(workflow_thread_id: str, round: int) -> str:
    """The ledger holder of a round's coordinating agent."""
    return f"{workflow_thread_id}/coordinator/{round}"


def _thread_id(config: RunnableConfig) -> str:
    return str(config["configurable"]["thread_id"])


class _WorkflowNodes:
    """The node functions, bound to what a compiled graph shares across its runs: the
    factory, connections, clock, the checkpointer handed to specialists and the boards."""

    def __init__(
        self,
        config: WorkflowConfig | None,
        *,
        factory: Any,
        connections: Any,
        clock: Callable[[], float],
        saver: BaseCheckpointSaver,
    ):
        self.config = config
        self.connections = connections
        self.clock = clock
        self.saver = saver
        self.boards = BoardRegistry()
        self.graph: CompiledStateGraph | None = None
        self.specialists: tuple[str, ...] = ()
        self._factory = factory
        self._factory_lock = threading.Lock()

    # ------------------------------------------------------------------ shared bits

    def workflow_config(self, state: GraphState) -> WorkflowConfig:
        if state.config is not None:
            return state.config
        if self.config is None:
            raise ConfigError("no workflow config: pass one to build_workflow_graph or as 'config' in the input")
        return self.config

    def factory_for(self, config: WorkflowConfig):
        with self._factory_lock:
            if self._factory is None:
                self._factory = runtime.open_factory(config=config)
            return self._factory

    def open_board(self, thread_id: str, values: Any, ended: Mapping[str, str] | None = None) -> RoundBoard:
        config = _value(values, "config") or self.config
        analysis = _value(values, "analysis")
        round_ = _value(values, "round")
        tasks = _value(values, "branch_tasks") or []
        results = _value(values, "branch_results") or []
        board = RoundBoard(
            thread_id=thread_id,
            round=round_,
            branch_ids=[t.branch_id for t in tasks],
            allocated_ids=[a.branch_id for a in analysis.allocations],
            succeeded_before={r.branch_id for r in results if r.status in COMPLETED},
            ended=ended,
            sync_points=config.sync_points,
            branch_dependencies=config.branch_dependencies,
            policy=config.sync,
            max_branches=concurrency_cap(analysis),
            clock=self.clock,
        )
        board.workflow_config = config
        return board

    def reopen_board(self, thread_id: str, round: int) -> RoundBoard:
        """The board of a round resumed in a new process: which branches of the round
        already returned comes from the checkpoint's pending writes."""
        snapshot = self.graph.get_state({"configurable": {"thread_id": thread_id}})
        values = snapshot.values
        if _value(values, "round") != round:
            raise RuntimeError(f"checkpoint of {thread_id!r} is not at round {round}")
        ended: dict[str, str] = {}
        for task in snapshot.tasks:
            writes = task.result if isinstance(task.result, Mapping) else {}
            for result in writes.get("branch_results", []):
                if result.round == round:
                    ended[result.branch_id] = result.status
        return self.open_board(thread_id, values, ended)

    # ------------------------------------------------------------------ nodes

    def data_batch_analyzer(self, state: GraphState, config: RunnableConfig) -> dict[str, Any]:
        cfg = self.workflow_config(state)
        thread_id = _thread_id(config)
        factory = self.factory_for(cfg)
        descriptors = runtime.describe_batches(cfg, connections=self.connections)
        analysis = runtime.analyze_run(cfg, descriptors, factory)
        return {
            "config": cfg,
            "run_id": state.run_id or thread_id,
            "workflow_id": cfg.workflow_id,
            "data_batch_queue": descriptors,
            "workflow_mode": analysis.workflow_mode,
            "analysis": analysis,
            "allocations": analysis.allocations,
            "round": 1,
            "sync_points": cfg.sync_points,
            "branch_dependencies": cfg.branch_dependencies,
            "checkpoint_data": {**state.checkpoint_data, "thread_id": thread_id},
            "monitoring_metrics": {
                "complexity": analysis.complexity.model_dump(),
                "resources": analysis.resources.model_dump(),
            },
            "execution_timeline": [
                _event(
                    "data_batch_analysis",
                    batches=len(descriptors),
                    rows=sum(d.rows for d in descriptors),
                    workflow_mode=analysis.workflow_mode,
                    max_branches=analysis.max_branches,
                    complexity_score=analysis.complexity.complexity_score,
                    cluster_cpu=analysis.resources.cluster_cpu,
                ),
            ],
        }

    def parallel_coordinator(self, state: GraphState, config: RunnableConfig) -> dict[str, Any]:
        cfg = self.workflow_config(state)
        thread_id = _thread_id(config)
        tasks, factory_events = runtime.plan_round(
            cfg,
            state.allocations,
            run_id=state.run_id,
            factory=self.factory_for(cfg),
            holder=coordinator_holder(thread_id, state.round),
        )
        update = {"branch_tasks": tasks}
        self.boards.replace(self.open_board(thread_id, {**dict(state), **update}))
        grouped = runtime.group_by_specialist(tasks, self.specialists)
        return {
            **update,
            "active_processing_branches": {a.branch_id: a for a in state.allocations},
            "round_started_at": utcnow(),
            "execution_timeline": [
                _event(
                    "parallel_coordination",
                    round=state.round,
                    branches=[t.branch_id for t in tasks],
                    by_specialist={k: [t.branch_id for t in v] for k, v in grouped.items() if v},
                    max_branches=state.analysis.max_branches,
                    concurrency=concurrency_cap(state.analysis),
                ),
                *integration.factory_timeline(factory_events, round=state.round),
            ],
        }

    def dispatch(self, state: GraphState) -> list[Send] | str:
        """One Send per planned branch; with nothing planned, straight to the sync point."""
        if not state.branch_tasks:
            return SYNC_POINT_MANAGER
        return [Send(task.specialist, task) for task in state.branch_tasks]

    def run_branch(self, task: BranchTask, config: RunnableConfig) -> dict[str, Any]:
        """A specialist node: one branch through the agent factory, within the round's
        concurrency cap, stoppable by the sync point."""
        thread_id = _thread_id(config)
        board = self.boards.get_or_open(thread_id, task.round, lambda: self.reopen_board(thread_id, task.round))
        write = _progress_writer()
        base = {"kind": "branch", "branch_id": task.branch_id, "specialist": task.specialist, "round": task.round}
        with board.slot(task.branch_id) as admitted:
            if admitted:
                write({**base, "phase": "started"})
                result = self._execute(task, board, thread_id, lambda event: write({**base, "phase": "progress", **event}))
            else:
                reason = board.cancellation(task.branch_id) or "the round was closed"
                result = runtime.failed_result(
                    task, f"{task.branch_id}: cancelled before it started, {reason}", status="cancelled"
                )
            # Reported while the slot is still held, so "finished" precedes the next start.
            write(
                {
                    **base,
                    "phase": "finished",
                    "status": result.status,
                    "rows_in": result.metrics.rows_in,
                    "rows_out": result.metrics.rows_out,
                    "quality": result.metrics.quality,
                    "seconds": result.metrics.execution_seconds,
                    "error": result.error,
                }
            )
            board.finish(task.branch_id, result.status)
        return {
            "branch_results": [result],
            "branch_performance": {
                task.branch_id: {
                    "round": float(task.round),
                    "execution_seconds": result.metrics.execution_seconds or 0.0,
                    "quality": result.metrics.quality if result.metrics.quality is not None else -1.0,
                    "rows_out": float(result.metrics.rows_out),
                }
            },
            "execution_timeline": integration.branch_timeline(result),
        }

    def _execute(
        self, task: BranchTask, board: RoundBoard, thread_id: str, report: Callable[[dict], None]
    ) -> BranchResult:
        sub_thread = branch_thread_id(thread_id, task.branch_id, task.round)
        factory = self.factory_for(board.workflow_config)

        def on_progress(event: dict) -> None:
            report(event)
            board.raise_if_cancelled(task.branch_id)

        started = time.monotonic()
        backoff = _LEDGER_RETRY_FIRST_SECONDS
        retries_left = runtime.BRANCH_RETRIES  # as many as an Airflow specialist task gets
        while True:
            try:
                # A fresh context: the specialist's subgraph is a top-level run under its
                # own thread id, exactly as when an Airflow task runs it.
                result = contextvars.Context().run(
                    runtime.execute_branch,
                    task,
                    factory=factory,
                    holder=sub_thread,
                    saver=self.saver,
                    thread_id=sub_thread,
                    connections=self.connections,
                    on_progress=on_progress,
                    wait_seconds=0.0,  # the board waits instead, and stops waiting when cancelled
                )
                reason = board.cancellation(task.branch_id)
                if reason is not None and result.status not in COMPLETED:
                    # The branch ended unsuccessfully after the sync point let go of it (it
                    # failed while being cancelled): it was the sync point's doing.
                    return runtime.failed_result(
                        task, f"{task.branch_id}: cancelled, {reason}", seconds=result.metrics.execution_seconds,
                        status="cancelled",
                    )
                if result.status == "failed" and retries_left > 0:
                    retries_left -= 1
                    log.warning("branch %s failed (%s); retrying, %d retries left", task.branch_id, result.error, retries_left)
                    continue
                return result
            except BranchCancelled as exc:
                return runtime.failed_result(
                    task, f"{task.branch_id}: cancelled, {exc.reason}", seconds=time.monotonic() - started,
                    status="cancelled",
                )
            except ResourceUnavailableError as exc:
                if not board.wait_for_change(task.branch_id, backoff):
                    reason = board.cancellation(task.branch_id)
                    return runtime.failed_result(
                        task, f"{task.branch_id}: cancelled while waiting for resources ({exc}), {reason}",
                        seconds=time.monotonic() - started, status="cancelled",
                    )
                backoff = min(backoff * 2, _LEDGER_RETRY_MAX_SECONDS)
            except Exception as exc:  # a branch failure must not take the round down
                reason = board.cancellation(task.branch_id)
                if reason is not None:
                    return runtime.failed_result(
                        task, f"{task.branch_id}: cancelled, {reason}", seconds=time.monotonic() - started,
                        status="cancelled",
                    )
                if not isinstance(exc, OrchestraError):
                    log.exception("branch %s failed unexpectedly", task.branch_id)
                if retries_left > 0:
                    retries_left -= 1
                    log.warning("branch %s failed (%s); retrying, %d retries left", task.branch_id, exc, retries_left)
                    continue
                return runtime.failed_result(
                    task, f"{task.branch_id}: {type(exc).__name__}: {exc}", seconds=time.monotonic() - started
                )

    def sync_point_manager(self, state: GraphState, config: RunnableConfig) -> dict[str, Any]:
        cfg = self.workflow_config(state)
        thread_id = _thread_id(config)
        board = self.boards.get(thread_id, state.round)
        if board is not None:
            elapsed = board.elapsed()
        elif state.round_started_at is not None:
            elapsed = (datetime.now(timezone.utc) - state.round_started_at).total_seconds()
        else:
            elapsed = 0.0
        watcher = board.decision if board is not None else None
        self.boards.discard(thread_id, state.round)

        allocated = [a.branch_id for a in state.analysis.allocations]
        this_round = {r.branch_id: r.status for r in state.branch_results if r.round == state.round}
        succeeded_any = {r.branch_id for r in state.branch_results if r.status in COMPLETED}
        succeeded, failed = observed_outcomes(allocated, succeeded_any, this_round, pending=())
        decision = evaluate_sync(
            sync_points=cfg.sync_points,
            branch_dependencies=cfg.branch_dependencies,
            branch_ids=allocated,
            succeeded=succeeded,
            failed=failed,
            elapsed_seconds=max(0.0, elapsed),
            policy=cfg.sync,
        )
        latest = {r.branch_id: r for r in merging.latest_results(state.branch_results)}
        ended = outcomes(r for r in state.branch_results if r.round == state.round)
        return {
            "sync": decision,
            "completed_processing_branches": latest,
            "execution_timeline": [
                _event(
                    "synchronization_checkpoint",
                    round=state.round,
                    sync_point=decision.sync_point,
                    progress=decision.progress,
                    status=decision.status,
                    next_action=decision.next_action,
                    elapsed_seconds=decision.elapsed_seconds,
                    cancelled_branches=ended.cancelled,
                    failed_branches=ended.failed,
                    watcher_action=watcher.next_action if watcher else None,
                ),
            ],
        }

    def route_after_sync(self, state: GraphState) -> str:
        return routes.after_sync(state.sync, state.round, self.workflow_config(state).iteration_limit)

    def load_balancer(self, state: GraphState) -> dict[str, Any]:
        cfg = self.workflow_config(state)
        revision = routes.is_revision_round(state.gate, state.round)
        next_round = state.round + 1
        allocations = state.analysis.allocations
        replanned = runtime.replan(cfg, allocations, state.branch_results, next_round, revision)
        return {
            "allocations": replanned,
            "round": next_round,
            "load_balancing_metrics": balancing.balancing_metrics(allocations, replanned),
            "execution_timeline": [
                _event(
                    "load_balancing",
                    reason="needs_revision" if revision else "timeout_recovery",
                    next_round=next_round,
                    replanned=[a.branch_id for a in replanned],
                )
            ],
        }

    def branch_merger(self, state: GraphState) -> dict[str, Any]:
        allocated = [a.branch_id for a in state.analysis.allocations]
        report = runtime.merge(allocated, state.branch_results, state.round)
        return {
            "merge": report,
            "execution_timeline": [
                _event(
                    "branch_merge",
                    round=state.round,
                    overall_quality=report.overall_quality,
                    success_rate=report.success_rate,
                    successful_branches=report.successful_branches,
                    failed_branches=report.failed_branch_ids,
                    cancelled_branches=report.cancelled_branch_ids,
                    empty_branches=report.empty_branch_ids,
                )
            ],
        }

    def quality_validator(self, state: GraphState) -> dict[str, Any]:
        cfg = self.workflow_config(state)
        gate = runtime.gate(cfg, state.merge, state.round)
        event = _event("quality_gate", round=state.round, decision=gate.decision, final=gate.final, reason=gate.reason)
        update: dict[str, Any] = {"gate": gate, "execution_timeline": [event]}
        if routes.after_gate(gate) == routes.END_OF_RUN:
            report = integration.build_final_report(
                workflow_id=cfg.workflow_id,
                run_id=state.run_id,
                workflow_mode=state.workflow_mode,
                merge=state.merge,
                gate=gate,
                results=state.branch_results,
                timeline=chronological([*state.execution_timeline, event]),
            )
            update.update(report=report, status=report.status)
        return update

    def route_after_gate(self, state: GraphState) -> str:
        target = routes.after_gate(state.gate)
        return END if target == routes.END_OF_RUN else target

    def final_integrator(self, state: GraphState) -> dict[str, Any]:
        cfg = self.workflow_config(state)
        event = _event("final_integration", round=state.round)
        report = runtime.integrate(
            cfg,
            run_id=state.run_id,
            mode=state.workflow_mode,
            merge_report=state.merge,
            gate_result=state.gate,
            results=state.branch_results,
            timeline=chronological([*state.execution_timeline, event]),
        )
        return {"report": report, "status": report.status, "execution_timeline": [event]}


def workflow_builder(
    config: WorkflowConfig | Mapping[str, Any] | None = None,
    *,
    factory: Any = None,
    connections: Any = None,
    clock: Callable[[], float] = time.monotonic,
    saver: BaseCheckpointSaver | None = None,
) -> tuple[StateGraph, _WorkflowNodes]:
    """The uncompiled graph and the node object it is bound to (see build_workflow_graph)."""
    cfg = parse_config(config) if config is not None else None
    nodes = _WorkflowNodes(cfg, factory=factory, connections=connections, clock=clock, saver=saver or InMemorySaver())
    specialists = specialist_names()
    taken = sorted(set(specialists) & set(STEP_NAMES))
    if taken:
        raise ConfigError(f"specialist name(s) {taken} are nodes of the workflow's own steps; rename them")
    nodes.specialists = specialists
    graph = StateGraph(GraphState)
    graph.add_node(DATA_BATCH_ANALYZER, nodes.data_batch_analyzer)
    graph.add_node(PARALLEL_COORDINATOR, nodes.parallel_coordinator)
    graph.add_node(SYNC_POINT_MANAGER, nodes.sync_point_manager)
    graph.add_node(LOAD_BALANCER, nodes.load_balancer)
    for name in specialists:
        graph.add_node(name, nodes.run_branch)
    graph.add_node(BRANCH_MERGER, nodes.branch_merger)
    graph.add_node(QUALITY_VALIDATOR, nodes.quality_validator)
    graph.add_node(FINAL_INTEGRATOR, nodes.final_integrator)

    graph.add_edge(START, DATA_BATCH_ANALYZER)
    graph.add_edge(DATA_BATCH_ANALYZER, PARALLEL_COORDINATOR)
    graph.add_conditional_edges(PARALLEL_COORDINATOR, nodes.dispatch, [*specialists, SYNC_POINT_MANAGER])
    for name in specialists:
        graph.add_edge(name, SYNC_POINT_MANAGER)
    graph.add_conditional_edges(
        SYNC_POINT_MANAGER, nodes.route_after_sync, [BRANCH_MERGER, LOAD_BALANCER, SYNC_POINT_MANAGER]
    )
    graph.add_edge(LOAD_BALANCER, PARALLEL_COORDINATOR)
    graph.add_edge(BRANCH_MERGER, QUALITY_VALIDATOR)
    graph.add_conditional_edges(QUALITY_VALIDATOR, nodes.route_after_gate, [FINAL_INTEGRATOR, LOAD_BALANCER, END])
    graph.add_edge(FINAL_INTEGRATOR, END)
    return graph, nodes


def build_workflow_graph(
    config: WorkflowConfig | Mapping[str, Any] | None = None,
    *,
    factory: Any = None,
    checkpointer: BaseCheckpointSaver | str | None = None,
    interrupt_before: Iterable[str] = (),
    connections: Any = None,
    clock: Callable[[], float] = time.monotonic,
) -> CompiledStateGraph:
    """The compiled workflow graph.

    - ``config``: the workflow config (validated with ``parse_config``). It may be left
      out when every run passes ``{"config": ...}`` as input, and is not needed to resume.
    - ``factory``: an AgentFactory; default ``runtime.open_factory(config=...)`` on first use.
    - ``checkpointer``: a saver, or a URL / path for ``make_saver`` (SQLite file or
      Postgres); default in memory.
    - ``interrupt_before``: any of ``sync_point_manager``, ``quality_validator``; default
      the config's ``interrupt_before``.
    - ``connections``: how sources and sinks resolve connection ids (see specialists.io).
    - ``clock``: the monotonic clock the sync point's timeouts are measured with.

    Invoke with ``initial_state(config, run_id)`` (or ``{"config": config}``) and a
    ``thread_id`` in the run config. The node object is at ``graph.orchestra_nodes``.
    """
    cfg = parse_config(config) if config is not None else None
    pauses = list(interrupt_before) or list(cfg.interrupt_before if cfg else [])
    unknown = sorted(set(pauses) - set(INTERRUPTIBLE))
    if unknown:
        raise ConfigError(
            f"interrupt_before: cannot pause before {unknown}; choose from {list(INTERRUPTIBLE)}",
            ["interrupt_before"],
        )
    saver = restricted(open_checkpointer(checkpointer))
    builder, nodes = workflow_builder(cfg, factory=factory, connections=connections, clock=clock, saver=saver)
    compiled = builder.compile(checkpointer=saver, interrupt_before=pauses or None)
    nodes.graph = compiled
    compiled.orchestra_nodes = nodes
    return compiled
