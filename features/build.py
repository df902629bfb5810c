"""Feature snapshots: every customer known at each snapshot date, from the raw log before it.

`build_features` writes `<ws>/.clv/offline/features/customer_features.parquet`, the file behind
the Feast FileSource, with `customer_id`, `event_timestamp` (= the snapshot instant t),
`created_timestamp` (when the build ran) and every feature of the FeatureService `clv_v1`.
The SQL is in `clv.features.definitions`; it is one DuckDB query over a snapshot calendar
(`clv.features.calendar`), run by `clv.features.query` over the inputs of `clv.features.sources`,
bucket by bucket (`clv.features.buckets`); `clv.features.snapshots` finds the built file.

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
hashes each id's group, every id ever linked to it, so no customer's ids are split) and appends
each bucket's rows to one Parquet file. The bucket count is the estimated memory of a one-shot
build (`clv.features.memory.MemoryEstimate`: Parquet row counts and a streaming distinct count
of customer ids, no table loaded) divided by `settings.compute.memory_budget_mb`, rounded up.
DuckDB reads a bucket's rows straight from the offline store's Parquet files (no pandas copy:
with one, the 10M-row benchmark world peaked at 3.3 GiB instead of 2.2), and its memory limit
is the budget, so above it DuckDB spills to a temporary directory in the workspace instead of
failing. The interpreter and its imports (~130 MiB) come on top of the budget. One code path
for one bucket and for many; the result is the same rows (the file holds them bucket after
bucket, each sorted by snapshot and customer).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clv.core.errors import ConfigError, DataError
from clv.core.settings import Settings
from clv.core.time import DateLike
from clv.features.buckets import BucketJob, bucket_tables
from clv.features.calendar import snapshot_dates
from clv.features.memory import MemoryEstimate
from clv.features.offline import log_span, memory_estimate
from clv.features.snapshots import features_path
from clv.inputs.identities import read_identities

RangeEnd = DateLike | None
"""An end of the snapshot range a build computes; None: that end of the log."""


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


def build_features(
    settings: Settings,
    *,
    start: RangeEnd = None,
    end: RangeEnd = None,
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
    span = log_span(settings, memory_limit_mb=budget)
    snapshots = snapshot_dates(
        span.first,
        span.last,
        every=every or settings.features.snapshot_every,
        start=start,
        end=end,
    )
    if not snapshots:
        raise DataError(f"no snapshot dates between {start} and {end}: widen the range")
    estimate = memory_estimate(settings, span, snapshots=len(snapshots))
    chunks = estimate.buckets(budget_mb=budget) if buckets is None else buckets
    if chunks < 1:
        raise ConfigError(f"buckets must be at least 1, got {chunks}")
    job = BucketJob(
        settings,
        snapshots,
        chunks,
        created=datetime.now(UTC),
        identities=read_identities(settings),
    )
    path = features_path(settings)
    rows, customers = _write(job, path)
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


def _write(job: BucketJob, path: Path) -> tuple[int, int]:
    """Append each bucket's rows to a temporary Parquet file that replaces `path` only when
    every bucket is written (on a failure the previous build stays); (rows, customers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    spill = Path(tempfile.mkdtemp(prefix="duckdb-spill-", dir=job.settings.state_dir))
    writer: pq.ParquetWriter | None = None
    rows = customers = 0
    try:
        for table in bucket_tables(job, spill=spill):
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
    assert writer is not None  # buckets >= 1
    writer.close()
    tmp.replace(path)
    return rows, customers
