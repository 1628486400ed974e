"""Deterministic sample data for demos and tests, with deliberate defects.

* ``orders.csv`` / ``orders.parquet``: e-commerce orders (order_id, customer_id, region,
  product, quantity, unit_price, amount, status, order_ts). Defects: null customer ids,
  regions and amounts, duplicate order ids, negative quantities, 1e9 unit prices; the
  CSV also carries a few lines with the wrong number of fields.
* ``events.jsonl``: an append-only clickstream (event_id, user_id, event_type, ts, value).
  Defects: malformed lines, null user ids and values, duplicate event ids, out-of-range
  values, and late events whose ts lies days behind their neighbours.

Generation uses ``random.Random(seed)`` only, so the same seed gives byte-identical files
on every machine with the same pyarrow.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

    from airflow_provider_orchestra.core.models import OutputDescriptor

ORDERS_CSV = "orders.csv"
ORDERS_PARQUET = "orders.parquet"
EVENTS_JSONL = "events.jsonl"

START = datetime(2024, 5, 1, tzinfo=timezone.utc)
ORDER_SPAN_SECONDS = 30 * 24 * 3600
EVENT_STEP_SECONDS = 7  # events arrive roughly every few seconds

REGIONS = ("north", "south", "east", "west", "central")
REGION_WEIGHTS = (0.25, 0.2, 0.2, 0.25, 0.1)
PRODUCTS = {
    "widget": 19.99,
    "gadget": 49.50,
    "gizmo": 12.25,
    "doohickey": 99.00,
    "sprocket": 4.75,
    "thingamajig": 249.00,
}
STATUSES = ("completed", "pending", "cancelled", "refunded")
STATUS_WEIGHTS = (0.8, 0.1, 0.06, 0.04)
EVENT_TYPES = ("page_view", "click", "add_to_cart", "purchase")
EVENT_WEIGHTS = (0.6, 0.25, 0.1, 0.05)

def orders_schema() -> pa.Schema:
    """The schema of the sample orders (pyarrow is imported here, not when a DAG file
    imports :func:`sample_config`)."""
    import pyarrow as pa

    return pa.schema(
        [
            ("order_id", pa.int64()),
            ("customer_id", pa.string()),
            ("region", pa.string()),
            ("product", pa.string()),
            ("quantity", pa.int64()),
            ("unit_price", pa.float64()),
            ("amount", pa.float64()),
            ("status", pa.string()),
            ("order_ts", pa.timestamp("s", tz="UTC")),
        ]
    )


def __getattr__(name: str) -> Any:
    if name == "ORDERS_SCHEMA":
        return orders_schema()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# Defect rates (fractions of rows).
_NULL_CUSTOMER = 0.01
_NULL_REGION = 0.005
_NULL_AMOUNT = 0.003
_DUPLICATE_ORDER = 0.005
_NEGATIVE_QUANTITY = 0.003
_HUGE_PRICE = 0.002
_MALFORMED_EVENT = 0.002
_NULL_USER = 0.005
_NULL_VALUE = 0.005
_DUPLICATE_EVENT = 0.005
_OUT_OF_RANGE_VALUE = 0.003
_LATE_EVENT = 0.01


def _orders_table(count: int, rng: random.Random) -> pa.Table:
    import pyarrow as pa

    schema = orders_schema()
    offsets = sorted(rng.randrange(ORDER_SPAN_SECONDS) for _ in range(count))
    products = list(PRODUCTS)
    columns: dict[str, list[Any]] = {name: [] for name in schema.names}
    start_epoch = int(START.timestamp())
    for index in range(count):
        order_id = 100_001 + index
        if index and rng.random() < _DUPLICATE_ORDER:
            order_id = columns["order_id"][rng.randrange(index)]
        product = rng.choice(products)
        quantity = max(1, int(rng.expovariate(1 / 3)) + 1)
        unit_price = round(PRODUCTS[product] * rng.uniform(0.9, 1.1), 2)
        if rng.random() < _NEGATIVE_QUANTITY:
            quantity = -quantity
        if rng.random() < _HUGE_PRICE:
            unit_price = 1e9
        amount: float | None = round(quantity * unit_price, 2)
        if rng.random() < _NULL_AMOUNT:
            amount = None
        customer = f"C{rng.randint(1, max(2, count // 10)):05d}"
        region = rng.choices(REGIONS, REGION_WEIGHTS)[0]
        columns["order_id"].append(order_id)
        columns["customer_id"].append(None if rng.random() < _NULL_CUSTOMER else customer)
        columns["region"].append(None if rng.random() < _NULL_REGION else region)
        columns["product"].append(product)
        columns["quantity"].append(quantity)
        columns["unit_price"].append(unit_price)
        columns["amount"].append(amount)
        columns["status"].append(rng.choices(STATUSES, STATUS_WEIGHTS)[0])
        columns["order_ts"].append(start_epoch + offsets[index])
    return pa.table(columns, schema=schema)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _event_lines(first_id: int, count: int, rng: random.Random) -> list[str]:
    lines: list[str] = []
    previous: dict[str, Any] | None = None
    for index in range(count):
        event_id = first_id + index
        event_type = rng.choices(EVENT_TYPES, EVENT_WEIGHTS)[0]
        moment = START + timedelta(seconds=event_id * EVENT_STEP_SECONDS + rng.randrange(EVENT_STEP_SECONDS))
        if rng.random() < _LATE_EVENT:
            moment -= timedelta(days=rng.uniform(2, 5))
        if event_type == "purchase":
            value: float | None = round(rng.uniform(5, 400), 2)
        else:
            value = round(rng.expovariate(1 / 30), 3)  # seconds on page
        if rng.random() < _OUT_OF_RANGE_VALUE:
            value = rng.choice([-1.0, -250.0, 1e9])
        if rng.random() < _NULL_VALUE:
            value = None
        record = {
            "event_id": event_id,
            "user_id": None if rng.random() < _NULL_USER else rng.randint(1, 5_000),
            "event_type": event_type,
            "ts": _iso(moment),
            "value": None if value is None else float(value),
        }
        if previous is not None and rng.random() < _DUPLICATE_EVENT:
            record = dict(previous)  # a redelivered event
        line = json.dumps(record, separators=(",", ":"))
        if rng.random() < _MALFORMED_EVENT:
            cut = rng.randrange(5, len(line) - 5)
            line = rng.choice([line[:cut], line.replace('"', "'", 2), "event=" + line])
        lines.append(line)
        previous = record
    return lines


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(text.encode("utf-8"))
    tmp.replace(path)


def generate_sample_data(
    dest: Path, *, orders: int = 20_000, events: int = 50_000, seed: int = 7
) -> dict[str, Path]:
    """Write ``orders.csv``, ``orders.parquet`` and ``events.jsonl`` into ``dest``.

    Returns ``{"orders_csv": ..., "orders_parquet": ..., "events_jsonl": ...}``.
    """
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if orders < 1 or events < 1:
        raise ValueError("orders and events must be positive")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    table = _orders_table(orders, rng)

    parquet_path = dest / ORDERS_PARQUET
    tmp = dest / f".{ORDERS_PARQUET}.tmp"
    pq.write_table(table, tmp, row_group_size=8_192)
    tmp.replace(parquet_path)

    csv_path = dest / ORDERS_CSV
    tmp = dest / f".{ORDERS_CSV}.tmp"
    pacsv.write_csv(table, tmp, pacsv.WriteOptions(quoting_style="needed"))
    with tmp.open("ab") as fh:
        # A truncated export line and one with an extra field, for the validators.
        fh.write(b"199998,C00001,north,widget\n")
        fh.write(b"199999,C00002,south,gadget,2,49.5,99,completed,2024-05-02 10:00:00Z,extra\n")
    tmp.replace(csv_path)

    events_path = dest / EVENTS_JSONL
    _write_text(events_path, "\n".join(_event_lines(1, events, rng)) + "\n")
    return {"orders_csv": csv_path, "orders_parquet": parquet_path, "events_jsonl": events_path}


def _complete_lines(path: Path) -> int:
    count = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            count += chunk.count(b"\n")
    return count


def append_events(path: Path, n: int, seed: int) -> int:
    """Append ``n`` more events (same defect mix) to an events JSONL file.

    Event ids and times continue after the file's existing line count. Returns the
    number of bytes appended.
    """
    path = Path(path)
    first_id = (_complete_lines(path) if path.exists() else 0) + 1
    data = ("\n".join(_event_lines(first_id, n, random.Random(seed))) + "\n").encode("utf-8")
    with path.open("ab") as fh:
        fh.write(data)
    return len(data)


def load_sample_orders(
    url: str,
    orders_parquet: Path,
    *,
    table: str = "orders",
    db_schema: str = "public",
    run_id: str = "sample",
    branch_id: str = "seed",
    batch_rows: int = 65_536,
) -> OutputDescriptor:
    """Load the orders into a Postgres table through the regular COPY load path."""
    from airflow_provider_orchestra.core.models import SourceRef
    from airflow_provider_orchestra.specialists.io import load_postgres, open_source

    orders_parquet = Path(orders_parquet).resolve()
    source = open_source(
        SourceRef(kind="parquet", path=orders_parquet.name),
        roots=[str(orders_parquet.parent)],
        batch_rows=batch_rows,
    )
    return load_postgres(
        source.iter_batches(),
        source.schema,
        url=url,
        table=table,
        db_schema=db_schema,
        run_id=run_id,
        branch_id=branch_id,
    )


def sample_config(
    data_dir: Path | str,
    output_dir: Path | str,
    *,
    postgres_conn_id: str | None = None,
    record_batch_rows: int = 8_192,
) -> dict[str, Any]:
    """A WorkflowConfig dict over the sample data that exercises all five routes.

    With ``postgres_conn_id`` the high-priority aggregation also loads its result into
    the ``revenue_by_region`` table of that connection.
    """
    aggregation_sink: dict[str, Any] = {}
    if postgres_conn_id:
        aggregation_sink = {"sink_table": "revenue_by_region", "sink_conn_id": postgres_conn_id}
    return {
        "workflow_id": "orchestra_sample",
        "record_batch_rows": record_batch_rows,
        "storage": {
            "data_roots": [str(data_dir)],
            "output_root": str(output_dir),
            "sink_conn_id": postgres_conn_id,
        },
        "batches": [
            {
                "batch_id": "clickstream_events",
                "type": "data_ingestion",
                "source_type": "streaming",
                "priority": "high",
                "source": {"kind": "jsonl", "path": EVENTS_JSONL},
                "data_sources": ["clickstream"],
                "ingestion": {"event_time_column": "ts", "late_tolerance_seconds": 3600},
            },
            {
                "batch_id": "orders_validation",
                "type": "data_ingestion",
                "source_type": "batch",
                "source": {"kind": "csv", "path": ORDERS_CSV},
                "data_sources": ["orders_export"],
                "validation": {
                    "rules": [
                        {"column": "order_id", "not_null": True, "unique": True},
                        {"column": "customer_id", "not_null": True},
                        {"column": "quantity", "not_null": True, "min": 1, "max": 100},
                        {"column": "unit_price", "not_null": True, "min": 0, "max": 10_000},
                        {"column": "amount", "not_null": True},
                        {"column": "region", "allowed": list(REGIONS)},
                        {"column": "status", "allowed": list(STATUSES)},
                    ],
                    "anomaly_columns": ["amount", "quantity"],
                    "confidence": 0.95,
                },
            },
            {
                "batch_id": "orders_transform",
                "type": "data_ingestion",
                "source_type": "realtime",
                "source": {"kind": "parquet", "path": ORDERS_PARQUET},
                "data_sources": ["orders_lake"],
                "transformation": {
                    "rename": {"amount": "gross_amount"},
                    "cast": {"quantity": "int32"},
                    "derive": {
                        "order_date": "CAST(order_ts AS DATE)",
                        "is_bulk_order": "quantity >= 5",
                    },
                    "partition_date_column": "order_date",
                },
            },
            {
                "batch_id": "revenue_by_region",
                "type": "data_aggregation",
                "priority": "high",
                "aggregation_type": "revenue",
                "source": {"kind": "parquet", "path": ORDERS_PARQUET},
                "data_sources": ["orders_lake"],
                "aggregation": {
                    "group_by": ["region"],
                    "metrics": [
                        {"column": "amount", "fn": "sum", "name": "revenue"},
                        {"column": "order_id", "fn": "count", "name": "orders"},
                        {"column": "unit_price", "fn": "mean", "name": "avg_unit_price"},
                        {"column": "customer_id", "fn": "count_distinct", "name": "customers"},
                    ],
                    **aggregation_sink,
                },
            },
            {
                "batch_id": "product_status_summary",
                "type": "data_aggregation",
                "priority": "normal",
                "aggregation_type": "quality_summary",
                "source": {"kind": "csv", "path": ORDERS_CSV},
                "data_sources": ["orders_export"],
                "aggregation": {
                    "group_by": ["product", "status"],
                    "metrics": [
                        {"column": "order_id", "fn": "count", "name": "orders"},
                        {"column": "quantity", "fn": "sum", "name": "units"},
                        {"column": "unit_price", "fn": "max", "name": "max_unit_price"},
                        {"column": "amount", "fn": "min", "name": "min_amount"},
                    ],
                },
            },
        ],
        "sync_points": {
            "ingestion_complete": ["clickstream_events", "orders_validation", "orders_transform"],
            "aggregation_complete": ["revenue_by_region", "product_status_summary"],
        },
    }


__all__ = [
    "EVENTS_JSONL",
    "ORDERS_CSV",
    "ORDERS_PARQUET",
    "ORDERS_SCHEMA",
    "append_events",
    "generate_sample_data",
    "load_sample_orders",
    "sample_config",
]
