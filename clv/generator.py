"""A seeded generator of believable customers: transactions, customer attributes and events.

The purchase process is Pareto/NBD (Schmittlein, Morrison & Colombo 1987): while alive, a
customer buys as a Poisson process with rate lambda ~ Gamma(r, alpha) and lives an exponential
lifetime with rate mu ~ Gamma(s, beta). Spend follows Gamma-Gamma (Fader, Hardie & Lee 2005,
eq. 1-2): order value z ~ Gamma(p, nu), nu ~ Gamma(q, gamma), so E[z | nu] = p / nu. On top:
growing monthly signup cohorts, acquisition channels of different value, seasonality (a
November/December peak), refunds, margins, and behaviour events that fade in the weeks before
a customer churns while support tickets rise.

Time-varying rates (seasonality, scenarios, the pre-churn fade) are sampled by thinning
(Lewis & Shedler 1979): candidates come from a homogeneous process at an upper-bound rate and
are kept with probability rate(t) / bound. Candidate counts and every random draw depend only
on things a scenario does not change, so the same seed gives identical rows before the change
date in every scenario; only what happens after it differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt
import pandas as pd

from clv.contracts import TS_DTYPE, RejectReason, TableName
from clv.errors import DataError

Scenario = Literal["baseline", "price_increase", "channel_shift", "engagement_drop"]
SCENARIOS: tuple[Scenario, ...] = get_args(Scenario)
RawFormat = Literal["csv", "parquet"]
DEFAULT_START = "2023-01-01"

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_US_PER_DAY = 86_400_000_000


@dataclass(frozen=True)
class Channel:
    """An acquisition channel: its share of signups and multipliers on rate, spend, dropout."""

    name: str
    share: float
    rate: float
    spend: float
    dropout: float


CHANNELS: tuple[Channel, ...] = (
    Channel("organic", 0.34, 1.00, 1.00, 1.00),
    Channel("paid_search", 0.26, 0.90, 1.00, 1.25),
    Channel("social", 0.18, 0.70, 0.80, 1.60),
    Channel("referral", 0.12, 1.35, 1.20, 0.65),
    Channel("affiliate", 0.10, 0.55, 0.70, 2.00),
)
SHIFTED_CHANNEL = "affiliate"
SHIFTED_SHARE = 0.45
"""channel_shift: after the change date this low-value channel brings this share of signups."""

PLANS: tuple[tuple[str, float, float, float], ...] = (
    # name, share, purchase-rate multiplier, spend multiplier
    ("free", 0.50, 0.80, 0.90),
    ("basic", 0.35, 1.00, 1.00),
    ("premium", 0.15, 1.40, 1.30),
)
COUNTRIES: tuple[tuple[str, float], ...] = (
    ("US", 0.38),
    ("GB", 0.14),
    ("DE", 0.12),
    ("FR", 0.09),
    ("CA", 0.08),
    ("AU", 0.06),
    ("NL", 0.05),
    ("ES", 0.05),
    ("SE", 0.03),
)
SALES_CHANNELS: tuple[tuple[str, float], ...] = (("web", 0.55), ("app", 0.30), ("store", 0.15))

# Pareto/NBD heterogeneity, time in days: lambda ~ Gamma(R, scale 1/ALPHA), mean R/ALPHA per day;
# mu ~ Gamma(S, scale 1/BETA); the median lifetime is BETA * (2**(1/S) - 1) ~ 320 days.
R, ALPHA = 0.9, 18.0
S, BETA = 1.5, 550.0
# Gamma-Gamma spend: E[z] = P * GAMMA / (Q - 1) ~ 48 per order.
P, Q, GAMMA = 6.0, 3.5, 20.0
FIRST_PURCHASE_SHARE = 0.92
"""Share of customers whose signup is also their first order (time zero of Pareto/NBD)."""

SEASON = np.array([0.90, 0.85, 0.95, 1.0, 1.0, 0.95, 0.95, 1.0, 1.0, 1.05, 1.35, 1.60])
"""Purchase-rate multiplier by month of year (January first): the November/December peak."""
SIGNUP_SEASON = np.array([1.15, 1.0, 1.0, 1.0, 1.0, 0.95, 0.9, 0.95, 1.05, 1.05, 1.2, 1.1])
COHORT_GROWTH = 0.04
"""Signups grow by this share per month."""

REFUND_SHARE = 0.035
MARGIN_MEAN, MARGIN_SD = 0.30, 0.06

# Events per day while alive; fade to FADE_FLOOR (logins, feature use) or rise to SUPPORT_PEAK
# (support tickets) over the PRECHURN_DAYS before churn.
EVENT_RATES: tuple[tuple[str, float], ...] = (
    ("login", 0.10),
    ("feature_use", 0.06),
    ("support_ticket", 0.004),
)
PRECHURN_DAYS = 60.0
FADE_FLOOR = 0.2
SUPPORT_PEAK = 3.0

# Scenario effects after the change date.
PRICE_FACTOR = 1.15
PRICE_RATE_FACTOR = 0.80
ENGAGEMENT_FACTOR = 0.55
CHURN_HAZARD_FACTOR = 1.8


@dataclass(frozen=True, eq=False)
class GeneratedData:
    """Three raw tables matching clv/contracts.py, plus the hidden truth behind them.

    `truth` (one row per customer: lambda, mu, mean spend, churn_ts if churned in the period)
    is for tests and evaluation; it is never written as raw data.
    """

    transactions: pd.DataFrame
    customers: pd.DataFrame
    events: pd.DataFrame
    truth: pd.DataFrame
    scenario: Scenario
    seed: int
    start: pd.Timestamp
    end: pd.Timestamp
    change_date: pd.Timestamp

    def tables(self) -> dict[TableName, pd.DataFrame]:
        return {
            "transactions": self.transactions,
            "customers": self.customers,
            "events": self.events,
        }


def _utc(value: pd.Timestamp | str) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def period(
    *,
    months: int,
    start: pd.Timestamp | str = DEFAULT_START,
    change_date: pd.Timestamp | str | None,
) -> tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp]:
    """(start, end, change date): end is `months` after start; the change defaults to 2/3 in."""
    t0 = _utc(start)
    end = t0 + pd.DateOffset(months=months)
    if change_date is None:
        change = t0 + pd.DateOffset(months=(2 * months) // 3)
    else:
        change = _utc(change_date)
    if not t0 <= change <= end:
        span = f"{t0.date()}..{end.date()}"
        raise DataError(f"change date {change.date()} is outside the period {span}")
    return t0, end, change


def _season(days: FloatArray, start_us: int) -> FloatArray:
    months = ((start_us + days * _US_PER_DAY).astype("datetime64[us]")).astype("datetime64[M]")
    return SEASON[months.astype(np.int64) % 12]


def _pick(u: FloatArray, probs: FloatArray) -> IntArray:
    """Inverse-CDF choice: the index of the category each uniform draw falls into."""
    cdf = np.cumsum(probs / probs.sum())
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(probs) - 1).astype(np.int64)


def _candidates(
    rng: np.random.Generator, rate: FloatArray, begin: FloatArray, end: float
) -> tuple[IntArray, FloatArray]:
    """A homogeneous Poisson process per customer on [begin, end): (customer index, time)."""
    window = np.maximum(end - begin, 0.0)
    counts = rng.poisson(rate * window)
    idx = np.repeat(np.arange(len(rate), dtype=np.int64), counts)
    t = begin[idx] + rng.random(len(idx)) * window[idx]
    return idx, t


def _ts(days: FloatArray, start_us: int) -> pd.Series:
    us = start_us + np.floor(days * _US_PER_DAY).astype(np.int64)
    return pd.Series(us.astype("datetime64[us]")).dt.tz_localize("UTC").astype(TS_DTYPE)


def _ids(prefix: str, numbers: IntArray, width: int) -> npt.NDArray[np.object_]:
    width = max(width, len(str(int(numbers.max()) if len(numbers) else 0)))
    text = pd.Series(numbers).astype(str).str.zfill(width)
    return (prefix + text).to_numpy(dtype=object)


def generate(
    *,
    customers: int,
    months: int,
    seed: int,
    scenario: Scenario = "baseline",
    start: pd.Timestamp | str = DEFAULT_START,
    change_date: pd.Timestamp | str | None = None,
) -> GeneratedData:
    """Generate `customers` customers signing up over `months` months from `start` (seeded)."""
    if customers < 1 or months < 1:
        raise DataError("generate needs at least 1 customer and 1 month")
    if scenario not in SCENARIOS:
        raise DataError(f"unknown scenario {scenario!r}: choose one of {', '.join(SCENARIOS)}")
    t0, t_end, t_change = period(months=months, start=start, change_date=change_date)
    start_us = int(t0.value // 1000)
    end = (t_end - t0) / pd.Timedelta(days=1)
    change = (t_change - t0) / pd.Timedelta(days=1)
    n = customers
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)]
    rng_cust, rng_buy, rng_spend, rng_refund, rng_event, rng_first = streams

    # Customers: growing monthly cohorts, uniform within the month.
    bounds = np.array(
        [((t0 + pd.DateOffset(months=m)) - t0) / pd.Timedelta(days=1) for m in range(months + 1)]
    )
    first_month = t0.month - 1
    cohort_w = (1 + COHORT_GROWTH) ** np.arange(months) * SIGNUP_SEASON[
        (first_month + np.arange(months)) % 12
    ]
    month = _pick(rng_cust.random(n), cohort_w)
    signup = np.sort(bounds[month] + rng_cust.random(n) * (bounds[month + 1] - bounds[month]))
    u_channel = rng_cust.random(n)
    country = _pick(rng_cust.random(n), np.array([c[1] for c in COUNTRIES]))
    plan = _pick(rng_cust.random(n), np.array([p[1] for p in PLANS]))
    lam = rng_cust.gamma(R, 1.0 / ALPHA, n)
    mu = rng_cust.gamma(S, 1.0 / BETA, n)
    nu = rng_cust.gamma(Q, 1.0 / GAMMA, n)
    life_draw = rng_cust.exponential(1.0, n)
    engagement = rng_cust.gamma(2.0, 0.5, n) * np.clip(lam / (R / ALPHA), 0.2, 5.0) ** 0.3
    preferred = _pick(rng_cust.random(n), np.array([c[1] for c in SALES_CHANNELS]))

    base_mix = np.array([c.share for c in CHANNELS])
    channel = _pick(u_channel, base_mix)
    if scenario == "channel_shift":
        k = [c.name for c in CHANNELS].index(SHIFTED_CHANNEL)
        shifted = base_mix.copy()
        shifted[k] = 0.0
        shifted = shifted / shifted.sum() * (1 - SHIFTED_SHARE)
        shifted[k] = SHIFTED_SHARE
        after = signup >= change
        channel[after] = _pick(u_channel[after], shifted)
    ch_rate = np.array([c.rate for c in CHANNELS])[channel]
    ch_spend = np.array([c.spend for c in CHANNELS])[channel]
    ch_drop = np.array([c.dropout for c in CHANNELS])[channel]
    plan_rate = np.array([p[2] for p in PLANS])[plan]
    plan_spend = np.array([p[3] for p in PLANS])[plan]

    # Lifetime ~ Exp(mu x channel dropout); engagement_drop multiplies the hazard after the
    # change date (memoryless: the remaining life shrinks by the factor).
    death = signup + life_draw / (mu * ch_drop)
    if scenario == "engagement_drop":
        pivot = np.maximum(signup, change)
        late = death > pivot
        death[late] = pivot[late] + (death[late] - pivot[late]) / CHURN_HAZARD_FACTOR

    # Repeat purchases by thinning; the bound does not depend on the (scenario-dependent) channel.
    bound = ch_rate.max() * SEASON.max()
    idx, t = _candidates(rng_buy, lam * plan_rate * bound, signup, end)
    u_keep = rng_buy.random(len(idx))
    u_sales = rng_buy.random(len(idx))
    u_sales_pick = rng_buy.random(len(idx))
    z = rng_spend.gamma(P, 1.0, len(idx)) / nu[idx]
    margin_rate = rng_spend.normal(MARGIN_MEAN, MARGIN_SD, len(idx))
    u_refund = rng_refund.random(len(idx))
    refund_delay = rng_refund.uniform(1.0, 30.0, len(idx))
    accept = ch_rate[idx] * _season(t, start_us)
    if scenario == "price_increase":
        accept = np.where(t >= change, accept * PRICE_RATE_FACTOR, accept)
    keep = (u_keep * bound < accept) & (t < death[idx])

    # First orders at signup (time zero of Pareto/NBD).
    has_first = rng_first.random(n) < FIRST_PURCHASE_SHARE
    f_sales = rng_first.random(n)
    f_sales_pick = rng_first.random(n)
    f_z = rng_first.gamma(P, 1.0, n) / nu
    f_margin = rng_first.normal(MARGIN_MEAN, MARGIN_SD, n)
    f_refund = rng_first.random(n)
    f_delay = rng_first.uniform(1.0, 30.0, n)

    o_cust = np.concatenate([np.flatnonzero(has_first), idx[keep]])
    o_t = np.concatenate([signup[has_first], t[keep]])
    o_z = np.concatenate([f_z[has_first], z[keep]])
    o_margin = np.concatenate([f_margin[has_first], margin_rate[keep]])
    o_u_sales = np.concatenate([f_sales[has_first], u_sales[keep]])
    o_u_pick = np.concatenate([f_sales_pick[has_first], u_sales_pick[keep]])
    o_refund = np.concatenate([f_refund[has_first], u_refund[keep]])
    o_delay = np.concatenate([f_delay[has_first], refund_delay[keep]])

    order = np.lexsort((o_cust, o_t))
    o_cust, o_t, o_z, o_margin = o_cust[order], o_t[order], o_z[order], o_margin[order]
    o_u_sales, o_u_pick = o_u_sales[order], o_u_pick[order]
    o_refund, o_delay = o_refund[order], o_delay[order]

    price = np.where(o_t >= change, PRICE_FACTOR, 1.0) if scenario == "price_increase" else 1.0
    amount = np.maximum(np.round(o_z * ch_spend[o_cust] * plan_spend[o_cust] * price, 2), 1.0)
    margin = np.round(amount * np.clip(o_margin, 0.05, 0.6), 2)
    sales = np.where(
        o_u_sales < 0.75,
        preferred[o_cust],
        _pick(o_u_pick, np.array([c[1] for c in SALES_CHANNELS])),
    )
    order_id = _ids("O", np.arange(1, len(o_t) + 1, dtype=np.int64), 8)

    refund = (o_refund < REFUND_SHARE) & (o_t + o_delay < end)
    r_t = o_t[refund] + o_delay[refund]
    all_cust = np.concatenate([o_cust, o_cust[refund]])
    all_t = np.concatenate([o_t, r_t])
    tx_order = np.lexsort((all_cust, all_t))
    cust_ids = _ids("C", np.arange(1, n + 1, dtype=np.int64), 6)
    sales_names = np.array([c[0] for c in SALES_CHANNELS], dtype=object)
    transactions = pd.DataFrame(
        {
            "customer_id": cust_ids[all_cust[tx_order]],
            "ts": _ts(all_t[tx_order], start_us),
            "amount": np.concatenate([amount, -amount[refund]])[tx_order],
            "margin": np.concatenate([margin, -margin[refund]])[tx_order],
            "order_id": np.concatenate([order_id, order_id[refund]])[tx_order],
            "channel": np.concatenate([sales_names[sales], sales_names[sales][refund]])[tx_order],
        }
    )

    customers_frame = pd.DataFrame(
        {
            "customer_id": cust_ids,
            "signup_ts": _ts(signup, start_us),
            "acquisition_channel": np.array([c.name for c in CHANNELS], dtype=object)[channel],
            "country": np.array([c[0] for c in COUNTRIES], dtype=object)[country],
            "plan": np.array([p[0] for p in PLANS], dtype=object)[plan],
        }
    )

    events = _events(
        rng_event,
        signup=signup,
        death=death,
        engagement=engagement,
        end=end,
        change=change,
        scenario=scenario,
    )
    ev_order = np.lexsort((events[0], events[1]))
    events_frame = pd.DataFrame(
        {
            "customer_id": cust_ids[events[0][ev_order]],
            "ts": _ts(events[1][ev_order], start_us),
            "event_type": events[2][ev_order],
        }
    )

    churned = death < end
    truth = pd.DataFrame(
        {
            "customer_id": cust_ids,
            "purchase_rate": lam * plan_rate * ch_rate,
            "dropout_rate": mu * ch_drop,
            "mean_spend": P / nu * ch_spend * plan_spend,
            "churn_ts": _ts(np.where(churned, death, 0.0), start_us).where(churned),
        }
    )
    return GeneratedData(
        transactions=transactions,
        customers=customers_frame,
        events=events_frame,
        truth=truth,
        scenario=scenario,
        seed=seed,
        start=t0,
        end=t_end,
        change_date=t_change,
    )


def _events(
    rng: np.random.Generator,
    *,
    signup: FloatArray,
    death: FloatArray,
    engagement: FloatArray,
    end: float,
    change: float,
    scenario: Scenario,
) -> tuple[IntArray, FloatArray, npt.NDArray[np.object_]]:
    """Behaviour events by thinning: logins and feature use fade before churn, tickets rise."""
    out_idx: list[IntArray] = []
    out_t: list[FloatArray] = []
    out_type: list[npt.NDArray[np.object_]] = []
    for name, rate in EVENT_RATES:
        support = name == "support_ticket"
        peak = SUPPORT_PEAK if support else 1.0
        idx, t = _candidates(rng, engagement * rate * peak, signup, end)
        u = rng.random(len(idx))
        left = death[idx] - t
        closeness = np.clip(1.0 - left / PRECHURN_DAYS, 0.0, 1.0)
        if support:
            level = 1.0 + (SUPPORT_PEAK - 1.0) * closeness
        else:
            level = 1.0 - (1.0 - FADE_FLOOR) * closeness
            if scenario == "engagement_drop":
                level = np.where(t >= change, level * ENGAGEMENT_FACTOR, level)
        keep = (u * peak < level) & (left > 0)
        out_idx.append(idx[keep])
        out_t.append(t[keep])
        out_type.append(np.full(int(keep.sum()), name, dtype=object))
    return np.concatenate(out_idx), np.concatenate(out_t), np.concatenate(out_type)


def _ts_text(series: pd.Series) -> npt.NDArray[np.str_]:
    values = series.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    return np.datetime_as_string(values, unit="us", timezone="UTC")


def write_raw(
    data: GeneratedData, out_dir: Path | str, *, fmt: RawFormat = "csv"
) -> dict[TableName, Path]:
    """Write the three raw tables as `<out_dir>/<table>.<fmt>`; CSV timestamps are ISO 8601 Z."""
    if fmt not in ("csv", "parquet"):
        raise DataError(f"unknown format {fmt!r}: choose csv or parquet")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[TableName, Path] = {}
    for table, frame in data.tables().items():
        path = out / f"{table}.{fmt}"
        tmp = path.with_name(path.name + ".tmp")
        if fmt == "parquet":
            frame.to_parquet(tmp, index=False)
        else:
            text = frame.copy()
            for col in text.columns:
                if isinstance(text[col].dtype, pd.DatetimeTZDtype):
                    text[col] = _ts_text(text[col])
            text.to_csv(tmp, index=False)
        tmp.replace(path)
        paths[table] = path
    return paths


CORRUPTION_KINDS = (
    RejectReason.MISSING_ID,
    RejectReason.BAD_TIMESTAMP,
    RejectReason.FUTURE_TIMESTAMP,
    RejectReason.BAD_AMOUNT,
    RejectReason.DUPLICATE,
)


def corrupted_transactions_csv(path: Path, *, rows: int, seed: int = 5) -> dict[str, int]:
    """A transactions CSV with 1% bad rows (0.2% per kind), to exercise ingest at scale.

    Returns the count per quarantine reason. Valid rows have unique order ids. Corrupted rows
    sit at odd positions, never next to each other, so a duplicate always copies a valid row.
    Used by the 1M-row ingest test and the `ingest_1m` benchmark.
    """
    rng = np.random.default_rng(seed)
    base = np.datetime64("2023-01-01T00:00:00", "s").astype(np.int64)
    ts = pd.to_datetime(base + rng.integers(0, 365 * 86_400, rows), unit="s", utc=True)
    frame = pd.DataFrame(
        {
            "customer_id": np.char.add("C", rng.integers(0, 100_000, rows).astype(str)),
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "amount": np.round(rng.lognormal(3.5, 0.8, rows), 2).astype(str),
            "order_id": np.char.add("O", np.arange(rows).astype(str)),
        }
    )
    per_kind = rows // 100 // len(CORRUPTION_KINDS)
    chosen = 1 + 2 * rng.choice(
        (rows - 1) // 2, size=per_kind * len(CORRUPTION_KINDS), replace=False
    )
    for k, kind in enumerate(CORRUPTION_KINDS):
        at = chosen[k * per_kind : (k + 1) * per_kind]
        if kind is RejectReason.MISSING_ID:
            frame.loc[at, "customer_id"] = ""
        elif kind is RejectReason.BAD_TIMESTAMP:
            frame.loc[at, "ts"] = "not-a-date"
        elif kind is RejectReason.FUTURE_TIMESTAMP:
            frame.loc[at, "ts"] = "2099-01-01T00:00:00Z"
        elif kind is RejectReason.BAD_AMOUNT:
            frame.loc[at, "amount"] = "12,5O"
        else:
            frame.iloc[at] = frame.iloc[at - 1].to_numpy()
    frame.to_csv(path, index=False)
    return {kind.value: per_kind for kind in CORRUPTION_KINDS}
