"""The parity tests run the Airflow side exactly as the Airflow workflow tests do: their
session fixture ``new_home`` (over tests/conftest.py's ``migrated_airflow_db``) and ``airflow_runs`` are reused here, not
copied."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

AIRFLOW_TESTS = Path(__file__).parents[1] / "integration" / "airflow"
if str(AIRFLOW_TESTS) not in sys.path:
    sys.path.insert(0, str(AIRFLOW_TESTS))  # for ``airflow_runs``

# Loaded under a name of its own: every conftest module is called ``conftest``.
_spec = importlib.util.spec_from_file_location("orchestra_airflow_test_fixtures", AIRFLOW_TESTS / "conftest.py")
_airflow_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_airflow_fixtures)

new_home = _airflow_fixtures.new_home
