"""Performance history per template, kept in the factory's store so every process's
outcomes inform the next selection."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from airflow_provider_orchestra.factory.store import DEFAULT_NAMESPACE, Store, open_store

NEVER_RUN_SUCCESS_RATE = 1.0
"""A template with no history is presumed to work, so new templates get tried."""


class TemplateStats(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    agent_type: str
    runs: int = 0
    successes: int = 0
    mean_seconds: float | None = None
    mean_quality: float | None = None

    @property
    def failures(self) -> int:
        return self.runs - self.successes

    @property
    def success_rate(self) -> float:
        return self.successes / self.runs if self.runs else NEVER_RUN_SUCCESS_RATE


class PerformanceHistory:
    def __init__(self, store: Store):
        self.store = store

    @classmethod
    def open(
        cls, url_or_path: str | Path | None = None, *, namespace: str = DEFAULT_NAMESPACE
    ) -> PerformanceHistory:
        return cls(open_store(url_or_path, namespace))

    def record(
        self, agent_type: str, success: bool, seconds: float, quality: float | None = None
    ) -> TemplateStats:
        """Add one run's outcome; returns the updated stats."""
        if not agent_type:
            raise ValueError("agent_type must not be empty")
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"seconds must be a finite non-negative number, got {seconds}")
        if quality is not None and not (0.0 <= quality <= 1.0):
            raise ValueError(f"quality must lie in [0, 1], got {quality}")
        with self.store.transaction() as execute:
            execute(
                "INSERT INTO {stats} (agent_type, runs, successes, total_seconds, "
                "quality_samples, total_quality, last_run_at) VALUES (%s, 1, %s, %s, %s, %s, %s) "
                "ON CONFLICT (agent_type) DO UPDATE SET "
                "runs = {stats}.runs + 1, "
                "successes = {stats}.successes + excluded.successes, "
                "total_seconds = {stats}.total_seconds + excluded.total_seconds, "
                "quality_samples = {stats}.quality_samples + excluded.quality_samples, "
                "total_quality = {stats}.total_quality + excluded.total_quality, "
                "last_run_at = excluded.last_run_at",
                (
                    agent_type,
                    1 if success else 0,
                    float(seconds),
                    0 if quality is None else 1,
                    0.0 if quality is None else float(quality),
                    time.time(),
                ),
            )
            row = self._row(execute, agent_type)
        return self._stats(agent_type, row)

    @staticmethod
    def _row(execute, agent_type: str):
        return execute(
            "SELECT runs, successes, total_seconds, quality_samples, total_quality "
            "FROM {stats} WHERE agent_type = %s",
            (agent_type,),
        ).fetchone()

    @staticmethod
    def _stats(agent_type: str, row) -> TemplateStats:
        if row is None:
            return TemplateStats(agent_type=agent_type)
        runs, successes, total_seconds, quality_samples, total_quality = row
        return TemplateStats(
            agent_type=agent_type,
            runs=runs,
            successes=successes,
            mean_seconds=total_seconds / runs if runs else None,
            mean_quality=total_quality / quality_samples if quality_samples else None,
        )

    def stats(self, agent_type: str) -> TemplateStats:
        with self.store.transaction(write=False) as execute:
            return self._stats(agent_type, self._row(execute, agent_type))

    def success_rate(self, agent_type: str) -> float:
        """successes / runs, or NEVER_RUN_SUCCESS_RATE for a template never run."""
        return self.stats(agent_type).success_rate

    def success_rates(self, agent_types: Iterable[str]) -> dict[str, float]:
        """success_rate of several templates in one read."""
        wanted = list(dict.fromkeys(agent_types))
        rates = dict.fromkeys(wanted, NEVER_RUN_SUCCESS_RATE)
        if not wanted:
            return rates
        with self.store.transaction(write=False) as execute:
            rows = execute("SELECT agent_type, runs, successes FROM {stats}").fetchall()
        for agent_type, runs, successes in rows:
            if agent_type in rates and runs:
                rates[agent_type] = successes / runs
        return rates
