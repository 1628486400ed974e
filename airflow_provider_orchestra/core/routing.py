"""Routing of a branch allocation to one of the five specialists."""

from __future__ import annotations

from airflow_provider_orchestra.core.models import Category, Priority, SourceType, SpecialistName

CATEGORY_OF: dict[SpecialistName, Category] = {
    "data_ingestion_branch_alpha": "ingestion",
    "data_validation_branch_beta": "validation",
    "data_transformation_branch_gamma": "transformation",
    "data_aggregation_branch_primary": "aggregation",
    "data_quality_branch_secondary": "aggregation",
}


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
