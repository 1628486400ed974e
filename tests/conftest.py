"""Shared fixtures: a real Postgres for every test that needs one.

Postgres is found at ORCHESTRA_TEST_POSTGRES_URL or 127.0.0.1:5432. Where none answers,
a throwaway cluster is started with pg_ctl. If that fails too, tests needing Postgres fail
(they never skip).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("select 1")
        return True
    except psycopg.Error:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_throwaway_cluster() -> tuple[str, list[str]]:
    pg_bin = Path(
        subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
    )
    if not (pg_bin / "pg_ctl").exists():
        candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        pg_bin = candidates[-1]
    datadir = Path(tempfile.mkdtemp(prefix="orchestra-pg-"))
    port = _free_port()
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root
        shutil.chown(datadir, "postgres", "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*run_as, str(pg_bin / "initdb"), "-D", str(datadir), "-A", "trust", "-U", "postgres"], check=True, capture_output=True)
    subprocess.run(
        [*run_as, str(pg_bin / "pg_ctl"), "-D", str(datadir), "-o", f"-p {port} -k {datadir} -c listen_addresses=127.0.0.1", "-w", "start", "-l", str(datadir / "log")],
        check=True,
        capture_output=True,
    )
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create database test")
    stop = [*run_as, str(pg_bin / "pg_ctl"), "-D", str(datadir), "stop", "-m", "fast"]
    return f"postgresql://postgres@127.0.0.1:{port}/test", stop


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """URL of a live Postgres database; fails (never skips) when none can be had."""
    url = os.environ.get("ORCHESTRA_TEST_POSTGRES_URL", DEFAULT_URL)
    if _answers(url):
        yield url
        return
    url, stop_command = _start_throwaway_cluster()
    os.environ["ORCHESTRA_TEST_POSTGRES_URL"] = url
    yield url
    subprocess.run(stop_command, capture_output=True)


def _create_database(admin: str) -> str:
    name = f"orch_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return f"{admin.rsplit('/', 1)[0]}/{name}"


def _drop_database(admin: str, url: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(url.rsplit("/", 1)[1])))


@pytest.fixture
def postgres_url(postgres_server_url: str) -> str:
    """A fresh, empty database for one test, dropped afterwards."""
    url = _create_database(postgres_server_url)
    yield url
    _drop_database(postgres_server_url, url)


@pytest.fixture(scope="module")
def module_databases(postgres_server_url: str):
    """Makes fresh databases that one test module shares (its tests keep apart by schema or
    table; creating a database per test costs more than a small test); all dropped after
    the module."""
    made: list[str] = []

    def make() -> str:
        made.append(_create_database(postgres_server_url))
        return made[-1]

    yield make
    for url in made:
        _drop_database(postgres_server_url, url)


@pytest.fixture(scope="session")
def migrated_airflow_db(tmp_path_factory) -> Path:
    """An Airflow metadata database (SQLite) migrated once per session; tests copy it into
    a fresh AIRFLOW_HOME per run."""
    from airflow_support import migrate_airflow_db

    return migrate_airflow_db(tmp_path_factory.mktemp("airflow-template"))
