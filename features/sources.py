"""Where the feature query's inputs come from: pandas frames or one bucket of a Parquet file.

Both become the same typed views `tx`, `cust`, `ev` (`relation`), so a build from the offline
store and `clv.features.query.compute_features` over frames read their inputs the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq


@dataclass(frozen=True)
class Source:
    """Where one input relation comes from: a pandas frame or one bucket of a Parquet file."""

    relation: str
    """SQL FROM item: the name a frame is registered under, or a `read_parquet(...)` call."""
    columns: frozenset[str]
    where: str = "true"
    frame: pd.DataFrame | None = None
    """Registered as `relation` on the connection (a zero-copy scan)."""


def frame_source(name: str, frame: pd.DataFrame | None) -> Source | None:
    """A frame as the input `name` (tx, cust, ev); None without a frame."""
    if frame is None:
        return None
    if name == "cust":  # rows of one version: the last wins, as ingest does
        frame = frame.assign(file_row_number=np.arange(len(frame)))
    return Source(f"{name}_in", frozenset(str(c) for c in frame.columns), frame=frame)


def parquet_source(path: Path, *, where: str = "true") -> Source:
    """The rows of a Parquet file that satisfy `where` (DuckDB reads them straight from it)."""
    literal = "'" + str(path).replace("'", "''") + "'"
    names = frozenset(pq.read_schema(path).names) | {"file_row_number"}
    return Source(f"read_parquet({literal}, file_row_number = true)", names, where)


def _column(source: Source, name: str, sql_type: str) -> str:
    """`name` cast to `sql_type`, or a typed NULL when the source has no such column."""
    if name in source.columns:
        return f'CAST("{name}" AS {sql_type}) AS "{name}"'
    return f'CAST(NULL AS {sql_type}) AS "{name}"'


def relation(source: Source | None, columns: list[tuple[str, str]]) -> str:
    """The SELECT behind one of the views `tx`, `cust`, `ev` that the feature SQL reads."""
    if source is None:  # an optional table that is not there: no rows, the same columns
        nulls = ", ".join(f'CAST(NULL AS {t}) AS "{n}"' for n, t in columns)
        return f"SELECT {nulls} WHERE false"
    select = ", ".join(_column(source, n, t) for n, t in columns)
    return f"SELECT {select} FROM {source.relation} WHERE {source.where}"


TX_COLUMNS = [
    ("customer_id", "VARCHAR"),
    ("ts", "TIMESTAMPTZ"),
    ("amount", "DOUBLE"),
    ("margin", "DOUBLE"),
    ("order_id", "VARCHAR"),
]
CUST_COLUMNS = [
    ("customer_id", "VARCHAR"),
    ("signup_ts", "TIMESTAMPTZ"),
    ("acquisition_channel", "VARCHAR"),
    ("country", "VARCHAR"),
    ("plan", "VARCHAR"),
    ("valid_from", "TIMESTAMPTZ"),
    ("ingested_at", "TIMESTAMPTZ"),
    ("file_row_number", "BIGINT"),
]
EV_COLUMNS = [("customer_id", "VARCHAR"), ("ts", "TIMESTAMPTZ"), ("event_type", "VARCHAR")]
