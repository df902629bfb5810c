"""The feature query: one DuckDB query of `clv.features.definitions` over the input views.

`compute_features` runs it over pandas frames; the build (`clv.features.buckets`) runs it over
one customer bucket of the offline store at a time. The rules: `clv.features.build`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Required, TypedDict, Unpack

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from clv.core.contracts import TS_DTYPE
from clv.core.errors import DataError
from clv.core.store import duckdb_connection
from clv.core.time import DateLike, to_utc
from clv.features.definitions import feature_sql, snapshot_entities_sql
from clv.features.sources import (
    CUST_COLUMNS,
    EV_COLUMNS,
    TX_COLUMNS,
    Source,
    frame_source,
    relation,
)
from clv.inputs.identities import IdentityMap, register


def feature_connection(
    *, memory_limit_mb: int | None = None, temp_directory: Path | None = None
) -> duckdb.DuckDBPyConnection:
    """`clv.core.store.duckdb_connection`, tuned for the feature query."""
    con = duckdb_connection(memory_limit_mb=memory_limit_mb, temp_directory=temp_directory)
    # the epoch ranges of identities make DuckDB underestimate the snapshot grid, and below
    # this many rows it runs the attributes' ASOF join as a nested loop (13 s instead of 0.2)
    con.execute("SET asof_loop_join_threshold = 0")
    # One thread: DuckDB's parallel aggregation merges partial sums in whatever order its
    # threads finish, so the same data gave features that differed in the last bits (and rows
    # in another order) from one build to the next, and so did every model fitted on them.
    # A build that needs more cores runs its customer buckets on Dask (clv.features.buckets).
    con.execute("SET threads = 1")
    return con


def _query(
    sql: str,
    *,
    tx: Source,
    cust: Source | None,
    ev: Source | None,
    snapshots: list[pd.Timestamp],
    identities: IdentityMap | None = None,
    params: dict[str, object] | None = None,
    memory_limit_mb: int | None = None,
    temp_directory: Path | None = None,
) -> pa.Table:
    """Run a feature query over the views tx, cust, ev, snaps and the identity views (types
    fixed, optional parts empty); the connection is closed, and its memory freed, before this
    returns."""
    con = feature_connection(memory_limit_mb=memory_limit_mb, temp_directory=temp_directory)
    try:
        if identities is not None and not identities.empty:  # first: the bucket predicate reads it
            register(con, identities)
        for source in (tx, cust, ev):
            if source is not None and source.frame is not None:
                con.register(source.relation, source.frame)
        snaps = pd.DataFrame(
            {"t": pd.Series(snapshots, dtype="datetime64[ns, UTC]").astype(TS_DTYPE)}
        )
        con.register("snaps", snaps)
        con.execute(f"CREATE VIEW tx AS {relation(tx, TX_COLUMNS)}")
        con.execute(f"CREATE VIEW cust AS {relation(cust, CUST_COLUMNS)}")
        con.execute(f"CREATE VIEW ev AS {relation(ev, EV_COLUMNS)}")
        result = con.sql(sql, params=params)
        assert result is not None
        return result.to_arrow_table()
    finally:
        con.close()


def features_table(
    *,
    tx: Source,
    cust: Source | None,
    ev: Source | None,
    snapshots: list[pd.Timestamp],
    margin_rate: float,
    created: datetime | None,
    identities: IdentityMap | None = None,
    memory_limit_mb: int | None = None,
    temp_directory: Path | None = None,
) -> pa.Table:
    """The feature rows of the given inputs, sorted by snapshot and customer."""
    if any(t != t.floor("D") for t in snapshots):
        raise DataError("snapshot instants must be UTC midnights")
    created_at = to_utc(created or datetime.now(UTC))
    table = _query(
        feature_sql(identities=identities is not None and not identities.empty),
        tx=tx,
        cust=cust,
        ev=ev,
        snapshots=snapshots,
        identities=identities,
        params={"margin_rate": margin_rate, "created": created_at.to_pydatetime()},
        memory_limit_mb=memory_limit_mb,
        temp_directory=temp_directory,
    )
    # sorted here, after DuckDB has freed its memory (see `feature_sql`)
    keys = [("event_timestamp", "ascending"), ("customer_id", "ascending")]
    return _microseconds(table.take(pc.sort_indices(table, sort_keys=keys)))


def compute_features_arrow(
    transactions: pd.DataFrame,
    customers: pd.DataFrame | None,
    events: pd.DataFrame | None,
    snapshots: list[pd.Timestamp],
    *,
    margin_rate: float,
    created: datetime | None = None,
    identities: IdentityMap | None = None,
    memory_limit_mb: int | None = None,
    temp_directory: Path | None = None,
) -> pa.Table:
    """The feature rows as an Arrow table (UTC microsecond timestamps); see the module rules.

    `identities` (`clv.inputs.identities.resolve`) files each alias's rows under its customer;
    `memory_limit_mb` caps DuckDB's memory (it spills to `temp_directory` above it)."""
    tx = frame_source("tx", transactions)
    assert tx is not None
    return features_table(
        tx=tx,
        cust=frame_source("cust", customers),
        ev=frame_source("ev", events),
        snapshots=snapshots,
        margin_rate=margin_rate,
        created=created,
        identities=identities,
        memory_limit_mb=memory_limit_mb,
        temp_directory=temp_directory,
    )


class FeatureOptions(TypedDict, total=False):
    """The keyword options of `compute_features` (those of `compute_features_arrow`)."""

    margin_rate: Required[float]
    created: datetime | None
    identities: IdentityMap | None


def compute_features(
    transactions: pd.DataFrame,
    customers: pd.DataFrame | None,
    events: pd.DataFrame | None,
    snapshots: list[pd.Timestamp],
    **options: Unpack[FeatureOptions],
) -> pd.DataFrame:
    """The feature rows as a pandas frame (one row per known customer and snapshot)."""
    return compute_features_arrow(transactions, customers, events, snapshots, **options).to_pandas()


def _microseconds(table: pa.Table) -> pa.Table:
    fields = [
        pa.field(f.name, pa.timestamp("us", tz="UTC")) if pa.types.is_timestamp(f.type) else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields))


def known_entities(
    transactions: pd.DataFrame,
    customers: pd.DataFrame | None,
    as_of: DateLike,
    *,
    identities: IdentityMap | None = None,
) -> pd.DataFrame:
    """customer_id + event_timestamp (= as_of) for every customer known strictly before as_of
    (an alias mapped before as_of is its customer, not a row of its own)."""
    tx = frame_source("tx", transactions)
    assert tx is not None
    table = _query(
        snapshot_entities_sql(identities=identities is not None and not identities.empty),
        tx=tx,
        cust=frame_source("cust", customers),
        ev=None,
        snapshots=[to_utc(as_of)],
        identities=identities,
    )
    frame = table.to_pandas()
    frame["customer_id"] = frame["customer_id"].astype(str)
    frame["event_timestamp"] = frame["event_timestamp"].astype(TS_DTYPE)
    return frame
