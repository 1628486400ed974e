"""The open set of specialists: the built-in five, registered ones, entry points."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from airflow_provider_orchestra.core.capabilities import Capability
from airflow_provider_orchestra.core.models import SPECIALISTS
from airflow_provider_orchestra.core.specialists import (
    CATEGORY_OF,
    ENTRY_POINT_GROUP,
    SpecialistRegistrationError,
    SpecialistRegistry,
    UnknownSpecialistError,
    category_of,
    register_specialist,
    specialist_names,
    specialist_registry,
)
from airflow_provider_orchestra.factory.registry import TemplateRegistry
from airflow_provider_orchestra.factory.selection import SPECIALIST_CAPABILITIES, required_capabilities_for
from airflow_provider_orchestra.operators.layout import WorkflowLayout


@pytest.fixture
def registered():
    """A specialist registered on the process-wide registry for one test."""
    info = register_specialist(
        "geo_enrichment", category="transformation", capabilities=["data_transformation"], description="adds regions"
    )
    yield info
    specialist_registry.unregister(info.name)


def test_the_builtin_five_come_first_with_their_categories_and_capabilities():
    registry = SpecialistRegistry(discover=False)
    assert registry.names() == SPECIALISTS
    assert [registry.get(n).category for n in SPECIALISTS] == [
        "ingestion", "validation", "transformation", "aggregation", "aggregation",
    ]
    assert registry.get(SPECIALISTS[4]).capabilities == {Capability.DATA_AGGREGATION, Capability.QUALITY_MONITORING}
    assert all(registry.get(n).builtin for n in SPECIALISTS)


def test_a_registered_specialist_is_known_everywhere_the_workflow_keys_on_names(registered):
    assert specialist_names() == (*SPECIALISTS, "geo_enrichment")
    assert category_of("geo_enrichment") == "transformation" == CATEGORY_OF["geo_enrichment"]
    assert required_capabilities_for("geo_enrichment") == {Capability.DATA_TRANSFORMATION}
    assert set(SPECIALIST_CAPABILITIES) == set(specialist_names())
    layout = WorkflowLayout.build("orchestra", 2)
    assert layout.specialists[-1] == "geo_enrichment"
    for rl in layout.rounds:
        assert rl.routes["geo_enrichment"] == f"{rl.group}.route_geo_enrichment"
        assert rl.specialists["geo_enrichment"] == f"{rl.group}.geo_enrichment"


def test_registration_refuses_what_the_workflow_could_not_use():
    registry = SpecialistRegistry(discover=False)
    with pytest.raises(SpecialistRegistrationError, match="invalid specialist name 'geo-enrichment'"):
        registry.register("geo-enrichment", category="transformation", capabilities=["data_transformation"])
    with pytest.raises(SpecialistRegistrationError, match="unknown merge category 'enrichment'"):
        registry.register("geo", category="enrichment", capabilities=["data_transformation"])
    with pytest.raises(SpecialistRegistrationError, match="unknown capability 'geocoding'"):
        registry.register("geo", category="transformation", capabilities=["geocoding"])
    with pytest.raises(SpecialistRegistrationError, match="declares no capabilities"):
        registry.register("geo", category="transformation", capabilities=[])
    with pytest.raises(SpecialistRegistrationError, match="is a built-in specialist"):
        registry.register(SPECIALISTS[0], category="ingestion", capabilities=["data_ingestion"])
    registry.register("geo", category="transformation", capabilities=["data_transformation"])
    registry.register("geo", category="transformation", capabilities=["data_transformation"])  # same: no-op
    with pytest.raises(SpecialistRegistrationError, match="already registered with other settings"):
        registry.register("geo", category="validation", capabilities=["data_validation"])
    registry.register("geo", category="validation", capabilities=["data_validation"], replace=True)
    assert registry.get("geo").category == "validation"
    with pytest.raises(UnknownSpecialistError, match="unknown specialist 'omega'; registered: data_ingestion_branch_alpha"):
        registry.get("omega")


def test_a_specialist_named_like_a_workflow_step_is_refused_by_the_layout():
    with pytest.raises(ValueError, match=r"\['sync_point_manager'\] are task ids of the workflow's own steps"):
        WorkflowLayout.build(None, 1, specialists=[*SPECIALISTS, "sync_point_manager"])
    with pytest.raises(ValueError, match=r"\['route_geo'\]"):
        WorkflowLayout.build(None, 1, specialists=["geo", "route_geo"])


def test_templates_are_chosen_only_among_those_that_run_the_branch_specialist():
    registry = TemplateRegistry()
    registry.register_agent_template("gamma_agent", object, ["data_transformation"], specialists=[SPECIALISTS[2]])
    registry.register_agent_template("geo_agent", object, ["data_transformation"], specialists=["geo"])
    registry.register_agent_template("any_agent", object, ["data_transformation", "data_validation"])
    names = lambda entries: [e.agent_type for e in entries]  # noqa: E731
    needed = {Capability.DATA_TRANSFORMATION}
    assert names(registry.candidates_for(needed, "geo")) == ["any_agent", "geo_agent"]
    assert names(registry.candidates_for(needed, SPECIALISTS[2])) == ["any_agent", "gamma_agent"]
    assert names(registry.candidates_for(needed)) == ["any_agent", "gamma_agent", "geo_agent"]


def _plugin_package(tmp_path, body: str, entry: str = "plugin_geo = orchestra_plugin_geo") -> str:
    (tmp_path / "orchestra_plugin_geo.py").write_text(textwrap.dedent(body))
    dist = tmp_path / "orchestra_plugin_geo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: orchestra-plugin-geo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entry}\n")
    return str(tmp_path)


def _run_python(path: str, code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": path, "PATH": "/usr/bin:/bin"},
        timeout=120,
    )


def test_an_installed_package_ships_specialists_through_its_entry_point(tmp_path):
    path = _plugin_package(
        tmp_path,
        """
        from airflow_provider_orchestra.core.specialists import register_specialist

        register_specialist("plugin_geo", category="transformation", capabilities=["data_transformation"])
        """,
    )
    proc = _run_python(
        path,
        """
        import sys
        from airflow_provider_orchestra.core.specialists import category_of, specialist_names
        assert "orchestra_plugin_geo" not in sys.modules  # nothing loads before first use
        print(specialist_names()[-1], category_of("plugin_geo"))
        """,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["plugin_geo", "transformation"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("raise ImportError('no module named geopandas')", "failed to load: ImportError: no module named geopandas"),
        ("x = 1", "loaded but registered no specialist named 'plugin_geo'"),
    ],
)
def test_a_broken_entry_point_is_named_in_the_error(tmp_path, body, expected):
    path = _plugin_package(tmp_path, body)
    proc = _run_python(
        path,
        """
        from airflow_provider_orchestra.core.specialists import specialist_names
        specialist_names()
        """,
    )
    assert proc.returncode != 0
    assert "entry point 'plugin_geo' = 'orchestra_plugin_geo' of group 'orchestra.specialists'" in proc.stderr
    assert expected in proc.stderr
