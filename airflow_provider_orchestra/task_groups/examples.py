"""Where the example DAGs keep their data, and the run-time steps that prepare it.

Paths are computed from environment variables only (no I/O), so the DAG files stay cheap
to parse: ``$ORCHESTRA_HOME``, else ``$AIRFLOW_HOME/orchestra``, else
``~/airflow/orchestra``; sample data under ``data/``, outputs under ``output/``.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

ORCHESTRA_HOME_ENV = "ORCHESTRA_HOME"


def orchestra_home() -> Path:
    explicit = os.environ.get(ORCHESTRA_HOME_ENV)
    if explicit:
        return Path(explicit).expanduser().absolute()
    airflow_home = os.environ.get("AIRFLOW_HOME") or str(Path("~/airflow").expanduser())
    return (Path(airflow_home).expanduser() / "orchestra").absolute()


def sample_data_dir() -> Path:
    return orchestra_home() / "data"


def example_output_dir() -> Path:
    return orchestra_home() / "output"


def ensure_sample_data(data_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """Generate the bundled sample data where it is missing (at run time, never at parse
    time). Returns the sample files' paths."""
    from airflow_provider_orchestra.sample import (
        EVENTS_JSONL,
        ORDERS_CSV,
        ORDERS_PARQUET,
        generate_sample_data,
    )

    data_dir = Path(data_dir) if data_dir is not None else sample_data_dir()
    names = {"orders_csv": ORDERS_CSV, "orders_parquet": ORDERS_PARQUET, "events_jsonl": EVENTS_JSONL}
    if not all((data_dir / name).is_file() for name in names.values()):
        generate_sample_data(data_dir)
    return {key: str(data_dir / name) for key, name in names.items()}


SLICES_DIR = "slices"


def slice_path(day: str) -> str:
    """The orders slice of one day, relative to the data root."""
    return f"{SLICES_DIR}/{day}/orders.parquet"


def write_orders_slice(
    orders_parquet: str | os.PathLike,
    dest: str | os.PathLike,
    start: datetime,
    end: datetime,
    *,
    time_column: str = "order_ts",
) -> dict[str, Any]:
    """Copy the orders with ``start <= time_column < end`` into ``dest`` (Parquet), record
    batch by record batch with a pushed-down filter, then rename into place, so a rerun
    replaces the slice and a reader never sees half of it."""
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dataset = ds.dataset(str(orders_parquet), format="parquet")
    field = ds.field(time_column)
    scanner = dataset.scanner(filter=(field >= start) & (field < end))
    tmp = dest.with_name(f".{dest.name}.tmp")
    rows = 0
    with pq.ParquetWriter(tmp, dataset.schema) as writer:
        for batch in scanner.to_batches():
            if batch.num_rows:
                writer.write_batch(batch)
                rows += batch.num_rows
    tmp.replace(dest)
    return {"path": str(dest), "rows": rows, "start": start.isoformat(), "end": end.isoformat()}
