"""Feature snapshots: every customer known at each snapshot date, from the raw log before it.

`build_features` writes `<ws>/.clv/offline/features/customer_features.parquet`, the file behind
the Feast FileSource, with `customer_id`, `event_timestamp` (= the snapshot instant t),
`created_timestamp` (when the build ran) and every feature of the FeatureService `clv_v1`.
The SQL is in `features.definitions`; it is one DuckDB query over a snapshot calendar.

Rules (the model and the baseline depend on them; change them only with a new service):
- UTC everywhere. Snapshot instants are UTC midnights; a snapshot at t uses only rows with
  ts < t (strictly before: no leakage). Timestamps are stored with microsecond precision.
- Snapshots: every `settings.features.snapshot_every` ("Nd", "Nw" or "NM"); month spacing is
  aligned to the first day of a month. By default from the first month after the log starts to
  the first calendar point after the last transaction, so the last snapshot sees the whole log.
- A customer is known at t when they signed up, or have any transaction, strictly before t.
  Known customers get a row at every later snapshot, purchases or not.
- Purchases: a purchase day is a UTC day with at least one transaction with amount > 0.
  Refunds (amount < 0) count in spend (net) and in `refunds_*` (as a positive amount); they are
  never purchase days. Margin is the `margin` column, else amount x `model.margin_rate`.
- RFM follows lifetimes (`summary_data_from_transaction_data`, daily periods):
  frequency = purchase days - 1 (repeat purchase days); recency = days from the first to the
  last purchase day; T = days from the first purchase day to t; monetary_value = mean purchase
  value of the repeat purchase days (the first day excluded); first_purchase_value = purchase
  value of the first purchase day. Single-purchase customers: frequency 0, monetary_value 0.
  Customers without a purchase yet: frequency 0, monetary_value 0, and recency, T,
  first_purchase_value, days_since_last_purchase null (missing, not "just bought").
- Windows of W days cover [t - W days, t). orders = transactions with amount > 0; active days =
  purchase days. spend_trend_90_365 = (spend_90d / 90) / (spend_365d / 365), null when the
  365-day spend is not positive. Inter-purchase gaps are days between consecutive purchase
  days: mean null below 2 purchase days, sample std null below 3.
- Profile: tenure_days = whole days from the day the customer became known (signup or first
  transaction, whichever is earlier) to t; signup_cohort = that day's "YYYY-MM". Channel,
  country and plan come from the customers table as static attributes (null without it).
- Behaviour: counts of `login`, `support_ticket`, `feature_use` events in the last 30 and 90
  days (0 without an events table); *_trend = (30-day rate) / (90-day rate), null without
  events in 90 days.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clv.contracts import TS_DTYPE
from clv.errors import ConfigError, DataError
from clv.settings import Settings
from clv.store import has_table, read_table
from features.definitions import feature_sql, snapshot_entities_sql

FEATURES_FILE = "customer_features.parquet"
"""File name of the feature snapshots inside `Settings.features_dir`."""

_EVERY = re.compile(r"^\s*(\d+)\s*([dwM])\s*$")

DateLike = date | datetime | str


@dataclass(frozen=True)
class BuildResult:
    """What a build wrote."""

    path: Path
    rows: int
    customers: int
    snapshots: list[pd.Timestamp]
    seconds: float


def features_path(settings: Settings) -> Path:
    """Where the feature snapshots live (the Feast FileSource resolves to this file)."""
    return settings.features_dir / FEATURES_FILE


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


def _frame(settings: Settings, table: str) -> pd.DataFrame | None:
    if table == "transactions":
        return read_table(settings, "transactions")
    if table == "customers" and has_table(settings, "customers"):
        return read_table(settings, "customers")
    if table == "events" and has_table(settings, "events"):
        return read_table(settings, "events")
    return None


def _utc(col: pd.Series) -> pd.Series:
    ts = pd.to_datetime(col, utc=True)
    return ts.astype(TS_DTYPE)


def _inputs(
    transactions: pd.DataFrame,
    customers: pd.DataFrame | None,
    events: pd.DataFrame | None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The three relations in the exact shape the SQL reads (types fixed, optional parts filled)."""
    tx = pd.DataFrame(
        {
            "customer_id": transactions["customer_id"].astype(str),
            "ts": _utc(transactions["ts"]),
            "amount": pd.to_numeric(transactions["amount"]).astype("float64"),
            "margin": (
                pd.to_numeric(transactions["margin"]).astype("float64")
                if "margin" in transactions.columns
                else pd.Series(float("nan"), index=transactions.index)
            ),
        }
    )
    cust_cols = ("acquisition_channel", "country", "plan")
    if customers is None:
        customers = pd.DataFrame({"customer_id": pd.Series(dtype=str)})
    cust = pd.DataFrame({"customer_id": customers["customer_id"].astype(str)})
    cust["signup_ts"] = (
        _utc(customers["signup_ts"])
        if "signup_ts" in customers.columns
        else pd.Series(pd.NaT, index=customers.index, dtype=TS_DTYPE)
    )
    for col in cust_cols:
        cust[col] = customers[col].astype("string") if col in customers.columns else pd.NA
        cust[col] = cust[col].astype("string")
    cust = cust.drop_duplicates("customer_id", keep="last")
    if events is None:
        events = pd.DataFrame(
            {
                "customer_id": pd.Series(dtype=str),
                "ts": pd.Series(dtype=TS_DTYPE),
                "event_type": pd.Series(dtype=str),
            }
        )
    ev = pd.DataFrame(
        {
            "customer_id": events["customer_id"].astype(str),
            "ts": _utc(events["ts"]),
            "event_type": events["event_type"].astype(str),
        }
    )
    return tx, cust, ev


def _connect(
    tx: pd.DataFrame, cust: pd.DataFrame, ev: pd.DataFrame, snapshots: list[pd.Timestamp]
) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    snaps = pd.DataFrame({"t": pd.Series(snapshots, dtype="datetime64[ns, UTC]").astype(TS_DTYPE)})
    for name, frame in (("tx", tx), ("cust", cust), ("ev", ev), ("snaps", snaps)):
        con.register(name, frame)
    return con


def compute_features_arrow(
    transactions: pd.DataFrame,
    customers: pd.DataFrame | None,
    events: pd.DataFrame | None,
    snapshots: list[pd.Timestamp],
    *,
    margin_rate: float,
    created: datetime | None = None,
) -> pa.Table:
    """The feature rows as an Arrow table (UTC microsecond timestamps); see the module rules."""
    if any(t != t.floor("D") for t in snapshots):
        raise DataError("snapshot instants must be UTC midnights")
    tx, cust, ev = _inputs(transactions, customers, events)
    created_at = to_utc(created or datetime.now(UTC))
    con = _connect(tx, cust, ev, snapshots)
    try:
        params = {"margin_rate": margin_rate, "created": created_at.to_pydatetime()}
        relation = con.sql(feature_sql(), params=params)
        assert relation is not None
        table = relation.to_arrow_table()
    finally:
        con.close()
    return _microseconds(table)


def compute_features(
    transactions: pd.DataFrame,
    customers: pd.DataFrame | None,
    events: pd.DataFrame | None,
    snapshots: list[pd.Timestamp],
    *,
    margin_rate: float,
    created: datetime | None = None,
) -> pd.DataFrame:
    """The feature rows as a pandas frame (one row per known customer and snapshot)."""
    table = compute_features_arrow(
        transactions, customers, events, snapshots, margin_rate=margin_rate, created=created
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
) -> pd.DataFrame:
    """customer_id + event_timestamp (= as_of) for every customer known strictly before as_of."""
    tx, cust, ev = _inputs(transactions, customers, None)
    con = _connect(tx, cust, ev, [to_utc(as_of)])
    try:
        frame = con.execute(snapshot_entities_sql()).df()
    finally:
        con.close()
    frame["customer_id"] = frame["customer_id"].astype(str)
    frame["event_timestamp"] = frame["event_timestamp"].astype(TS_DTYPE)
    return frame


def build_features(
    settings: Settings,
    *,
    start: DateLike | None = None,
    end: DateLike | None = None,
    every: str | None = None,
) -> BuildResult:
    """Compute every snapshot from the ingested log and write the features Parquet file."""
    began = time.perf_counter()
    transactions = read_table(settings, "transactions")
    if transactions.empty:
        raise DataError("the transactions table is empty: ingest some transactions first")
    customers = _frame(settings, "customers")
    events = _frame(settings, "events")
    ts = _utc(transactions["ts"])
    snapshots = snapshot_dates(
        ts.min(),
        ts.max(),
        every=every or settings.features.snapshot_every,
        start=start,
        end=end,
    )
    if not snapshots:
        raise DataError(f"no snapshot dates between {start} and {end}: widen the range")
    table = compute_features_arrow(
        transactions, customers, events, snapshots, margin_rate=settings.model.margin_rate
    )
    path = features_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    customers_n = len(pc.unique(table["customer_id"])) if table.num_rows else 0
    return BuildResult(
        path=path,
        rows=table.num_rows,
        customers=customers_n,
        snapshots=snapshots,
        seconds=time.perf_counter() - began,
    )
