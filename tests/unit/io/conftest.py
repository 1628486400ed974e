"""Fixtures of the io tests: a data root holding real files."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    return root


@pytest.fixture
def roots(data_root: Path) -> list[str]:
    return [str(data_root)]
