"""Airflow homes for tests that run Airflow in subprocesses (Airflow reads its
configuration once, at first import, so each run gets its own process and home)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def airflow_env(home: Path, **overrides: str) -> dict[str, str]:
    """The environment of an Airflow subprocess living in ``home``; nothing inherited
    from an outer Airflow or orchestra setup."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "_AIRFLOW", "ORCHESTRA_HOME", "ORCHESTRA_LEDGER", "ORCHESTRA_CHECKPOINT"))
    }
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        ORCHESTRA_HOME=str(home / "orchestra"),
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


def migrate_airflow_db(home: Path) -> Path:
    """Create and migrate the SQLite metadata database of ``home``; returns its path."""
    (home / "dags").mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=airflow_env(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"airflow db migrate failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return home / "airflow.db"
