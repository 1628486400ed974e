"""The native LangGraph runtime: the whole workflow as one checkpointed StateGraph.

See :mod:`airflow_provider_orchestra.graph.workflow` for the graph and how the quorum,
cancellation and checkpoints work, and :mod:`airflow_provider_orchestra.graph.runner` for
running it to its end or a pause.
"""

from airflow_provider_orchestra.factory.claims import RunInUseError
from airflow_provider_orchestra.graph.checkpointing import open_checkpointer
from airflow_provider_orchestra.graph.quorum import BranchCancelled, RoundBoard
from airflow_provider_orchestra.graph.runner import (
    RunExistsError,
    RunNotFoundError,
    RunOutcome,
    resume_workflow,
    run_workflow,
)
from airflow_provider_orchestra.graph.state import GraphState, initial_state
from airflow_provider_orchestra.graph.workflow import (
    INTERRUPTIBLE,
    NODE_NAMES,
    branch_thread_id,
    build_workflow_graph,
    workflow_builder,
)

__all__ = [
    "INTERRUPTIBLE",
    "NODE_NAMES",
    "BranchCancelled",
    "GraphState",
    "RoundBoard",
    "RunExistsError",
    "RunInUseError",
    "RunNotFoundError",
    "RunOutcome",
    "branch_thread_id",
    "build_workflow_graph",
    "initial_state",
    "open_checkpointer",
    "resume_workflow",
    "run_workflow",
    "workflow_builder",
]
