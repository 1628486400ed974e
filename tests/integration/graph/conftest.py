"""Fixtures of the native graph tests: generated sample data, a big CSV for stragglers,
and an agent factory over a real SQLite ledger with a fixed capacity."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from airflow_provider_orchestra import runtime
from airflow_provider_orchestra.sample import generate_sample_data
from graph_test_support import STRAGGLER_ROWS, TEST_CAPACITY, write_csv


@pytest.fixture(scope="session")
def sample_data_master(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sample") / "data"
    generate_sample_data(path)
    return path


@pytest.fixture
def sample_data(sample_data_master: Path, tmp_path: Path) -> Path:
    """A private copy (the ingestion specialist keeps offsets beside its outputs, and
    tests must not see each other's)."""
    path = tmp_path / "data"
    shutil.copytree(sample_data_master, path)
    return path


@pytest.fixture(scope="session")
def straggler_csv(tmp_path_factory) -> Path:
    return write_csv(tmp_path_factory.mktemp("big") / "straggler.csv", STRAGGLER_ROWS)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def data_roots(data_dir: Path, straggler_csv: Path) -> list[Path]:
    """The test's own data root, then the shared root holding ``straggler.csv``."""
    return [data_dir, straggler_csv.parent]


@pytest.fixture
def output_dir(tmp_path: Path) -> Path:
    return tmp_path / "output"


@pytest.fixture
def factory(tmp_path: Path):
    return runtime.open_factory(str(tmp_path / "ledger.sqlite"), capacity=TEST_CAPACITY)
