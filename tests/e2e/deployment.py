"""A real Airflow deployment for end-to-end tests, started as plain processes.

api-server (REST API + Task SDK execution API + UI), scheduler, dag-processor and
triggerer on a fresh Postgres metadata database and a temporary AIRFLOW_HOME, sharing one
JWT secret; with ``executor="celery"`` also ``workers`` Celery workers on the machine's
Redis (a database number other than 0, and a queue name of the stack's own, so stacks of
concurrent test runs never take each other's tasks) with the metadata database as result
backend. Every component runs in its own process group; ``stop`` ends them (SIGTERM, then
SIGKILL). Failures carry the tail of every component's log.

Tests talk to the deployment as a user does: through the REST API (``/api/v2`` with a JWT
from ``/auth/token``, the admin's password written to the simple auth manager's password
file before the api-server starts). ``query`` reads the metadata database directly, for
the few facts the REST API does not expose.

Outputs and sample data live under ``orchestra_home`` (``$ORCHESTRA_HOME``), a directory
every component of the stack sees, as a real deployment needs. Each stack also has a
Postgres database of its own for the workflow's state (``state_url``): the agent factory's
ledger (``$ORCHESTRA_LEDGER_URL``, shared by every run and worker of the stack) and the
Postgres sinks, through the connection ``orchestra_state`` (``AIRFLOW_CONN_ORCHESTRA_STATE``,
read by the workers like any Airflow connection).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/: airflow_support
from airflow_support import airflow_env  # noqa: E402

REPO = Path(__file__).parents[2]
EXAMPLE_DAGS = REPO / "dags"
E2E_DAGS = Path(__file__).parent / "dags"
REDIS_URL_ENV = "ORCHESTRA_TEST_REDIS_URL"
DEFAULT_REDIS = "redis://127.0.0.1:6379"
ADMIN = "admin"
STATE_CONN_ID = "orchestra_state"
FINISHED = frozenset({"success", "failed"})

CORE_COMPONENTS = {
    "api-server": ["api-server", "--host", "127.0.0.1", "--port", "{port}", "--workers", "2"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}


def _kill_all(pids: Iterable[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_base_url() -> str:
    return os.environ.get(REDIS_URL_ENV, DEFAULT_REDIS).rstrip("/")


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


@dataclass(frozen=True)
class StackOptions:
    """What kind of deployment to start.

    :param executor: ``local`` (LocalExecutor in the scheduler) or ``celery``.
    :param workers: Celery workers (celery only).
    :param worker_concurrency: task slots of each Celery worker.
    :param parallelism: ``[core] parallelism``; default: the workers' slots for celery, 4
        for local.
    :param dags: DAG files copied into the stack's DAGs folder.
    :param env: more environment for every component (``AIRFLOW__...`` settings,
        ``AIRFLOW_CONN_...`` connections).
    """

    executor: str = "local"
    workers: int = 2
    worker_concurrency: int = 2
    parallelism: int | None = None
    dags: tuple[Path, ...] = ()
    env: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.executor not in ("local", "celery"):
            raise ValueError(f"executor must be 'local' or 'celery', not {self.executor!r}")

    @property
    def slots(self) -> int:
        if self.parallelism is not None:
            return self.parallelism
        return self.workers * self.worker_concurrency if self.executor == "celery" else 4


class AirflowStack:
    def __init__(self, home: Path, metadata_url: str, options: StackOptions, state_url: str):
        self.home = home
        self.metadata_url = metadata_url
        self.state_url = state_url
        self.options = options
        self.port = free_port()
        self.token = uuid.uuid4().hex[:10]
        self.procs: dict[str, subprocess.Popen] = {}
        self.log_offsets: dict[str, int] = {}
        self.orchestra_home = home / "orchestra"
        self.password = secrets.token_urlsafe(16)
        self._jwt: str | None = None
        self.queue = f"orchestra_e2e_{self.token}"
        self.redis_db = random.randint(1, 15)  # never 0; the queue name keeps stacks apart
        self.base_url = f"http://127.0.0.1:{self.port}"
        env = airflow_env(
            home,
            AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
            AIRFLOW__CORE__EXECUTOR="CeleryExecutor" if options.executor == "celery" else "LocalExecutor",
            AIRFLOW__CORE__PARALLELISM=str(options.slots),
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{self.base_url}/execution/",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{ADMIN}:admin",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(home / "passwords.json"),
            AIRFLOW__API__BASE_URL=self.base_url,
            AIRFLOW__API__PORT=str(self.port),
            AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(32),
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=metadata_url,
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
            AIRFLOW__OPERATORS__DEFAULT_QUEUE=self.queue,
            ORCHESTRA_HOME=str(self.orchestra_home),
            ORCHESTRA_LEDGER_URL=state_url,
            **{f"AIRFLOW_CONN_{STATE_CONN_ID.upper()}": state_url},
        )
        if options.executor == "celery":
            backend = metadata_url.replace("postgresql+psycopg2://", "db+postgresql://", 1)
            env.update(
                AIRFLOW__CELERY__BROKER_URL=f"{redis_base_url()}/{self.redis_db}",
                AIRFLOW__CELERY__RESULT_BACKEND=backend,
                AIRFLOW__CELERY__WORKER_CONCURRENCY=str(options.worker_concurrency),
            )
        env.update(dict(options.env))
        self.env = env

    # -------------------------------------------------------------- processes

    def airflow(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "airflow", *args], env=self.env, capture_output=True, text=True, timeout=timeout, cwd=self.home
        )
        if check and proc.returncode != 0:
            pytest.fail(f"airflow {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc

    @property
    def worker_names(self) -> list[str]:
        if self.options.executor != "celery":
            return []
        return [f"worker-{i}" for i in range(1, self.options.workers + 1)]

    def worker_hostname(self, name: str) -> str:
        """The Celery node name of worker ``name`` (unique per stack)."""
        return f"{name}-{self.token}@{socket.gethostname()}"

    def component_args(self, name: str) -> list[str]:
        if name in CORE_COMPONENTS:
            return [a.format(port=self.port) for a in CORE_COMPONENTS[name]]
        return [
            "celery", "worker",
            "--concurrency", str(self.options.worker_concurrency),
            "--celery-hostname", self.worker_hostname(name),
            "--queues", self.queue,
            "--pid", str(self.home / f"{name}.pid"),
            "--skip-serve-logs",
            "--without-gossip",
            "--without-mingle",
        ]  # fmt: skip

    def log_path(self, name: str) -> Path:
        return self.home / f"{name}.log"

    def start_component(self, name: str) -> None:
        path = self.log_path(name)
        self.log_offsets.setdefault(name, 0)
        with path.open("a") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "airflow", *self.component_args(name)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.home,
                start_new_session=True,  # its own process group: stopped with its children
            )

    def start(self) -> None:
        (self.home / "passwords.json").write_text(json.dumps({ADMIN: self.password}))
        self.orchestra_home.mkdir(parents=True, exist_ok=True)
        self.airflow("db", "migrate")
        for name in [*CORE_COMPONENTS, *self.worker_names]:
            self.start_component(name)
        self.wait_for("all components healthy", self.healthy, timeout=600, interval=1.0)
        for name in self.worker_names:
            self.wait_for_worker(name)

    def wait_for_worker(self, name: str, timeout: float = 180) -> None:
        start = self.log_offsets.get(name, 0)
        self.wait_for(
            f"Celery {name} ready",
            lambda: " ready." in self.log_path(name).read_text(errors="replace")[start:],
            timeout=timeout,
        )

    def process_tree(self, name: str) -> list[int]:
        """The component's main process and every descendant (a task process runs in a
        process group of its own, so signalling the component's group misses it)."""
        import psutil

        proc = self.procs[name]
        try:
            main = psutil.Process(proc.pid)
            return [proc.pid, *(child.pid for child in main.children(recursive=True))]
        except psutil.NoSuchProcess:
            return [proc.pid]

    def component_of(self, pid: int) -> str | None:
        """Which component ``pid`` descends from (e.g. the Celery worker running a task)."""
        import psutil

        mains = {p.pid: name for name, p in self.procs.items()}
        try:
            process = psutil.Process(pid)
            for ancestor in [process, *process.parents()]:
                if ancestor.pid in mains:
                    return mains[ancestor.pid]
        except psutil.NoSuchProcess:
            pass
        return None

    def stop_component(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        """Signal a component's process group and wait for its main process; whatever is
        left of it and its descendants (task processes included) is killed. Returns its
        exit code. ``sig=SIGKILL`` kills the whole tree at once, as a lost machine would."""
        tree = self.process_tree(name)
        proc = self.procs.pop(name)
        if sig == signal.SIGKILL:
            _kill_all(tree)
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _kill_all(tree)
        code = proc.wait(timeout=10)
        self.log_offsets[name] = self.log_path(name).stat().st_size
        return code

    def restart_component(self, name: str, sig: int = signal.SIGTERM) -> None:
        self.stop_component(name, sig)
        self.start_component(name)
        if name in self.worker_names:
            self.wait_for_worker(name)

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
        return wait_for(what, check, timeout, self, interval)

    def health(self) -> dict:
        with urllib.request.urlopen(f"{self.base_url}/api/v2/monitor/health", timeout=5) as resp:
            return json.load(resp)

    def healthy(self) -> bool:
        health = self.health()
        return all(health.get(c, {}).get("status") == "healthy" for c in ("metadatabase", "scheduler", "triggerer", "dag_processor"))

    def assert_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode}\n{self.log_tails()}")

    def stop(self) -> None:
        for name in list(self.procs):
            if self.procs[name].poll() is None:
                try:
                    os.killpg(self.procs[name].pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for name in list(self.procs):
            self.stop_component(name, signal.SIGTERM, timeout=20)
        if self.options.executor == "celery":
            self._forget_broker_keys()

    def _forget_broker_keys(self) -> None:
        """Delete this stack's keys from its Redis database (never the whole database:
        other stacks may share it)."""
        import redis

        client = redis.Redis.from_url(f"{redis_base_url()}/{self.redis_db}")
        try:
            keys = list(client.scan_iter(match=f"*{self.queue}*", count=500))
            if keys:
                client.delete(*keys)
        except redis.RedisError:
            pass
        finally:
            client.close()

    def log_tails(self, chars: int = 2500) -> str:
        parts = []
        for path in sorted(self.home.glob("*.log")):
            parts.append(f"----- {path.name} (tail) -----\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def component_log(self, name: str) -> str:
        return self.log_path(name).read_text(errors="replace")

    def component_pid(self, name: str) -> int:
        return self.procs[name].pid

    # -------------------------------------------------------------- REST API

    def jwt(self, refresh: bool = False) -> str:
        if self._jwt is None or refresh:
            body = json.dumps({"username": ADMIN, "password": self.password}).encode()
            request = urllib.request.Request(
                f"{self.base_url}/auth/token", data=body, method="POST", headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=30) as resp:
                self._jwt = json.load(resp)["access_token"]
        return self._jwt

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        *,
        expect: Iterable[int] = (200, 201, 204),
        timeout: float = 60,
    ) -> Any:
        """Call ``/api/v2{path}``; returns the decoded JSON (None when empty)."""
        url = f"{self.base_url}/api/v2{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params, doseq=True)
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(2):
            request = urllib.request.Request(url, data=data, method=method)
            request.add_header("Authorization", f"Bearer {self.jwt(refresh=attempt > 0)}")
            request.add_header("Accept", "application/json")
            if data is not None:
                request.add_header("Content-Type", "application/json")
            try:
                with urllib.request.urlopen(request, timeout=timeout) as resp:
                    status, payload = resp.status, resp.read()
            except urllib.error.HTTPError as exc:
                status, payload = exc.code, exc.read()
                if status == 401 and attempt == 0:
                    continue
            if status not in set(expect):
                raise AssertionError(f"{method} {path} answered {status}: {payload[:2000]!r}")
            return json.loads(payload) if payload else None
        raise AssertionError(f"{method} {path}: not authorised")

    def dag(self, dag_id: str) -> dict:
        return self.api("GET", f"/dags/{dag_id}")

    def wait_for_dag(self, dag_id: str, timeout: float = 240) -> dict:
        """Wait until the dag-processor has parsed ``dag_id``; fails at once on an import error."""

        def parsed():
            errors = self.api("GET", "/importErrors")["import_errors"]
            if errors:
                pytest.fail(f"DAG import errors: {json.dumps(errors, indent=1)[:6000]}")
            dags = self.api("GET", "/dags", {"dag_id_pattern": dag_id})["dags"]
            return next((d for d in dags if d["dag_id"] == dag_id), None)

        return self.wait_for(f"DAG {dag_id} parsed", parsed, timeout=timeout, interval=1.0)

    def set_paused(self, dag_id: str, paused: bool) -> dict:
        return self.api("PATCH", f"/dags/{dag_id}", {"is_paused": paused})

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None, run_id: str | None = None) -> str:
        """Trigger a run through the REST API; returns its run id."""
        body = {"logical_date": None, "conf": dict(conf or {})}
        if run_id:
            body["dag_run_id"] = run_id
        return self.api("POST", f"/dags/{dag_id}/dagRuns", body)["dag_run_id"]

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")

    def dag_runs(self, dag_id: str) -> list[dict]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns", {"limit": 100, "order_by": "run_after"})["dag_runs"]

    def wait_for_run(
        self, dag_id: str, run_id: str, timeout: float = 600, on_poll: Callable[[], Any] | None = None, interval: float = 1.0
    ) -> dict:
        """Wait until the run is success or failed; returns the run (REST)."""

        def finished():
            if on_poll is not None:
                on_poll()
            run = self.dag_run(dag_id, run_id)
            return run if run["state"] in FINISHED else None

        return self.wait_for(f"run {dag_id}/{run_id} to finish", finished, timeout=timeout, interval=interval)

    def task_instances(self, dag_id: str, run_id: str, states: Sequence[str] = ()) -> list[dict]:
        """Every task instance of the run (or those in ``states``), mapped instances
        included (the batch endpoint: the GET list pages at 50 and leaves some out)."""
        body: dict[str, Any] = {"dag_ids": [dag_id], "dag_run_ids": [run_id], "page_limit": 10_000}
        if states:
            body["state"] = list(states)
        return self.api("POST", "/dags/~/dagRuns/~/taskInstances/list", body)["task_instances"]

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict:
        path = f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/{task_id}"
        return self.api("GET", path if map_index < 0 else f"{path}/{map_index}")

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        """A try's log as text, one line per event (through the REST API)."""
        answer = self.api(
            "GET",
            f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/{task_id}/logs/{try_number}",
            {"map_index": map_index, "full_content": "true"},
        )
        lines = []
        for item in answer.get("content") or []:
            if isinstance(item, dict):
                extra = {k: v for k, v in item.items() if k not in ("event", "timestamp", "level", "logger")}
                lines.append(f"{item.get('timestamp', '')} {item.get('level', '')} {item.get('event', '')} {extra if extra else ''}".rstrip())
            else:
                lines.append(str(item))
        return "\n".join(lines)

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        entry = self.api(
            "GET",
            f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/{task_id}/xcomEntries/{key}",
            {"map_index": map_index, "deserialize": "true"},
        )
        value = entry["value"]
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    def pool(self, name: str = "default_pool") -> dict:
        return self.api("GET", f"/pools/{name}")

    def asset_events(self, **filters: Any) -> list[dict]:
        return self.api("GET", "/assets/events", {"limit": 100, **filters})["asset_events"]

    # -------------------------------------------------------------- metadata, read by the test

    def query(self, statement: str, *params: Any) -> list[tuple]:
        with psycopg.connect(self.metadata_url.replace("postgresql+psycopg2://", "postgresql://"), autocommit=True) as conn:
            return conn.execute(statement, params).fetchall()


@dataclass
class StackPool:
    """Starts deployments on demand and keeps one running at a time (two idle stacks
    would share the two cores for nothing): asking for other options stops the running
    stack first. Stacks and their databases are removed at the end of the session."""

    postgres_server_url: str
    base_dir: Path
    current: tuple[StackOptions, AirflowStack] | None = None
    databases: list[str] = field(default_factory=list)

    def get(self, options: StackOptions) -> AirflowStack:
        if self.current is not None:
            if self.current[0] == options and not any(p.poll() is not None for p in self.current[1].procs.values()):
                return self.current[1]
            self.release()
        stack = start_stack(self.postgres_server_url, self.base_dir / f"stack-{len(self.databases)}", options, self.databases)
        self.current = (options, stack)
        return stack

    def release(self) -> None:
        if self.current is not None:
            _, stack = self.current
            self.current = None
            stack.stop()

    def close(self) -> None:
        self.release()
        drop_databases(self.postgres_server_url, self.databases)


def start_stack(postgres_server_url: str, home: Path, options: StackOptions, databases: list[str]) -> AirflowStack:
    """Create the metadata and state databases, lay out the DAGs folder and start the
    deployment."""
    metadata = create_database(postgres_server_url, databases, "orch_e2e_meta")
    state_url = create_database(postgres_server_url, databases, "orch_e2e_state")
    dags = home / "dags"
    dags.mkdir(parents=True)
    for path in options.dags:
        shutil.copy2(path, dags / path.name)
    stack = AirflowStack(home, metadata.replace("postgresql://", "postgresql+psycopg2://", 1), options, state_url)
    try:
        stack.start()
    except BaseException:
        stack.stop()
        raise
    return stack


def drop_databases(postgres_server_url: str, names: Iterable[str]) -> None:
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def create_database(postgres_server_url: str, databases: list[str], prefix: str) -> str:
    """A new database on the test server; its name is added to ``databases`` (to drop)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    databases.append(name)
    return f"{postgres_server_url.rsplit('/', 1)[0]}/{name}"
