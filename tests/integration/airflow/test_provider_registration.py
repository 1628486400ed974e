"""get_provider_info as Airflow sees it, through the ``airflow providers`` commands."""

from __future__ import annotations

import json

import pytest

from airflow_runs import TEST_DAGS

PACKAGE = "airflow-provider-orchestra"


@pytest.fixture(scope="module")
def home(new_home):
    return new_home("providers", [TEST_DAGS / "orchestra_check.py"])


def cli_json(home, *args):
    proc = home.airflow("providers", *args, "-o", "json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_provider_is_listed_with_its_modules(home):
    [info] = cli_json(home, "get", PACKAGE, "--full")
    assert info["package-name"] == PACKAGE
    assert info["hooks"][0]["python-modules"] == ["airflow_provider_orchestra.hooks.agent_factory"]
    assert info["sensors"][0]["python-modules"] == ["airflow_provider_orchestra.sensors.quorum"]
    assert info["triggers"][0]["python-modules"] == ["airflow_provider_orchestra.triggers.quorum"]
    assert "airflow_provider_orchestra.operators.workflow" in info["operators"][0]["python-modules"]
    assert "airflow_provider_orchestra.operators.specialist" in info["operators"][0]["python-modules"]


def test_hook_and_connection_type_are_registered(home):
    hooks = [h for h in cli_json(home, "hooks") if h.get("package_name") == PACKAGE]
    assert hooks == [
        {
            "connection_type": "orchestra_factory",
            "class": "airflow_provider_orchestra.hooks.agent_factory.AgentFactoryHook",
            "conn_id_attribute_name": "factory_conn_id",
            "package_name": PACKAGE,
            "hook_name": "Orchestra Agent Factory",
        }
    ]


def test_trigger_is_registered(home):
    triggers = [t for t in cli_json(home, "triggers") if t.get("package_name") == PACKAGE]
    assert [t["class"] for t in triggers] == ["airflow_provider_orchestra.triggers.quorum"]


def test_connection_form_fields_and_behaviour_are_registered(home):
    widgets = {w["connection_parameter_name"] for w in cli_json(home, "widgets") if w.get("package_name") == PACKAGE}
    assert widgets == {
        f"extra__orchestra_factory__{name}"
        for name in ("ledger_url", "ledger_conn_id", "cpu", "memory_mb", "max_agents", "template_set")
    }
    behaviours = cli_json(home, "behaviours")
    assert {"field_behaviours": "orchestra_factory"} in behaviours
