"""Data readiness: is the transaction log long and rich enough to train and evaluate on?

`profile` computes figures from the transactions and judges them into findings (ok, warn,
refuse); `clv data profile` and `clv train` report them (clv.training.readiness_io writes the
files).

Definitions (rows may be order lines):
- An order is (customer_id, order_id) when order_id is present, else one row; its total is the
  sum of its rows' amounts, rounded to cents. A purchase is an order with a positive total; a
  purchase day is a UTC day with a purchase; a buyer has at least one purchase.
- Repeat buyer: purchases on at least two UTC days (lifetimes' frequency >= 1, the repeat
  behaviour the models learn from). Orders per customer: purchases per buyer.
- Zero- / negative-value share: orders whose total is 0 / below 0, over all orders.
- Refund share: the sum of the negative amounts (as a positive number) over gross sales (the
  sum of the positive amounts).
- Top-1% share: the net revenue (sum of amounts, a negative net counted as 0) of the
  ceil(1%) of customers with the highest net, over all customers' net revenue.
- Seasonality strength: over the whole calendar months of the history, monthly gross sales per
  day are regressed on a linear trend, then on the trend plus month-of-year dummies; the
  strength is the share of the trend model's residual variance the months explain (a partial
  R^2: 1 - RSS_trend+months / RSS_trend, in [0, 1]; 0 when nothing is left after the trend).
  It needs 24 whole months (each month of the year twice), else it is null with the reason.
- Gaps: runs of UTC days without any row between the first and the last day of the history.
- Horizon fit: the snapshot calendar `clv features build` uses by default
  (clv.features.calendar.snapshot_dates), labels complete when t + horizon <= the last timestamp,
  and the evaluation origins and embargo of clv.evaluation.protocol.evaluation_origins.

Minimums (refuse): fewer than `readiness.min_repeat_buyers` repeat buyers; a history shorter
than `readiness.min_history_horizons` horizons plus one snapshot spacing; no snapshot with a
complete label. Override: `--skip-readiness` (clv train, clv retrain) or
`readiness.enforce: false`. Why these minimums and this seasonality measure:
docs/decisions/readiness.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from clv.core.errors import DataError
from clv.core.settings import EvaluationSettings, Settings
from clv.core.store import duckdb_connection
from clv.core.time import utc
from clv.evaluation.protocol import evaluation_origins
from clv.features.calendar import parse_every, snapshot_dates

if TYPE_CHECKING:
    import duckdb

Level = Literal["ok", "warn", "refuse"]
Status = Literal["ready", "warnings", "refused"]

REQUIRED = ("customer_id", "ts", "amount")
SEASONAL_MONTHS = 24
HORIZON_LADDER = (730, 365, 270, 180, 120, 90, 60, 30)
"""Horizons (days) the suggestion is chosen from, with the configured one."""
OVERRIDE = "`--skip-readiness` (clv train, clv retrain) or `readiness.enforce: false` in clv.yaml"
GAPS_SHOWN = 5


@dataclass(frozen=True)
class Finding:
    """One judgement: its level, what was seen, and how to override or tune it."""

    check: str
    level: Level
    message: str
    override: str | None = None


@dataclass(frozen=True)
class Gap:
    """A run of days without any transaction (both ends inclusive)."""

    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


@dataclass(frozen=True)
class Seasonality:
    strength: float | None
    months: int
    """Whole calendar months in the history."""
    reason: str


@dataclass(frozen=True)
class HorizonFit:
    """Does the configured horizon, with an embargoed evaluation, fit the history?"""

    horizon_days: int
    snapshot_every: str
    required_days: float
    """`min_history_horizons` horizons plus one snapshot spacing, from the first timestamp."""
    labelled_snapshots: int
    """Default-calendar snapshots whose label window closes by the last timestamp."""
    test_origin: date | None
    embargoed: bool
    backtests: int
    wanted_backtests: int
    suggested_horizon_days: int | None
    suggestion: str


_SUMMARY_FIGURES = ("status", "enforced", "history_days", "customers", "repeat_buyers")
_SUMMARY_HORIZON = ("horizon_days", "embargoed", "suggested_horizon_days")
"""The figures of the short form (`Readiness.summary`), in order, and those of its horizon."""


@dataclass(frozen=True)
class Readiness:
    """The figures of one transaction log and the findings on them."""

    start: pd.Timestamp
    end: pd.Timestamp
    history_days: float
    rows: int
    customers: int
    orders: int
    purchases: int
    buyers: int
    repeat_buyers: int
    repeat_buyer_share: float | None
    orders_per_customer_mean: float | None
    orders_per_customer_median: float | None
    zero_value_share: float
    negative_value_share: float
    refund_share: float | None
    top1_revenue_share: float | None
    seasonality: Seasonality
    empty_days: int
    longest_gaps: tuple[Gap, ...]
    monthly_sales: tuple[tuple[str, float], ...]
    """("YYYY-MM", gross sales) for every calendar month of the history."""
    horizon: HorizonFit
    findings: tuple[Finding, ...]
    enforced: bool

    @property
    def refused(self) -> bool:
        return any(f.level == "refuse" for f in self.findings)

    @property
    def status(self) -> Status:
        if self.refused:
            return "refused"
        return "warnings" if any(f.level == "warn" for f in self.findings) else "ready"

    def of_level(self, level: Level) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.level == level)

    def refusal(self) -> str:
        """The one-line reason training refuses, naming the override."""
        why = "; ".join(f.message for f in self.of_level("refuse"))
        return f"not ready to train: {why}. Override: {OVERRIDE}"

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["start"], out["end"] = self.start.isoformat(), self.end.isoformat()
        out["status"] = self.status
        out["longest_gaps"] = [
            {"start": g.start.isoformat(), "end": g.end.isoformat(), "days": g.days}
            for g in self.longest_gaps
        ]
        out["monthly_sales"] = [{"month": m, "gross_sales": v} for m, v in self.monthly_sales]
        test = self.horizon.test_origin
        out["horizon"]["test_origin"] = test.isoformat() if test is not None else None
        return out

    def summary(self) -> dict[str, object]:
        """The short form (`clv train --json`): status, key figures, findings that are not ok."""
        return {
            **{k: getattr(self, k) for k in _SUMMARY_FIGURES},
            **{k: getattr(self.horizon, k) for k in _SUMMARY_HORIZON},
            "findings": [asdict(f) for f in self.findings if f.level != "ok"],
        }

    def describe(self) -> list[str]:
        """Human lines: the figures, then the findings that are not ok."""
        h = self.horizon
        lines = [
            f"history {self.start.date()} .. {self.end.date()} ({self.history_days:.0f} days), "
            f"{self.rows:,} rows, {self.customers:,} customers, {self.orders:,} orders",
            f"buyers {self.buyers:,}, repeat buyers {self.repeat_buyers:,} "
            f"({_pct(self.repeat_buyer_share)}), purchases per buyer "
            f"{_num(self.orders_per_customer_mean)} "
            f"(median {_num(self.orders_per_customer_median)})",
            f"zero-value orders {_pct(self.zero_value_share)}, negative-value orders "
            f"{_pct(self.negative_value_share)}, refunds {_pct(self.refund_share)} of gross sales, "
            f"top 1% of customers {_pct(self.top1_revenue_share)} of net revenue",
            f"seasonality strength {_num(self.seasonality.strength, 2)} "
            f"({self.seasonality.reason}); {self.empty_days} empty day(s)"
            + (f", longest gap {self.longest_gaps[0].days} days" if self.longest_gaps else ""),
            f"horizon {h.horizon_days} days: {h.labelled_snapshots} labelled snapshot(s), "
            f"test origin {h.test_origin or 'none'}, "
            + ("embargoed" if h.embargoed else "NOT embargoed")
            + f", {h.backtests} of {h.wanted_backtests} backtests; suggested horizon "
            + (f"{h.suggested_horizon_days} days" if h.suggested_horizon_days else "none")
            + f" ({h.suggestion})",
        ]
        shown = [f for f in self.findings if f.level != "ok"]
        lines += [f"{f.level}: {f.message}" for f in shown]
        lines.append(f"{len(self.findings) - len(shown)} other check(s) ok")
        return lines


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _num(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


# --- figures: one SQL over a registered frame or a Parquet file --------------------------------


@dataclass(frozen=True)
class Aggregates:
    """What the judgement needs from the log: scalars and one row per UTC day."""

    rows: int
    customers: int
    start: pd.Timestamp
    end: pd.Timestamp
    orders: int
    purchases: int
    zero_orders: int
    negative_orders: int
    buyers: int
    repeat_buyers: int
    purchases_mean: float | None
    purchases_median: float | None
    gross_sales: float
    refunds: float
    top1_net: float
    total_net: float
    daily: pd.DataFrame
    """Columns day (datetime64, UTC midnight), rows, gross_sales; only days with rows."""


def _tx_sql(relation: str, columns: Sequence[str]) -> str:
    order = 'CAST("order_id" AS VARCHAR)' if "order_id" in columns else "CAST(NULL AS VARCHAR)"
    return (
        'SELECT CAST("customer_id" AS VARCHAR) AS customer_id, "ts" AS ts, '
        f'CAST("amount" AS DOUBLE) AS amount, {order} AS order_id FROM {relation} '
        'WHERE "ts" IS NOT NULL AND "amount" IS NOT NULL AND "customer_id" IS NOT NULL'
    )


_DAILY = """SELECT CAST(CAST(ts AS DATE) AS TIMESTAMP) AS day, count(*) AS rows,
       coalesce(sum(amount) FILTER (WHERE amount > 0), 0) AS gross_sales,
       coalesce(-sum(amount) FILTER (WHERE amount < 0), 0) AS refunds,
       min(ts) AS first_ts, max(ts) AS last_ts
  FROM tx GROUP BY 1 ORDER BY 1"""

# One row per customer, from their orders: (customer_id, order_id) groups, or single rows.
_PER_CUSTOMER = """CREATE TEMP TABLE per_customer AS
WITH orders AS (
    SELECT customer_id, CAST(min(ts) AS DATE) AS day, round(sum(amount), 2) AS total
      FROM tx WHERE order_id IS NOT NULL GROUP BY customer_id, order_id
    UNION ALL
    SELECT customer_id, CAST(ts AS DATE), round(amount, 2) FROM tx WHERE order_id IS NULL)
SELECT customer_id, count(*) AS orders,
       count(*) FILTER (WHERE total > 0) AS purchases,
       count(*) FILTER (WHERE total = 0) AS zero_orders,
       count(*) FILTER (WHERE total < 0) AS negative_orders,
       count(DISTINCT day) FILTER (WHERE total > 0) AS purchase_days,
       greatest(sum(total), 0) AS net
  FROM orders GROUP BY customer_id"""

_SCALARS = """WITH ranked AS (
    SELECT net, row_number() OVER (ORDER BY net DESC) AS r FROM per_customer)
SELECT count(*), sum(orders), sum(purchases), sum(zero_orders), sum(negative_orders),
       count(*) FILTER (WHERE purchases > 0), count(*) FILTER (WHERE purchase_days >= 2),
       avg(purchases) FILTER (WHERE purchases > 0),
       median(purchases) FILTER (WHERE purchases > 0),
       (SELECT coalesce(sum(net), 0) FROM ranked
         WHERE r <= ceil((SELECT count(*) FROM per_customer) / 100.0)),
       coalesce(sum(net), 0)
  FROM per_customer"""


def aggregate(
    con: duckdb.DuckDBPyConnection, relation: str, *, columns: Sequence[str]
) -> Aggregates:
    """The figures of the transactions in `relation` (a registered frame or a `read_parquet`
    call with `columns`): two scans (one per day, one per order), then one row per customer;
    the connection's time zone must be UTC."""
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise DataError(f"transactions lack columns {missing}: cannot profile them")
    con.execute(f"CREATE OR REPLACE TEMP VIEW tx AS {_tx_sql(relation, columns)}")
    daily = con.execute(_DAILY).df()
    if daily.empty:
        raise DataError("no transactions to profile: run `clv data ingest PATH`")
    con.execute(_PER_CUSTOMER)
    row = con.execute(_SCALARS).fetchone()
    con.execute("DROP TABLE per_customer")
    con.execute("DROP VIEW tx")
    assert row is not None
    daily["day"] = pd.to_datetime(daily["day"]).dt.tz_localize(None)

    def opt(v: object) -> float | None:
        return None if v is None else float(v)  # type: ignore[arg-type]

    return Aggregates(
        rows=int(daily["rows"].sum()),
        customers=int(row[0]),
        start=utc(daily["first_ts"].min()),
        end=utc(daily["last_ts"].max()),
        orders=int(row[1]),
        purchases=int(row[2]),
        zero_orders=int(row[3]),
        negative_orders=int(row[4]),
        buyers=int(row[5]),
        repeat_buyers=int(row[6]),
        purchases_mean=opt(row[7]),
        purchases_median=opt(row[8]),
        gross_sales=float(daily["gross_sales"].sum()),
        refunds=float(daily["refunds"].sum()),
        top1_net=float(row[9]),
        total_net=float(row[10]),
        daily=daily[["day", "rows", "gross_sales"]],
    )


# --- judgement ---------------------------------------------------------------------------------


def gaps(daily: pd.DataFrame, *, start: pd.Timestamp, end: pd.Timestamp) -> list[Gap]:
    """Runs of empty UTC days between the first and the last day, longest first (then
    earliest)."""
    calendar = pd.date_range(start.tz_convert(None).floor("D"), end.tz_convert(None).floor("D"))
    empty = ~calendar.isin(pd.DatetimeIndex(daily["day"]))
    runs: list[Gap] = []
    i = 0
    while i < len(calendar):
        if empty[i]:
            j = i
            while j + 1 < len(calendar) and empty[j + 1]:
                j += 1
            runs.append(Gap(calendar[i].date(), calendar[j].date()))
            i = j + 1
        else:
            i += 1
    return sorted(runs, key=lambda g: (-g.days, g.start))


def monthly_sales(daily: pd.DataFrame) -> pd.DataFrame:
    """Gross sales per calendar month of the history (months without rows: 0), with
    `whole` = the month lies entirely inside the history's first and last day."""
    days = pd.DatetimeIndex(daily["day"])
    first, last = days.min(), days.max()
    months = pd.period_range(first.to_period("M"), last.to_period("M"), freq="M")
    sums = daily.groupby(days.to_period("M"))["gross_sales"].sum()
    frame = pd.DataFrame({"month": months})
    frame["gross_sales"] = [float(sums.get(m, 0.0)) for m in months]
    frame["days"] = [m.days_in_month for m in months]
    frame["whole"] = [m.start_time >= first and m.end_time.floor("D") <= last for m in months]
    return frame


def seasonality(monthly: pd.DataFrame) -> Seasonality:
    """Partial R^2 of month-of-year after a linear trend, on gross sales per day of each whole
    month (module docstring); null below 24 whole months."""
    whole = monthly.loc[monthly["whole"]].reset_index(drop=True)
    n = len(whole)
    if n < SEASONAL_MONTHS:
        return Seasonality(
            None, n, f"needs {SEASONAL_MONTHS} whole months (each month of the year twice)"
        )
    y = (whole["gross_sales"] / whole["days"]).to_numpy(float)
    t = np.arange(n, dtype=float)
    trend = np.column_stack([np.ones(n), t])
    month = np.array([p.month for p in whole["month"]])
    dummies = np.column_stack([(month == m).astype(float) for m in range(2, 13)])
    full = np.column_stack([trend, dummies])

    def rss(x: np.ndarray) -> float:
        beta, *_ = np.linalg.lstsq(x, y, rcond=None)
        return float(np.sum((y - x @ beta) ** 2))

    base = rss(trend)
    if base <= 1e-12 * max(float(np.sum(y**2)), 1e-300):
        return Seasonality(0.0, n, f"{n} whole months; nothing varies after the trend")
    strength = min(1.0, max(0.0, 1.0 - rss(full) / base))
    return Seasonality(strength, n, f"{n} whole months")


@dataclass(frozen=True)
class _Fit:
    labelled: int
    test_origin: date | None
    embargoed: bool
    backtests: int


def _fit(
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    horizon_days: int,
    every: str,
    evaluation: EvaluationSettings,
) -> _Fit:
    """Labelled snapshots, test origin, embargo and backtests of the default calendar: the
    snapshots `clv features build` makes, judged by clv.evaluation.protocol."""
    times = snapshot_dates(start, end, every=every)
    horizon = pd.Timedelta(days=horizon_days)
    labelled = [t + horizon <= end for t in times]
    if not any(labelled):
        return _Fit(0, None, False, 0)
    frame = pd.DataFrame(
        {"event_timestamp": times, "clv_label": [1.0 if ok else np.nan for ok in labelled]}
    )
    origins = evaluation_origins(
        frame,
        horizon_days=horizon_days,
        backtests=evaluation.backtest_origins,
        spacing_days=evaluation.origin_spacing_days,
    )
    return _Fit(sum(labelled), origins.test.date(), origins.embargoed, len(origins.backtests))


def required_days(start: pd.Timestamp, *, horizon_days: int, every: str, horizons: float) -> float:
    """`horizons` horizons plus one snapshot spacing (clv.features.calendar.parse_every), in days
    from `start` (a month spacing is a calendar month)."""
    n, unit = parse_every(every)
    step: pd.DateOffset | pd.Timedelta = (
        pd.DateOffset(months=n) if unit == "M" else pd.Timedelta(days=n * (7 if unit == "w" else 1))
    )
    stop = start + pd.Timedelta(days=horizons * horizon_days) + step
    return float((stop - start) / pd.Timedelta(days=1))


SUGGESTION_TIERS = (
    "embargoed, every backtest",
    "embargoed test origin, fewer backtests",
    "history minimum only, not embargoed",
)


def horizon_fit(start: pd.Timestamp, end: pd.Timestamp, *, settings: Settings) -> HorizonFit:
    """The configured horizon against the history, and the horizon to suggest: the longest
    (of HORIZON_LADDER and the configured one, at most the configured one) with an embargoed
    test origin and every wanted backtest; else with an embargoed test origin; else one that
    meets the history minimum (SUGGESTION_TIERS)."""
    h, every = settings.model.horizon_days, settings.features.snapshot_every
    e, minimum = settings.evaluation, settings.readiness.min_history_horizons
    history = float((end - start) / pd.Timedelta(days=1))

    fits = {
        c: _fit(start, end, horizon_days=c, every=every, evaluation=e)
        for c in sorted({h, *(c for c in HORIZON_LADDER if c < h)}, reverse=True)
    }

    def tier(days: int) -> int:
        """0, 1, 2: the first SUGGESTION_TIERS entry `days` meets; 3: none."""
        fit = fits[days]
        if fit.embargoed:
            return 0 if fit.backtests >= e.backtest_origins else 1
        needed = required_days(start, horizon_days=days, every=every, horizons=minimum)
        return 2 if fit.labelled and history >= needed else 3

    tiers = {c: tier(c) for c in fits}  # longest first
    best = min(tiers.values())
    suggested = next((c for c in fits if tiers[c] == best), None) if best < 3 else None
    configured = fits[h]
    return HorizonFit(
        horizon_days=h,
        snapshot_every=every,
        required_days=required_days(start, horizon_days=h, every=every, horizons=minimum),
        labelled_snapshots=configured.labelled,
        test_origin=configured.test_origin,
        embargoed=configured.embargoed,
        backtests=configured.backtests,
        wanted_backtests=e.backtest_origins,
        suggested_horizon_days=suggested,
        suggestion=SUGGESTION_TIERS[best] if best < 3 else "no horizon fits this history",
    )


def _whole_years(days: int) -> bool:
    years = round(days / 365)
    return years >= 1 and abs(days - 365 * years) <= 7


def findings(
    agg: Aggregates,
    fit: HorizonFit,
    season: Seasonality,
    runs: Sequence[Gap],
    *,
    settings: Settings,
) -> list[Finding]:
    """The judgement: refuse below the minimums, warn above the warning thresholds, ok else;
    one finding per check (the backtest check only when it falls short)."""
    history = float((agg.end - agg.start) / pd.Timedelta(days=1))
    return [
        *_horizon_findings(fit, history=history, settings=settings),
        _repeat_finding(agg, minimum=settings.readiness.min_repeat_buyers),
        *_value_findings(agg, settings=settings),
        _gap_finding(runs, warn_days=settings.readiness.gap_warn_days),
        _season_finding(season, horizon_days=fit.horizon_days, settings=settings),
    ]


def _horizon_findings(fit: HorizonFit, *, history: float, settings: Settings) -> list[Finding]:
    r, h = settings.readiness, fit.horizon_days
    shorter = (
        f"shorten model.horizon_days (suggested: {fit.suggested_horizon_days} days)"
        if fit.suggested_horizon_days is not None and fit.suggested_horizon_days != h
        else "collect a longer history"
    )
    needed = (
        f"{r.min_history_horizons:g} horizons of {h} days plus one {fit.snapshot_every} "
        f"snapshot ({fit.required_days:.0f} days)"
    )
    out: list[Finding] = []
    if history < fit.required_days:
        suggestion = (
            f"; suggested horizon {fit.suggested_horizon_days} days"
            if fit.suggested_horizon_days is not None
            else ""
        )
        out.append(
            Finding(
                "history",
                "refuse",
                f"history {history:.0f} days is shorter than {needed}{suggestion}",
                f"{shorter}, or lower readiness.min_history_horizons; or {OVERRIDE}",
            )
        )
    else:
        out.append(Finding("history", "ok", f"history {history:.0f} days covers {needed}"))
    if fit.test_origin is None:
        if history >= fit.required_days:  # else the history finding has said it
            out.append(
                Finding(
                    "labels",
                    "refuse",
                    f"no snapshot has a complete {h}-day label window",
                    f"{shorter}; or {OVERRIDE}",
                )
            )
        return out
    if fit.embargoed:
        out.append(Finding("embargo", "ok", f"the test origin {fit.test_origin} is embargoed"))
    else:
        out.append(
            Finding(
                "embargo",
                "warn",
                f"the test origin {fit.test_origin} is not embargoed: train, validation and test "
                f"label windows overlap (an embargo needs about three {h}-day horizons of "
                "labelled history); the gates will not promote the version without --force",
                shorter,
            )
        )
    if fit.backtests < fit.wanted_backtests:
        out.append(
            Finding(
                "backtests",
                "warn",
                f"{fit.backtests} of {fit.wanted_backtests} embargoed backtest origins fit "
                f"({settings.evaluation.origin_spacing_days} days apart)",
                f"{shorter}, or lower evaluation.backtest_origins / origin_spacing_days",
            )
        )
    return out


def _repeat_finding(agg: Aggregates, *, minimum: int) -> Finding:
    seen = f"{agg.repeat_buyers:,} repeat buyers (purchases on 2+ days) of {agg.buyers:,} buyers"
    if agg.repeat_buyers < minimum:
        return Finding(
            "repeat_buyers",
            "refuse",
            f"{seen}, fewer than readiness.min_repeat_buyers = {minimum:,}",
            f"collect more customers or a longer history, or lower readiness.min_repeat_buyers; "
            f"or {OVERRIDE}",
        )
    return Finding("repeat_buyers", "ok", f"{seen} (minimum {minimum:,})")


def _threshold(
    check: str, value: float | None, limit: float, what: str, why: str, setting: str
) -> Finding:
    """warn when `value` reaches `limit`; `what` formats the value."""
    if value is None:
        return Finding(check, "ok", f"{what.format('n/a')}: not measured")
    seen = what.format(f"{value:.1%}")
    if value >= limit:
        return Finding(check, "warn", f"{seen}{why}", f"raise readiness.{setting}")
    return Finding(check, "ok", f"{seen} (warns at {limit:.0%})")


def _value_findings(agg: Aggregates, *, settings: Settings) -> list[Finding]:
    r = settings.readiness
    return [
        _threshold(
            "zero_value",
            agg.zero_orders / agg.orders if agg.orders else None,
            r.zero_value_share_warn,
            "{} of orders total zero",
            " (free orders, or cancellations netted out)",
            "zero_value_share_warn",
        ),
        _threshold(
            "refunds",
            agg.refunds / agg.gross_sales if agg.gross_sales > 0 else None,
            r.refund_share_warn,
            "refunds are {} of gross sales",
            "",
            "refund_share_warn",
        ),
        _threshold(
            "concentration",
            agg.top1_net / agg.total_net if agg.total_net > 0 else None,
            r.top1_share_warn,
            "the top 1% of customers hold {} of net revenue",
            ": value metrics (RMSE) are decided by a few customers",
            "top1_share_warn",
        ),
    ]


def _gap_finding(runs: Sequence[Gap], *, warn_days: int) -> Finding:
    if not runs:
        return Finding("gaps", "ok", "every day of the history has transactions")
    g = runs[0]
    seen = f"longest run without any transaction: {g.days} day(s) ({g.start} .. {g.end})"
    if g.days >= warn_days:
        return Finding(
            "gaps",
            "warn",
            f"{seen}: a missing extract or an outage looks like customers who stopped buying",
            "ingest the missing days, or raise readiness.gap_warn_days",
        )
    return Finding("gaps", "ok", f"{seen} (warns at {warn_days})")


def _season_finding(season: Seasonality, *, horizon_days: int, settings: Settings) -> Finding:
    if season.strength is None:
        return Finding("seasonality", "ok", f"seasonality not measured: {season.reason}")
    seen = f"seasonality strength {season.strength:.2f}"
    if season.strength >= settings.readiness.seasonality_warn and not _whole_years(horizon_days):
        return Finding(
            "seasonality",
            "warn",
            f"{seen} with a {horizon_days}-day horizon: label windows of different snapshots "
            "cover different seasons",
            "use a horizon of whole years, or raise readiness.seasonality_warn",
        )
    return Finding("seasonality", "ok", f"{seen} with a {horizon_days}-day horizon")


def judge(agg: Aggregates, *, settings: Settings) -> Readiness:
    """The figures and findings of aggregated transactions."""
    monthly = monthly_sales(agg.daily)
    season = seasonality(monthly)
    runs = gaps(agg.daily, start=agg.start, end=agg.end)
    fit = horizon_fit(agg.start, agg.end, settings=settings)
    found = findings(agg, fit, season, runs, settings=settings)
    return Readiness(
        start=agg.start,
        end=agg.end,
        history_days=float((agg.end - agg.start) / pd.Timedelta(days=1)),
        rows=agg.rows,
        customers=agg.customers,
        orders=agg.orders,
        purchases=agg.purchases,
        buyers=agg.buyers,
        repeat_buyers=agg.repeat_buyers,
        repeat_buyer_share=agg.repeat_buyers / agg.buyers if agg.buyers else None,
        orders_per_customer_mean=agg.purchases_mean,
        orders_per_customer_median=agg.purchases_median,
        zero_value_share=agg.zero_orders / agg.orders if agg.orders else 0.0,
        negative_value_share=agg.negative_orders / agg.orders if agg.orders else 0.0,
        refund_share=agg.refunds / agg.gross_sales if agg.gross_sales > 0 else None,
        top1_revenue_share=agg.top1_net / agg.total_net if agg.total_net > 0 else None,
        seasonality=season,
        empty_days=sum(g.days for g in runs),
        longest_gaps=tuple(runs[:GAPS_SHOWN]),
        monthly_sales=tuple(
            (str(m), round(float(v), 2))
            for m, v in zip(monthly["month"], monthly["gross_sales"], strict=True)
        ),
        horizon=fit,
        findings=tuple(found),
        enforced=settings.readiness.enforce,
    )


def profile(transactions: pd.DataFrame, *, settings: Settings) -> Readiness:
    """The readiness of a transactions frame (columns customer_id, ts, amount, optional
    order_id; ts in UTC or naive UTC)."""
    columns = [str(c) for c in transactions.columns]
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise DataError(f"transactions lack columns {missing}: cannot profile them")
    frame = transactions[[c for c in (*REQUIRED, "order_id") if c in columns]].copy()
    ts = pd.to_datetime(frame["ts"])
    frame["ts"] = ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")
    con = duckdb_connection()
    try:
        con.register("tx_in", frame)
        agg = aggregate(con, "tx_in", columns=list(frame.columns))
    finally:
        con.close()
    return judge(agg, settings=settings)
