"""`make bench`: run every benchmark with the sizes chosen to finish within 40 minutes on
a 2-core machine, then write bench/RESULTS.md and bench/results.json.

Sizes and rounds (why): the specialists run at 1M rows (every engine, 5 rounds) and at
10M rows (the specialist and the fastest engine, 3 rounds: runs of 10-30 s vary far less
than the 1 s ones); the native runtime at 5/50/500/1000 branches over small real files
(rounds 5/5/2/1; the graph at full concurrency up to 50 only: a 1000-branch run takes
minutes on its own); the Airflow comparison under dag.test() at 5/50/500 branches
(rounds 5/3/1) and on a real LocalExecutor deployment at 5/50/500 (rounds 3/1/1: every
task is a process of its own there); everything else 5 or more rounds. ``--quick``
shrinks everything for a smoke run (its figures mean little).

Usage: python bench/run.py [--quick] [--only NAME ...] [--skip NAME ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import BENCH_DIR, SECTIONS_DIR, machine  # noqa: E402

FULL = {
    "specialists": ["bench_specialists.py", "--sizes", "1000000", "10000000", "--repeat", "5", "--repeat-large", "3"],
    "native_overhead": ["bench_graph.py", "--sizes", "5", "50", "500", "1000", "--repeat", "5", "5", "2", "1"],
    "airflow_overhead": ["bench_airflow.py", "--sizes", "5", "50", "500", "--repeat", "5", "3", "1", "--scheduler-repeat", "3", "1", "1"],
    "state_size": ["bench_state_size.py", "--rows", "10000", "1000000", "10000000"],
    "parse": ["bench_parse.py", "--repeat", "7"],
    "waiting": ["bench_waiting.py", "--branches", "50"],
    "cli": ["bench_cli.py", "--repeat", "7"],
    "scaling": ["bench_scaling.py"],
}
QUICK = {
    "specialists": ["bench_specialists.py", "--sizes", "100000", "200000", "--repeat", "1", "--repeat-large", "1"],
    "native_overhead": ["bench_graph.py", "--sizes", "5", "20", "--repeat", "1", "1"],
    "airflow_overhead": ["bench_airflow.py", "--sizes", "5", "10", "--repeat", "1", "1", "--no-scheduler"],
    "state_size": ["bench_state_size.py", "--rows", "1000", "10000"],
    "parse": ["bench_parse.py", "--repeat", "1"],
    "waiting": ["bench_waiting.py", "--branches", "5", "--wait-seconds", "30"],
    "cli": ["bench_cli.py", "--repeat", "1"],
    "scaling": ["bench_scaling.py"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="+", default=None)
    parser.add_argument("--skip", nargs="+", default=[])
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    names = [n for n in plan if (args.only is None or n in args.only) and n not in args.skip]
    started = time.perf_counter()
    SECTIONS_DIR.mkdir(parents=True, exist_ok=True)
    if args.only is None:
        for old in SECTIONS_DIR.glob("*.json"):
            old.unlink()
    info_path = SECTIONS_DIR / "_machine.json"
    info_path.write_text(json.dumps(machine(), indent=2), encoding="utf-8")
    failed = []
    for name in names:
        script, *rest = plan[name]
        print(f"== {name}: {script} {' '.join(rest)}", flush=True)
        begun = time.perf_counter()
        proc = subprocess.run([sys.executable, str(BENCH_DIR / script), *rest], check=False)
        print(f"== {name}: {time.perf_counter() - begun:.0f} s, exit {proc.returncode}", flush=True)
        if proc.returncode != 0:
            failed.append(name)
    total = time.perf_counter() - started
    subprocess.run(
        [sys.executable, str(BENCH_DIR / "report.py"), "--total-seconds", f"{total:.1f}", "--machine", str(info_path)],
        check=True,
    )
    print(f"make bench: {total / 60:.1f} minutes" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
