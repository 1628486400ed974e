"""Routing of a branch allocation to a specialist."""

from __future__ import annotations

from airflow_provider_orchestra.core.models import Priority, SourceType, SpecialistName
from airflow_provider_orchestra.core.specialists import CATEGORY_OF

__all__ = ["CATEGORY_OF", "route"]


def route(branch_type: str, source_type: SourceType, priority: Priority) -> SpecialistName:
    """data_ingestion: streaming -> alpha, batch -> beta, anything else (realtime) -> gamma.
    data_aggregation: high priority -> primary, otherwise -> secondary."""
    if branch_type == "data_ingestion":
        if source_type == "streaming":
            return "data_ingestion_branch_alpha"
        if source_type == "batch":
            return "data_validation_branch_beta"
        return "data_transformation_branch_gamma"
    if branch_type == "data_aggregation":
        if priority == "high":
            return "data_aggregation_branch_primary"
        return "data_quality_branch_secondary"
    raise ValueError(f"unknown branch type {branch_type!r}")
