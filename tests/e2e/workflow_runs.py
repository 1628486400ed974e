"""Running the orchestra workflow on a deployment and checking what it produced: shared by
the end-to-end tests (and by the benchmarks and tests that reuse the harness).

- ``example_conf``: the sample config over a data root and an output root of the run's own.
- ``RunWatch``: samples a run through the REST API while it runs (task states, the pool's
  slots), for facts that only hold mid-run (the sensor deferred while branches occupy
  the slots).
- ``native_report``: the same config run by ``orchestra run`` (the native LangGraph
  runtime), for parity.
- ``final_report``, ``parity_differences``: the run's merge report and where it departs
  from another (tests/parity/report_parity.py's views).
- ``FIGURES``: numbers worth reading (wall times, task durations, loop holds), printed at
  the end of the test session.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

sys.path.insert(0, str(Path(__file__).parents[1] / "parity"))  # report_parity
from report_parity import describe, differences, merge_view, report_view, timing_free_merge  # noqa: E402

from airflow_provider_orchestra.core.models import SPECIALISTS, FinalReport  # noqa: E402
from airflow_provider_orchestra.sample import sample_config  # noqa: E402

from deployment import AirflowStack  # noqa: E402

GROUP = "orchestra"
INTEGRATOR = f"{GROUP}.final_integrator"
FIGURES: list[str] = []
_figures_lock = threading.Lock()


def figure(line: str) -> None:
    """A number for the record, printed in the session's terminal summary."""
    with _figures_lock:
        FIGURES.append(line)


def example_conf(data_dir: Path, output_root: Path, **sync: float) -> dict[str, Any]:
    """The sample config (five batches, one per specialist route) with a short poke
    interval and timeouts long enough for a busy two-core machine."""
    conf = sample_config(data_dir, output_root)
    conf["sync"] = {"poke_interval_seconds": 1, "conditional_timeout_seconds": 5, "overall_timeout_seconds": 900, **sync}
    return conf


def is_specialist(task_id: str) -> bool:
    return task_id.rsplit(".", 1)[-1] in SPECIALISTS


def specialist_tis(tis: list[dict]) -> list[dict]:
    return [t for t in tis if is_specialist(t["task_id"])]


def sensor_id(round_: int = 1) -> str:
    return f"{GROUP}.round_{round_}.sync_point_manager"


# --------------------------------------------------------------------------- runs


ACTIVE_STATES = ("queued", "running", "deferred")


@dataclass
class Sample:
    at: float
    states: dict[tuple[str, int], str | None]
    pool: dict[str, Any]
    consistent: bool  # the task states did not change while the pool was read


@dataclass
class RunWatch:
    """Samples one run (the only one on its stack) through the REST API."""

    stack: AirflowStack
    dag_id: str
    run_id: str
    samples: list[Sample] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)

    def states(self) -> dict[tuple[str, int], str | None]:
        """The run's task instances that are queued, running or deferred (a light read)."""
        tis = self.stack.task_instances(self.dag_id, self.run_id, states=ACTIVE_STATES)
        return {(t["task_id"], t["map_index"]): t["state"] for t in tis}

    def poll(self) -> None:
        before = self.states()
        pool = self.stack.pool()
        after = self.states()
        self.samples.append(Sample(time.monotonic() - self.t0, after, pool, before == after))

    def deferred_with_branches_running(self) -> list[Sample]:
        """Consistent samples where the sensor was deferred while specialists ran."""
        return [
            s
            for s in self.samples
            if s.consistent
            and s.states.get((sensor_id(), -1)) == "deferred"
            and any(state == "running" and is_specialist(key[0]) for key, state in s.states.items())
        ]


def trigger_and_wait(stack: AirflowStack, dag_id: str, conf: dict, *, watch: bool = True, timeout: float = 900) -> tuple[dict, RunWatch]:
    run_id = stack.trigger(dag_id, conf)
    watcher = RunWatch(stack, dag_id, run_id)
    run = stack.wait_for_run(dag_id, run_id, timeout=timeout, on_poll=watcher.poll if watch else None, interval=2.0)
    return run, watcher


def run_seconds(run: dict) -> float:
    """Wall time of a run, from being queued to its end (REST timestamps)."""
    start = datetime.fromisoformat((run.get("queued_at") or run["start_date"]).replace("Z", "+00:00"))
    end = datetime.fromisoformat(run["end_date"].replace("Z", "+00:00"))
    return (end - start).total_seconds()


def final_report(stack: AirflowStack, dag_id: str, run_id: str) -> FinalReport:
    """The integrated report the final integrator wrote (its manifest, found via XCom)."""
    returned = stack.xcom(dag_id, run_id, INTEGRATOR)
    path = Path(unquote(urlparse(returned["manifest_uri"]).path))
    return FinalReport.model_validate_json(path.read_text())


def native_report(conf: dict, workdir: Path, **env_overrides: str) -> FinalReport:
    """``orchestra run`` on ``conf`` (the native LangGraph runtime, its own process);
    ``env_overrides`` e.g. ``ORCHESTRA_CONN_<ID>`` for a Postgres sink."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "orchestra.json"
    config.write_text(json.dumps(conf))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ORCHESTRA_LEDGER", "ORCHESTRA_CHECKPOINT"))}
    env.update(env_overrides)
    proc = subprocess.run(
        [sys.executable, "-m", "airflow_provider_orchestra.cli", "run", str(config), "--json"],
        capture_output=True, text=True, timeout=600, env=env, cwd=workdir,
    )  # fmt: skip
    assert proc.returncode == 0, f"orchestra run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return FinalReport.model_validate(json.loads(proc.stdout)["report"])


def parity_differences(native: FinalReport, native_root: Path, airflow: FinalReport, airflow_root: Path, allocated: int) -> list[str]:
    """Where the two reports differ: statuses, rows, qualities, output checksums, and the
    merge redone with one execution time for every branch (timings aside)."""
    found = differences(report_view(native, native_root), report_view(airflow, airflow_root))
    found += differences(
        merge_view(timing_free_merge(native, allocated), native_root, native.workflow_id),
        merge_view(timing_free_merge(airflow, allocated), airflow_root, airflow.workflow_id),
        "merge",
    )
    return found



# --------------------------------------------------------------------------- figures


def median_specialist_seconds(tis: list[dict]) -> float:
    durations = [t["duration"] for t in specialist_tis(tis) if t["state"] == "success" and t["duration"] is not None]
    return statistics.median(durations)


def median_branch_work_seconds(report: FinalReport) -> float:
    return statistics.median(b.metrics.execution_seconds or 0.0 for b in report.branches)


LOOP_HOLD = re.compile(r"this look held the event loop ([0-9.]+) ms")


def trigger_loop_holds(stack: AirflowStack) -> list[float]:
    """Every look's hold of the triggerer's event loop, from the trigger logs on disk."""
    holds = []
    for path in (stack.home / "logs").rglob("*.trigger.*.log"):
        holds += [float(m.group(1)) for m in LOOP_HOLD.finditer(path.read_text(errors="replace"))]
    return holds


LOOP_BLOCKED = re.compile(r"async thread was blocked", re.IGNORECASE)
SUPERVISOR_SILENCE = re.compile(r"appears deadlocked", re.IGNORECASE)


def triggerer_warnings(stack: AirflowStack, pattern: re.Pattern = LOOP_BLOCKED) -> list[str]:
    """Lines of the triggerer's log matching ``pattern``: by default the trigger runner's
    watchdog saying its event loop (where every trigger runs) was blocked.

    ``SUPERVISOR_SILENCE`` finds the triggerer supervisor's "appears deadlocked" line,
    which it logs when it heard nothing from the runner for 30 s; on a busy machine that
    happens on the first Task SDK call any trigger makes, while the supervisor builds its
    in-process execution API (Airflow's lazy start-up, not a blocked event loop)."""
    return [line[:400] for line in stack.component_log("triggerer").splitlines() if pattern.search(line)]


WORKLOAD_LINE = re.compile(r"Executing workload in Celery: .*")


def tasks_run_by_worker(stack: AirflowStack, dag_id: str, run_id: str) -> dict[str, set[tuple[str, int]]]:
    """Worker name -> (task id, map index) of the run's task instances that worker
    received, read from each worker's own log."""
    found: dict[str, set[tuple[str, int]]] = {}
    for name in stack.worker_names:
        keys = set()
        for line in stack.component_log(name).splitlines():
            if "Executing workload in Celery" not in line or dag_id not in line or run_id not in line:
                continue
            task = re.search(r"task_id='([^']+)'", line)
            index = re.search(r"map_index=(-?\d+)", line)
            if task and index:
                keys.add((task.group(1), int(index.group(1))))
        found[name] = keys
    return found
