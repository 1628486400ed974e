"""Airflow for the sensor tests: a throwaway AIRFLOW_HOME with a migrated SQLite database.

Tests that import Airflow in this process get a temporary AIRFLOW_HOME (set before the
first import). ``dag.test()`` runs go to subprocesses, each with its own copy of a
database migrated once per session, so they can run side by side.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="orchestra-airflow-home-"))

DAGS_DIR = Path(__file__).parent / "dags"


def clean_airflow_env(home: Path, **overrides: str) -> dict[str, str]:
    """The environment of an Airflow subprocess: nothing inherited from an outer Airflow."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


@pytest.fixture(scope="session")
def airflow_env():
    """``clean_airflow_env`` for tests that start Airflow subprocesses."""
    return clean_airflow_env


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory) -> Path:
    """An Airflow metadata database migrated once for the session (copied per run)."""
    home = tmp_path_factory.mktemp("airflow-template")
    (home / "dags").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=clean_airflow_env(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"airflow db migrate failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return home / "airflow.db"


@pytest.fixture(scope="session")
def new_airflow_home(tmp_path_factory, migrated_sqlite):
    """Factory: a fresh AIRFLOW_HOME with the test DAGs and its own migrated database."""

    def make(name: str) -> Path:
        home = tmp_path_factory.mktemp(f"airflow-{name}")
        shutil.copytree(DAGS_DIR, home / "dags", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(migrated_sqlite, home / "airflow.db")
        return home

    return make
