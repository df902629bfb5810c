"""Feature snapshots: every customer known at each snapshot date, from the raw log before it.

`build_features` writes `<ws>/.clv/offline/features/customer_features.parquet`, the file behind
the Feast FileSource, with `customer_id`, `event_timestamp` (= the snapshot instant t),
`created_timestamp` (when the build ran) and every feature of the FeatureService `clv_v1`.
The SQL is in `clv.features.definitions`; it is one DuckDB query over a snapshot calendar.

Rules (the model and the baseline depend on them; change them only with a new service):
- UTC everywhere. Snapshot instants are UTC midnights; a snapshot at t uses only rows with
  ts < t (strictly before: no leakage). Timestamps are stored with microsecond precision.
- Snapshots: every `settings.features.snapshot_every` ("Nd", "Nw" or "NM"); month spacing is
  aligned to the first day of a month. By default from the first month after the log starts to
  the first calendar point after the last transaction, so the last snapshot sees the whole log.
- A customer is known at t when they signed up, or have any transaction, strictly before t.
  Known customers get a row at every later snapshot, purchases or not.
- Purchases: a transaction row is an order, or one line of an order (`line_id`). A purchase
  day is a UTC day with at least one row with amount > 0. Refunds (amount < 0) count in spend
  (net) and in `refunds_*` (as a positive amount); they are never purchase days. Spend, margin
  and purchase values sum rows (lines). Margin is the `margin` column, else amount x
  `model.margin_rate`.
- RFM follows lifetimes (`summary_data_from_transaction_data`, daily periods):
  frequency = purchase days - 1 (repeat purchase days); recency = days from the first to the
  last purchase day; T = days from the first purchase day to t; monetary_value = mean purchase
  value of the repeat purchase days (the first day excluded); first_purchase_value = purchase
  value of the first purchase day. Single-purchase customers: frequency 0, monetary_value 0.
  Customers without a purchase yet: frequency 0, monetary_value 0, and recency, T,
  first_purchase_value, days_since_last_purchase null (missing, not "just bought").
- Windows of W days cover [t - W days, t). orders = distinct orders with a row of amount > 0,
  counted per UTC day (an order's lines share its day); a row without order_id is an order
  of its own. active days = purchase days. spend_trend_90_365 = (spend_90d / 90) /
  (spend_365d / 365), null when the 365-day spend is not positive. Inter-purchase gaps are
  days between consecutive purchase days: mean null below 2 purchase days, sample std null
  below 3. margin_ly_90d = margin in [t - 365 days, t - 275 days): the same 90-day window a
  year earlier (0 without rows there).
- Calendar: snapshot_month = the month of the year of t (1-12), so that the model knows
  which season the horizon covers.
- Profile: tenure_days = whole days from the day the customer became known (signup or first
  transaction, whichever is earlier) to t; signup_cohort = that day's "YYYY-MM"; signup is
  the signup_ts of the customer's first version that has one. Channel, country and plan are
  the customer version in force strictly before t (`clv.inputs.versions`: from valid_from, else from
  ingested_at; a first version without valid_from from the beginning); null before a
  customer's first version and without a customers table.
- Behaviour: counts of `login`, `support_ticket`, `feature_use` events in the last 30 and 90
  days (0 without an events table); *_trend = (30-day rate) / (90-day rate), null without
  events in 90 days.
- Identities (`clv.inputs.identities`, the one rule): at t an alias is the customer its row in force
  strictly before t names (latest valid_from wins; chains followed; a cycle drops its oldest
  row). The customer's features at t hold every transaction and event of its ids before t
  (an alias's rows from before valid_from too) and the alias has no row of its own; before
  valid_from (a snapshot at valid_from included) the alias is its own customer. Purchase days,
  windows and RFM are those of the merged log; orders stay distinct per id. Channel, country
  and plan are the canonical customer's own versions; signup (tenure, cohort) is the earliest
  over the merged ids. Without an identities table every id is its own customer.

Memory: every feature is per customer, so the build runs in disjoint customer buckets
(`clv.core.store.bucket_predicate`, the one hash the training side uses too; with identities it
hashes each id's group, every id ever linked to it, so no customer's ids are split) and appends each
bucket's rows to one Parquet file. The bucket count is the estimated memory of a one-shot
build (`MemoryEstimate`: Parquet row counts and a streaming distinct count of customer ids,
no table loaded) divided by `settings.compute.memory_budget_mb`, rounded up. DuckDB reads a
bucket's rows straight from the offline store's Parquet files (no pandas copy: with one, the
10M-row benchmark world peaked at 3.3 GiB instead of 2.2), and its memory limit is the
budget, so above it DuckDB spills to a temporary directory in the workspace instead of
failing. The interpreter and its imports (~130 MiB) come on top of the budget. One code path
for one bucket and for many; the result is the same rows (the file holds them bucket after
bucket, each sorted by snapshot and customer).
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clv.core.contracts import TS_DTYPE, TableName
from clv.core.errors import ConfigError, DataError, NotReadyError
from clv.core.settings import Settings
from clv.core.store import bucket_predicate, duckdb_connection, has_table, table_path
from clv.features.definitions import feature_sql, snapshot_entities_sql
from clv.inputs.identities import IdentityMap, read_identities, register

FEATURES_FILE = "customer_features.parquet"
"""File name of the feature snapshots inside `Settings.features_dir`."""

_EVERY = re.compile(r"^\s*(\d+)\s*([dwM])\s*$")

DateLike = date | datetime | str

MIB = 1024 * 1024

# Peak memory of a one-shot build per stored row, fitted to the peak RSS, minus the ~130 MiB of
# the interpreter and its imports, of `build_features(..., buckets=1)` with DuckDB free to use
# 16 GiB (duckdb 2.0, pyarrow 25; 2 threads):
#
#   world (rows: tx / events / customers -> feature rows)   measured   model   model / measured
#   synthetic_log 1M / 0 / 200k -> 1.29M                     1070 MiB   1405    1.31
#   synthetic_log 10M / 0 / 200k -> 1.29M                    1902 MiB   2435    1.28
#   synthetic_log 3M / 0 / 50k -> 0.32M                       742 MiB    667    0.90
#   synthetic_log 1M / 0 / 800k -> 5.18M                     3956 MiB   5280    1.33
#   generator 0.63M / 0 / 60k -> 0.63M                        758 MiB    693    0.91
#   generator 0.63M / 1.59M / 60k -> 0.63M                    866 MiB    875    1.01
#
# The differences give 97 B per transaction (1M -> 10M), 71 B per event (with and without
# events) and 740-780 B per feature row (1.29M -> 5.18M rows); customers and feature rows grow
# together in these worlds, so the customer-row cost is an assumption. The estimate counts
# feature rows as known customers x snapshots, an upper bound (1.9x the real rows of
# `synthetic_log`, whose sign-ups spread over the year), which covers what does not shrink
# with a bucket: with a 1024 MiB budget the 10M world builds in 4 buckets at 0.92 GiB peak RSS
# (benchmark `feature_build_chunked`), with 512 MiB in 7 at 0.65 GiB.
BYTES_PER_TRANSACTION = 120
"""Peak bytes per transaction row: DuckDB's scan of it and its share of the per-day aggregates."""
BYTES_PER_EVENT = 120
"""Peak bytes per event row (the shape of a transaction: id, ts, one short string)."""
BYTES_PER_CUSTOMER = 300
"""Peak bytes per customers-table row (id, signup, three strings, the join's hash entry)."""
BYTES_PER_FEATURE_ROW = 1000
"""Peak bytes per output row (known customer x snapshot): the grid, the aggregates joined
back, the Arrow result (~50 columns) and its sorted copy."""


@dataclass(frozen=True)
class MemoryEstimate:
    """What a one-shot build would hold at its peak, from row counts (not the data itself).

    Row counts come from the Parquet footers; `known_customers` is DuckDB's HyperLogLog count
    of the distinct ids in the transactions and customers tables (a streaming scan).

    bytes = transactions x BYTES_PER_TRANSACTION + events x BYTES_PER_EVENT
          + customers x BYTES_PER_CUSTOMER + feature_rows x BYTES_PER_FEATURE_ROW,
    feature_rows = known_customers x snapshots, an upper bound (a customer appears only in the
    snapshots after they became known).
    """

    transactions: int
    events: int
    customers: int
    known_customers: int
    snapshots: int

    @property
    def feature_rows(self) -> int:
        return self.known_customers * self.snapshots

    @property
    def bytes(self) -> int:
        return (
            self.transactions * BYTES_PER_TRANSACTION
            + self.events * BYTES_PER_EVENT
            + self.customers * BYTES_PER_CUSTOMER
            + self.feature_rows * BYTES_PER_FEATURE_ROW
        )

    @property
    def mb(self) -> float:
        return self.bytes / MIB

    def buckets(self, *, budget_mb: int) -> int:
        """How many customer buckets keep each one under the budget: ceil(estimate / budget)."""
        return plan_buckets(self.bytes, budget_mb=budget_mb)


def plan_buckets(estimate_bytes: int, *, budget_mb: int) -> int:
    """max(1, ceil(estimate / budget)): the fewest equal buckets that each fit the budget."""
    if budget_mb <= 0:
        raise ConfigError(f"compute.memory_budget_mb must be positive, got {budget_mb}")
    return max(1, math.ceil(estimate_bytes / (budget_mb * MIB)))


@dataclass(frozen=True)
class BuildResult:
    """What a build wrote, and in how many customer buckets."""

    path: Path
    rows: int
    customers: int
    snapshots: list[pd.Timestamp]
    seconds: float
    chunks: int
    estimate: MemoryEstimate
    memory_budget_mb: int


def features_path(settings: Settings) -> Path:
    """Where the feature snapshots live (the Feast FileSource resolves to this file)."""
    return settings.features_dir / FEATURES_FILE


def require_features(settings: Settings) -> Path:
    """The built snapshot file; NotReadyError naming the command when it is missing."""
    path = features_path(settings)
    if not path.exists():
        raise NotReadyError(f"no feature snapshots in {path}: run `clv features build`")
    return path


def snapshot_times(settings: Settings) -> list[pd.Timestamp]:
    """Every snapshot date of the built feature table, oldest first."""
    path = require_features(settings)
    ts = pd.read_parquet(path, columns=["event_timestamp"])["event_timestamp"]
    if ts.empty:
        raise NotReadyError(f"{path} is empty: run `clv features build`")
    return sorted(pd.Timestamp(t) for t in pd.to_datetime(ts.unique(), utc=True))


def to_utc(value: DateLike) -> pd.Timestamp:
    """A date, datetime or ISO string as a UTC timestamp (naive values are taken as UTC)."""
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise DataError(f"not a date: {value!r} (use YYYY-MM-DD)") from exc
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def parse_every(every: str) -> tuple[int, str]:
    """'3M' -> (3, 'M'); units d (days), w (weeks), M (months)."""
    m = _EVERY.match(every)
    if m is None or int(m.group(1)) <= 0:
        raise ConfigError(f"snapshot spacing {every!r}: use Nd, Nw or NM with N > 0 (e.g. 1M)")
    return int(m.group(1)), m.group(2)


def _step(n: int, unit: str, k: int) -> pd.DateOffset | pd.Timedelta:
    if unit == "M":
        return pd.DateOffset(months=n * k)
    return pd.Timedelta(days=n * k * (7 if unit == "w" else 1))


def snapshot_dates(
    first: DateLike,
    last: DateLike,
    *,
    every: str = "1M",
    start: DateLike | None = None,
    end: DateLike | None = None,
) -> list[pd.Timestamp]:
    """Snapshot instants (UTC midnights) for a log spanning [first, last].

    Default start: the first day of the month after `first`. Month spacing starts on the first
    day of a month (a given `start` is moved forward to one). Default end: the first calendar
    point strictly after `last`, so the last snapshot sees the whole log; a given `end` is
    inclusive.
    """
    n, unit = parse_every(every)
    if start is None:
        anchor = to_utc(first).floor("D").replace(day=1) + pd.DateOffset(months=1)
    else:
        anchor = to_utc(start).ceil("D")
        if unit == "M" and anchor.day != 1:
            anchor = anchor.replace(day=1) + pd.DateOffset(months=1)
    last_ts = to_utc(last)
    stop = to_utc(end).floor("D") if end is not None else None
    dates: list[pd.Timestamp] = []
    k = 0
    while True:
        t = anchor + _step(n, unit, k)
        if stop is not None and t > stop:
            break
        dates.append(t)
        if stop is None and t > last_ts:
            break
        k += 1
    return dates


@dataclass(frozen=True)
class _Source:
    """Where one input relation comes from: a pandas frame or one bucket of a Parquet file.

    Both go through the same SQL (`_relation`), so a build from the offline store and
    `compute_features` over frames read their inputs the same way."""

    relation: str
    """SQL FROM item: the name a frame is registered under, or a `read_parquet(...)` call."""
    columns: frozenset[str]
    where: str = "true"
    frame: pd.DataFrame | None = None
    """Registered as `relation` on the connection (a zero-copy scan)."""


def _frame_source(name: str, frame: pd.DataFrame | None) -> _Source | None:
    if frame is None:
        return None
    if name == "cust":  # rows of one version: the last wins, as ingest does
        frame = frame.assign(file_row_number=np.arange(len(frame)))
    return _Source(f"{name}_in", frozenset(str(c) for c in frame.columns), frame=frame)


def _parquet_source(path: Path, *, where: str = "true") -> _Source:
    literal = "'" + str(path).replace("'", "''") + "'"
    names = frozenset(pq.read_schema(path).names) | {"file_row_number"}
    return _Source(f"read_parquet({literal}, file_row_number = true)", names, where)


def _column(source: _Source, name: str, sql_type: str) -> str:
    """`name` cast to `sql_type`, or a typed NULL when the source has no such column."""
    if name in source.columns:
        return f'CAST("{name}" AS {sql_type}) AS "{name}"'
    return f'CAST(NULL AS {sql_type}) AS "{name}"'


def _relation(source: _Source | None, columns: list[tuple[str, str]]) -> str:
    """The SELECT behind one of the views `tx`, `cust`, `ev` that the feature SQL reads."""
    if source is None:  # an optional table that is not there: no rows, the same columns
        nulls = ", ".join(f'CAST(NULL AS {t}) AS "{n}"' for n, t in columns)
        return f"SELECT {nulls} WHERE false"
    select = ", ".join(_column(source, n, t) for n, t in columns)
    return f"SELECT {select} FROM {source.relation} WHERE {source.where}"


_TX_COLUMNS = [
    ("customer_id", "VARCHAR"),
    ("ts", "TIMESTAMPTZ"),
    ("amount", "DOUBLE"),
    ("margin", "DOUBLE"),
    ("order_id", "VARCHAR"),
]
_CUST_COLUMNS = [
    ("customer_id", "VARCHAR"),
    ("signup_ts", "TIMESTAMPTZ"),
    ("acquisition_channel", "VARCHAR"),
    ("country", "VARCHAR"),
    ("plan", "VARCHAR"),
    ("valid_from", "TIMESTAMPTZ"),
    ("ingested_at", "TIMESTAMPTZ"),
    ("file_row_number", "BIGINT"),
]
_EV_COLUMNS = [("customer_id", "VARCHAR"), ("ts", "TIMESTAMPTZ"), ("event_type", "VARCHAR")]


def _duckdb(
    *, memory_limit_mb: int | None = None, temp_directory: Path | None = None
) -> duckdb.DuckDBPyConnection:
    """`clv.core.store.duckdb_connection`, tuned for the feature query."""
    con = duckdb_connection(memory_limit_mb=memory_limit_mb, temp_directory=temp_directory)
    # the epoch ranges of identities make DuckDB underestimate the snapshot grid, and below
    # this many rows it runs the attributes' ASOF join as a nested loop (13 s instead of 0.2)
    con.execute("SET asof_loop_join_threshold = 0")
    return con


def _query(
    sql: str,
    *,
    tx: _Source,
    cust: _Source | None,
    ev: _Source | None,
    snapshots: list[pd.Timestamp],
    identities: IdentityMap | None = None,
    params: dict[str, object] | None = None,
    memory_limit_mb: int | None = None,
    temp_directory: Path | None = None,
) -> pa.Table:
    """Run a feature query over the views tx, cust, ev, snaps and the identity views (types
    fixed, optional parts empty); the connection is closed, and its memory freed, before this
    returns."""
    con = _duckdb(memory_limit_mb=memory_limit_mb, temp_directory=temp_directory)
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
        con.execute(f"CREATE VIEW tx AS {_relation(tx, _TX_COLUMNS)}")
        con.execute(f"CREATE VIEW cust AS {_relation(cust, _CUST_COLUMNS)}")
        con.execute(f"CREATE VIEW ev AS {_relation(ev, _EV_COLUMNS)}")
        relation = con.sql(sql, params=params)
        assert relation is not None
        return relation.to_arrow_table()
    finally:
        con.close()


def _features_table(
    *,
    tx: _Source,
    cust: _Source | None,
    ev: _Source | None,
    snapshots: list[pd.Timestamp],
    margin_rate: float,
    created: datetime | None,
    identities: IdentityMap | None = None,
    memory_limit_mb: int | None = None,
    temp_directory: Path | None = None,
) -> pa.Table:
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
    tx = _frame_source("tx", transactions)
    assert tx is not None
    return _features_table(
        tx=tx,
        cust=_frame_source("cust", customers),
        ev=_frame_source("ev", events),
        snapshots=snapshots,
        margin_rate=margin_rate,
        created=created,
        identities=identities,
        memory_limit_mb=memory_limit_mb,
        temp_directory=temp_directory,
    )


def compute_features(
    transactions: pd.DataFrame,
    customers: pd.DataFrame | None,
    events: pd.DataFrame | None,
    snapshots: list[pd.Timestamp],
    *,
    margin_rate: float,
    created: datetime | None = None,
    identities: IdentityMap | None = None,
) -> pd.DataFrame:
    """The feature rows as a pandas frame (one row per known customer and snapshot)."""
    table = compute_features_arrow(
        transactions,
        customers,
        events,
        snapshots,
        margin_rate=margin_rate,
        created=created,
        identities=identities,
    )
    return table.to_pandas()


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
    tx = _frame_source("tx", transactions)
    assert tx is not None
    table = _query(
        snapshot_entities_sql(identities=identities is not None and not identities.empty),
        tx=tx,
        cust=_frame_source("cust", customers),
        ev=None,
        snapshots=[to_utc(as_of)],
        identities=identities,
    )
    frame = table.to_pandas()
    frame["customer_id"] = frame["customer_id"].astype(str)
    frame["event_timestamp"] = frame["event_timestamp"].astype(TS_DTYPE)
    return frame


def _require(settings: Settings, table: TableName) -> Path:
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
class _LogSpan:
    first: pd.Timestamp
    last: pd.Timestamp
    known_customers: int


def _log_span(settings: Settings, *, memory_limit_mb: int) -> _LogSpan:
    """First and last transaction (Parquet statistics) and the approximate number of distinct
    customers of the transactions and customers tables (a streaming HyperLogLog count)."""
    tx_path = _require(settings, "transactions")
    ids = "SELECT CAST(customer_id AS VARCHAR) AS customer_id FROM read_parquet($tx)"
    params: dict[str, object] = {"tx": str(tx_path)}
    if has_table(settings, "customers"):
        ids += " UNION ALL SELECT CAST(customer_id AS VARCHAR) FROM read_parquet($cust)"
        params["cust"] = str(table_path(settings, "customers"))
    con = _duckdb(memory_limit_mb=memory_limit_mb)
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
    return _LogSpan(to_utc(first), to_utc(last), int(known_customers))


def _estimate(settings: Settings, span: _LogSpan, *, snapshots: int) -> MemoryEstimate:
    return MemoryEstimate(
        transactions=_rows(settings, "transactions"),
        events=_rows(settings, "events"),
        customers=_rows(settings, "customers"),
        known_customers=span.known_customers,
        snapshots=snapshots,
    )


def _bucket_features(
    settings: Settings,
    snapshots: list[pd.Timestamp],
    *,
    buckets: int,
    bucket: int,
    created: datetime,
    temp_directory: Path,
    identities: IdentityMap | None,
) -> pa.Table:
    """The feature rows of one customer bucket: DuckDB reads that bucket's rows of every table
    straight from the offline store (the predicate of `clv.core.store.read_table_bucket`; with
    identities, a customer's aliases are in its bucket)."""
    where = bucket_predicate(buckets, bucket, grouped=identities is not None)

    def source(table: TableName) -> _Source | None:
        path = table_path(settings, table)
        return _parquet_source(path, where=where) if path.exists() else None

    tx = _parquet_source(_require(settings, "transactions"), where=where)
    return _features_table(
        tx=tx,
        cust=source("customers"),
        ev=source("events"),
        snapshots=snapshots,
        margin_rate=settings.model.margin_rate,
        created=created,
        identities=identities,
        memory_limit_mb=settings.compute.memory_budget_mb,
        temp_directory=temp_directory,
    )


def _bucket_tables(
    settings: Settings,
    snapshots: list[pd.Timestamp],
    buckets: int,
    *,
    created: datetime,
    spill: Path,
    identities: IdentityMap | None,
) -> Iterator[pa.Table]:
    """Each bucket's feature rows, in bucket order, one bucket in memory at a time.

    In this process; or, with `compute.dask_scheduler` set and several buckets, computed on
    that cluster's workers, each writing its bucket to a Parquet part under `spill` (shared
    storage, like the offline store the workers read), and read back here one by one."""
    if settings.compute.dask_scheduler is None or buckets == 1:
        for bucket in range(buckets):
            yield _bucket_features(
                settings,
                snapshots,
                buckets=buckets,
                bucket=bucket,
                created=created,
                temp_directory=spill,
                identities=identities,
            )
        return
    from clv.core.compute import dask_client

    with dask_client(settings) as client:
        futures = client.map(
            _bucket_part,
            range(buckets),
            settings=settings,
            snapshots=snapshots,
            buckets=buckets,
            created=created,
            spill=spill,
            identities=identities,
            pure=False,
        )
        for future in futures:  # in bucket order: the file is the same as in process
            path = Path(future.result())
            yield pq.read_table(path)
            path.unlink()


def _bucket_part(
    bucket: int,
    *,
    settings: Settings,
    snapshots: list[pd.Timestamp],
    buckets: int,
    created: datetime,
    spill: Path,
    identities: IdentityMap | None,
) -> str:
    """On a Dask worker: one bucket's feature rows written to a part file; its path."""
    own = Path(tempfile.mkdtemp(prefix=f"bucket-{bucket:05d}-", dir=spill))
    table = _bucket_features(
        settings,
        snapshots,
        buckets=buckets,
        bucket=bucket,
        created=created,
        temp_directory=own,
        identities=identities,
    )
    path = spill / f"part-{bucket:05d}.parquet"
    pq.write_table(table, path)
    shutil.rmtree(own, ignore_errors=True)
    return str(path)


def build_features(
    settings: Settings,
    *,
    start: DateLike | None = None,
    end: DateLike | None = None,
    every: str | None = None,
    buckets: int | None = None,
) -> BuildResult:
    """Compute every snapshot from the ingested log and write the features Parquet file.

    Customer bucket by customer bucket: `buckets` disjoint buckets, one DuckDB query each,
    appended to one Parquet file that replaces the old one only when every bucket is written.
    `buckets` overrides the default, the memory estimate over `compute.memory_budget_mb`.
    """
    began = time.perf_counter()
    budget = settings.compute.memory_budget_mb
    span = _log_span(settings, memory_limit_mb=budget)
    snapshots = snapshot_dates(
        span.first,
        span.last,
        every=every or settings.features.snapshot_every,
        start=start,
        end=end,
    )
    if not snapshots:
        raise DataError(f"no snapshot dates between {start} and {end}: widen the range")
    estimate = _estimate(settings, span, snapshots=len(snapshots))
    chunks = estimate.buckets(budget_mb=budget) if buckets is None else buckets
    if chunks < 1:
        raise ConfigError(f"buckets must be at least 1, got {chunks}")
    created = datetime.now(UTC)
    identities = read_identities(settings)
    path = features_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    spill = Path(tempfile.mkdtemp(prefix="duckdb-spill-", dir=settings.state_dir))
    writer: pq.ParquetWriter | None = None
    rows = customers = 0
    try:
        tables = _bucket_tables(
            settings, snapshots, chunks, created=created, spill=spill, identities=identities
        )
        for table in tables:
            if writer is None:  # every bucket has the same schema, an empty one too
                writer = pq.ParquetWriter(tmp, table.schema)
            if table.num_rows:
                writer.write_table(table)
                rows += table.num_rows
                customers += len(pc.unique(table["customer_id"]))  # buckets are disjoint
            del table
    except BaseException:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)  # the previous build stays in place
        raise
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    assert writer is not None  # chunks >= 1
    writer.close()
    tmp.replace(path)
    return BuildResult(
        path=path,
        rows=rows,
        customers=customers,
        snapshots=snapshots,
        seconds=time.perf_counter() - began,
        chunks=chunks,
        estimate=estimate,
        memory_budget_mb=budget,
    )
