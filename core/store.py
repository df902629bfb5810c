"""The workspace's offline store of ingested tables: one Parquet file per table.

Ingest writes here (validated, UTC, deduplicated); feature builds and labels read here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NotRequired, TypedDict, Unpack

import duckdb
import pandas as pd

from clv.core.contracts import CONTRACTS, TableName
from clv.core.errors import NotReadyError
from clv.core.settings import Settings


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


DUCKDB_MIN_MEMORY_MB = 128
"""DuckDB's memory limit never goes below this: its operators need a few blocks per thread,
and under ~16 MiB even a tiny feature query fails instead of spilling."""


def duckdb_connection(
    *, memory_limit_mb: int | None = None, temp_directory: Path | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB in UTC; with a limit it spills to `temp_directory` above it."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    con.execute("SET preserve_insertion_order = false")  # queries that care say ORDER BY
    if memory_limit_mb is not None:
        con.execute(f"SET memory_limit = '{max(memory_limit_mb, DUCKDB_MIN_MEMORY_MB)}MiB'")
    if temp_directory is not None:  # DuckDB's default is `.tmp` in the working directory
        con.execute("SET temp_directory = ?", [str(temp_directory)])
    return con


GROUPS_RELATION = "customer_groups"
"""A DuckDB view (member_id, group_id) of ids that must share a bucket: every id of the
identities table and its group's key (`clv.inputs.identities.register` creates it)."""


def bucket_predicate(
    buckets: int, bucket: int, *, column: str = "customer_id", grouped: bool = False
) -> str:
    """DuckDB SQL that keeps one of `buckets` disjoint customer buckets (a hash of the id).

    Everything clv computes per customer (features, labels) can be computed bucket by bucket
    with the same result; every reader of a bucketed run must use this one predicate.
    `grouped`: an id of the view GROUPS_RELATION hashes its group's key instead, so that all
    the ids of one customer (aliases, merged ids) fall in one bucket."""
    if not 0 <= bucket < buckets:
        raise ValueError(f"bucket {bucket} is not in [0, {buckets})")
    if buckets == 1:  # every row: no hash to compute per row
        return "true"
    key = f"CAST({column} AS VARCHAR)"
    if grouped:
        key = (
            f"coalesce((SELECT g.group_id FROM {GROUPS_RELATION} g WHERE g.member_id = {key}), "
            f"{key})"
        )
    return f"hash({key}) % {int(buckets)} = {int(bucket)}"


def read_parquet_bucket(
    path: Path,
    *,
    buckets: int,
    bucket: int,
    columns: Sequence[str] | None = None,
    groups: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One customer bucket of a Parquet file, read by DuckDB without loading the rest.

    `groups` (member_id, group_id; `clv.inputs.identities.IdentityMap.groups`): ids that share the
    bucket of their group (see `bucket_predicate`)."""
    cols = ", ".join(f'"{c}"' for c in columns) if columns else "*"
    grouped = groups is not None and buckets > 1 and not groups.empty
    con = duckdb_connection()
    con.execute("SET preserve_insertion_order = true")  # the file's row order, every time
    try:
        if grouped:
            con.register(GROUPS_RELATION, groups)
        where = bucket_predicate(buckets, bucket, grouped=grouped)
        frame = con.execute(f"SELECT {cols} FROM read_parquet(?) WHERE {where}", [str(path)]).df()
    finally:
        con.close()
    return frame


class Bucket(TypedDict):
    """Which bucket `read_parquet_bucket` reads, as keyword arguments."""

    buckets: int
    bucket: int
    columns: NotRequired[Sequence[str] | None]
    groups: NotRequired[pd.DataFrame | None]


def read_table_bucket(
    settings: Settings, table: TableName, **bucket: Unpack[Bucket]
) -> pd.DataFrame:
    """One customer bucket of an ingested table (see `bucket_predicate` and
    `read_parquet_bucket`)."""
    path = table_path(settings, table)
    if not path.exists():
        raise NotReadyError(
            f"no {table} in {settings.offline_dir}: run `clv data ingest PATH --table {table}`"
        )
    return read_parquet_bucket(path, **bucket)


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
