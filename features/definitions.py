"""The feature definitions: one DuckDB query that turns the raw log into snapshot rows.

The query reads the relations registered by the caller:
`tx(customer_id, ts, amount, margin, order_id)`, `cust(customer_id, signup_ts,
acquisition_channel, country, plan, valid_from, ingested_at, file_row_number)` (one row per
customer version, see `clv.inputs.versions`), `ev(customer_id, ts, event_type)`, `snaps(t)`
(snapshot instants, UTC midnights) and the identity intervals of `clv.inputs.identities.register`.
It returns one row per (customer known before t, t). Every snapshot instant is a UTC midnight,
so "a day before t" and "a row with ts < t" are the same thing: the query works on per-day
aggregates and only ever joins days strictly before t (no leakage); customer attributes are the
version in force strictly before t (an ASOF join on `in_force_from < t`).

Identities: the per-day aggregates of each id are filed under the customer it is at t
(`clv.inputs.identities.mapped_sql`: once per epoch (lo, hi] of its group, the same canonical
customer for every t in it) and summed again per (customer, lo, day); every later step keys on
(customer_id, lo), and a snapshot row (customer, t) joins the epoch with lo < t <= hi. Without
an identities table every id has one epoch (-infinity, infinity] and the numbers are those of
the ids alone.

The rules are documented in `clv.features.build`; the declarations that serve these columns are in
`feature_repo/features.py` (a unit test checks that both agree).
"""

from __future__ import annotations

from clv.inputs.identities import mapped_sql

WINDOWS: tuple[int, ...] = (30, 90, 180, 365)
"""Trailing windows (days) of the spend features."""

LAST_YEAR_WINDOW: tuple[int, int] = (365, 90)
"""margin_ly_90d: the margin in [t - 365 days, t - 275 days), the 90 days that began a year
before t (what the same quarter brought a year earlier)."""

CALENDAR_FEATURES: tuple[str, ...] = ("snapshot_month",)
"""Features that are the same for every customer of a snapshot (where t falls in the year):
drift monitoring never compares them, since a later snapshot always differs there."""

BEHAVIOUR_WINDOWS: tuple[int, int] = (30, 90)
"""Trailing windows (days) of the behaviour features; the trend compares the two."""

EVENT_TYPES: tuple[str, ...] = ("login", "support_ticket", "feature_use")
"""Event types counted by the behaviour features (others are ignored)."""

_EVENT_COLUMNS = {
    "login": "logins",
    "support_ticket": "support_tickets",
    "feature_use": "feature_use",
}


def _window_aggregates() -> str:
    parts = []
    for w in WINDOWS:
        since = f"g.t - INTERVAL {w} DAY"
        parts += [
            f"sum(d.spend) FILTER (WHERE d.day >= {since}) AS spend_{w}d",
            f"sum(d.margin) FILTER (WHERE d.day >= {since}) AS margin_{w}d",
            f"sum(d.orders) FILTER (WHERE d.day >= {since}) AS orders_{w}d",
            f"count(*) FILTER (WHERE d.day >= {since} AND d.orders > 0) AS active_days_{w}d",
            f"sum(d.refunds) FILTER (WHERE d.day >= {since}) AS refunds_{w}d",
        ]
    year, window = LAST_YEAR_WINDOW
    parts.append(
        f"sum(d.margin) FILTER (WHERE d.day >= g.t - INTERVAL {year} DAY "
        f"AND d.day < g.t - INTERVAL {year - window} DAY) AS margin_ly_{window}d"
    )
    return ",\n        ".join(parts)


def _window_columns() -> str:
    parts = []
    for w in WINDOWS:
        parts += [
            f"coalesce(w.spend_{w}d, 0.0)::DOUBLE AS spend_{w}d",
            f"coalesce(w.margin_{w}d, 0.0)::DOUBLE AS margin_{w}d",
            f"coalesce(w.orders_{w}d, 0)::BIGINT AS orders_{w}d",
            f"coalesce(w.active_days_{w}d, 0)::BIGINT AS active_days_{w}d",
            f"coalesce(w.refunds_{w}d, 0.0)::DOUBLE AS refunds_{w}d",
        ]
    return ",\n    ".join(parts)


def _per_event_type(*templates: str) -> list[str]:
    """`templates` filled in for each counted event type, in order: `{col}` its column,
    `{short}` and `{long}` the behaviour windows."""
    short, long = BEHAVIOUR_WINDOWS
    return [
        template.format(col=_EVENT_COLUMNS[kind], short=short, long=long)
        for kind in EVENT_TYPES
        for template in templates
    ]


def _event_aggregates() -> str:
    return ",\n        ".join(
        _per_event_type(
            "sum(e.{col}) FILTER (WHERE e.day >= g.t - INTERVAL {short} DAY) AS {col}_{short}d",
            "sum(e.{col}) AS {col}_{long}d",
        )
    )


def _event_columns() -> str:
    return ",\n    ".join(
        _per_event_type(
            "coalesce(b.{col}_{short}d, 0)::BIGINT AS {col}_{short}d",
            "coalesce(b.{col}_{long}d, 0)::BIGINT AS {col}_{long}d",
            # rate over the short window / rate over the long window; null without events
            "CASE WHEN coalesce(b.{col}_{long}d, 0) > 0 THEN "
            "(b.{col}_{short}d / {short}.0) / (b.{col}_{long}d / {long}.0) END::DOUBLE "
            "AS {col}_trend",
        )
    )


def _event_daily(identities: bool) -> str:
    """Event counts per customer, epoch and day (each id's own counts, then summed per
    canonical customer)."""
    counts = ", ".join(
        f"count(*) FILTER (WHERE event_type = '{kind}') AS {_EVENT_COLUMNS[kind]}"
        for kind in EVENT_TYPES
    )
    sums = ", ".join(f"sum({c}) AS {c}" for c in _EVENT_COLUMNS.values())
    own = f"(SELECT customer_id, date_trunc('day', ts) AS day, {counts} FROM ev GROUP BY ALL)"
    return _by_customer(own, ("day",), sums, identities=identities)


def _by_customer(source: str, keys: tuple[str, ...], aggregates: str, *, identities: bool) -> str:
    """Per-id rows of `source` as rows per customer and epoch (lo, hi): with identities, each
    id's rows filed under the customer it is in each epoch and aggregated again by
    (customer_id, lo, hi, `keys`); without, the rows as they are (their own customer's, in one
    epoch), so the query is the one of the ids alone. `aggregates` name their results after
    the source's columns."""
    mapped = mapped_sql(source, identities=identities)
    if not identities:
        return mapped
    columns = ", ".join(("customer_id", "lo", "hi", *keys, aggregates))
    return f"SELECT {columns} FROM ({mapped}) GROUP BY ALL"


def customer_versions_sql() -> str:
    """`versions`: each customer version and `in_force_from`, its version time (valid_from,
    else ingested_at), or -infinity for a customer's first version without valid_from;
    `signup`: the signup_ts of a customer's first version that has one.

    Rows of one customer and version time keep the last (`file_row_number`), as ingest does;
    a frame without valid_from and ingested_at holds one version per customer, its last row."""
    return """
slots AS (
    SELECT *, coalesce(valid_from, ingested_at) AS version_ts
    FROM cust
    QUALIFY row_number() OVER (
        PARTITION BY customer_id, version_ts ORDER BY file_row_number DESC) = 1
),
versions AS (
    SELECT
        customer_id, signup_ts, acquisition_channel, country, plan,
        row_number() OVER w AS version,
        CASE WHEN row_number() OVER w = 1 AND valid_from IS NULL
            THEN '-infinity'::TIMESTAMPTZ ELSE version_ts END AS in_force_from
    FROM slots
    WINDOW w AS (PARTITION BY customer_id ORDER BY version_ts NULLS FIRST)
),
signup AS (
    SELECT customer_id, arg_min(signup_ts, version) AS signup_ts
    FROM versions
    WHERE signup_ts IS NOT NULL
    GROUP BY customer_id
)"""


def known_customers_sql(*, identities: bool = False) -> str:
    """Customers known strictly before each snapshot: one of their ids signed up, or has a
    transaction; `grid` holds (customer_id, lo, first_ts, t) with t in the epoch (lo, hi]."""
    # every epoch is (-infinity, infinity] without identities: no range to test
    in_epoch = " AND s.t > f.lo AND s.t <= f.hi" if identities else ""
    return f"""{customer_versions_sql()},
first_own AS (
    SELECT customer_id, min(ts) AS first_ts
    FROM (
        SELECT customer_id, ts FROM tx
        UNION ALL
        SELECT customer_id, signup_ts AS ts FROM signup
    )
    GROUP BY customer_id
),
first_seen AS (
    {_by_customer("first_own", (), "min(first_ts) AS first_ts", identities=identities)}
),
grid AS (
    SELECT f.customer_id, f.lo, f.first_ts, s.t
    FROM first_seen f JOIN snaps s ON f.first_ts < s.t{in_epoch}
)"""


_DAILY_SUMS = (
    "sum(spend) AS spend, sum(margin) AS margin, sum(orders) AS orders, "
    "sum(purchase_value) AS purchase_value, sum(refunds) AS refunds, "
    "max(last_purchase_ts) AS last_purchase_ts"
)
"""A customer's day from its ids' days (orders stay distinct per id: summed)."""


def feature_sql(*, identities: bool = False) -> str:
    """The whole feature query (parameter `$margin_rate`, `$created`), rows in no order;
    `identities`: the caller registered the identity views (`clv.inputs.identities.register`).

    The caller sorts: DuckDB's ORDER BY over ~50 columns held the whole result twice (about
    40% more peak memory than the query itself) and doubled its time."""
    short, long = BEHAVIOUR_WINDOWS
    return f"""
WITH daily_own AS (
    SELECT
        customer_id,
        date_trunc('day', ts) AS day,
        sum(amount) AS spend,
        sum(coalesce(margin, amount * $margin_rate)) AS margin,
        -- distinct orders with a positive line; a row without order_id is an order of its own
        (count(DISTINCT order_id) FILTER (WHERE amount > 0)
            + count(*) FILTER (WHERE amount > 0 AND order_id IS NULL)) AS orders,
        coalesce(sum(amount) FILTER (WHERE amount > 0), 0.0) AS purchase_value,
        coalesce(-sum(amount) FILTER (WHERE amount < 0), 0.0) AS refunds,
        max(ts) FILTER (WHERE amount > 0) AS last_purchase_ts
    FROM tx
    GROUP BY ALL
),
daily AS (  -- per customer (aliases included), epoch and day
    {_by_customer("daily_own", ("day",), _DAILY_SUMS, identities=identities)}
),
purchase_days AS (
    SELECT
        customer_id, lo, day, purchase_value, last_purchase_ts,
        (epoch(day) - epoch(lag(day) OVER w)) / 86400.0 AS gap,
        row_number() OVER w = 1 AS is_first
    FROM daily
    WHERE orders > 0
    WINDOW w AS (PARTITION BY customer_id, lo ORDER BY day)
),
{known_customers_sql(identities=identities)},
windows AS (
    SELECT
        g.customer_id, g.t,
        {_window_aggregates()}
    FROM grid g JOIN daily d ON d.customer_id = g.customer_id AND d.lo = g.lo AND d.day < g.t
    GROUP BY ALL
),
rfm AS (
    SELECT
        g.customer_id, g.t,
        count(*) AS purchase_days,
        min(p.day) AS first_day,
        max(p.day) AS last_day,
        max(p.last_purchase_ts) AS last_ts,
        sum(p.purchase_value) FILTER (WHERE p.is_first) AS first_value,
        sum(p.purchase_value) AS total_value,
        avg(p.gap) AS gap_mean,
        stddev_samp(p.gap) AS gap_std
    FROM grid g JOIN purchase_days p
        ON p.customer_id = g.customer_id AND p.lo = g.lo AND p.day < g.t
    GROUP BY ALL
),
attributes AS (
    -- the version in force strictly before t; narrow, so that the ASOF sort is cheap
    SELECT g.customer_id, g.t, v.acquisition_channel, v.country, v.plan
    FROM grid g ASOF JOIN versions v ON v.customer_id = g.customer_id AND g.t > v.in_force_from
),
ev_daily AS ({_event_daily(identities)}),
behaviour AS (
    SELECT
        g.customer_id, g.t,
        {_event_aggregates()}
    FROM grid g JOIN ev_daily e
        ON e.customer_id = g.customer_id AND e.lo = g.lo
        AND e.day < g.t AND e.day >= g.t - INTERVAL {long} DAY
    GROUP BY ALL
)
SELECT
    g.customer_id::VARCHAR AS customer_id,
    g.t AS event_timestamp,
    $created::TIMESTAMPTZ AS created_timestamp,
    -- rfm (lifetimes conventions, days)
    greatest(coalesce(r.purchase_days, 0) - 1, 0)::BIGINT AS frequency,
    ((epoch(r.last_day) - epoch(r.first_day)) / 86400.0)::DOUBLE AS recency,
    ((epoch(g.t) - epoch(r.first_day)) / 86400.0)::DOUBLE AS T,
    CASE WHEN r.purchase_days > 1
        THEN (r.total_value - r.first_value) / (r.purchase_days - 1) ELSE 0.0 END::DOUBLE
        AS monetary_value,
    r.first_value::DOUBLE AS first_purchase_value,
    -- spend windows
    {_window_columns()},
    ((epoch(g.t) - epoch(r.last_ts)) / 86400.0)::DOUBLE AS days_since_last_purchase,
    r.gap_mean::DOUBLE AS gap_mean_days,
    r.gap_std::DOUBLE AS gap_std_days,
    CASE WHEN w.spend_365d > 0 THEN (coalesce(w.spend_90d, 0) / 90.0) / (w.spend_365d / 365.0)
        END::DOUBLE AS spend_trend_90_365,
    coalesce(w.margin_ly_{LAST_YEAR_WINDOW[1]}d, 0.0)::DOUBLE AS margin_ly_{LAST_YEAR_WINDOW[1]}d,
    -- customer profile
    ((epoch(g.t) - epoch(date_trunc('day', g.first_ts))) / 86400)::BIGINT AS tenure_days,
    strftime(g.first_ts, '%Y-%m') AS signup_cohort,
    c.acquisition_channel::VARCHAR AS acquisition_channel,
    c.country::VARCHAR AS country,
    c.plan::VARCHAR AS plan,
    -- behaviour ({short} vs {long} days)
    {_event_columns()},
    -- calendar
    month(g.t)::BIGINT AS snapshot_month
FROM grid g
LEFT JOIN rfm r ON r.customer_id = g.customer_id AND r.t = g.t
LEFT JOIN windows w ON w.customer_id = g.customer_id AND w.t = g.t
LEFT JOIN behaviour b ON b.customer_id = g.customer_id AND b.t = g.t
LEFT JOIN attributes c ON c.customer_id = g.customer_id AND c.t = g.t  -- no version yet: nulls
"""


def snapshot_entities_sql(*, identities: bool = False) -> str:
    """Every customer known strictly before each snapshot, as Feast entity rows."""
    return f"""
WITH {known_customers_sql(identities=identities).strip()}
SELECT customer_id::VARCHAR AS customer_id, t AS event_timestamp
FROM grid
ORDER BY t, customer_id
"""
