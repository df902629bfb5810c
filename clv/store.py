"""The workspace's offline store of ingested tables: one Parquet file per table.

Ingest writes here (validated, UTC, deduplicated); feature builds and labels read here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from clv.contracts import CONTRACTS, TableName
from clv.errors import NotReadyError
from clv.settings import Settings


def table_path(settings: Settings, table: TableName) -> Path:
    return settings.offline_dir / f"{table}.parquet"


def has_table(settings: Settings, table: TableName) -> bool:
    return table_path(settings, table).exists()


def read_table(settings: Settings, table: TableName) -> pd.DataFrame:
    """An ingested table; raises NotReadyError with the command to run when it is missing."""
    path = table_path(settings, table)
    if not path.exists():
        raise NotReadyError(
            f"no {table} in {settings.offline_dir}: run `clv data ingest PATH --table {table}`"
        )
    return pd.read_parquet(path)


def bucket_predicate(buckets: int, bucket: int, *, column: str = "customer_id") -> str:
    """DuckDB SQL that keeps one of `buckets` disjoint customer buckets (a hash of the id).

    Everything clv computes per customer (features, labels) can be computed bucket by bucket
    with the same result; every reader of a bucketed run must use this one predicate."""
    if not 0 <= bucket < buckets:
        raise ValueError(f"bucket {bucket} is not in [0, {buckets})")
    if buckets == 1:  # every row: no hash to compute per row
        return "true"
    return f"hash(CAST({column} AS VARCHAR)) % {int(buckets)} = {int(bucket)}"


def read_parquet_bucket(
    path: Path,
    *,
    buckets: int,
    bucket: int,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One customer bucket of a Parquet file, read by DuckDB without loading the rest."""
    import duckdb

    cols = ", ".join(f'"{c}"' for c in columns) if columns else "*"
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
        frame = con.execute(
            f"SELECT {cols} FROM read_parquet(?) WHERE {bucket_predicate(buckets, bucket)}",
            [str(path)],
        ).df()
    finally:
        con.close()
    return frame


def read_table_bucket(
    settings: Settings,
    table: TableName,
    *,
    buckets: int,
    bucket: int,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One customer bucket of an ingested table (see `bucket_predicate`)."""
    path = table_path(settings, table)
    if not path.exists():
        raise NotReadyError(
            f"no {table} in {settings.offline_dir}: run `clv data ingest PATH --table {table}`"
        )
    return read_parquet_bucket(path, buckets=buckets, bucket=bucket, columns=columns)


def write_table(settings: Settings, table: TableName, frame: pd.DataFrame) -> Path:
    """Replace a stored table atomically (write to a temp file, then rename)."""
    contract = CONTRACTS[table]
    missing = [c for c in contract.required if c not in frame.columns]
    if missing:
        raise ValueError(f"{table}: missing required columns {missing}")
    settings.offline_dir.mkdir(parents=True, exist_ok=True)
    path = table_path(settings, table)
    tmp = path.with_suffix(".parquet.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path
