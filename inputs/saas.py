"""A seeded SaaS world: accounts on subscriptions, their invoices, usage and support tickets.

An account signs up (growing monthly cohorts), usually starts a 14- or 30-day trial that
converts with a probability rising with its trial usage, and pays monthly or yearly for seats
of a plan (starter < team < business). Its churn hazard is shifted-beta-geometric (Fader &
Hardie 2007, "How to project customer retention", eq. 1-3): a per-account monthly churn
probability theta ~ Beta(SBG_ALPHA, SBG_BETA), so the population's retention rises with tenure
as the fragile accounts leave; month by month, theta is raised on the complementary log-log
scale (h = 1 - (1 - theta) ** m) by a low usage level and more by usage falling below the
account's own level (an AR(1)), by support tickets, a cheaper plan, a fragile channel and a
return after churning. Annual
subscribers accumulate the same hazards over their paid year and can only leave at its
anniversary. Seats grow within teams, upgrades follow the adoption of a higher plan's feature,
low usage brings downgrades and seat cuts; every change takes effect at the next billing date
(annual: at the renewal). Some churned accounts come back months later on a new subscription.

`saas_mixed` adds one-off purchases (add-ons, templates, services) to the same subscriptions;
in `saas_price_change` the team plan's list price rises PRICE_RISE at the change date (2/3 into
the period by default): every team subscription meets the new price at its next renewal, where
some leave and some downgrade, and the raised price keeps their hazard higher.

`saas_wear` is the family whose retention is not sBG-shaped (judgement only: the sBG is a
baseline, and a world drawn from a baseline's own family favours it): theta is a two-point
lognormal mixture of fragile and stable accounts, not Beta; a share of accounts, the fast
growers most, outgrow the tool a lognormal time after their first paid day, from when an
outgrown hazard ramps up; and the budget review at the end of each account's fiscal year
raises a monthly subscription's hazard in that month. Population retention rises while the
fragile leave, then falls as accounts outgrow the tool, which no sBG can do. Everything else
is as in `saas`, and the accounts at signup (and so the trials) are the same for the same
seed. docs/decisions/saas-world.md holds the story and the constants.

Every random draw of the simulation is a fixed-size array per account and month (counts are
inverse-CDF Poisson of a uniform), and the draws per event or purchase come from their own
streams in the order of the months they fall in, so the same seed gives identical rows before
the change date in `saas` and `saas_price_change` (but for the mrr of a trial that converts
after it), the same subscriptions in `saas_mixed`, and the same accounts at signup in
`saas_wear` (its own draws come from a stream of their own).
The simulation runs TRUTH_MONTHS past the end: `SaasData.truth` and `truth_periods` know what
happened after it; the raw tables stop at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, NamedTuple, get_args

import numpy as np
import numpy.typing as npt
import pandas as pd

from clv.core.contracts import TS_DTYPE, TableName
from clv.core.errors import DataError
from clv.inputs.generator import (
    COUNTRIES,
    COUNTRY_MIX,
    DEFAULT_START,
    RawFormat,
    period,
    write_tables,
)
from clv.inputs.worlds import pick

SaasWorld = Literal["saas", "saas_mixed", "saas_price_change", "saas_wear"]
SAAS_FAMILIES: tuple[SaasWorld, ...] = get_args(SaasWorld)
EndCause = Literal["active", "lapsed_trial", "churn", "price_change"]
END_CAUSES: tuple[EndCause, ...] = get_args(EndCause)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
ObjectArray = npt.NDArray[np.object_]

US_PER_DAY = 86_400_000_000
NEVER = np.iinfo(np.int64).max // 4
"""A time (microseconds from the start) after every other: not yet, or never."""
TRUTH_MONTHS = 24
"""The simulation runs this many months past the end, for the truth only."""

# Plans: per-seat list MRR on monthly billing; annual billing pays ANNUAL_DISCOUNT of it.
PLANS: tuple[str, ...] = ("starter", "team", "business")
LIST_PRICE = np.array([12.0, 25.0, 45.0])
ANNUAL_DISCOUNT = 0.85
PLAN_BY_SEATS = np.array([[0.75, 0.22, 0.03], [0.35, 0.50, 0.15], [0.10, 0.50, 0.40]])
"""Plan at signup (columns) by team size: 1-2 seats, 3-9, 10 or more (rows)."""
ANNUAL_SHARE = np.array([0.15, 0.25, 0.45])
"""Share of new subscriptions billed yearly, by plan."""
SEATS_MEDIAN, SEATS_SIGMA = 2.5, 0.9
"""Seats at signup: round(lognormal(log median, sigma) x the channel's seat factor), >= 1."""


@dataclass(frozen=True)
class SaasChannel:
    """An acquisition channel: share of signups, trial share, seat and hazard multipliers."""

    name: str
    share: float
    trial: float
    seats: float
    hazard: float


SAAS_CHANNELS: tuple[SaasChannel, ...] = (
    SaasChannel("organic", 0.35, 0.75, 1.0, 1.0),
    SaasChannel("paid_search", 0.25, 0.75, 0.9, 1.25),
    SaasChannel("referral", 0.15, 0.70, 1.1, 0.75),
    SaasChannel("partner", 0.10, 0.50, 1.3, 0.9),
    SaasChannel("outbound_sales", 0.15, 0.10, 2.0, 0.85),
)
CHANNEL_MIX = np.array([c.share for c in SAAS_CHANNELS])

# Trials: 14 days (TRIAL_SHORT_SHARE) or 30; P(convert) = logistic(TRIAL_LOGIT + TRIAL_SLOPE x
# log(trial usage)), trial usage = engagement x exp(x0) (x0 the usage process's first value).
TRIAL_DAYS = (14, 30)
TRIAL_SHORT_SHARE = 0.6
TRIAL_LOGIT, TRIAL_SLOPE = 0.2, 1.5

# Churn: theta ~ Beta(SBG_ALPHA, SBG_BETA) (mean 0.065 a month), h = 1 - (1 - theta) ** m with
# m = plan x channel x engagement ** -LEVEL_EFFECT x exp(-DROP_EFFECT x x) x exp(TICKET_EFFECT
# x strain) x seats ** -SEAT_EFFECT, x ANNUAL_HAZARD on annual billing, x WINBACK_HAZARD after
# a return; x is the usage process (below), strain = this month's tickets + TICKET_MEMORY x
# last month's strain.
SBG_ALPHA, SBG_BETA = 0.7, 10.0
PLAN_HAZARD = np.array([1.25, 1.0, 0.75])
LEVEL_EFFECT = 0.5
DROP_EFFECT = 1.0
"""Usage below the account's own level (x < 0) raises the hazard more than a low level."""
TICKET_EFFECT = 0.5
TICKET_MEMORY = 0.5
SEAT_EFFECT = 0.1
ANNUAL_HAZARD = 0.45
MAX_HAZARD = 0.9

# Usage: log usage = log engagement + x, x an AR(1): x' = USAGE_RHO x + USAGE_SIGMA eps;
# engagement ~ Gamma(ENGAGEMENT_SHAPE, 1 / shape) (mean 1).
USAGE_RHO, USAGE_SIGMA = 0.8, 0.4
USAGE_SD = USAGE_SIGMA / np.sqrt(1.0 - USAGE_RHO**2)
ENGAGEMENT_SHAPE = 3.0

# Events per month: rate x usage x seats ** exponent; tickets: rate x proneness x seats ** 0.2
# (proneness ~ Gamma(TICKET_SHAPE, 1 / shape)); advanced_use only once a feature is adopted.
LOGIN_RATE, LOGIN_SEATS = 2.0, 0.3
FEATURE_RATE, FEATURE_SEATS = 1.2, 0.2
ADVANCED_RATE = 1.0
TICKET_RATE, TICKET_SHAPE, TICKET_SEATS = 0.25, 0.8, 0.2
TRIAL_INTENSITY = 1.3
"""Trials are busier than paid months (per day)."""
EVENT_TYPES: tuple[str, ...] = ("login", "feature_use", "advanced_use", "support_ticket")

# Plan and seat moves per month (pending until the next billing date; annual: the renewal).
ADOPT_RATE = 0.05
"""P(adopting the next plan's feature) = this x usage (at most 0.5), below the top plan."""
UPGRADE_BASE, UPGRADE_ADOPTED = 0.003, 0.10
"""P(upgrade one plan) a month without / with a feature adopted since the last upgrade."""
DOWNGRADE_RATE = 0.006
"""P(downgrade one plan) = this / usage (at most 0.2)."""
SEAT_GROWTH, SEAT_STEP = 0.05, 0.15
"""P(adding seats) = this x the account's growth (Gamma(GROWTH_SHAPE, 1 / shape)); it adds
1 + Poisson(SEAT_STEP x seats)."""
GROWTH_SHAPE = 1.5
SEAT_CUT, SEAT_CUT_STEP = 0.015, 0.05
"""P(removing seats) = this x usage ** -0.5 (at most 0.2); it removes 1 + Poisson(step x seats)."""

# Returns after churn: WINBACK_SHARE of ended paid subscriptions come back after 2 + Geometric
# months (mean WINBACK_GAP more), on the same plan or one lower, fewer seats, rarely annual.
WINBACK_SHARE = 0.15
WINBACK_MIN_GAP, WINBACK_GAP = 2, 6.0
WINBACK_DOWNGRADE, WINBACK_SEATS, WINBACK_ANNUAL = 0.3, 0.8, 0.1
WINBACK_HAZARD = 1.4
MAX_SUBSCRIPTIONS = 3

# saas_price_change: the team plan's list price x (1 + PRICE_RISE) from the change date.
PRICE_PLAN = 1
PRICE_RISE = 0.15
PRICE_CHURN = 0.15
"""At the first renewal at the new price: P(leave) = this x usage ** -0.5 (at most 0.5)."""
PRICE_DOWNGRADE = 0.12
"""... else P(downgrade to starter)."""
PRICE_HAZARD = 1.3
"""The hazard multiplier of a team subscription paying the raised price."""

# Money: invoices' gross margin; saas_mixed's one-off purchases while subscribed, per month
# ONEOFF_RATE x buyer x usage ** 0.5 (buyer: BUYER_SHARE of accounts, Gamma(2, 0.5)).
INVOICE_MARGIN = 0.80
ONEOFF_RATE, BUYER_SHARE = 0.25, 0.4

# saas_wear (docs/decisions/saas-world.md). theta, not Beta: FRAGILE_SHARE of accounts have a
# median of FRAGILE_THETA, the others STABLE_THETA, each x lognormal(0, THETA_SIGMA), at most
# THETA_MAX. P(an account outgrows the tool) = OUTGROW_SHARE x its seat growth (at most
# OUTGROW_MAX), OUTGROW_MEDIAN x lognormal(0, OUTGROW_SIGMA) months after its first paid day;
# w months past it, an outgrown hazard WEAR_MAX x min(w / WEAR_RAMP, 1) joins the month's h:
# h' = 1 - (1 - h) (1 - wear). A monthly subscription's month that ends in the last month of
# its account's fiscal year (FISCAL_YEAR_END by country, else December) has m x BUDGET_HAZARD.
FRAGILE_SHARE, FRAGILE_THETA, STABLE_THETA = 0.3, 0.12, 0.015
THETA_SIGMA, THETA_MAX = 0.5, 0.6
OUTGROW_SHARE, OUTGROW_MAX = 0.5, 0.9
OUTGROW_MEDIAN, OUTGROW_SIGMA = 12.0, 0.3
WEAR_MAX, WEAR_RAMP = 0.2, 6.0
BUDGET_HAZARD = 3.0
FISCAL_YEAR_END: dict[str, int] = {"GB": 3, "AU": 6}
"""The calendar month (1-12) a fiscal year ends in, where it is not December."""


@dataclass(frozen=True)
class OneOff:
    """A kind of one-off purchase: share of them, gross margin rate, its price list (one price
    drawn evenly), bought in 1..`max_units` units (services: days)."""

    name: str
    share: float
    margin: float
    prices: tuple[float, ...]
    max_units: int = 1
    channel: str = "web"


ONEOFF_KINDS: tuple[OneOff, ...] = (
    OneOff("addon", 0.55, 0.85, (29.0, 49.0, 99.0, 149.0)),
    OneOff("template", 0.35, 0.90, (19.0, 39.0, 59.0)),
    OneOff("services", 0.10, 0.35, (1200.0,), max_units=3, channel="sales"),
)
SIGNUP_GROWTH = 0.03
"""Monthly signup cohorts grow this much a month."""

_LAPSED, _CHURN, _PRICE = 1, 2, 3
"""End causes (index of END_CAUSES; 0: active)."""
_TOP = len(PLANS) - 1


@dataclass(frozen=True, eq=False)
class SaasData:
    """The raw SaaS tables (`tables()`), and the hidden truth behind them (never written).

    `truth`, one row per subscription started before the end: subscription_id, customer_id,
    theta (the monthly churn probability: sBG's; saas_wear: its mixture's), engagement,
    ticket_rate (a month, before seats), trial_end (NaT: no trial), paid_from (the first
    invoice; NaT: a lapsed trial), churn_ts (the true end, even after the period; NaT: still
    active TRUTH_MONTHS after it), end_cause (END_CAUSES), adopted_at (the account's first
    feature adoption, NaT: none); saas_wear's adds fragile, outgrows_at (NaT: never) and
    fiscal_year_end (a month, 1-12).
    `truth_periods`, one row per subscription month (the trial is one period) until
    TRUTH_MONTHS after the end: subscription_id, customer_id, period_start, period_end, usage,
    tickets, hazard (that month's h), end_prob (P(the subscription ends at period_end): h on
    monthly billing; annual: 1 - the year's survival at its last month, else 0; a trial: P(it
    lapses)), plan, seats, mrr (0 in a trial), billing_period.
    """

    subscriptions: pd.DataFrame
    changes: pd.DataFrame
    events: pd.DataFrame
    transactions: pd.DataFrame
    customers: pd.DataFrame
    truth: pd.DataFrame
    truth_periods: pd.DataFrame
    world: SaasWorld
    seed: int
    start: pd.Timestamp
    end: pd.Timestamp
    horizon: pd.Timestamp
    price_change: pd.Timestamp | None = None

    def tables(self) -> dict[TableName, pd.DataFrame]:
        return {
            "subscriptions": self.subscriptions,
            "subscription_changes": self.changes,
            "events": self.events,
            "transactions": self.transactions,
            "customers": self.customers,
        }


def list_price(
    plan: pd.Series, billing_period: pd.Series, at: pd.Series, *, price_change: pd.Timestamp | None
) -> FloatArray:
    """The per-seat MRR in effect at `at` for a plan and billing period (with the price change)."""
    idx = pd.Series(range(len(PLANS)), index=list(PLANS))[plan.to_numpy()].to_numpy()
    annual = billing_period.to_numpy() == "year"
    raised = np.zeros(len(at), dtype=bool) if price_change is None else (at >= price_change)
    return _price(idx.astype(np.int64), annual, np.asarray(raised, dtype=bool))


def _price(plan: IntArray, annual: BoolArray, raised: BoolArray) -> FloatArray:
    rise = np.where(raised & (plan == PRICE_PLAN), 1.0 + PRICE_RISE, 1.0)
    return LIST_PRICE[plan] * np.where(annual, ANNUAL_DISCOUNT, 1.0) * rise


def _mrr(seats: IntArray, plan: IntArray, annual: BoolArray, raised: BoolArray) -> FloatArray:
    return np.round(seats * _price(plan, annual, raised), 2)


@dataclass(frozen=True)
class _Clock:
    """Times are int64 microseconds from `start_us` (the period's start, since the epoch)."""

    start_us: int
    end: int
    horizon: int
    change: int
    steps: int

    def raised(self, t: IntArray) -> BoolArray:
        return t >= self.change


class _Streams(NamedTuple):
    """Independent streams: the simulation's (a fixed-size draw per account and month), then
    the per-row draws of each event type and of the one-off purchases."""

    accounts: np.random.Generator
    step: np.random.Generator
    login: np.random.Generator
    feature_use: np.random.Generator
    advanced_use: np.random.Generator
    support_ticket: np.random.Generator
    oneoff: np.random.Generator
    wear: np.random.Generator
    """saas_wear's account draws (a child spawned after the others: theirs stay the same)."""

    @classmethod
    def of(cls, seed: int) -> _Streams:
        children = np.random.SeedSequence(seed).spawn(8)
        return cls(*(np.random.default_rng(s) for s in children))

    def rows(self, kind: str) -> np.random.Generator:
        stream: np.random.Generator = getattr(self, kind)
        return stream


class _Draws(NamedTuple):
    """One month's uniforms (and normals) for every account, drawn whatever their state."""

    eps: FloatArray
    x_new: FloatArray
    churn: FloatArray
    winback: FloatArray
    gap: FloatArray
    price: FloatArray
    new_plan: FloatArray
    new_annual: FloatArray
    adopt: FloatArray
    up: FloatArray
    down: FloatArray
    grow: FloatArray
    grow_n: FloatArray
    cut: FloatArray
    cut_n: FloatArray
    counts: FloatArray
    """(5, n): login, feature_use, advanced_use, support_ticket, one-off purchases."""

    @classmethod
    def of(cls, rng: np.random.Generator, n: int) -> _Draws:
        normal = rng.standard_normal((2, n))
        u = rng.random((13, n))
        return cls(
            eps=normal[0],
            x_new=normal[1],
            churn=u[0],
            winback=u[1],
            gap=u[2],
            price=u[3],
            new_plan=u[4],
            new_annual=u[5],
            adopt=u[6],
            up=u[7],
            down=u[8],
            grow=u[9],
            grow_n=u[10],
            cut=u[11],
            cut_n=u[12],
            counts=rng.random((5, n)),
        )


def _poisson_quantile(u: FloatArray, lam: FloatArray) -> IntArray:
    """The Poisson(lam) count whose CDF interval holds u (inverse CDF: one uniform per count)."""
    out = np.zeros(len(u), dtype=np.int64)
    pmf = np.exp(-lam)
    idx = np.flatnonzero(u > pmf)
    uu, ll, pp = u[idx], lam[idx], pmf[idx]
    cdf = pp.copy()
    k = 0
    while idx.size:
        k += 1
        pp = pp * ll / k
        cdf = cdf + pp
        out[idx] = k
        more = (uu > cdf) & (pp > 1e-300)
        idx, uu, ll, pp, cdf = idx[more], uu[more], ll[more], pp[more], cdf[more]
    return out


@dataclass(frozen=True)
class _Accounts:
    """Every account's draws at signup (index = account); `grid` row i holds its billing dates
    (months from `anchor`, the first paid day), as times."""

    signup: IntArray
    channel: IntArray
    country: IntArray
    plan: IntArray
    seats: IntArray
    annual: BoolArray
    trial: BoolArray
    anchor: IntArray
    converted: BoolArray
    convert_p: FloatArray
    theta: FloatArray
    engagement: FloatArray
    prone: FloatArray
    growth: FloatArray
    buyer: FloatArray
    x0: FloatArray
    u_trial: FloatArray
    grid: IntArray
    clamped: BoolArray


def _grid(anchor: IntArray, steps: int, start_us: int) -> tuple[IntArray, BoolArray]:
    """Billing dates: `anchor` plus k calendar months (k = 0..steps), the day clamped to the
    month's last (pd.DateOffset's rule), the time of day kept; and whether it was clamped."""
    a = (anchor + start_us).astype("datetime64[us]")
    day = a.astype("datetime64[D]")
    month = a.astype("datetime64[M]")
    dom = (day - month.astype("datetime64[D]")).astype(np.int64)
    tod = (a - day.astype("datetime64[us]")).astype(np.int64)
    months = month[:, None] + np.arange(steps + 1)
    first = months.astype("datetime64[D]")
    days_in = ((months + 1).astype("datetime64[D]") - first).astype(np.int64)
    clamped = dom[:, None] > days_in - 1
    dates = (first + np.minimum(dom[:, None], days_in - 1)).astype("datetime64[us]")
    return dates.astype(np.int64) + tod[:, None] - start_us, clamped


@dataclass(frozen=True)
class _Wear:
    """saas_wear's account traits (index = account): theta from the two-point mixture, whether
    fragile, when it outgrows the tool (months from its first paid day; inf: never) and the
    calendar month (1-12) its fiscal year ends in."""

    theta: FloatArray
    fragile: BoolArray
    outgrow: FloatArray
    year_end: IntArray

    @classmethod
    def of(cls, rng: np.random.Generator, acc: _Accounts) -> _Wear:
        n = len(acc.signup)
        fragile = rng.random(n) < FRAGILE_SHARE
        median = np.where(fragile, FRAGILE_THETA, STABLE_THETA)
        theta = np.minimum(median * np.exp(THETA_SIGMA * rng.standard_normal(n)), THETA_MAX)
        outgrows = rng.random(n) < np.minimum(OUTGROW_SHARE * acc.growth, OUTGROW_MAX)
        when = OUTGROW_MEDIAN * np.exp(OUTGROW_SIGMA * rng.standard_normal(n))
        ends = np.array([FISCAL_YEAR_END.get(code, 12) for code, _ in COUNTRIES])
        return cls(theta, fragile, np.where(outgrows, when, np.inf), ends[acc.country])

    def budget(self, idx: IntArray, stop: IntArray, annual: BoolArray, clock: _Clock) -> FloatArray:
        """The hazard multiplier of a monthly subscription's month ending at `stop` (times from
        the start): BUDGET_HAZARD in the last month of its fiscal year, else 1."""
        month = (stop + clock.start_us).astype("datetime64[us]").astype("datetime64[M]")
        review = ~annual & (month.astype(np.int64) % 12 + 1 == self.year_end[idx])
        return np.where(review, BUDGET_HAZARD, 1.0)

    def worn(self, idx: IntArray, k: int, hazard: FloatArray) -> FloatArray:
        """The month's hazard with the outgrown one joined (k: months from the first paid day at
        the month's start, so k + 1 at its end)."""
        past = np.clip((k + 1 - self.outgrow[idx]) / WEAR_RAMP, 0.0, 1.0)
        return np.minimum(1.0 - (1.0 - hazard) * (1.0 - WEAR_MAX * past), MAX_HAZARD)


def generate_saas(
    *,
    customers: int,
    months: int,
    seed: int,
    world: SaasWorld = "saas",
    start: pd.Timestamp | str = DEFAULT_START,
    price_change_date: pd.Timestamp | str | None = None,
) -> SaasData:
    """`customers` accounts signing up over `months` months from `start` (seeded); the price
    change (`saas_price_change` only) defaults to 2/3 into the period."""
    if customers < 1 or months < 1:
        raise DataError("generate_saas needs at least 1 customer and 1 month")
    if world not in SAAS_FAMILIES:
        raise DataError(f"unknown SaaS world {world!r}: choose one of {', '.join(SAAS_FAMILIES)}")
    t0, t_end, t_change = period(months=months, start=start, change_date=price_change_date)
    horizon = t_end + pd.DateOffset(months=TRUTH_MONTHS)
    shock = world == "saas_price_change"
    start_us = t0.value // 1000
    clock = _Clock(
        start_us=start_us,
        end=t_end.value // 1000 - start_us,
        horizon=horizon.value // 1000 - start_us,
        change=t_change.value // 1000 - start_us if shock else NEVER,
        steps=months + TRUTH_MONTHS + 1,
    )
    rng = _Streams.of(seed)
    acc = _accounts(rng.accounts, clock, t0, customers, months)
    wear = _Wear.of(rng.wear, acc) if world == "saas_wear" else None
    if wear is not None:
        acc = replace(acc, theta=wear.theta)
    sim = _simulate(acc, clock, rng.step, shock=shock, mixed=world == "saas_mixed", wear=wear)
    ids = _Ids.of(sim.subs, acc, clock)
    cells = sim.cells()
    return SaasData(
        subscriptions=_subscriptions(sim.subs, ids, clock),
        changes=_changes(sim.changes(), ids, clock),
        events=_events(rng, cells, ids, clock),
        transactions=_transactions(rng.oneoff, sim, cells, ids, clock),
        customers=_customers(acc, sim, ids, clock),
        truth=_truth(acc, sim, ids, clock, wear),
        truth_periods=_truth_periods(cells, ids, clock),
        world=world,
        seed=seed,
        start=t0,
        end=t_end,
        horizon=horizon,
        price_change=t_change if shock else None,
    )


def _accounts(
    rng: np.random.Generator, clock: _Clock, start: pd.Timestamp, n: int, months: int
) -> _Accounts:
    """Signups in growing monthly cohorts, attributes, latent traits and the trial's outcome."""
    bounds = np.array(
        [((start + pd.DateOffset(months=m)) - start).value // 1000 for m in range(months + 1)]
    )
    cohorts = np.asarray((1.0 + SIGNUP_GROWTH) ** np.arange(months), dtype=np.float64)
    month = pick(rng.random(n), cohorts)
    signup = np.sort(bounds[month] + (rng.random(n) * np.diff(bounds)[month]).astype(np.int64))
    channel = pick(rng.random(n), CHANNEL_MIX)
    country = pick(rng.random(n), COUNTRY_MIX)
    ch_seats = np.array([c.seats for c in SAAS_CHANNELS])[channel]
    size = np.exp(np.log(SEATS_MEDIAN) + SEATS_SIGMA * rng.standard_normal(n)) * ch_seats
    seats = np.maximum(1, np.round(size)).astype(np.int64)
    bucket = np.select([seats <= 2, seats <= 9], [0, 1], 2)
    u_plan = rng.random(n)
    plan = np.zeros(n, dtype=np.int64)
    for b in range(len(PLAN_BY_SEATS)):
        plan[bucket == b] = pick(u_plan[bucket == b], PLAN_BY_SEATS[b])
    annual = rng.random(n) < ANNUAL_SHARE[plan]
    trial = rng.random(n) < np.array([c.trial for c in SAAS_CHANNELS])[channel]
    days = np.where(rng.random(n) < TRIAL_SHORT_SHARE, TRIAL_DAYS[0], TRIAL_DAYS[1])
    anchor = signup + np.where(trial, days * US_PER_DAY, 0)
    theta = rng.beta(SBG_ALPHA, SBG_BETA, n)
    engagement = rng.gamma(ENGAGEMENT_SHAPE, 1.0 / ENGAGEMENT_SHAPE, n)
    prone = rng.gamma(TICKET_SHAPE, 1.0 / TICKET_SHAPE, n)
    growth = rng.gamma(GROWTH_SHAPE, 1.0 / GROWTH_SHAPE, n)
    buyer = (rng.random(n) < BUYER_SHARE) * rng.gamma(2.0, 0.5, n)
    x0 = USAGE_SD * rng.standard_normal(n)
    logit = TRIAL_LOGIT + TRIAL_SLOPE * (np.log(engagement) + x0)
    convert_p = np.where(trial, 1.0 / (1.0 + np.exp(-logit)), 1.0)
    converted = rng.random(n) < convert_p
    grid, clamped = _grid(anchor, clock.steps, clock.start_us)
    return _Accounts(
        signup=signup,
        channel=channel,
        country=country,
        plan=plan,
        seats=seats,
        annual=annual,
        trial=trial,
        anchor=anchor,
        converted=converted,
        convert_p=convert_p,
        theta=theta,
        engagement=engagement,
        prone=prone,
        growth=growth,
        buyer=buyer,
        x0=x0,
        u_trial=rng.random((5, n)),
        grid=grid,
        clamped=clamped,
    )


class _Subs:
    """The subscriptions opened so far, by number in order of opening (index = number)."""

    def __init__(self, capacity: int) -> None:
        self.n = 0
        self.account = np.zeros(capacity, dtype=np.int64)
        self.started = np.zeros(capacity, dtype=np.int64)
        self.paid = np.full(capacity, NEVER, dtype=np.int64)
        self.trial = np.zeros(capacity, dtype=bool)
        self.plan = np.zeros(capacity, dtype=np.int64)
        self.seats = np.zeros(capacity, dtype=np.int64)
        self.annual = np.zeros(capacity, dtype=bool)
        self.mrr = np.zeros(capacity)
        self.ended = np.full(capacity, NEVER, dtype=np.int64)
        self.cause = np.zeros(capacity, dtype=np.int64)

    def open(
        self,
        account: IntArray,
        started: IntArray,
        *,
        paid: IntArray,
        trial: BoolArray,
        plan: IntArray,
        seats: IntArray,
        annual: BoolArray,
        mrr: FloatArray,
    ) -> IntArray:
        ids = np.arange(self.n, self.n + len(account), dtype=np.int64)
        self.n += len(account)
        self.account[ids], self.started[ids], self.paid[ids] = account, started, paid
        self.trial[ids], self.plan[ids], self.seats[ids] = trial, plan, seats
        self.annual[ids], self.mrr[ids] = annual, mrr
        return ids

    def close(self, ids: IntArray, at: IntArray, cause: IntArray | int) -> None:
        self.ended[ids] = at
        self.cause[ids] = cause


@dataclass
class _State:
    """Each account's state between months: 0 waiting to (re)start, 1 subscribed, 2 gone."""

    status: IntArray
    start_step: IntArray
    sub: IntArray
    n_subs: IntArray
    plan: IntArray
    seats: IntArray
    annual: BoolArray
    mrr: FloatArray
    x: FloatArray
    usage: FloatArray
    strain: FloatArray
    hazard: FloatArray
    surv: FloatArray
    fresh: BoolArray
    adopted: IntArray
    pend_plan: IntArray
    pend_seats: IntArray
    repriced: BoolArray

    @classmethod
    def of(cls, acc: _Accounts, first: IntArray, mrr: FloatArray, clock: _Clock) -> _State:
        n = len(acc.signup)
        return cls(
            status=np.where(acc.converted, 1, 2).astype(np.int64),
            start_step=np.zeros(n, dtype=np.int64),
            sub=first,
            n_subs=np.ones(n, dtype=np.int64),
            plan=acc.plan.copy(),
            seats=acc.seats.copy(),
            annual=acc.annual.copy(),
            mrr=mrr.copy(),
            x=acc.x0.copy(),
            usage=acc.engagement * np.exp(acc.x0),
            strain=np.zeros(n),
            hazard=np.zeros(n),
            surv=np.ones(n),
            fresh=np.zeros(n, dtype=bool),
            adopted=np.full(n, NEVER, dtype=np.int64),
            pend_plan=acc.plan.copy(),
            pend_seats=acc.seats.copy(),
            repriced=clock.raised(acc.anchor),
        )


class _Cells(NamedTuple):
    """Subscription months (a trial is one): the state, the truth and the event counts."""

    account: IntArray
    sub: IntArray
    start: IntArray
    stop: IntArray
    usage: FloatArray
    tickets: IntArray
    hazard: FloatArray
    end_prob: FloatArray
    plan: IntArray
    seats: IntArray
    mrr: FloatArray
    annual: BoolArray
    login: IntArray
    feature_use: IntArray
    advanced_use: IntArray
    oneoffs: IntArray

    def counts_of(self, kind: str) -> IntArray:
        counts: IntArray = self.tickets if kind == "support_ticket" else getattr(self, kind)
        return counts


class _Invoices(NamedTuple):
    sub: IntArray
    ts: IntArray
    amount: FloatArray


class _Changes(NamedTuple):
    sub: IntArray
    ts: IntArray
    plan: IntArray
    seats: IntArray
    mrr: FloatArray


@dataclass
class _Sim:
    """What the simulation recorded, month by month."""

    subs: _Subs
    adopted: IntArray
    cell_parts: list[_Cells] = field(default_factory=list)
    invoice_parts: list[_Invoices] = field(default_factory=list)
    change_parts: list[_Changes] = field(default_factory=list)

    def cells(self) -> _Cells:
        return _Cells(*(np.concatenate(col) for col in zip(*self.cell_parts, strict=True)))

    def invoices(self) -> _Invoices:
        return _Invoices(*(np.concatenate(col) for col in zip(*self.invoice_parts, strict=True)))

    def changes(self) -> _Changes:
        return _Changes(*(np.concatenate(col) for col in zip(*self.change_parts, strict=True)))


def _simulate(
    acc: _Accounts,
    clock: _Clock,
    rng: np.random.Generator,
    *,
    shock: bool,
    mixed: bool,
    wear: _Wear | None,
) -> _Sim:
    """Month by month on each account's own billing grid, every account at once."""
    n = len(acc.signup)
    subs = _Subs(n * MAX_SUBSCRIPTIONS)
    mrr = _mrr(acc.seats, acc.plan, acc.annual, clock.raised(acc.anchor))
    paid = np.where(acc.converted, acc.anchor, NEVER)
    first = subs.open(
        np.arange(n, dtype=np.int64),
        acc.signup,
        paid=paid,
        trial=acc.trial,
        plan=acc.plan,
        seats=acc.seats,
        annual=acc.annual,
        mrr=mrr,
    )
    lapsed = np.flatnonzero(~acc.converted)
    subs.close(first[lapsed], acc.anchor[lapsed], _LAPSED)
    st = _State.of(acc, first, mrr, clock)
    sim = _Sim(subs, st.adopted, cell_parts=[_trial_cells(acc, first)])
    for k in range(clock.steps):
        d, nxt = acc.grid[:, k], acc.grid[:, k + 1]
        inside = d < clock.horizon
        if not inside.any():
            break
        dr = _Draws.of(rng, n)
        _restarts(k, d, inside & ~acc.clamped[:, k], st, subs, dr, clock)
        _boundary(k, d, inside, st, sim, dr, clock, shock=shock)
        _month(k, d, nxt, inside, st, acc, sim, dr, clock, shock=shock, mixed=mixed, wear=wear)
    return sim


def _trial_cells(acc: _Accounts, first: IntArray) -> _Cells:
    """The trial of each account that had one, as one period of events (no invoice)."""
    idx = np.flatnonzero(acc.trial)
    start, stop = acc.signup[idx], acc.anchor[idx]
    usage = acc.engagement[idx] * np.exp(acc.x0[idx])
    scale = TRIAL_INTENSITY * (stop - start) / (US_PER_DAY * 365.25 / 12)
    seats = acc.seats[idx]
    u = acc.u_trial[:, idx]
    zero = np.zeros(len(idx), dtype=np.int64)
    return _Cells(
        account=idx,
        sub=first[idx],
        start=start,
        stop=stop,
        usage=usage,
        tickets=_poisson_quantile(u[3], TICKET_RATE * acc.prone[idx] * seats**TICKET_SEATS * scale),
        hazard=np.zeros(len(idx)),
        end_prob=1.0 - acc.convert_p[idx],
        plan=acc.plan[idx],
        seats=seats,
        mrr=np.zeros(len(idx)),
        annual=acc.annual[idx],
        login=_poisson_quantile(u[0], LOGIN_RATE * usage * seats**LOGIN_SEATS * scale),
        feature_use=_poisson_quantile(u[1], FEATURE_RATE * usage * seats**FEATURE_SEATS * scale),
        advanced_use=zero,
        oneoffs=zero,
    )


def _restarts(
    k: int,
    d: IntArray,
    ok: BoolArray,
    st: _State,
    subs: _Subs,
    dr: _Draws,
    clock: _Clock,
) -> None:
    """Returning accounts open a new subscription (no trial): same plan or one lower, fewer
    seats, rarely annual; the usage process starts afresh. `ok`: the billing date may start
    one (not one the month's end clamped, whose next months would not be the start plus k
    months: such a start waits a month)."""
    wait = np.flatnonzero((st.status == 0) & (st.start_step == k) & ~ok)
    st.start_step[wait] += 1
    idx = np.flatnonzero((st.status == 0) & (st.start_step == k) & ok)
    if not idx.size:
        return
    lower = (dr.new_plan[idx] < WINBACK_DOWNGRADE) & (st.plan[idx] > 0)
    plan = st.plan[idx] - lower
    seats = np.maximum(1, np.round(st.seats[idx] * WINBACK_SEATS)).astype(np.int64)
    annual = dr.new_annual[idx] < WINBACK_ANNUAL
    at = d[idx]
    mrr = _mrr(seats, plan, annual, clock.raised(at))
    sub = subs.open(
        idx,
        at,
        paid=at,
        trial=np.zeros(len(idx), bool),
        plan=plan,
        seats=seats,
        annual=annual,
        mrr=mrr,
    )
    st.status[idx], st.sub[idx], st.n_subs[idx] = 1, sub, st.n_subs[idx] + 1
    st.plan[idx], st.seats[idx], st.annual[idx], st.mrr[idx] = plan, seats, annual, mrr
    st.pend_plan[idx], st.pend_seats[idx] = plan, seats
    st.x[idx], st.surv[idx], st.fresh[idx] = USAGE_SD * dr.x_new[idx], 1.0, False
    st.strain[idx] = 0.0
    st.repriced[idx] = clock.raised(at)


def _boundary(
    k: int,
    d: IntArray,
    inside: BoolArray,
    st: _State,
    sim: _Sim,
    dr: _Draws,
    clock: _Clock,
    *,
    shock: bool,
) -> None:
    """A billing date: the subscription ends (monthly: that month's hazard; annual, at its
    anniversary: the year's), meets the new price, or renews with its pending changes; paid
    periods are invoiced."""
    active = (st.status == 1) & inside
    since = k - st.start_step
    renew = active & (since > 0) & (~st.annual | (since % 12 == 0))
    leave_p = np.where(st.annual, 1.0 - st.surv, st.hazard)
    ends = renew & (dr.churn < leave_p)
    cause = np.full(len(d), _CHURN, dtype=np.int64)
    if shock:
        due = renew & ~ends & ~st.repriced & clock.raised(d) & (st.plan == PRICE_PLAN)
        p_leave = np.minimum(PRICE_CHURN * st.usage**-0.5, 0.5)
        leave = due & (dr.price < p_leave)
        down = due & ~leave & (dr.price < p_leave + PRICE_DOWNGRADE)
        st.pend_plan[down] = np.minimum(st.pend_plan[down], PRICE_PLAN - 1)
        cause[leave] = _PRICE
        ends |= leave
    st.repriced |= renew & clock.raised(d)
    gone = np.flatnonzero(ends)
    sim.subs.close(st.sub[gone], d[gone], cause[gone])
    _leave(k, ends, st, dr)
    apply = np.flatnonzero(renew & ~ends)
    plan, seats, annual = st.pend_plan[apply], st.pend_seats[apply], st.annual[apply]
    mrr = _mrr(seats, plan, annual, clock.raised(d[apply]))
    moved = (plan != st.plan[apply]) | (seats != st.seats[apply]) | (mrr != st.mrr[apply])
    at = apply[moved]
    sim.change_parts.append(_Changes(st.sub[at], d[at], plan[moved], seats[moved], mrr[moved]))
    st.plan[apply], st.seats[apply], st.mrr[apply] = plan, seats, mrr
    st.surv[apply] = 1.0
    bill = np.flatnonzero((renew & ~ends) | (active & (since == 0)))
    amount = np.round(st.mrr[bill] * np.where(st.annual[bill], 12, 1), 2)
    sim.invoice_parts.append(_Invoices(st.sub[bill], d[bill], amount))


def _leave(k: int, ends: BoolArray, st: _State, dr: _Draws) -> None:
    """An ended subscription: WINBACK_SHARE come back after a gap, the others are gone."""
    back = ends & (dr.winback < WINBACK_SHARE) & (st.n_subs < MAX_SUBSCRIPTIONS)
    gap = WINBACK_MIN_GAP + np.floor(np.log(dr.gap) / np.log1p(-1.0 / WINBACK_GAP))
    st.start_step[back] = k + gap[back].astype(np.int64)
    st.status[back] = 0
    st.status[ends & ~back] = 2


def _month(
    k: int,
    d: IntArray,
    nxt: IntArray,
    inside: BoolArray,
    st: _State,
    acc: _Accounts,
    sim: _Sim,
    dr: _Draws,
    clock: _Clock,
    *,
    shock: bool,
    mixed: bool,
    wear: _Wear | None,
) -> None:
    """A subscribed month: usage, tickets, the hazard, events, and the pending plan moves."""
    idx = np.flatnonzero((st.status == 1) & inside)
    since = k - st.start_step[idx]
    x = np.where(since == 0, st.x[idx], USAGE_RHO * st.x[idx] + USAGE_SIGMA * dr.eps[idx])
    usage = acc.engagement[idx] * np.exp(x)
    plan, seats, annual = st.plan[idx], st.seats[idx], st.annual[idx]
    u = dr.counts[:, idx]
    tickets = _poisson_quantile(u[3], TICKET_RATE * acc.prone[idx] * seats**TICKET_SEATS)
    strain = TICKET_MEMORY * np.where(since == 0, 0.0, st.strain[idx]) + tickets
    m = PLAN_HAZARD[plan] * np.array([c.hazard for c in SAAS_CHANNELS])[acc.channel[idx]]
    m = m * acc.engagement[idx] ** -LEVEL_EFFECT * np.exp(-DROP_EFFECT * x)
    m = m * np.exp(TICKET_EFFECT * strain) * seats**-SEAT_EFFECT
    m = m * np.where(annual, ANNUAL_HAZARD, 1.0) * np.where(st.n_subs[idx] > 1, WINBACK_HAZARD, 1.0)
    if shock:
        m = m * np.where((plan == PRICE_PLAN) & clock.raised(d[idx]), PRICE_HAZARD, 1.0)
    if wear is not None:
        m = m * wear.budget(idx, nxt[idx], annual, clock)
    hazard = np.minimum(1.0 - (1.0 - acc.theta[idx]) ** m, MAX_HAZARD)
    if wear is not None:
        hazard = wear.worn(idx, k, hazard)
    surv = np.where(annual, st.surv[idx] * (1.0 - hazard), 1.0)
    year_end = (since + 1) % 12 == 0
    end_prob = np.where(annual, np.where(year_end, 1.0 - surv, 0.0), hazard)
    st.x[idx], st.usage[idx], st.hazard[idx], st.surv[idx] = x, usage, hazard, surv
    st.strain[idx] = strain
    adopted = st.adopted[idx] <= d[idx]
    oneoff_rate = ONEOFF_RATE * acc.buyer[idx] * usage**0.5 if mixed else np.zeros(len(idx))
    sim.cell_parts.append(
        _Cells(
            account=idx,
            sub=st.sub[idx],
            start=d[idx],
            stop=nxt[idx],
            usage=usage,
            tickets=tickets,
            hazard=hazard,
            end_prob=end_prob,
            plan=plan,
            seats=seats,
            mrr=st.mrr[idx],
            annual=annual,
            login=_poisson_quantile(u[0], LOGIN_RATE * usage * seats**LOGIN_SEATS),
            feature_use=_poisson_quantile(u[1], FEATURE_RATE * usage * seats**FEATURE_SEATS),
            advanced_use=_poisson_quantile(u[2], adopted * ADVANCED_RATE * usage),
            oneoffs=_poisson_quantile(u[4], oneoff_rate),
        )
    )
    _moves(idx, usage, nxt, st, acc, dr)


def _moves(
    idx: IntArray, usage: FloatArray, nxt: IntArray, st: _State, acc: _Accounts, dr: _Draws
) -> None:
    """Feature adoption (used from the next month), upgrades that follow it, downgrades and
    seat cuts that follow low usage, seat growth: pending until the next billing date."""
    plan, seats = st.pend_plan[idx], st.pend_seats[idx]
    was_fresh = st.fresh[idx]
    adopt = ~was_fresh & (plan < _TOP) & (dr.adopt[idx] < np.minimum(ADOPT_RATE * usage, 0.5))
    st.adopted[idx] = np.where(adopt, np.minimum(st.adopted[idx], nxt[idx]), st.adopted[idx])
    up = (plan < _TOP) & (dr.up[idx] < np.where(was_fresh, UPGRADE_ADOPTED, UPGRADE_BASE))
    st.fresh[idx] = (was_fresh | adopt) & ~up
    down = ~up & (plan > 0) & (dr.down[idx] < np.minimum(DOWNGRADE_RATE / usage, 0.2))
    st.pend_plan[idx] = plan + up - down
    grow = dr.grow[idx] < SEAT_GROWTH * acc.growth[idx]
    more = 1 + _poisson_quantile(dr.grow_n[idx], SEAT_STEP * seats.astype(np.float64))
    cut = ~grow & (dr.cut[idx] < np.minimum(SEAT_CUT * usage**-0.5, 0.2))
    fewer = 1 + _poisson_quantile(dr.cut_n[idx], SEAT_CUT_STEP * seats.astype(np.float64))
    st.pend_seats[idx] = np.where(
        grow, seats + more, np.where(cut, np.maximum(1, seats - fewer), seats)
    )


# --- the tables ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ids:
    """Customer ids by account; subscription ids by number ("" if it starts after the end),
    numbered in order of start; `observed` the numbers of the subscriptions in id order."""

    customer: ObjectArray
    sub: ObjectArray
    observed: IntArray
    rank: IntArray
    """By number: the position in id order (observed), else past the last."""

    @classmethod
    def of(cls, subs: _Subs, acc: _Accounts, clock: _Clock) -> _Ids:
        seen = np.flatnonzero(subs.started[: subs.n] < clock.end)
        observed = seen[np.lexsort((subs.account[seen], subs.started[seen]))]
        sub = np.full(subs.n, "", dtype=object)
        sub[observed] = _ids("S", np.arange(1, len(observed) + 1, dtype=np.int64), 7)
        customer = _ids("C", np.arange(1, len(acc.signup) + 1, dtype=np.int64), 6)
        rank = np.full(subs.n, len(observed), dtype=np.int64)
        rank[observed] = np.arange(len(observed))
        return cls(customer, sub, observed, rank)


def _ids(prefix: str, numbers: IntArray, width: int) -> ObjectArray:
    text = pd.Series(numbers).astype(str).str.zfill(width)
    return (prefix + text).to_numpy(dtype=object)


def _ts(us: IntArray, start_us: int) -> pd.Series:
    when = pd.Series((us + start_us).astype("datetime64[us]"))
    return when.dt.tz_localize("UTC").astype(TS_DTYPE)


def _maybe_ts(us: IntArray, keep: BoolArray, start_us: int) -> pd.Series:
    """Timestamps where `keep`, else NaT."""
    return _ts(np.where(keep, us, 0), start_us).where(keep)


_PLAN_NAMES = np.array(PLANS, dtype=object)


def _billing(annual: BoolArray) -> ObjectArray:
    return np.where(annual, "year", "month").astype(object)


def _subscriptions(subs: _Subs, ids: _Ids, clock: _Clock) -> pd.DataFrame:
    o = ids.observed
    ended = subs.ended[o]
    return pd.DataFrame(
        {
            "customer_id": ids.customer[subs.account[o]],
            "subscription_id": ids.sub[o],
            "plan": _PLAN_NAMES[subs.plan[o]],
            "seats": subs.seats[o],
            "mrr": subs.mrr[o],
            "started_at": _ts(subs.started[o], clock.start_us),
            "ended_at": _maybe_ts(ended, ended < clock.end, clock.start_us),
            "billing_period": _billing(subs.annual[o]),
            "trial": subs.trial[o],
        }
    )


def _changes(ch: _Changes, ids: _Ids, clock: _Clock) -> pd.DataFrame:
    keep = np.flatnonzero(ch.ts < clock.end)
    keep = keep[np.lexsort((ids.rank[ch.sub[keep]], ch.ts[keep]))]
    return pd.DataFrame(
        {
            "subscription_id": ids.sub[ch.sub[keep]],
            "ts": _ts(ch.ts[keep], clock.start_us),
            "plan": _PLAN_NAMES[ch.plan[keep]],
            "seats": ch.seats[keep],
            "mrr": ch.mrr[keep],
        }
    )


def _cell_rows(
    rng: np.random.Generator, cells: _Cells, order: IntArray, counts: IntArray, width: int
) -> tuple[IntArray, IntArray, FloatArray]:
    """`counts` rows per cell, cells in `order`: (cell, time uniform in the cell, `width` - 1
    more uniforms per row). One row's draws follow the previous row's: a prefix of cells
    gets the same rows whatever comes after it."""
    cell = np.repeat(order, counts[order])
    u = rng.random((len(cell), width))
    span = cells.stop[cell] - cells.start[cell]
    t = cells.start[cell] + np.floor(u[:, 0] * span).astype(np.int64)
    return cell, t, u[:, 1:]


def _in_time(cells: _Cells) -> IntArray:
    """Cells by start time (then account): the order in which rows get their draws."""
    order: IntArray = np.lexsort((cells.account, cells.start))
    return order


def _events(rng: _Streams, cells: _Cells, ids: _Ids, clock: _Clock) -> pd.DataFrame:
    """Usage and support events, uniform within each month (the same contract as `generate`)."""
    order = _in_time(cells)
    acct: list[IntArray] = []
    when: list[IntArray] = []
    kinds: list[ObjectArray] = []
    for kind in EVENT_TYPES:
        cell, t, _ = _cell_rows(rng.rows(kind), cells, order, cells.counts_of(kind), 1)
        keep = t < clock.end
        acct.append(cells.account[cell[keep]])
        when.append(t[keep])
        kinds.append(np.full(int(keep.sum()), kind, dtype=object))
    a, t_all, k_all = np.concatenate(acct), np.concatenate(when), np.concatenate(kinds)
    by_time = np.lexsort((a, t_all))
    return pd.DataFrame(
        {
            "customer_id": ids.customer[a[by_time]],
            "ts": _ts(t_all[by_time], clock.start_us),
            "event_type": k_all[by_time],
        }
    )


def _invoice_numbers(sub: IntArray, ts: IntArray) -> IntArray:
    """1, 2, ... per subscription in time order."""
    order = np.lexsort((ts, sub))
    s = sub[order]
    first = np.r_[True, s[1:] != s[:-1]]
    pos = np.arange(len(s))
    number = np.empty(len(s), dtype=np.int64)
    number[order] = pos - np.maximum.accumulate(np.where(first, pos, 0)) + 1
    return number


def _transactions(
    rng: np.random.Generator, sim: _Sim, cells: _Cells, ids: _Ids, clock: _Clock
) -> pd.DataFrame:
    """Invoices (order_id: the subscription id and the invoice's number), then one-offs."""
    inv = sim.invoices()
    number = _invoice_numbers(inv.sub, inv.ts)
    keep = np.flatnonzero(inv.ts < clock.end)
    sub = inv.sub[keep]
    invoice_id = ids.sub[sub] + "-" + pd.Series(number[keep]).astype(str).str.zfill(3).to_numpy()
    rows = {
        "account": sim.subs.account[sub],
        "t": inv.ts[keep],
        "amount": inv.amount[keep],
        "margin": np.round(inv.amount[keep] * INVOICE_MARGIN, 2),
        "order_id": invoice_id.astype(object),
        "channel": np.full(len(keep), "subscription", dtype=object),
    }
    extra = _oneoffs(rng, cells, clock)
    both = {k: np.concatenate([v, extra[k]]) for k, v in rows.items()}
    order = np.lexsort((both["account"], both["t"]))
    return pd.DataFrame(
        {
            "customer_id": ids.customer[both["account"][order]],
            "ts": _ts(both["t"][order], clock.start_us),
            "amount": both["amount"][order],
            "margin": both["margin"][order],
            "order_id": both["order_id"][order],
            "channel": both["channel"][order],
        }
    )


def _oneoffs(
    rng: np.random.Generator, cells: _Cells, clock: _Clock
) -> dict[str, npt.NDArray[np.generic]]:
    """saas_mixed's one-off purchases while subscribed: kind, price from its menu, margin."""
    cell, t, u = _cell_rows(rng, cells, _in_time(cells), cells.oneoffs, 4)
    keep = t < clock.end
    cell, t, u = cell[keep], t[keep], u[keep]
    kind = pick(u[:, 0], np.array([k.share for k in ONEOFF_KINDS]))
    amount = np.zeros(len(t))
    for i, k in enumerate(ONEOFF_KINDS):
        mine = kind == i
        price = np.array(k.prices)[(u[mine, 1] * len(k.prices)).astype(np.int64)]
        amount[mine] = price * (1 + np.floor(u[mine, 2] * k.max_units))
    margin_rate = np.array([k.margin for k in ONEOFF_KINDS])[kind]
    by_time = np.lexsort((cells.account[cell], t))
    number = np.empty(len(t), dtype=np.int64)
    number[by_time] = np.arange(1, len(t) + 1)
    return {
        "account": cells.account[cell],
        "t": t,
        "amount": amount,
        "margin": np.round(amount * margin_rate, 2),
        "order_id": _ids("O", number, 7),
        "channel": np.array([k.channel for k in ONEOFF_KINDS], dtype=object)[kind],
    }


def _customers(acc: _Accounts, sim: _Sim, ids: _Ids, clock: _Clock) -> pd.DataFrame:
    """One row per account at signup, and one per change of its plan in force (`valid_from`):
    a plan change, or a new subscription on another plan."""
    subs = sim.subs
    n = len(acc.signup)
    later = ids.observed[ids.observed >= n]
    ch = sim.changes()
    moved = np.flatnonzero(ch.ts < clock.end)
    account = np.concatenate([np.arange(n), subs.account[later], subs.account[ch.sub[moved]]])
    t = np.concatenate([acc.signup, subs.started[later], ch.ts[moved]])
    plan = np.concatenate([acc.plan, subs.plan[later], ch.plan[moved]])
    order = np.lexsort((np.arange(len(t)), t, account))
    account, t, plan = account[order], t[order], plan[order]
    new = np.r_[True, (account[1:] != account[:-1]) | (plan[1:] != plan[:-1])]
    account, t, plan = account[new], t[new], plan[new]
    channels = np.array([c.name for c in SAAS_CHANNELS], dtype=object)
    countries = np.array([c[0] for c in COUNTRIES], dtype=object)
    return pd.DataFrame(
        {
            "customer_id": ids.customer[account],
            "signup_ts": _ts(acc.signup[account], clock.start_us),
            "acquisition_channel": channels[acc.channel[account]],
            "country": countries[acc.country[account]],
            "plan": _PLAN_NAMES[plan],
            "valid_from": _ts(t, clock.start_us),
        }
    )


def _truth(acc: _Accounts, sim: _Sim, ids: _Ids, clock: _Clock, wear: _Wear | None) -> pd.DataFrame:
    """The hidden truth per subscription (columns: see SaasData)."""
    subs = sim.subs
    o = ids.observed
    a = subs.account[o]
    ended, paid, adopted = subs.ended[o], subs.paid[o], sim.adopted[a]
    trial = subs.trial[o]
    truth = pd.DataFrame(
        {
            "subscription_id": ids.sub[o],
            "customer_id": ids.customer[a],
            "theta": acc.theta[a],
            "engagement": acc.engagement[a],
            "ticket_rate": TICKET_RATE * acc.prone[a],
            "trial_end": _maybe_ts(acc.anchor[a], trial, clock.start_us),
            "paid_from": _maybe_ts(paid, paid < NEVER, clock.start_us),
            "churn_ts": _maybe_ts(ended, ended < NEVER, clock.start_us),
            "end_cause": np.array(END_CAUSES, dtype=object)[subs.cause[o]],
            "adopted_at": _maybe_ts(adopted, adopted < NEVER, clock.start_us),
        }
    )
    if wear is None:
        return truth
    outgrows = np.isfinite(wear.outgrow[a])
    months = np.where(outgrows, wear.outgrow[a], 0.0)
    at = acc.anchor[a] + np.round(months * US_PER_DAY * 365.25 / 12).astype(np.int64)
    return truth.assign(
        fragile=wear.fragile[a],
        outgrows_at=_maybe_ts(at, outgrows, clock.start_us),
        fiscal_year_end=wear.year_end[a],
    )


def _truth_periods(cells: _Cells, ids: _Ids, clock: _Clock) -> pd.DataFrame:
    """The hidden truth per subscription month (columns: see SaasData)."""
    rank = ids.rank[cells.sub]
    keep = np.flatnonzero(rank < len(ids.observed))
    keep = keep[np.lexsort((cells.start[keep], rank[keep]))]
    return pd.DataFrame(
        {
            "subscription_id": ids.sub[cells.sub[keep]],
            "customer_id": ids.customer[cells.account[keep]],
            "period_start": _ts(cells.start[keep], clock.start_us),
            "period_end": _ts(cells.stop[keep], clock.start_us),
            "usage": cells.usage[keep],
            "tickets": cells.tickets[keep],
            "hazard": cells.hazard[keep],
            "end_prob": cells.end_prob[keep],
            "plan": _PLAN_NAMES[cells.plan[keep]],
            "seats": cells.seats[keep],
            "mrr": cells.mrr[keep],
            "billing_period": _billing(cells.annual[keep]),
        }
    )


def write_saas_raw(
    data: SaasData, out_dir: Path | str, *, fmt: RawFormat = "csv"
) -> dict[TableName, Path]:
    """Write the raw tables as `<out_dir>/<table>.<fmt>` (the truth never); CSV times ISO Z."""
    return write_tables(data.tables(), out_dir, fmt=fmt)
