"""What the build learns about the offline store before it reads the data: the tables it needs,
their row counts (Parquet footers) and the log's span, no table loaded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from clv.core.contracts import TableName
from clv.core.errors import DataError, NotReadyError
from clv.core.settings import Settings
from clv.core.store import has_table, table_path
from clv.core.time import to_utc
from clv.features.memory import MemoryEstimate
from clv.features.query import feature_connection


def require_table(settings: Settings, table: TableName) -> Path:
    """A stored table's path; NotReadyError naming the ingest command when it is missing."""
    path = table_path(settings, table)
    if not path.exists():
        raise NotReadyError(
            f"no {table} in {settings.offline_dir}: run `clv data ingest PATH --table {table}`"
        )
    return path


def _rows(settings: Settings, table: TableName) -> int:
    """A stored table's row count from its Parquet footer (0 without the table)."""
    if not has_table(settings, table):
        return 0
    return int(pq.read_metadata(table_path(settings, table)).num_rows)


@dataclass(frozen=True)
class LogSpan:
    first: pd.Timestamp
    last: pd.Timestamp
    known_customers: int


def log_span(settings: Settings, *, memory_limit_mb: int) -> LogSpan:
    """First and last transaction (Parquet statistics) and the approximate number of distinct
    customers of the transactions and customers tables (a streaming HyperLogLog count)."""
    tx_path = require_table(settings, "transactions")
    ids = "SELECT CAST(customer_id AS VARCHAR) AS customer_id FROM read_parquet($tx)"
    params: dict[str, object] = {"tx": str(tx_path)}
    if has_table(settings, "customers"):
        ids += " UNION ALL SELECT CAST(customer_id AS VARCHAR) FROM read_parquet($cust)"
        params["cust"] = str(table_path(settings, "customers"))
    con = feature_connection(memory_limit_mb=memory_limit_mb)
    try:
        first, last = con.execute(
            "SELECT min(ts), max(ts) FROM read_parquet(?)", [str(tx_path)]
        ).fetchall()[0]
        known = con.execute(f"SELECT approx_count_distinct(customer_id) FROM ({ids})", params)
        (known_customers,) = known.fetchall()[0]
    finally:
        con.close()
    if first is None:
        raise DataError("the transactions table is empty: ingest some transactions first")
    return LogSpan(to_utc(first), to_utc(last), int(known_customers))


def memory_estimate(settings: Settings, span: LogSpan, *, snapshots: int) -> MemoryEstimate:
    """The stored row counts and the span's known customers as a `MemoryEstimate`."""
    return MemoryEstimate(
        transactions=_rows(settings, "transactions"),
        events=_rows(settings, "events"),
        customers=_rows(settings, "customers"),
        known_customers=span.known_customers,
        snapshots=snapshots,
    )
