"""Fixtures of the factory tests: small templates registered per test, stores on real
SQLite files and on the real Postgres."""

from __future__ import annotations

import pytest

from airflow_provider_orchestra.factory import (
    AgentFactory,
    PerformanceHistory,
    ResourceLedger,
    TemplateRegistry,
    open_store,
)
from factory_test_support import SMALL, TEST_CAPACITY, RecordingAgent


@pytest.fixture
def registry() -> TemplateRegistry:
    reg = TemplateRegistry()
    reg.register_agent_template("ingestion_agent", RecordingAgent, ["data_ingestion"], SMALL)
    reg.register_agent_template(
        "validation_agent", RecordingAgent, ["data_validation", "quality_monitoring"], SMALL
    )
    reg.register_agent_template("transformation_agent", RecordingAgent, ["data_transformation"], SMALL)
    reg.register_agent_template("aggregation_agent", RecordingAgent, ["data_aggregation"], SMALL)
    reg.register_agent_template(
        "quality_aggregation_agent",
        RecordingAgent,
        ["data_aggregation", "quality_monitoring"],
        SMALL,
    )
    return reg


@pytest.fixture(params=["sqlite", "postgres"])
def location(request, tmp_path) -> str:
    """A store location on each backend."""
    if request.param == "sqlite":
        return str(tmp_path / "factory.db")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def sqlite_location(tmp_path) -> str:
    return str(tmp_path / "factory.db")


@pytest.fixture
def ledger(location) -> ResourceLedger:
    return ResourceLedger.open(location, capacity=TEST_CAPACITY)


@pytest.fixture
def history(location) -> PerformanceHistory:
    return PerformanceHistory.open(location)


@pytest.fixture
def factory(registry, sqlite_location) -> AgentFactory:
    store = open_store(sqlite_location)
    return AgentFactory(registry, ResourceLedger(store, TEST_CAPACITY), PerformanceHistory(store))
