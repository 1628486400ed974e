"""Real Airflow for the workflow tests: the session's migrated metadata database
(``migrated_airflow_db`` in tests/conftest.py), copied into a fresh AIRFLOW_HOME for every
DAG run (see ``airflow_runs``).

Tests that import Airflow in this process get a temporary AIRFLOW_HOME too (set here,
before any test module imports Airflow).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="orchestra-airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from airflow_runs import AirflowHome  # noqa: E402


@pytest.fixture(scope="session")
def new_home(tmp_path_factory, migrated_airflow_db):
    """Factory: a fresh AIRFLOW_HOME (own copy of the migrated DB) with ``dag_files``."""

    def make(name: str, dag_files: list[Path]) -> AirflowHome:
        path = tmp_path_factory.mktemp(f"airflow-{name}")
        (path / "dags").mkdir()
        for f in dag_files:
            shutil.copy2(f, path / "dags" / f.name)
        shutil.copy2(migrated_airflow_db, path / "airflow.db")
        (path / "orchestra" / "data").mkdir(parents=True)
        return AirflowHome(path)

    return make
