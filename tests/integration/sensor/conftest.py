"""Airflow for the sensor tests: a throwaway AIRFLOW_HOME with the session's migrated
SQLite database (``migrated_airflow_db`` in tests/conftest.py).

Tests that import Airflow in this process get a temporary AIRFLOW_HOME (set before the
first import). ``dag.test()`` runs go to subprocesses, each with its own copy of a
database migrated once per session, so they can run side by side.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import airflow_support
import pytest

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="orchestra-airflow-home-"))

DAGS_DIR = Path(__file__).parent / "dags"


@pytest.fixture(scope="session")
def airflow_env():
    """The environment builder for tests that start Airflow subprocesses."""
    return airflow_support.airflow_env


@pytest.fixture(scope="session")
def new_airflow_home(tmp_path_factory, migrated_airflow_db):
    """Factory: a fresh AIRFLOW_HOME with the test DAGs and its own migrated database."""

    def make(name: str) -> Path:
        home = tmp_path_factory.mktemp(f"airflow-{name}")
        shutil.copytree(DAGS_DIR, home / "dags", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(migrated_airflow_db, home / "airflow.db")
        return home

    return make
