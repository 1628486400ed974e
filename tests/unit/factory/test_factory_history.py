from __future__ import annotations

import pytest

from airflow_provider_orchestra.factory import NEVER_RUN_SUCCESS_RATE, PerformanceHistory


def test_never_run_template_counts_as_working(history):
    stats = history.stats("fresh_agent")
    assert (stats.runs, stats.successes, stats.mean_seconds, stats.mean_quality) == (0, 0, None, None)
    assert history.success_rate("fresh_agent") == NEVER_RUN_SUCCESS_RATE == 1.0


def test_record_accumulates(history):
    history.record("agent_x", True, 2.0, 0.9)
    history.record("agent_x", False, 4.0, None)
    stats = history.record("agent_x", True, 6.0, 0.7)
    assert (stats.runs, stats.successes, stats.failures) == (3, 2, 1)
    assert stats.success_rate == pytest.approx(2 / 3)
    assert stats.mean_seconds == pytest.approx(4.0)
    assert stats.mean_quality == pytest.approx(0.8)  # only runs that reported quality
    assert history.stats("agent_x") == stats


def test_history_persists_across_openings_and_processes_share_it(location):
    PerformanceHistory.open(location).record("agent_y", False, 1.0)
    reopened = PerformanceHistory.open(location)
    assert reopened.success_rate("agent_y") == 0.0
    assert reopened.success_rates(["agent_y", "agent_z"]) == {"agent_y": 0.0, "agent_z": 1.0}


def test_bad_outcomes_are_refused(history):
    with pytest.raises(ValueError, match="seconds"):
        history.record("a", True, -1.0)
    with pytest.raises(ValueError, match="seconds"):
        history.record("a", True, float("nan"))
    with pytest.raises(ValueError, match="quality"):
        history.record("a", True, 1.0, 1.5)
    with pytest.raises(ValueError, match="agent_type"):
        history.record("", True, 1.0)
    assert history.stats("a").runs == 0
