"""The workflow's steps as plain functions, shared by the native graph and the Airflow
operators so neither runtime holds logic of its own.

Each step joins core/ (decisions), factory/ (agents and resources) and specialists/ (data
work); adapters only move the small models these functions take and return.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from airflow_provider_orchestra.core import analysis, balancing, integration, merging, quality_gate
from airflow_provider_orchestra.core.models import (
    AnalysisResult,
    BatchDescriptor,
    BranchAllocation,
    BranchMetrics,
    BranchResult,
    BranchTask,
    FinalReport,
    GateResult,
    MergeReport,
    SpecialistName,
    WorkflowConfig,
    WorkflowMode,
    parse_config,
)
from airflow_provider_orchestra.core.outcomes import COMPLETED, SUCCESS
from airflow_provider_orchestra.core.specialists import category_of, specialist_names

log = logging.getLogger(__name__)

LEDGER_URL_ENV = "ORCHESTRA_LEDGER_URL"
DEFAULT_RESOURCE_WAIT_SECONDS = 600.0


def _default_retry_attempts() -> int:
    from airflow_provider_orchestra.factory.specification import AgentSpecification

    return AgentSpecification.model_fields["retry_attempts"].default


# A failed branch is retried this many times by either runtime (Airflow task retries, or
# the native graph's branch node): the agent specification's retry_attempts.
BRANCH_RETRIES: int = _default_retry_attempts()
RESOURCE_WAIT_FIRST_DELAY = 0.2
RESOURCE_WAIT_MAX_DELAY = 5.0


def load_config(data: Any) -> WorkflowConfig:
    """Validate untrusted input; ConfigError names every offending field."""
    return parse_config(data)


def describe_batches(config: WorkflowConfig, *, connections=None) -> list[BatchDescriptor]:
    """Measure every batch of the queue (cheaply: metadata, streamed counts). Batches over
    the same source share one measurement (a CSV is counted once, not once per batch)."""
    from airflow_provider_orchestra.specialists.io import describe_source

    roots = config.storage.data_roots
    measured: dict[str, BatchDescriptor] = {}
    described = []
    for batch in config.batches:
        key = batch.source.model_dump_json()
        if key not in measured:
            measured[key] = describe_source(batch, roots=roots, connections=connections)
        described.append(measured[key].model_copy(update={"batch_id": batch.batch_id}))
    return analysis.with_dependencies(config, described)


def default_ledger_url(config: WorkflowConfig | None = None) -> str:
    """$ORCHESTRA_LEDGER_URL, else a SQLite file under the output root."""
    url = os.environ.get(LEDGER_URL_ENV)
    if url:
        return url
    from airflow_provider_orchestra.specialists.io.paths import state_path

    return str(state_path(config.storage.output_root if config else "output", "ledger.sqlite"))


def open_factory(
    url: str | None = None,
    *,
    config: WorkflowConfig | None = None,
    capacity: dict[str, Any] | None = None,
    template_set: str = "default",
):
    """An AgentFactory over the ledger at ``url`` (SQLite path or postgresql:// URL)."""
    from airflow_provider_orchestra.factory import AgentFactory

    return AgentFactory.from_url(url or default_ledger_url(config), capacity=capacity, template_set=template_set)


def resource_snapshot(factory) -> analysis.ResourceSnapshot:
    """The ledger's view plus this machine's load and memory."""
    try:
        load_1m = os.getloadavg()[0]
    except OSError:
        load_1m = 0.0
    return factory.ledger.snapshot().resource_snapshot(
        machine_cpus=os.cpu_count() or 1,
        machine_load_1m=load_1m,
        machine_memory_available_mb=_memory_available_mb(),
    )


def _memory_available_mb() -> float | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def analyze_run(config: WorkflowConfig, descriptors: Sequence[BatchDescriptor], factory) -> AnalysisResult:
    """The data_batch_analyzer step."""
    return analysis.analyze(config, descriptors, resource_snapshot(factory))


def plan_tasks(
    config: WorkflowConfig, allocations: Iterable[BranchAllocation], *, run_id: str
) -> list[BranchTask]:
    """One BranchTask per allocation: the payload of a Send / the kwargs of a mapped task."""
    return [
        BranchTask(
            workflow_id=config.workflow_id,
            run_id=run_id,
            branch_id=a.branch_id,
            round=a.round,
            specialist=a.specialist,
            allocation=a,
            batch=config.batch(a.branch_id),
            record_batch_rows=config.record_batch_rows,
            storage=config.storage,
        )
        for a in allocations
    ]


def group_by_specialist(
    tasks: Iterable[BranchTask], specialists: Sequence[SpecialistName] | None = None
) -> dict[SpecialistName, list[BranchTask]]:
    """Every specialist of ``specialists`` (default: all registered) as a key, each with
    its (possibly empty) list of tasks. A task for a specialist outside them raises
    ConfigError naming it."""
    from airflow_provider_orchestra.core.errors import ConfigError

    names = tuple(specialists) if specialists is not None else specialist_names()
    grouped: dict[SpecialistName, list[BranchTask]] = {name: [] for name in names}
    for t in tasks:
        if t.specialist not in grouped:
            raise ConfigError(
                f"branch {t.branch_id!r} is routed to specialist {t.specialist!r}, which this workflow "
                f"does not run; it runs {list(names)} (register the specialist where the workflow is built)",
                ["batches"],
            )
        grouped[t.specialist].append(t)
    return grouped


def failed_result(task: BranchTask, error: str, *, seconds: float | None = None, status: str = "failed") -> BranchResult:
    """A branch that ended without output, with the reason."""
    return BranchResult(
        branch_id=task.branch_id,
        specialist=task.specialist,
        category=category_of(task.specialist),
        status=status,
        round=task.round,
        metrics=BranchMetrics(execution_seconds=seconds),
        error=error,
    )


def execute_branch(
    task: BranchTask,
    *,
    factory,
    holder: str,
    saver=None,
    thread_id: str | None = None,
    connections=None,
    on_progress: Callable[[dict], None] | None = None,
    wait_seconds: float = DEFAULT_RESOURCE_WAIT_SECONDS,
) -> BranchResult:
    """Run one branch through the agent factory: requirements (factory.requirements) ->
    spec -> allocate -> instantiate -> run -> record -> release (also on failure). While the
    pool is exhausted it waits for a lease (up to ``wait_seconds``, backing off).

    The result carries the factory's events for this branch (``events``). A branch that
    fails, for a data problem, a template that cannot be created or an unexpected error,
    comes back as a failed result naming the error (an unexpected one with its traceback
    in ``details["traceback"]``), so both runtimes report the same. Raised instead: a pool
    still exhausted after the wait (ResourceUnavailableError), and a run stopped from
    outside (an exception whose ``counts_against_template`` is False, e.g. a cancellation).
    """
    from airflow_provider_orchestra.core.errors import AgentCreationError, NoSuitableAgentError
    from airflow_provider_orchestra.factory.requirements import branch_requirements

    requirements = branch_requirements(task)
    context = {"workflow_id": task.workflow_id, "run_id": task.run_id, "branch_id": task.branch_id, "round": task.round}
    started = time.monotonic()
    with factory.recording() as events:
        try:
            with _agent_when_resources_free(factory, requirements, holder, context, wait_seconds) as agent:
                try:
                    result = agent.run(task, saver=saver, thread_id=thread_id, connections=connections, on_progress=on_progress)
                except Exception as exc:
                    if not getattr(exc, "counts_against_template", True):
                        raise
                    log.error("branch %s crashed", task.branch_id, exc_info=True)
                    result = crashed_result(task, exc, seconds=time.monotonic() - started)
            seconds = result.metrics.execution_seconds
            factory.record_outcome(
                agent.agent_type,
                # An empty input is no fault of the agent, and no measure of its quality either.
                success=result.status in COMPLETED,
                seconds=seconds if seconds is not None else time.monotonic() - started,
                quality=result.metrics.quality if result.status == SUCCESS else None,
            )
        except (NoSuitableAgentError, AgentCreationError) as exc:
            result = failed_result(
                task, f"{task.branch_id}: {type(exc).__name__}: {exc}", seconds=time.monotonic() - started
            )
    return result.model_copy(update={"events": [dict(e) for e in events]})


TRACEBACK_LINES = 60
"""Lines of an unexpected error's traceback kept in a branch result (the innermost)."""


def crashed_result(task: BranchTask, exc: BaseException, *, seconds: float | None = None) -> BranchResult:
    """A branch stopped by an error no step expected: failed, naming the error, with the
    innermost part of its traceback kept in ``details["traceback"]``."""
    import traceback

    lines = "".join(traceback.format_exception(exc)).splitlines()
    result = failed_result(task, f"{task.branch_id}: crashed: {type(exc).__name__}: {exc}", seconds=seconds)
    return result.model_copy(update={"details": {"traceback": lines[-TRACEBACK_LINES:]}})


def plan_round(
    config: WorkflowConfig,
    allocations: Iterable[BranchAllocation],
    *,
    run_id: str,
    factory,
    holder: str,
    wait_seconds: float = DEFAULT_RESOURCE_WAIT_SECONDS,
) -> tuple[list[BranchTask], list[dict[str, Any]]]:
    """The parallel_coordinator step: the round's BranchTasks, and the factory's events.

    When requirement analysis asks for a PIPELINE_COORDINATION agent (more than two
    specialised agents in the round), the factory creates one and it plans the round;
    otherwise the round is planned directly.
    """
    from airflow_provider_orchestra.factory.requirements import analyze_requirements

    allocations = list(allocations)
    tasks = plan_tasks(config, allocations, run_id=run_id)
    needs = analyze_requirements(tasks)
    if needs.coordination is None:
        return tasks, []
    rounds = sorted({t.round for t in tasks})
    context = {"workflow_id": config.workflow_id, "run_id": run_id, "rounds": rounds, "coordinates": needs.specialised}
    started = time.monotonic()
    with factory.recording() as events:
        with _agent_when_resources_free(factory, needs.coordination, holder, context, wait_seconds) as coordinator:
            tasks = coordinator.plan(config, allocations, run_id=run_id)
        factory.record_outcome(coordinator.agent_type, success=True, seconds=time.monotonic() - started)
    return tasks, [dict(e) for e in events]


@contextlib.contextmanager
def _agent_when_resources_free(factory, requirements, holder, context, wait_seconds: float):
    from airflow_provider_orchestra.core.errors import ResourceUnavailableError

    deadline = time.monotonic() + wait_seconds
    delay = RESOURCE_WAIT_FIRST_DELAY
    with contextlib.ExitStack() as stack:
        while True:
            try:
                agent = stack.enter_context(factory.agent_for(requirements, holder=holder, context=context))
                break
            except ResourceUnavailableError as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.info("waiting %.1fs for resources: %s", delay, exc)
                time.sleep(delay)  # another branch holds the pool; its release frees it
                delay = min(delay * 2, RESOURCE_WAIT_MAX_DELAY)
        yield agent


def merge(allocated: Sequence[str], results: Iterable[BranchResult], round: int) -> MergeReport:
    """The branch_merger step over every allocated branch of the run (all rounds)."""
    return merging.merge_results(results, allocated=len(set(allocated)), round=round)


def gate(config: WorkflowConfig, report: MergeReport, round: int, iteration_limit: int | None = None) -> GateResult:
    """The quality_validator step."""
    return quality_gate.decide(report, config.quality, round, iteration_limit or config.iteration_limit)


def replan(
    config: WorkflowConfig,
    allocations: Sequence[BranchAllocation],
    results: Iterable[BranchResult],
    next_round: int,
    revision: bool,
) -> list[BranchAllocation]:
    """The load_balancer step. A revision round also re-runs branches of weak quality."""
    threshold = config.quality.approve_quality if revision else None
    return balancing.replan(allocations, results, next_round, threshold)


def integrate(
    config: WorkflowConfig,
    *,
    run_id: str,
    mode: WorkflowMode,
    merge_report: MergeReport,
    gate_result: GateResult,
    results: Iterable[BranchResult],
    timeline: Sequence[dict[str, Any]] = (),
) -> FinalReport:
    """The final_integrator step: build the report and write the integrated manifest."""
    report = integration.build_final_report(
        workflow_id=config.workflow_id,
        run_id=run_id,
        workflow_mode=mode,
        merge=merge_report,
        gate=gate_result,
        results=results,
        timeline=timeline,
    )
    return integration.write_integrated_output(report, config.storage.output_root)
