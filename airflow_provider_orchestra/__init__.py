"""airflow-provider-orchestra: adaptive, parallel multi-agent data-processing workflows as
Airflow DAGs, and the same workflow natively as a LangGraph graph."""

from __future__ import annotations

__version__ = "0.1.0"


def get_provider_info() -> dict:
    """Provider metadata for Airflow's ProvidersManager (entry point apache_airflow_provider)."""
    from airflow_provider_orchestra.provider_info import get_provider_info as _info

    return _info()
