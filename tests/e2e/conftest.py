"""A real Airflow deployment for end-to-end tests, started as subprocesses.

api-server (Task SDK execution API + REST), scheduler with LocalExecutor, dag-processor and
triggerer, on a fresh Postgres metadata database and a temporary AIRFLOW_HOME, sharing one
JWT secret. Every component runs in its own process group and is stopped (SIGTERM, then
SIGKILL) at the end; failures carry the tail of every component's log.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

DAGS_DIR = Path(__file__).parent / "dags"
COMPONENTS = {
    "api-server": ["api-server", "--host", "127.0.0.1", "--port", "{port}", "--workers", "1"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, check: Callable[[], Any], timeout: float, stack: AirflowStack, interval: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; fail with every log's tail."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        stack.assert_alive()
        try:
            if result := check():
                return result
        except Exception as exc:  # the component may not answer yet
            last_error = exc
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error!r})\n{stack.log_tails()}")


class AirflowStack:
    def __init__(self, home: Path, metadata_url: str, extra_env: dict[str, str]):
        self.home = home
        self.metadata_url = metadata_url
        self.port = free_port()
        self.procs: dict[str, subprocess.Popen] = {}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW"))}
        self.env.update(
            AIRFLOW_HOME=str(home),
            AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__EXECUTOR="LocalExecutor",
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{self.port}/execution/",
            AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{self.port}",
            AIRFLOW__API__PORT=str(self.port),
            AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(32),
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=metadata_url,
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
            PYTHONUNBUFFERED="1",
        )
        self.env.update(extra_env)

    # -------------------------------------------------------------- processes

    def airflow(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "airflow", *args], env=self.env, capture_output=True, text=True, timeout=timeout, cwd=self.home
        )
        if proc.returncode != 0:
            pytest.fail(f"airflow {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc

    def start(self) -> None:
        self.airflow("db", "migrate")
        for name, args in COMPONENTS.items():
            log = (self.home / f"{name}.log").open("w")
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "airflow", *[a.format(port=self.port) for a in args]],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.home,
                start_new_session=True,  # its own process group: stopped with its children
            )
        self.wait_for("all components healthy", self.healthy, timeout=240, interval=1.0)

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
        return wait_for(what, check, timeout, self, interval)

    def health(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v2/monitor/health", timeout=5) as resp:
            return json.load(resp)

    def healthy(self) -> bool:
        health = self.health()
        return all(health.get(c, {}).get("status") == "healthy" for c in ("metadatabase", "scheduler", "triggerer", "dag_processor"))

    def assert_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode}\n{self.log_tails()}")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 30
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:  # whatever is left of the group, including orphaned children
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if proc.poll() is None:
                proc.wait(timeout=10)

    def log_tails(self, chars: int = 2500) -> str:
        parts = []
        for path in sorted(self.home.glob("*.log")):
            parts.append(f"----- {path.name} (tail) -----\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    # -------------------------------------------------------------- metadata, read by the test

    def query(self, statement: str, *params: Any) -> list[tuple]:
        with psycopg.connect(self.metadata_url.replace("postgresql+psycopg2://", "postgresql://"), autocommit=True) as conn:
            return conn.execute(statement, params).fetchall()


@pytest.fixture
def airflow_stack(postgres_server_url: str, tmp_path: Path) -> Iterator[Callable[..., AirflowStack]]:
    """Factory: start a deployment (fresh metadata database, e2e DAGs); stopped at the end."""
    started: list[AirflowStack] = []
    databases: list[str] = []

    def start(**extra_env: str) -> AirflowStack:
        name = f"orch_e2e_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(postgres_server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        databases.append(name)
        home = tmp_path / "airflow"
        shutil.copytree(DAGS_DIR, home / "dags", ignore=shutil.ignore_patterns("__pycache__"))
        base = postgres_server_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg2://", 1)
        stack = AirflowStack(home, f"{base}/{name}", extra_env)
        started.append(stack)
        stack.start()
        return stack

    yield start
    for stack in started:
        stack.stop()
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        for name in databases:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
