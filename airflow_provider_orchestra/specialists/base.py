"""The specialist base class and the subgraph every specialist shares.

Each specialist is a small LangGraph graph::

    plan -> act -> check --retry--> act          (next fallback strategy)
                       \\--done---> finish -> END

- ``plan`` validates the task against the source (schema, rules, expressions) and records
  what ``act`` needs as a small dict. A problem here fails the branch at once: no fallback
  strategy can repair a missing file or a rule on an unknown column.
- ``act`` runs one attempt with the current strategy. It streams record batches, writes
  every output into a fresh staging directory and swaps that directory in as the branch's
  output directory only when the attempt succeeded, so a failed or killed attempt leaves
  nothing behind and a rerun replaces rather than duplicates.
- ``check`` compares the measured quality with the spec's ``quality_threshold``; below it
  (or after a data error) the specialist picks its next fallback strategy, up to the
  spec's ``iteration_limit``. Strategies are deterministic, so a ladder that has nothing
  left to try stops early instead of measuring the same thing again.
- ``finish`` turns the last successful attempt into a :class:`BranchResult`: ``success``,
  or ``empty`` (quality 0, core.outcomes) when the input held no row to read.

State holds only descriptors (paths, counts, checksums, metrics), never rows. Compiled
with a checkpointer and invoked under the caller's thread id, a rerun after a kill resumes
at the node that was interrupted; completed nodes are not run again.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypedDict

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from airflow_provider_orchestra.core.errors import SinkError
from airflow_provider_orchestra.core.models import (
    BranchMetrics,
    BranchResult,
    BranchStatus,
    BranchTask,
    OutputDescriptor,
    SpecialistName,
)
from airflow_provider_orchestra.core.outcomes import COMPLETED, EMPTY, EMPTY_QUALITY, SUCCESS
from airflow_provider_orchestra.core.specialists import category_of
from airflow_provider_orchestra.specialists.engine import (
    DATA_ERRORS,
    Meter,
    ProgressCallback,
    attempt_dir,
    clear_stale_attempts,
    describe_error,
    discard,
    pipeline_threads,
    publish,
    read_ahead,
    root_cause,
)

log = logging.getLogger(__name__)


class SpecialistState(TypedDict, total=False):
    task: dict[str, Any]
    task_key: str
    plan: dict[str, Any] | None
    failure: str | None
    iteration: int
    strategy: str | None
    decision: str
    attempts: list[dict[str, Any]]
    steps: list[str]
    seconds: float
    result: dict[str, Any] | None


@dataclass
class RunContext:
    """What a run needs besides its state: never checkpointed."""

    specialist: Specialist
    task: BranchTask
    connections: Any = None
    on_progress: ProgressCallback | None = None
    attempts_so_far: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Attempt:
    """What one ``act`` produced. ``outputs`` point into the staging directory until the
    base class publishes them."""

    rows_in: int = 0
    rows_out: int = 0
    rows_rejected: int = 0
    rows_pending: int = 0
    record_batches: int = 0
    quality: float | None = None
    outputs: list[OutputDescriptor] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    peak_arrow_bytes: int | None = None


_ATTEMPT_SUMMARY = ("iteration", "strategy", "ok", "error", "quality", "rows_out", "seconds")
"""What the result's ``details.attempts`` keeps of each attempt."""


def task_fingerprint(task: BranchTask) -> str:
    return hashlib.sha256(task.model_dump_json().encode()).hexdigest()[:16]


def default_thread_id(task: BranchTask) -> str:
    return f"{task.workflow_id}/{task.run_id}/{task.branch_id}/round-{task.round}"


def _param(spec: Any, name: str) -> Any:
    if spec is None:
        return None
    params = spec.get("specialization_parameters") if isinstance(spec, Mapping) else getattr(spec, "specialization_parameters", None)
    return (params or {}).get(name)


class Specialist:
    """Base class of the five specialists.

    ``spec`` is the factory's AgentSpecification (or a mapping of the same shape); its
    ``specialization_parameters`` give ``agent_id``, ``quality_threshold`` and
    ``iteration_limit``. ``lease`` is the resource lease (``cpu``, ``memory_mb``) that
    bounds the DuckDB engine; ``None`` leaves DuckDB at its own defaults.
    """

    agent_type: ClassVar[str]
    branches: ClassVar[tuple[SpecialistName, ...]]
    strategies: ClassVar[tuple[str, ...]]

    def __init__(self, spec: Any, lease: Any = None):
        threshold = _param(spec, "quality_threshold")
        limit = _param(spec, "iteration_limit")
        if threshold is None or limit is None:
            raise ValueError(
                f"{self.agent_type}: the specification must give quality_threshold and iteration_limit"
            )
        self.spec = spec
        self.lease = lease
        self.quality_threshold = float(threshold)
        self.iteration_limit = int(limit)
        if self.iteration_limit < 1:
            raise ValueError(f"{self.agent_type}: iteration_limit must be at least 1")
        self.agent_id = str(_param(spec, "agent_id") or f"{self.agent_type}-unregistered")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(agent_id={self.agent_id!r})"

    # ----------------------------------------------------------------- to override

    def plan(self, task: BranchTask, ctx: RunContext) -> dict[str, Any]:
        """Validate the task and return a small, JSON-serialisable plan."""
        raise NotImplementedError

    def act(
        self, task: BranchTask, plan: dict[str, Any], strategy: str, ctx: RunContext, staging: Path, meter: Meter
    ) -> Attempt:
        """Run one attempt, writing outputs under ``staging``."""
        raise NotImplementedError

    def next_strategy(self, plan: dict[str, Any], attempts: list[dict[str, Any]]) -> str | None:
        """The fallback after ``attempts[-1]``, or None when no strategy left could help.
        By default: the next rung of ``strategies``."""
        current = attempts[-1]["strategy"]
        index = self.strategies.index(current)
        return self.strategies[index + 1] if index + 1 < len(self.strategies) else None

    def on_success(self, task: BranchTask, plan: dict[str, Any], attempt: dict[str, Any], ctx: RunContext) -> None:
        """Called once the branch succeeded, before the result is returned (the ingestion
        specialist commits its offset here)."""

    def commit_outputs(self, task: BranchTask, outputs: list[OutputDescriptor]) -> list[OutputDescriptor]:
        """Commit the chosen attempt's main Parquet output (role ``output``) in the batch's
        write mode, once the branch succeeded: ``append`` keeps it in the run's folder;
        ``replace`` and ``upsert`` commit it into the batch's dataset folder
        (``specialists.io.write_modes``). Only the chosen attempt is committed, so a
        fallback attempt never leaves an earlier attempt's rows in a shared dataset; a
        resumed finish commits again, which changes nothing."""
        mode = task.batch.write_mode
        if mode == "append":
            return outputs
        from airflow_provider_orchestra.specialists.io import commit_dataset, dataset_root_for

        main = [o for o in outputs if o.role == "output" and o.format == "parquet"]
        if len(main) != 1:
            raise SinkError(f"write_mode {mode!r} needs one main Parquet output, {task.branch_id} has {len(main)}")
        dest = dataset_root_for(task.storage, task.workflow_id, task.batch.batch_id)
        committed = commit_dataset(main[0], dest, write_mode=mode, key=task.batch.key)
        return [committed if o is main[0] else o for o in outputs]

    # ----------------------------------------------------------------- helpers

    @property
    def lease_cpu(self) -> float | None:
        return getattr(self.lease, "cpu", None)

    @property
    def lease_memory_mb(self) -> float | None:
        return getattr(self.lease, "memory_mb", None)

    @property
    def parallel(self) -> bool:
        """Whether the lease allows a second thread: the next record batch is read (see
        :func:`read_ahead`) and the previous one written while the current one is worked on."""
        return pipeline_threads(self.lease_cpu) > 1

    def batches_of(self, source: Any) -> Iterator[Any]:
        """The record batches of ``source``, read ahead when the lease allows it."""
        return read_ahead(source.iter_batches()) if self.parallel else source.iter_batches()

    def branch_root(self, task: BranchTask) -> Path:
        from airflow_provider_orchestra.specialists.io import output_root_for

        return output_root_for(task.storage, task.workflow_id, task.run_id, task.branch_id)

    # ----------------------------------------------------------------- the graph nodes

    def _node_plan(self, state: SpecialistState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        ctx = runtime.context
        started = time.perf_counter()
        update: dict[str, Any] = {"steps": [*state.get("steps", []), "plan"]}
        try:
            plan = self.plan(ctx.task, ctx)
            update.update(plan=plan, failure=None, strategy=self.strategies[0], iteration=1)
        except DATA_ERRORS as exc:
            update.update(plan=None, failure=describe_error(exc))
        update["seconds"] = state.get("seconds", 0.0) + (time.perf_counter() - started)
        return update

    def _node_act(self, state: SpecialistState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        ctx = runtime.context
        task = ctx.task
        strategy = state["strategy"]
        iteration = state["iteration"]
        started = time.perf_counter()
        record: dict[str, Any] = {"iteration": iteration, "strategy": strategy}
        branch_root = self.branch_root(task)
        clear_stale_attempts(branch_root)
        staging = attempt_dir(branch_root)
        meter = Meter(
            base_event={
                "branch_id": task.branch_id,
                "specialist": task.specialist,
                "agent_id": self.agent_id,
                "iteration": iteration,
                "strategy": strategy,
            },
            on_progress=ctx.on_progress,
        )
        ctx.attempts_so_far = list(state.get("attempts", []))
        try:
            attempt = self.act(task, state["plan"], strategy, ctx, staging, meter)
            outputs = publish(staging, branch_root, attempt.outputs)
            meter.sample()
            record.update(
                ok=True,
                error=None,
                error_kind=None,
                rows_in=attempt.rows_in,
                rows_out=attempt.rows_out,
                rows_rejected=attempt.rows_rejected,
                rows_pending=attempt.rows_pending,
                record_batches=attempt.record_batches or meter.batches,
                quality=attempt.quality,
                outputs=[o.model_dump(mode="json") for o in outputs],
                details=attempt.details,
            )
        except DATA_ERRORS as exc:
            discard(staging)
            if meter.stopped_by is not None:
                # The caller's progress callback stopped the attempt; the data error is
                # only how the stream's consumer reported that.
                raise meter.stopped_by from None
            cause = root_cause(exc)
            record.update(
                ok=False,
                error=describe_error(cause),
                error_kind=type(cause).__name__,
                details=dict(getattr(cause, "details", None) or {}),
            )
        except BaseException:
            discard(staging)
            raise
        elapsed = time.perf_counter() - started
        record["seconds"] = elapsed
        record["peak_arrow_bytes"] = meter.peak_arrow_bytes
        return {
            "attempts": [*state.get("attempts", []), record],
            "steps": [*state.get("steps", []), "act"],
            "seconds": state.get("seconds", 0.0) + elapsed,
        }

    def _node_check(self, state: SpecialistState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        attempts = state["attempts"]
        last = attempts[-1]
        steps = [*state.get("steps", []), "check"]
        good = last["ok"] and (last["quality"] is None or last["quality"] >= self.quality_threshold)
        # No strategy finds rows in an input that has none.
        empty = last["ok"] and last["rows_in"] == 0
        if good or empty or state["iteration"] >= self.iteration_limit:
            return {"decision": "finish", "steps": steps}
        following = self.next_strategy(state["plan"], attempts)
        if following is None:
            return {"decision": "finish", "steps": steps}
        return {
            "decision": "retry",
            "strategy": following,
            "iteration": state["iteration"] + 1,
            "steps": steps,
        }

    def _node_finish(self, state: SpecialistState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        result = self._final_result(state, runtime.context)
        return {"result": result.model_dump(mode="json"), "steps": [*state.get("steps", []), "finish"]}

    def _final_result(self, state: SpecialistState, ctx: RunContext) -> BranchResult:
        """The branch's result: failed (at planning, in every attempt, or at the commit),
        else from the last attempt that succeeded: ``success``, or ``empty`` when it read
        no row."""
        task = ctx.task
        attempts = state.get("attempts", [])
        if state.get("failure") is not None:
            return self._failed_result(task, state, state["failure"])
        succeeded = [a for a in attempts if a["ok"]]
        if not succeeded:
            last = attempts[-1]
            return self._failed_result(
                task,
                state,
                f"{last['error']} (after {len(attempts)} attempt(s), last strategy {last['strategy']!r})",
            )
        chosen = succeeded[-1]
        try:
            outputs = self.commit_outputs(task, [OutputDescriptor.model_validate(o) for o in chosen["outputs"]])
            self.on_success(task, state["plan"], chosen, ctx)
        except DATA_ERRORS as exc:
            return self._failed_result(task, state, f"output written but not committed: {describe_error(exc)}")
        return self._completed_result(task, state, chosen, outputs)

    def _result(
        self,
        task: BranchTask,
        state: SpecialistState,
        status: BranchStatus,
        metrics: dict[str, Any],
        details: dict[str, Any],
        **fields: Any,
    ) -> BranchResult:
        """A result with what every status shares: identity, time, iterations, memory
        peak and the attempts in ``details``."""
        attempts = state.get("attempts", [])
        peaks = [a["peak_arrow_bytes"] for a in attempts if a.get("peak_arrow_bytes") is not None]
        return BranchResult(
            branch_id=task.branch_id,
            specialist=task.specialist,
            category=category_of(task.specialist),
            round=task.round,
            agent_type=self.agent_type,
            agent_id=self.agent_id,
            status=status,
            metrics=BranchMetrics(
                execution_seconds=state.get("seconds", 0.0),
                iterations=len(attempts),
                peak_memory_bytes=max(peaks) if peaks else None,
                **metrics,
            ),
            details={
                "quality_threshold": self.quality_threshold,
                "iteration_limit": self.iteration_limit,
                "attempts": [{k: a.get(k) for k in _ATTEMPT_SUMMARY} for a in attempts],
                **details,
            },
            **fields,
        )

    def _failed_result(self, task: BranchTask, state: SpecialistState, reason: str) -> BranchResult:
        return self._result(task, state, "failed", {}, {}, error=f"{task.branch_id}: {reason}")

    def _completed_result(
        self, task: BranchTask, state: SpecialistState, chosen: dict[str, Any], outputs: list[OutputDescriptor]
    ) -> BranchResult:
        """``success`` with the attempt's measures, or ``empty`` (quality EMPTY_QUALITY)
        when it read no row: an empty input is never a perfect one."""
        empty = chosen["rows_in"] == 0
        quality = EMPTY_QUALITY if empty else chosen["quality"]
        act_seconds = chosen["seconds"]
        # Keys starting with "_" are the specialist's own bookkeeping (e.g. the offset to
        # commit), not part of the result.
        details = {k: v for k, v in (chosen.get("details") or {}).items() if not k.startswith("_")}
        details.update(
            strategy=chosen["strategy"],
            quality_met=not empty and (quality is None or quality >= self.quality_threshold),
        )
        if empty:
            pending = chosen.get("rows_pending", 0)
            details["empty"] = "no row to read" + (f"; {pending} pending (not complete yet)" if pending else "")
        return self._result(
            task,
            state,
            EMPTY if empty else SUCCESS,
            {
                "rows_in": chosen["rows_in"],
                "rows_out": chosen["rows_out"],
                "rows_rejected": chosen["rows_rejected"],
                "rows_pending": chosen.get("rows_pending", 0),
                "record_batches": chosen["record_batches"],
                "throughput_rows_per_second": (chosen["rows_in"] / act_seconds) if act_seconds > 0 else 0.0,
                "quality": quality,
            },
            details,
            outputs=outputs,
        )

    # ----------------------------------------------------------------- running

    def build_subgraph(self) -> StateGraph:
        """The uncompiled subgraph (the same shape for every specialist)."""
        return build_specialist_graph()

    def run(
        self,
        task: BranchTask | Mapping[str, Any],
        *,
        saver: BaseCheckpointSaver | None = None,
        thread_id: str | None = None,
        connections: Any = None,
        on_progress: ProgressCallback | None = None,
    ) -> BranchResult:
        """Run (or resume) this specialist on ``task``.

        With a checkpointer and the thread id of an interrupted run, the run continues at
        the node that was interrupted. A thread whose run already succeeded for the same
        task returns that result without redoing the work; a thread that ended failed, or
        that holds a different task, starts over.

        Data problems give a result with status ``failed`` and an error naming the cause;
        only programming errors raise.
        """
        if not isinstance(task, BranchTask):
            task = BranchTask.model_validate(task)
        if task.specialist not in self.branches:
            raise ValueError(
                f"{self.agent_type} runs {list(self.branches)}, not {task.specialist!r}"
            )
        graph = self.build_subgraph().compile(checkpointer=saver if saver is not None else InMemorySaver())
        config = {"configurable": {"thread_id": thread_id or default_thread_id(task)}}
        ctx = RunContext(specialist=self, task=task, connections=connections, on_progress=on_progress)
        key = task_fingerprint(task)
        snapshot = graph.get_state(config)
        values = snapshot.values or {}
        same_task = values.get("task_key") == key
        # Each step's checkpoint is written before the next step starts ("sync"): a run
        # killed mid-act must find the plan it made, not an unfinished write of it.
        if same_task and snapshot.next:
            log.info(
                "Branch %s: resuming at %s from the checkpoint of an earlier attempt (thread %s; done: %s)",
                task.branch_id,
                ", ".join(snapshot.next),
                config["configurable"]["thread_id"],
                ", ".join(values.get("steps", [])) or "nothing",
            )
            final = graph.invoke(None, config, context=ctx, durability="sync")
        elif same_task and values.get("result") and values["result"].get("status") in COMPLETED:
            final = values
        else:
            final = graph.invoke(self._initial_state(task, key), config, context=ctx, durability="sync")
        return BranchResult.model_validate(final["result"])

    def _initial_state(self, task: BranchTask, key: str) -> SpecialistState:
        return {
            "task": task.model_dump(mode="json"),
            "task_key": key,
            "plan": None,
            "failure": None,
            "iteration": 0,
            "strategy": None,
            "decision": "",
            "attempts": [],
            "steps": [],
            "seconds": 0.0,
            "result": None,
        }


SpecialistFactory = Callable[[Any, Any], Specialist]


# The nodes dispatch to the specialist in the run context, so one compiled shape serves
# every specialist and the graph itself holds no instance.
def _plan(state: SpecialistState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    return runtime.context.specialist._node_plan(state, runtime)


def _act(state: SpecialistState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    return runtime.context.specialist._node_act(state, runtime)


def _check(state: SpecialistState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    return runtime.context.specialist._node_check(state, runtime)


def _finish(state: SpecialistState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    return runtime.context.specialist._node_finish(state, runtime)


def _after_plan(state: SpecialistState) -> str:
    return "finish" if state.get("failure") is not None else "act"


def _after_check(state: SpecialistState) -> str:
    return "act" if state.get("decision") == "retry" else "finish"


def build_specialist_graph() -> StateGraph:
    """plan -> act -> check -(retry)-> act ... -> finish, over :class:`SpecialistState`,
    with a :class:`RunContext` as the run's context."""
    graph = StateGraph(SpecialistState, context_schema=RunContext)
    graph.add_node("plan", _plan)
    graph.add_node("act", _act)
    graph.add_node("check", _check)
    graph.add_node("finish", _finish)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", _after_plan, ["act", "finish"])
    graph.add_edge("act", "check")
    graph.add_conditional_edges("check", _after_check, ["act", "finish"])
    graph.add_edge("finish", END)
    return graph
