"""Builders of small real input files for the io tests."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def event_line(event_id: int, value: float = 1.5) -> str:
    return json.dumps({"event_id": event_id, "user": f"u{event_id % 7}", "value": value})


def write_events(path: Path, ids: range, *, tail: str = "") -> None:
    path.write_text("".join(event_line(i) + "\n" for i in ids) + tail)


def append_text(path: Path, text: str) -> None:
    with path.open("a") as fh:
        fh.write(text)


def numbers_table(rows: int) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(rows), pa.int64()),
            "name": [f"n{i}" for i in range(rows)],
            "amount": [i * 0.5 for i in range(rows)],
        }
    )


def write_parquet_file(path: Path, rows: int) -> pa.Table:
    table = numbers_table(rows)
    pq.write_table(table, path, row_group_size=max(rows // 3, 1))
    return table


def write_csv_file(path: Path, rows: int) -> None:
    lines = ["id,name,amount"] + [f"{i},n{i},{i * 0.5}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
