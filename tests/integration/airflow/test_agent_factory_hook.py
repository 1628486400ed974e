"""The agent-factory hook against real ledgers: the embedded SQLite default and a Postgres
ledger reached through an Airflow connection id (connections come from AIRFLOW_CONN_*)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from airflow_provider_orchestra.core.models import WorkflowConfig
from airflow_provider_orchestra.hooks.agent_factory import AgentFactoryHook, holder_for
from airflow_provider_orchestra.provider_info import FACTORY_UI_FIELD_BEHAVIOUR


def factory_connection(monkeypatch, conn_id: str, **extra) -> None:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "orchestra_factory", "extra": extra})
    )


def config_at(output: Path) -> WorkflowConfig:
    return WorkflowConfig.model_validate(
        {
            "batches": [{"batch_id": "b", "type": "data_ingestion", "source": {"kind": "csv", "path": "b.csv"}}],
            "storage": {"output_root": str(output)},
        }
    )


def test_without_a_connection_the_embedded_sqlite_ledger_is_used(tmp_path, monkeypatch):
    monkeypatch.delenv("ORCHESTRA_LEDGER_URL", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_ORCHESTRA_FACTORY_DEFAULT", raising=False)
    hook = AgentFactoryHook(config=config_at(tmp_path / "out"))
    assert hook.settings == {} and hook.ledger_url() is None and hook.capacity() is None
    ok, message = hook.test_connection()
    assert ok, message
    assert (tmp_path / "out" / "_state" / "ledger.sqlite").is_file()
    assert "streaming_ingestion_specialist" in message


def test_a_missing_named_connection_is_an_error(monkeypatch):
    from airflow.sdk.exceptions import AirflowNotFoundException

    monkeypatch.delenv("AIRFLOW_CONN_FACTORY_TYPO", raising=False)
    with pytest.raises(AirflowNotFoundException):
        AgentFactoryHook("factory_typo").ledger_url()


def test_a_url_given_as_the_factory_connection_id_is_refused_without_its_password():
    hook = AgentFactoryHook("postgresql://postgres:s3cretPW@127.0.0.1:5432/test")
    with pytest.raises(Exception, match="is a URL") as info:
        hook.settings
    assert "s3cretPW" not in str(info.value) and "postgres:***@" in str(info.value)


def test_connection_extras_set_ledger_capacity_and_template_set(tmp_path, monkeypatch):
    ledger = tmp_path / "ledger.sqlite"
    factory_connection(
        monkeypatch, "factory_small", ledger_url=str(ledger), cpu=1.5, max_agents=2, template_set="default"
    )
    hook = AgentFactoryHook("factory_small")
    capacity = hook.capacity()
    assert capacity.cpu == 1.5 and capacity.max_agents == 2 and capacity.memory_mb > 0  # memory: this machine
    assert hook.template_set() == "default"
    factory = hook.get_factory()
    assert factory.ledger.capacity.cpu == 1.5
    assert ledger.is_file()


def test_hook_steps_run_an_agent_lifecycle_on_a_postgres_ledger(postgres_url, monkeypatch):
    from airflow_provider_orchestra.factory import Capability

    monkeypatch.setenv("AIRFLOW_CONN_LEDGER_DB", postgres_url)
    factory_connection(monkeypatch, "factory_pg", ledger_conn_id="ledger_db", cpu=4, memory_mb=4096, max_agents=3)
    hook = AgentFactoryHook("factory_pg")
    ok, message = hook.test_connection()
    assert ok, message
    assert "capacity cpu=4" in message and "max_agents=3" in message

    spec = hook.generate_spec({"capabilities_needed": [Capability.DATA_VALIDATION.value]}, {"branch_id": "b1"})
    holder = "dag/run/task/0"
    lease = hook.allocate(spec, holder)
    assert hook.allocate(spec, holder).lease_id == lease.lease_id  # a retried task gets its lease back
    agent = hook.instantiate(spec, lease)
    assert agent is not None
    assert hook.get_factory().ledger.snapshot().active_leases == 1
    assert hook.release(lease)
    assert hook.get_factory().ledger.snapshot().active_leases == 0
    stats = hook.record_performance(spec.agent_type, success=True, seconds=1.25, quality=0.9)
    assert stats.runs == 1 and stats.mean_quality == pytest.approx(0.9)


def test_test_connection_reports_an_unreachable_ledger_without_its_password(monkeypatch):
    factory_connection(monkeypatch, "factory_down", ledger_url="postgresql://orchestra:s3cret-pw@127.0.0.1:9/ledger")
    ok, message = AgentFactoryHook("factory_down").test_connection()
    assert not ok
    assert "LedgerUnavailableError" in message and "s3cret-pw" not in message


def test_ui_field_behaviour_comes_from_the_provider_info():
    behaviour = AgentFactoryHook.get_ui_field_behaviour()
    assert behaviour["hidden_fields"] == FACTORY_UI_FIELD_BEHAVIOUR["hidden-fields"]
    assert set(behaviour["placeholders"]) <= {"ledger_url", "ledger_conn_id", "template_set"}


def test_holder_is_dag_run_task_and_map_index():
    ti = SimpleNamespace(dag_id="d", run_id="manual__1", task_id="g.round_1.alpha", map_index=3)
    assert holder_for({"ti": ti}) == "d/manual__1/g.round_1.alpha/3"
