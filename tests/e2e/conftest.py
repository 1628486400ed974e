"""Fixtures of the end-to-end tests: real Airflow deployments (see deployment.py).

- ``local_stack`` / ``celery_stack``: the example DAGs (``dags/``) and the e2e DAGs on a
  LocalExecutor deployment, or on CeleryExecutor with two workers of two slots each.
  Session-scoped through one ``StackPool``, which keeps one deployment running at a time;
  a test module asking for the other kind stops the running one. Other tests reuse them
  (``stack_for(StackOptions(...))`` starts any other kind).
- ``airflow_stack``: a factory for a deployment of the test's own (``tests/e2e/dags``,
  LocalExecutor), stopped at the end of the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deployment import E2E_DAGS, EXAMPLE_DAGS, AirflowStack, StackOptions, StackPool, drop_databases, start_stack

EXAMPLE_DAG_FILES = tuple(sorted(EXAMPLE_DAGS.glob("*.py")))
# Settings of the shared stacks: DAGs start paused (a test unpauses what it runs, so the
# scheduled example does not catch up on its own); a dead triggerer's triggers move on
# after 15 s instead of 30 s, and a task whose worker died is failed (and retried) after
# 60 s without a heartbeat instead of 300 s; a worker waits up to 30 s for the execution
# API (instead of 5 s) on a machine that several test runs share; everything else is
# Airflow's default.
SHARED_ENV = (
    ("AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT", "30"),
    ("AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT", "60"),
    ("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION", "True"),
    ("AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD", "15"),
)


def shared_options(executor: str, **overrides) -> StackOptions:
    return StackOptions(
        executor=executor,
        dags=(*EXAMPLE_DAG_FILES, E2E_DAGS / "orchestra_e2e.py"),
        env=SHARED_ENV,
        **overrides,
    )


def pytest_terminal_summary(terminalreporter):
    """The figures the end-to-end tests noted (wall times, task durations, loop holds)."""
    from workflow_runs import FIGURES

    if FIGURES:
        terminalreporter.section("orchestra deployment figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def stack_pool(postgres_server_url: str, tmp_path_factory) -> Iterator[StackPool]:
    pool = StackPool(postgres_server_url, tmp_path_factory.mktemp("airflow-stacks"))
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def stack_for(stack_pool: StackPool) -> Callable[[StackOptions], AirflowStack]:
    return stack_pool.get


@pytest.fixture(scope="module")
def local_stack(stack_pool: StackPool) -> AirflowStack:
    return stack_pool.get(shared_options("local"))


@pytest.fixture(scope="module")
def celery_stack(stack_pool: StackPool) -> AirflowStack:
    return stack_pool.get(shared_options("celery"))


@pytest.fixture
def airflow_stack(postgres_server_url: str, tmp_path: Path, stack_pool: StackPool) -> Iterator[Callable[..., AirflowStack]]:
    """Factory: start a deployment of this test's own (fresh metadata database, the e2e
    DAGs, LocalExecutor; ``extra_env`` as settings); stopped at the end of the test."""
    stack_pool.release()  # one deployment at a time
    started: list[AirflowStack] = []
    databases: list[str] = []

    def start(**extra_env: str) -> AirflowStack:
        options = StackOptions(
            dags=tuple(sorted(p for p in E2E_DAGS.glob("*.py") if p.name != "orchestra_e2e.py")),
            parallelism=int(extra_env.pop("AIRFLOW__CORE__PARALLELISM", 4)),
            env=tuple(extra_env.items()),
        )
        stack = start_stack(postgres_server_url, tmp_path / f"airflow-{len(started)}", options, databases)
        started.append(stack)
        return stack

    yield start
    for stack in started:
        stack.stop()
    drop_databases(postgres_server_url, databases)


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory) -> Path:
    """The example's sample data, made once and read by every run (Airflow and native)."""
    from airflow_provider_orchestra.task_groups.examples import ensure_sample_data

    data = tmp_path_factory.mktemp("example-data") / "data"
    ensure_sample_data(data)
    return data


@pytest.fixture(scope="session")
def native_example(sample_data, tmp_path_factory):
    """``orchestra run`` on the example's config: the report every deployment must match,
    and its output root."""
    from workflow_runs import example_conf, native_report

    root = tmp_path_factory.mktemp("native") / "output"
    return native_report(example_conf(sample_data, root), root.parent), root
