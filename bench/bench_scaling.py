"""Scaling curve: wall seconds against the number of branches for both runtimes, from the
runs bench_graph.py and bench_airflow.py made (bench/.results/_native_curve.json and
_airflow_curve.json), as numbers and as bench/scaling.png.

Linear means no superlinear step from state or XCom growth: for every curve, the cost of
a branch between the two largest sizes over the cost of a branch between the two smallest
(target <= 1.25), and the R^2 of a straight line through all points.

Usage: python bench/bench_scaling.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import BENCH_DIR, SECTIONS_DIR, Row, Table, print_table, save_section  # noqa: E402


def fit(points: dict[int, float]) -> tuple[float, float, float]:
    """(slope, intercept, R^2) of the least-squares line."""
    xs, ys = list(points), list(points.values())
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    intercept = my - slope * mx
    total = sum((y - my) ** 2 for y in ys)
    residual = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys))
    return slope, intercept, (1 - residual / total) if total else 1.0


def main() -> int:
    started = time.perf_counter()
    curves: dict[str, dict[int, float]] = {}
    for name in ("_native_curve.json", "_airflow_curve.json"):
        path = SECTIONS_DIR / name
        if path.exists():
            curves.update({k: {int(n): s for n, s in v.items()} for k, v in json.loads(path.read_text()).items()})
    rows = []
    for name, points in curves.items():
        if len(points) < 3:
            continue
        sizes = sorted(points)
        slope, intercept, r2 = fit(points)
        first = (points[sizes[1]] - points[sizes[0]]) / (sizes[1] - sizes[0])
        last = (points[sizes[-1]] - points[sizes[-2]]) / (sizes[-1] - sizes[-2])
        rows.append(
            Row(
                name=f"{name}: s/branch at the largest sizes / at the smallest",
                value=last / first if first > 0 else None,
                target=1.25,
                figures={
                    "sizes": " ".join(str(n) for n in sizes),
                    "seconds": " ".join(f"{points[n]:.1f}" for n in sizes),
                    "slope_s_per_branch": slope,
                    "r2": r2,
                },
            )
        )
    if curves:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 5))
        for name, points in sorted(curves.items()):
            sizes = sorted(points)
            ax.plot(sizes, [points[n] for n in sizes], marker="o", label=name)
        ax.set_xlabel("branches")
        ax.set_ylabel("wall seconds")
        ax.set_title("orchestra: wall time against branches")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(BENCH_DIR / "scaling.png", dpi=110)
    table = Table(
        title="Scaling: wall seconds against branches (see bench/scaling.png)",
        baseline="each curve's own cost per branch between its two smallest sizes",
        rows=rows,
        columns=["sizes", "seconds", "slope_s_per_branch", "r2"],
    )
    print_table(table)
    save_section("scaling", [table], settings={"curves": sorted(curves)}, seconds=time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
