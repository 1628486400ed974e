import json
from importlib.metadata import entry_points
from pathlib import Path

import jsonschema

import airflow_provider_orchestra


def airflow_schema() -> dict:
    import importlib.util

    spec = importlib.util.find_spec("airflow")
    return json.loads((Path(spec.origin).parent / "provider_info.schema.json").read_text())


def test_provider_info_validates_against_airflows_schema():
    info = airflow_provider_orchestra.get_provider_info()
    jsonschema.validate(info, airflow_schema())
    assert info["package-name"] == "airflow-provider-orchestra"
    assert info["versions"][0] == airflow_provider_orchestra.__version__


def test_entry_point_is_registered():
    eps = [ep for ep in entry_points(group="apache_airflow_provider") if ep.value.startswith("airflow_provider_orchestra")]
    assert len(eps) == 1
    assert eps[0].load() is airflow_provider_orchestra.get_provider_info
