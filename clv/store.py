"""The workspace's offline store of ingested tables: one Parquet file per table.

Ingest writes here (validated, UTC, deduplicated); feature builds and labels read here.
"""

from __future__ import annotations

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
