"""What every benchmark shares: interleaved medians, the tables of RESULTS.md, the data
cache and a description of the machine.

Every figure a benchmark reports is a ratio against a baseline measured in the same run:
the variants of one comparison take turns within each round, so load from other
processes on a shared machine falls on baselines and subjects alike, and the median of
the rounds is kept. A benchmark saves its tables as ``bench/.results/<name>.json``;
``bench/report.py`` joins them into ``bench/RESULTS.md`` and ``bench/results.json``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
CACHE_DIR = BENCH_DIR / ".cache"
"""Generated inputs, kept between runs (git-ignored): a 10M-row file is made once."""
SECTIONS_DIR = BENCH_DIR / ".results"


# --------------------------------------------------------------------------- timing


@dataclass
class Sample:
    """One timed run: wall seconds, CPU seconds of the process (all threads) and
    whatever else the run measured (rows, bytes, peaks)."""

    wall: float
    cpu: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def timed(work: Callable[[], Any]) -> tuple[Sample, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    value = work()
    return Sample(wall=time.perf_counter() - wall, cpu=time.process_time() - cpu), value


def interleaved(variants: dict[str, Callable[[], Sample]], repeat: int, *, progress: str = "") -> dict[str, list[Sample]]:
    """Run every variant once per round, ``repeat`` rounds, the order rotating between
    rounds so that no variant always runs first (right after another's cleanup)."""
    names = list(variants)
    samples: dict[str, list[Sample]] = {name: [] for name in names}
    for round_number in range(repeat):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(variants[name]())
        if progress:
            print(f"  {progress}: round {round_number + 1}/{repeat} done", file=sys.stderr, flush=True)
    return samples


def median(samples: list[Sample], key: str = "wall") -> float:
    if key in ("wall", "cpu"):
        return statistics.median(getattr(s, key) for s in samples)
    return statistics.median(s.extra[key] for s in samples)


def spread(samples: list[Sample], key: str = "wall") -> float:
    """(max - min) / median of one variant's rounds: how noisy its figure is."""
    values = [getattr(s, key) if key in ("wall", "cpu") else s.extra[key] for s in samples]
    middle = statistics.median(values)
    return (max(values) - min(values)) / middle if middle else 0.0


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def run_worker(script: Path, args: list[str], *, env: dict[str, str] | None = None, timeout: float = 1800) -> dict[str, Any]:
    """Run ``script --worker ARGS`` in a fresh interpreter; its last stdout line is JSON."""
    proc = subprocess.run(
        [sys.executable, str(script), "--worker", *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise SystemExit(f"worker {script.name} {args} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- tables


@dataclass
class Row:
    """One line of a table: a figure, its target and whether it is met.

    ``value`` is the figure the target applies to (a ratio, bytes, seconds...);
    ``target`` is None for figures reported without one. ``figures`` carries the
    measured numbers behind it (seconds of each side, spreads, rows/s...)."""

    name: str
    value: float | None
    target: float | None = None
    better: str = "lower"  # "lower": value <= target passes; "higher": value >= target passes
    unit: str = "x"
    figures: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.target is None or self.value is None:
            return "info"
        ok = self.value <= self.target if self.better == "lower" else self.value >= self.target
        return "pass" if ok else "MISS"


@dataclass
class Table:
    title: str
    baseline: str
    rows: list[Row]
    columns: list[str] = field(default_factory=list)
    """Keys of ``Row.figures`` shown as extra columns, in this order."""
    notes: list[str] = field(default_factory=list)


def save_section(name: str, tables: list[Table], *, settings: dict[str, Any], seconds: float, notes: list[str] | None = None) -> Path:
    """Write one benchmark's tables for ``report.py``."""
    SECTIONS_DIR.mkdir(parents=True, exist_ok=True)
    body = {
        "name": name,
        "settings": settings,
        "seconds": seconds,
        "notes": notes or [],
        "tables": [
            {**asdict(t), "rows": [{**asdict(r), "verdict": r.verdict} for r in t.rows]} for t in tables
        ],
    }
    path = SECTIONS_DIR / f"{name}.json"
    path.write_text(json.dumps(body, indent=2, default=str), encoding="utf-8")
    return path


def print_table(table: Table) -> None:
    print(f"\n{table.title}\n  baseline: {table.baseline}")
    for row in table.rows:
        value = "-" if row.value is None else f"{row.value:.3f}{row.unit if row.unit == 'x' else ' ' + row.unit}"
        target = "" if row.target is None else f"  target {'<=' if row.better == 'lower' else '>='} {row.target}"
        extras = "  ".join(f"{k}={_short(row.figures.get(k))}" for k in table.columns if k in row.figures)
        print(f"  {row.name:<44} {value:>12}{target}  [{row.verdict}]  {extras}")
    sys.stdout.flush()


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# --------------------------------------------------------------------------- machine


def _version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, Any]:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / (1 << 20), 1)
    except OSError:
        pass
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu": cpu_model,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "load_average_at_start": list(os.getloadavg()),
        "python": platform.python_version(),
        "commit": commit,
        "versions": {
            name: _version(name)
            for name in (
                "airflow-provider-orchestra",
                "apache-airflow",
                "apache-airflow-task-sdk",
                "langgraph",
                "langchain-core",
                "pyarrow",
                "duckdb",
                "polars",
                "pydantic",
                "psycopg",
            )
        },
    }
