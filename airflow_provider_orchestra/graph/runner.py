"""Running the workflow graph to its end or to a pause: start a new thread, or resume one
from its checkpoint store, streaming branch progress to a callback."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from airflow_provider_orchestra import runtime
from airflow_provider_orchestra.core.errors import OrchestraError
from airflow_provider_orchestra.core.models import FinalReport, WorkflowConfig, parse_config
from airflow_provider_orchestra.graph.checkpointing import close_saver, open_checkpointer
from airflow_provider_orchestra.graph.state import initial_state
from airflow_provider_orchestra.graph.workflow import build_workflow_graph

EventCallback = Callable[[dict[str, Any]], None]


class RunNotFoundError(OrchestraError):
    """No run with this thread id in the checkpoint store."""


class RunExistsError(OrchestraError):
    """A new run was asked for under a thread id that already has checkpoints."""


@dataclass
class RunOutcome:
    """Where a run stands: finished (``report`` set) or paused before ``paused_before``."""

    thread_id: str
    status: str
    report: FinalReport | None = None
    paused_before: list[str] = field(default_factory=list)
    rounds: int = 0
    wall_seconds: float = 0.0

    @property
    def finished(self) -> bool:
        return self.report is not None

    @property
    def succeeded(self) -> bool:
        return self.status == "approved"


def new_thread_id(config: WorkflowConfig) -> str:
    return f"{config.workflow_id}-{uuid.uuid4().hex[:12]}"


def _drive(graph, graph_input: Any, thread_id: str, on_event: EventCallback | None) -> RunOutcome:
    run_config = {"configurable": {"thread_id": thread_id}}
    started = time.perf_counter()
    for mode, chunk in graph.stream(
        graph_input, run_config, stream_mode=["custom", "updates"], durability="sync"
    ):
        if on_event is None:
            continue
        if mode == "custom":
            on_event(chunk)
        elif mode == "updates":
            for node in chunk:
                if node != "__interrupt__":
                    on_event({"kind": "node", "node": node})
    wall = time.perf_counter() - started
    snapshot = graph.get_state(run_config)
    values = snapshot.values or {}
    report = values.get("report")
    if snapshot.next:
        return RunOutcome(
            thread_id=thread_id,
            status="paused",
            paused_before=list(dict.fromkeys(snapshot.next)),
            rounds=values.get("round", 0),
            wall_seconds=wall,
        )
    return RunOutcome(
        thread_id=thread_id,
        status=values.get("status", "running"),
        report=report,
        rounds=values.get("round", 0),
        wall_seconds=wall,
    )


def _started_pauses(values: Mapping[str, Any]) -> list[str]:
    pauses = (values.get("checkpoint_data") or {}).get("interrupt_before") or []
    config = values.get("config")
    return list(pauses) or (list(config.interrupt_before) if config is not None else [])


def run_workflow(
    config: WorkflowConfig | Mapping[str, Any],
    *,
    checkpoint: BaseCheckpointSaver | str | None = None,
    thread_id: str | None = None,
    interrupt_before: Iterable[str] = (),
    factory: Any = None,
    connections: Any = None,
    on_event: EventCallback | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> RunOutcome:
    """Start a new run under ``thread_id`` (default: a fresh one) and drive it to its end
    or first pause. Raises RunExistsError if that thread already has checkpoints, and
    RunInUseError while another process runs it (the thread id is claimed in the factory's
    store for the run's duration)."""
    cfg = parse_config(config)
    thread_id = thread_id or new_thread_id(cfg)
    factory = factory or runtime.open_factory(config=cfg)
    saver = open_checkpointer(checkpoint)
    try:
        with owning_thread(factory, thread_id):
            graph = build_workflow_graph(
                cfg,
                factory=factory,
                checkpointer=saver,
                interrupt_before=interrupt_before,
                connections=connections,
                clock=clock,
            )
            if graph.get_state({"configurable": {"thread_id": thread_id}}).values:
                raise RunExistsError(
                    f"thread id {thread_id!r} already has a run in this checkpoint store; resume it instead"
                )
            graph_input = initial_state(cfg, thread_id)
            graph_input["checkpoint_data"] = {"interrupt_before": list(interrupt_before)}
            return _drive(graph, graph_input, thread_id, on_event)
    finally:
        if saver is not checkpoint:
            close_saver(saver)


def resume_workflow(
    thread_id: str,
    *,
    checkpoint: BaseCheckpointSaver | str | None,
    interrupt_before: Iterable[str] = (),
    factory: Any = None,
    connections: Any = None,
    on_event: EventCallback | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> RunOutcome:
    """Continue the run of ``thread_id`` from its latest checkpoint (after a pause or a
    crash). A finished run is reported again without doing anything. Raises RunInUseError
    while another process runs it."""
    saver = open_checkpointer(checkpoint)
    try:
        values = build_workflow_graph(None, checkpointer=saver).get_state({"configurable": {"thread_id": thread_id}}).values
        if not values:
            raise RunNotFoundError(f"no run with thread id {thread_id!r} in this checkpoint store")
        factory = factory or runtime.open_factory(config=values.get("config"))
        with owning_thread(factory, thread_id):
            graph = build_workflow_graph(
                None,
                factory=factory,
                checkpointer=saver,
                # Without pauses asked for now, keep the ones the run was started with.
                interrupt_before=list(interrupt_before) or _started_pauses(values),
                connections=connections,
                clock=clock,
            )
            return _drive(graph, None, thread_id, on_event)
    finally:
        if saver is not checkpoint:
            close_saver(saver)


@contextlib.contextmanager
def owning_thread(factory: Any, thread_id: str) -> Iterator[None]:
    """Hold ``thread_id`` for this process while the block runs (see factory.claims): a
    second process running or resuming it at the same time gets RunInUseError."""
    from airflow_provider_orchestra.factory.claims import RunClaims

    with RunClaims(factory.ledger.store).owning(thread_id):
        yield
