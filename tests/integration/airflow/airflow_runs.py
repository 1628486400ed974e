"""Helpers of the Airflow workflow tests: Airflow homes, and ``dag.test()`` runs in
subprocesses (Airflow reads its configuration once, when first imported, so each run
gets its own process and home)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_support import airflow_env

HERE = Path(__file__).parent
TEST_DAGS = HERE / "dags"
REPO_DAGS = HERE.parents[2] / "dags"
RUNNER = HERE / "dag_runner.py"
RUN_TIMEOUT_SECONDS = 420


@dataclass
class AirflowHome:
    path: Path

    @property
    def orchestra(self) -> Path:
        return self.path / "orchestra"

    @property
    def data(self) -> Path:
        return self.orchestra / "data"

    @property
    def output(self) -> Path:
        return self.orchestra / "output"

    def env(self, **overrides: str) -> dict[str, str]:
        return airflow_env(self.path, **overrides)

    def airflow(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "airflow", *args], env=self.env(), capture_output=True, text=True, timeout=timeout
        )


@dataclass
class DagRunResult:
    home: AirflowHome
    returncode: int
    stdout: str
    stderr: str
    result: dict[str, Any] | None = None
    tis: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)

    @property
    def log(self) -> str:
        return self.stdout + self.stderr

    @property
    def state(self) -> str:
        assert self.result is not None, f"the run did not report a result:\n{self.log[-6000:]}"
        return self.result["state"]

    @staticmethod
    def full_id(task_id: str) -> str:
        """Task ids are given without the ``orchestra.`` group prefix."""
        return f"orchestra.{task_id}"

    def ti(self, task_id: str, map_index: int = -1) -> dict[str, Any]:
        return self.tis[(self.full_id(task_id), map_index)]

    def states(self, task_id: str) -> dict[int, str]:
        full = self.full_id(task_id)
        return {m: ti["state"] for (t, m), ti in self.tis.items() if t == full}

    def xcom(self, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        full = self.full_id(task_id)
        for x in self.result["xcoms"]:
            if x["task_id"] == full and x["key"] == key and x["map_index"] == map_index:
                return x["value"]
        return None

    def manifest(self) -> dict[str, Any]:
        integrated = self.xcom("final_integrator")
        assert integrated, "no integrated output"
        return json.loads(Path(integrated["manifest_uri"].removeprefix("file://")).read_text())


def run_dag(
    home: AirflowHome,
    dag_id: str,
    conf: dict | None = None,
    logical_date: str | None = None,
    *,
    env: dict[str, str] | None = None,
    python_args: tuple[str, ...] = (),
) -> DagRunResult:
    """``dag.test()`` of ``dag_id`` in a subprocess; ``env`` adds to the home's environment
    and ``python_args`` go before the runner (e.g. a script that wraps it)."""
    request = home.path / f"request-{dag_id}.json"
    request.write_text(json.dumps({"conf": conf, "logical_date": logical_date}))
    proc = subprocess.run(
        [sys.executable, *python_args, str(RUNNER), dag_id, str(request)],
        env=home.env(**(env or {})),
        cwd=home.path,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
    )
    out = DagRunResult(home, proc.returncode, proc.stdout, proc.stderr)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            out.result = json.loads(line[len("RESULT ") :])
            out.tis = {(t["task_id"], t["map_index"]): t for t in out.result["tis"]}
            break
    return out
