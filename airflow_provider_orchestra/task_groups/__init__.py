"""Build the orchestra workflow into a DAG."""

from airflow_provider_orchestra.task_groups.params import workflow_params
from airflow_provider_orchestra.task_groups.workflow import (
    DEFAULT_ITERATION_LIMIT,
    default_asset,
    orchestra_workflow,
)

__all__ = ["DEFAULT_ITERATION_LIMIT", "default_asset", "orchestra_workflow", "workflow_params"]
