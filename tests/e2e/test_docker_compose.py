"""docker-compose.yaml is consistent: every component present, one executor, one broker,
one metadata database, one JWT secret, and an image that really installs this provider.

Docker itself is not run here; this reads the files the way compose would (YAML with
merge keys) and checks them against each other and against pyproject.toml.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yaml"
IMAGE = "airflow-provider-orchestra"
EXPECTED_COMMANDS = {
    "airflow-init": "db migrate",
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker-1": "celery worker",
    "airflow-worker-2": "celery worker",
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def airflow_services(compose) -> dict[str, dict]:
    return {name: svc for name, svc in compose["services"].items() if svc.get("image", "").startswith(IMAGE)}


def test_every_component_is_there(compose, airflow_services):
    assert {"postgres", "redis"} <= set(compose["services"])
    assert {name: svc["command"] for name, svc in airflow_services.items()} == EXPECTED_COMMANDS


def test_one_executor_broker_backend_database_and_secret(compose, airflow_services):
    postgres = compose["services"]["postgres"]["environment"]
    envs = [svc["environment"] for svc in airflow_services.values()]
    for key in (
        "AIRFLOW__CORE__EXECUTOR",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CELERY__BROKER_URL",
        "AIRFLOW__CELERY__RESULT_BACKEND",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        "AIRFLOW__API_AUTH__JWT_SECRET",
    ):
        values = {env.get(key) for env in envs}
        assert len(values) == 1 and None not in values, f"{key} differs between services: {values}"
    env = envs[0]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"

    for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND"):
        url = urlsplit(env[key])
        assert (url.hostname, url.port, url.username, url.password, url.path.lstrip("/")) == (
            "postgres", 5432, postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"]
        ), key

    broker = urlsplit(env["AIRFLOW__CELERY__BROKER_URL"])
    assert broker.scheme == "redis" and broker.hostname == "redis"
    assert broker.port in compose["services"]["redis"]["expose"]

    api = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert api.hostname == "airflow-apiserver" and api.path == "/execution/"
    assert f"{api.port}:{api.port}" in compose["services"]["airflow-apiserver"]["ports"]

    # The secret is required from the environment, never written into the file.
    assert re.fullmatch(r"\$\{AIRFLOW_JWT_SECRET:\?[^}]+\}", env["AIRFLOW__API_AUTH__JWT_SECRET"])


def test_orchestra_state_lives_in_postgres_and_outputs_are_shared(compose, airflow_services):
    init_sql = ROOT / "docker" / "postgres-init.sql"
    mounts = compose["services"]["postgres"]["volumes"]
    assert any(m.startswith("./docker/postgres-init.sql:/docker-entrypoint-initdb.d/") for m in mounts)
    for key in ("ORCHESTRA_LEDGER_URL", "ORCHESTRA_CHECKPOINT_URL"):
        url = urlsplit(next(iter(airflow_services.values()))["environment"][key])
        assert url.hostname == "postgres"
        assert re.search(rf"create database {url.path.lstrip('/')}\b", init_sql.read_text(), re.I), key
    for name, svc in airflow_services.items():
        targets = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        assert targets["/opt/airflow/dags"] == "./dags", name
        assert targets["/opt/airflow/output"] == "orchestra-output", name
    assert "orchestra-output" in compose["volumes"]


def test_start_order_waits_for_health_and_migration(airflow_services):
    for name, svc in airflow_services.items():
        deps = svc["depends_on"]
        assert deps["postgres"]["condition"] == deps["redis"]["condition"] == "service_healthy", name
        if name != "airflow-init":
            assert deps["airflow-init"]["condition"] == "service_completed_successfully", name
            assert "healthcheck" in svc, name
    for worker in ("airflow-worker-1", "airflow-worker-2"):
        assert airflow_services[worker]["environment"]["DUMB_INIT_SETSID"] == "0"


def test_image_installs_this_provider_on_the_supported_airflow(airflow_services):
    builds = {(svc["build"]["context"], svc["build"]["dockerfile"]) for svc in airflow_services.values()}
    assert builds == {(".", "docker/Dockerfile")}
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    version = re.search(r"^ARG AIRFLOW_VERSION=(\S+)$", dockerfile, re.M).group(1)
    assert re.search(r"^FROM apache/airflow:\$\{AIRFLOW_VERSION\}$", dockerfile, re.M)
    assert re.search(r'pip install .*"apache-airflow==\$\{AIRFLOW_VERSION\}" /opt/orchestra', dockerfile)
    assert "COPY --chown=airflow:root airflow_provider_orchestra /opt/orchestra/airflow_provider_orchestra" in dockerfile

    # (read with a pattern: tomllib needs Python 3.11, the package supports 3.10)
    airflow_req = Requirement(re.search(r'"(apache-airflow\s*[<>=!~][^"]*)"', (ROOT / "pyproject.toml").read_text()).group(1))
    assert airflow_req.specifier.contains(version), f"image Airflow {version} outside {airflow_req}"

    # Everything the Dockerfile copies is let through by its .dockerignore.
    ignore = (ROOT / "docker" / "Dockerfile.dockerignore").read_text().split()
    for copied in ("pyproject.toml", "README.md", "airflow_provider_orchestra/"):
        assert f"!{copied}" in ignore and (ROOT / copied).exists(), copied

