"""A seeded generator of believable customers: transactions, customer attributes and events.

The `btyd` world (inputs/worlds.py lists the others) is Pareto/NBD (Schmittlein, Morrison &
Colombo 1987): while alive, a customer buys as a Poisson process with rate lambda ~ Gamma(r,
alpha) and lives an exponential lifetime with rate mu ~ Gamma(s, beta). Spend follows
Gamma-Gamma (Fader, Hardie & Lee 2005, eq. 1-2): order value z ~ Gamma(p, nu), nu ~ Gamma(q,
gamma), so E[z | nu] = p / nu. On top: growing monthly signup cohorts, acquisition channels of
different value, seasonality (a November/December peak), refunds, margins, and behaviour events
that fade in the weeks before a customer churns while support tickets rise. The other worlds
switch further mechanisms on over the same customers: seasonality on spend, drifting rates,
tenure curves, on/off dormancy instead of death, engagement-driven spend with non-oracle events,
line items, and plan or country changes (a customers row per change, from `valid_from`); the
`retail` world writes the line-item purchases as a shop's point-of-sale export (with the order
totals a correct ingest must store, `GeneratedData.order_totals`), and `plant_bad_rows` adds a
bad row of every quarantine kind to a transactions frame. On request (`generate`'s `costs`,
`adoption`, `experiment`) a world also carries the decisions' planted truths
(`clv.inputs.planted`): acquisition costs, an early-adoption lift, a retention experiment.

Time-varying rates (seasonality, scenarios, tenure, drift, plans, the pre-churn fade) are
sampled by thinning (Lewis & Shedler 1979): candidates come from a homogeneous process at an
upper-bound rate and are kept with probability rate(t) / bound. Candidate counts and every
random draw depend only on things a scenario does not change (draws made per kept order or line
come from their own streams, in time order), so the same seed gives identical rows before the
change date in every scenario; only what happens after it differs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple, get_args

import numpy as np
import numpy.typing as npt
import pandas as pd
import yaml

from clv.core.contracts import TS_DTYPE, RejectReason, TableName
from clv.core.errors import DataError
from clv.core.settings import IngestSettings
from clv.core.time import utc
from clv.inputs.planted import (
    TREATMENT,
    AdoptionPlan,
    AdoptionTruth,
    Boost,
    CacTruth,
    CostPlan,
    ExperimentPlan,
    ExperimentTruth,
    Truths,
    assign,
    assignment_rows,
    cost_table,
    early_adopters,
    period_months,
)
from clv.inputs.worlds import (
    DEFAULT_WORLD,
    QUANTITY_PROBS,
    TENURE_TYPES,
    WORLD_SPECS,
    WORLDS,
    Aliases,
    Contacts,
    History,
    LineItems,
    Lines,
    Retail,
    Spells,
    WorldName,
    WorldSpec,
    aliases,
    attribute_history,
    catalog,
    contacts,
    line_items,
    on_off_spells,
    pick,
    returned_units,
    tenure_bound,
    tenure_factor,
    tenure_types,
)

Scenario = Literal["baseline", "price_increase", "channel_shift", "engagement_drop"]
SCENARIOS: tuple[Scenario, ...] = get_args(Scenario)
RawFormat = Literal["csv", "parquet"]
DEFAULT_START = "2023-01-01"

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
ObjectArray = npt.NDArray[np.object_]
Column = FloatArray | IntArray | ObjectArray

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
PLAN_MOVES = np.array([[0.0, 0.75, 0.25], [0.35, 0.0, 0.65], [0.2, 0.8, 0.0]])
"""Where a plan change goes: row = plan before (free, basic, premium), column = plan after."""
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
COUNTRY_SPEND = np.array([1.0, 0.95, 1.0, 0.95, 0.9, 1.05, 1.0, 0.85, 1.1])
"""Order value multiplier by country (in COUNTRIES order), in worlds where countries change."""
SALES_CHANNELS: tuple[tuple[str, float], ...] = (("web", 0.55), ("app", 0.30), ("store", 0.15))

# Pareto/NBD heterogeneity, time in days: lambda ~ Gamma(R, scale 1/ALPHA), mean R/ALPHA per day;
# mu ~ Gamma(S, scale 1/BETA); the median lifetime is BETA * (2**(1/S) - 1) ~ 320 days.
R, ALPHA = 0.9, 18.0
S, BETA = 1.5, 550.0
# Gamma-Gamma spend: E[z] = P * GAMMA / (Q - 1) ~ 48 per order.
P, Q, GAMMA = 6.0, 3.5, 20.0
FIRST_PURCHASE_SHARE = 0.92
"""Share of customers whose signup is also their first order (time zero of Pareto/NBD)."""

SIGNUP_SEASON = np.array([1.15, 1.0, 1.0, 1.0, 1.0, 0.95, 0.9, 0.95, 1.05, 1.05, 1.2, 1.1])
ENGAGEMENT_LINK = 0.3
"""Engagement = Gamma noise x (purchase rate / mean) ** this, unless the world says otherwise."""
MIN_ACTIVE_DAYS = 14.0
"""On/off customers: the shortest mean active spell."""

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

CANCELLATION_PATTERN = "^C"
"""retail: a cancellation invoice's number is "C" + the number of the invoice it cancels."""
PERSONAL_COLUMNS: tuple[str, ...] = ("email", "name", "phone", "address")
"""retail: the personal columns of customers.csv (`ingest.personal_columns`)."""
EUROZONE = ("DE", "FR", "NL", "ES")
"""retail: countries whose customers are sometimes billed in the foreign currency (EUR)."""

CHANNEL_MIX = np.array([c.share for c in CHANNELS])
COUNTRY_MIX = np.array([c[1] for c in COUNTRIES])
PLAN_MIX = np.array([p[1] for p in PLANS])
PLAN_RATE = np.array([p[2] for p in PLANS])
PLAN_SPEND = np.array([p[3] for p in PLANS])
SALES_MIX = np.array([c[1] for c in SALES_CHANNELS])


@dataclass(frozen=True, eq=False)
class GeneratedData:
    """Raw tables matching core/contracts.py, plus the hidden truth behind them.

    `truth` (one row per customer) is for tests and evaluation; it is never written as raw
    data. Every world: purchase_rate (per day while active, at signup's plan, before season,
    tenure and drift), dropout_rate (per day; on/off customers: of going dormant), mean_spend,
    churn_ts (permanent death in the period, else NaT). Outside `btyd` also: tenure_type (flat,
    ramp_up, decay), on_off (follows the dormancy process), first_dormant_ts and
    first_return_ts (NaT if not in the period), comebacks (dormant spells ended in the period),
    event_profile (fades: logins fade before death; no_fade; ghost: keeps logging in after
    death; silent: hardly any events) and attribute_changes (customers rows after the first).

    The `retail` world also has `identities` (a fourth raw table), `order_totals` (truth: what
    a correct ingest stores, see `_order_totals`) and `ingest_settings` (what a user sets in
    clv.yaml to read this export; `ingest_block` prints it).

    Planted for the decisions (`generate`'s `costs`, `adoption`, `experiment`; see
    `clv.inputs.planted`): the `acquisition_costs` and `assignments` tables, `truths` (the
    planted CAC, the early-adoption lift and the experiment's uplift, with the rows each added)
    and, with adoption, the truth column early_adopter.
    """

    transactions: pd.DataFrame
    customers: pd.DataFrame
    events: pd.DataFrame
    truth: pd.DataFrame
    world: WorldName
    scenario: Scenario
    seed: int
    start: pd.Timestamp
    end: pd.Timestamp
    change_date: pd.Timestamp
    identities: pd.DataFrame | None = None
    order_totals: pd.DataFrame | None = None
    ingest_settings: IngestSettings | None = None
    acquisition_costs: pd.DataFrame | None = None
    assignments: pd.DataFrame | None = None
    truths: Truths = field(default_factory=Truths)

    def tables(self) -> dict[TableName, pd.DataFrame]:
        tables: dict[TableName, pd.DataFrame] = {
            "transactions": self.transactions,
            "customers": self.customers,
            "events": self.events,
        }
        if self.identities is not None:
            tables["identities"] = self.identities
        if self.acquisition_costs is not None:
            tables["acquisition_costs"] = self.acquisition_costs
        if self.assignments is not None:
            tables["assignments"] = self.assignments
        return tables


def period(
    *,
    months: int,
    start: pd.Timestamp | str = DEFAULT_START,
    change_date: pd.Timestamp | str | None,
) -> tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp]:
    """(start, end, change date): end is `months` after start; the change defaults to 2/3 in."""
    t0 = utc(start)
    end = t0 + pd.DateOffset(months=months)
    change = t0 + pd.DateOffset(months=2 * months // 3) if change_date is None else utc(change_date)
    if not t0 <= change <= end:
        span = f"{t0.date()}..{end.date()}"
        raise DataError(f"change date {change.date()} is outside the period {span}")
    return t0, end, change


@dataclass(frozen=True)
class _Clock:
    """The period in days from its start; `bounds` are the month starts (months + 1 values)."""

    start_us: int
    end: float
    change: float
    bounds: FloatArray
    first_month: int


@dataclass(frozen=True)
class _Streams:
    """Independent random streams; the first six are the btyd generator's, in its order."""

    cust: np.random.Generator
    buy: np.random.Generator
    spend: np.random.Generator
    refund: np.random.Generator
    event: np.random.Generator
    first: np.random.Generator
    traits: np.random.Generator
    spells: np.random.Generator
    changes: np.random.Generator
    line_count: np.random.Generator
    line_share: np.random.Generator
    line_qty: np.random.Generator
    line_sku: np.random.Generator
    line_refund: np.random.Generator
    line_delay: np.random.Generator
    retail_people: np.random.Generator
    retail_orders: np.random.Generator
    retail_lines: np.random.Generator
    retail_extra: np.random.Generator

    @classmethod
    def of(cls, seed: int, *, branch: int | None = None) -> _Streams:
        """The world's streams; with `branch`, another independent set (a planted effect's
        purchases), leaving the world's own as they were."""
        # Children are numbered: adding streams at the end leaves the first ones as they were.
        root = np.random.SeedSequence(seed, spawn_key=() if branch is None else (branch,))
        children = root.spawn(19)
        return cls(*(np.random.default_rng(s) for s in children))


class _Branch:
    """Seed-sequence children of the planted truths: far from the world's streams (0-18)."""

    COSTS = 1001
    ADOPTION = 1002
    ASSIGNMENT = 1003
    EXPERIMENT = 1004


def _branch_rng(seed: int, branch: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(branch,)))


@dataclass(frozen=True)
class _People:
    """Every customer's draws and the world's per-customer mechanisms (index = customer)."""

    signup: FloatArray
    channel: IntArray
    preferred: IntArray
    lam: FloatArray
    dropout: FloatArray
    nu: FloatArray
    engagement: FloatArray
    ch_rate: FloatArray
    ch_spend: FloatArray
    history: History
    death: FloatArray
    tenure: IntArray
    on_off: BoolArray
    spells: Spells | None
    fade_days: FloatArray | None
    ghost_until: FloatArray | None
    event_level: FloatArray | None


@dataclass(frozen=True)
class _Orders:
    """Orders sorted by time (then customer), with the draws attached to each."""

    cust: IntArray
    t: FloatArray
    z: FloatArray
    margin_rate: FloatArray
    u_sales: FloatArray
    u_pick: FloatArray
    u_refund: FloatArray
    delay: FloatArray


def _month_of_year(days: FloatArray, start_us: int) -> IntArray:
    months = ((start_us + days * _US_PER_DAY).astype("datetime64[us]")).astype("datetime64[M]")
    return months.astype(np.int64) % 12


def _season(days: FloatArray, start_us: int, table: FloatArray) -> FloatArray:
    return table[_month_of_year(days, start_us)]


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


def _maybe_ts(days: FloatArray, start_us: int) -> pd.Series:
    """Timestamps where `days` is finite, else NaT."""
    finite = np.isfinite(days)
    return _ts(np.where(finite, days, 0.0), start_us).where(finite)


def _ids(prefix: str, numbers: IntArray, width: int) -> ObjectArray:
    width = max(width, len(str(int(numbers.max()) if len(numbers) else 0)))
    text = pd.Series(numbers).astype(str).str.zfill(width)
    return (prefix + text).to_numpy(dtype=object)


def generate(
    *,
    customers: int,
    months: int,
    seed: int,
    scenario: Scenario = "baseline",
    world: WorldName = DEFAULT_WORLD,
    start: pd.Timestamp | str = DEFAULT_START,
    change_date: pd.Timestamp | str | None = None,
    costs: CostPlan | None = None,
    adoption: AdoptionPlan | None = None,
    experiment: ExperimentPlan | None = None,
) -> GeneratedData:
    """Generate `customers` customers signing up over `months` months from `start` (seeded).

    `costs`, `adoption` and `experiment` plant the decisions' truths (`clv.inputs.planted`);
    without them (the default) the world is exactly what it was."""
    if customers < 1 or months < 1:
        raise DataError("generate needs at least 1 customer and 1 month")
    if scenario not in SCENARIOS:
        raise DataError(f"unknown scenario {scenario!r}: choose one of {', '.join(SCENARIOS)}")
    if world not in WORLDS:
        raise DataError(f"unknown world {world!r}: choose one of {', '.join(WORLDS)}")
    spec = WORLD_SPECS[world]
    t0, t_end, t_change = period(months=months, start=start, change_date=change_date)
    day = pd.Timedelta(days=1)
    clock = _Clock(
        start_us=int(t0.value // 1000),
        end=(t_end - t0) / day,
        change=(t_change - t0) / day,
        bounds=np.array([((t0 + pd.DateOffset(months=m)) - t0) / day for m in range(months + 1)]),
        first_month=t0.month - 1,
    )
    rng = _Streams.of(seed)
    people = _population(rng, spec, clock, customers, scenario)
    orders = _orders(rng, spec, clock, people, scenario)
    cust_ids = _ids("C", np.arange(1, customers + 1, dtype=np.int64), 6)
    customer_rows = _customers(spec, clock, people, cust_ids)
    export = None
    drawn = _Drawn(rng, spec, clock, people, orders, scenario)
    if spec.retail is None:
        transactions = _transactions(drawn, cust_ids)
    else:
        export = _retail_export(drawn, cust_ids)
        transactions = export.transactions
        customer_rows = _with_contacts(customer_rows, export.contacts, cust_ids)
    events = _events(rng, spec, clock, people, scenario, cust_ids)
    truth = _truth(spec, clock, people, cust_ids)
    planted = _Planted(transactions=transactions)
    if costs is not None or adoption is not None or experiment is not None:
        plans = _Plans(seed, costs, adoption, experiment)
        planted = _plant(drawn, plans, cust_ids, transactions, events, (t0, t_end, t_change))
        if planted.early_adopter is not None:
            truth["early_adopter"] = planted.early_adopter
    return GeneratedData(
        transactions=planted.transactions,
        customers=customer_rows,
        events=events,
        truth=truth,
        world=world,
        scenario=scenario,
        seed=seed,
        start=t0,
        end=t_end,
        change_date=t_change,
        identities=export.identities if export else None,
        order_totals=export.order_totals if export else None,
        ingest_settings=export.settings if export else None,
        acquisition_costs=planted.acquisition_costs,
        assignments=planted.assignments,
        truths=planted.truths,
    )


def _signups(rng: np.random.Generator, spec: WorldSpec, clock: _Clock, n: int) -> FloatArray:
    """Monthly cohorts growing (or shrinking) geometrically, uniform within the month."""
    months = len(clock.bounds) - 1
    cohort_w = (1 + spec.cohort_growth) ** np.arange(months) * SIGNUP_SEASON[
        (clock.first_month + np.arange(months)) % 12
    ]
    month = pick(rng.random(n), cohort_w)
    width = clock.bounds[month + 1] - clock.bounds[month]
    return np.sort(clock.bounds[month] + rng.random(n) * width)


def _acquisition(u: FloatArray, signup: FloatArray, change: float, scenario: Scenario) -> IntArray:
    """Acquisition channel per customer; channel_shift moves later signups to affiliate."""
    channel = pick(u, CHANNEL_MIX)
    if scenario == "channel_shift":
        k = [c.name for c in CHANNELS].index(SHIFTED_CHANNEL)
        shifted = CHANNEL_MIX.copy()
        shifted[k] = 0.0
        shifted = shifted / shifted.sum() * (1 - SHIFTED_SHARE)
        shifted[k] = SHIFTED_SHARE
        after = signup >= change
        channel[after] = pick(u[after], shifted)
    return channel


def _population(
    rng: _Streams, spec: WorldSpec, clock: _Clock, n: int, scenario: Scenario
) -> _People:
    """Signups, attributes and latent traits (btyd's draws in btyd's order come first)."""
    signup = _signups(rng.cust, spec, clock, n)
    u_channel = rng.cust.random(n)
    country = pick(rng.cust.random(n), COUNTRY_MIX)
    plan = pick(rng.cust.random(n), PLAN_MIX)
    lam = rng.cust.gamma(R, 1.0 / ALPHA, n)
    mu = rng.cust.gamma(S, 1.0 / BETA, n)
    nu = rng.cust.gamma(Q, 1.0 / GAMMA, n)
    life_draw = rng.cust.exponential(1.0, n)
    link = spec.behaviour.engagement_link if spec.behaviour else ENGAGEMENT_LINK
    engagement = rng.cust.gamma(2.0, 0.5, n) * np.clip(lam / (R / ALPHA), 0.2, 5.0) ** link
    preferred = pick(rng.cust.random(n), SALES_MIX)
    channel = _acquisition(u_channel, signup, clock.change, scenario)
    dropout = mu * np.array([c.dropout for c in CHANNELS])[channel]

    traits = rng.traits.random((n, 6))
    tenure = tenure_types(traits[:, 0], spec.tenure) if spec.tenure else np.zeros(n, np.int64)
    on_off = traits[:, 1] < (spec.on_off.share if spec.on_off else 0.0)
    if spec.changes:
        history = attribute_history(
            rng.changes,
            plan=plan,
            country=country,
            signup=signup,
            end=clock.end,
            spec=spec.changes,
            moves=PLAN_MOVES,
            country_mix=COUNTRY_MIX,
        )
    else:
        history = History.constant(plan, country)
    death, spells = _lives(rng.spells, spec, clock, scenario, signup, dropout, life_draw, on_off)
    fade_days, ghost_until, event_level = _event_traits(spec, traits, death)
    return _People(
        signup=signup,
        channel=channel,
        preferred=preferred,
        lam=lam,
        dropout=dropout,
        nu=nu,
        engagement=engagement,
        ch_rate=np.array([c.rate for c in CHANNELS])[channel],
        ch_spend=np.array([c.spend for c in CHANNELS])[channel],
        history=history,
        death=death,
        tenure=tenure,
        on_off=on_off,
        spells=spells,
        fade_days=fade_days,
        ghost_until=ghost_until,
        event_level=event_level,
    )


def _lives(
    rng: np.random.Generator,
    spec: WorldSpec,
    clock: _Clock,
    scenario: Scenario,
    signup: FloatArray,
    dropout: FloatArray,
    life_draw: FloatArray,
    on_off: BoolArray,
) -> tuple[FloatArray, Spells | None]:
    """Death times (inf for on/off customers) and the on/off customers' spells.

    Lifetime ~ Exp(mu x channel dropout); engagement_drop multiplies the hazard after the change
    date (memoryless: the remaining life shrinks by the factor), and shortens active spells.
    """
    death = signup + life_draw / dropout
    if scenario == "engagement_drop":
        pivot = np.maximum(signup, clock.change)
        late = death > pivot
        death[late] = pivot[late] + (death[late] - pivot[late]) / CHURN_HAZARD_FACTOR
    if spec.on_off is None or not on_off.any():
        return death, None
    dormant_mean = spec.on_off.dormant_days * rng.gamma(2.0, 0.5, len(signup))
    sub = on_off_spells(
        rng,
        hazard=_dormancy_hazard(spec, dropout, on_off)[on_off],
        dormant_mean=dormant_mean[on_off],
        signup=signup[on_off],
        end=clock.end,
        pivot=clock.change if scenario == "engagement_drop" else None,
        speedup=CHURN_HAZARD_FACTOR,
    )
    switches = np.full((len(signup), sub.switches.shape[1]), sub.horizon - 0.5)
    switches[on_off] = sub.switches
    return np.where(on_off, np.inf, death), Spells(switches, sub.horizon)


def _dormancy_hazard(spec: WorldSpec, dropout: FloatArray, on_off: BoolArray) -> FloatArray:
    """Per day: on/off customers' rate of going dormant, the others' rate of dying."""
    if spec.on_off is None:
        return dropout
    dormancy = np.minimum(dropout * spec.on_off.active_speedup, 1.0 / MIN_ACTIVE_DAYS)
    return np.where(on_off, dormancy, dropout)


def _event_traits(
    spec: WorldSpec, traits: FloatArray, death: FloatArray
) -> tuple[FloatArray | None, FloatArray | None, FloatArray | None]:
    """Behaviour worlds: per customer fade length (0: no fade), ghosting end, event level."""
    b = spec.behaviour
    if b is None:
        return None, None, None
    fades = traits[:, 2] < b.fade_share
    ghost = traits[:, 2] >= 1.0 - b.ghost_share
    fade_days = np.where(fades, PRECHURN_DAYS * (0.5 + 1.5 * traits[:, 3]), 0.0)
    ghost_until = np.where(ghost, death - b.ghost_days * np.log1p(-traits[:, 4]), death)
    event_level = np.where(traits[:, 5] < b.silent_share, b.silent_level, 1.0)
    return fade_days, ghost_until, event_level


def _alive(p: _People, idx: IntArray, t: FloatArray) -> BoolArray:
    """Whether customer idx[j] can buy at t[j]: before death, and in an active spell."""
    alive = t < p.death[idx]
    if p.spells is not None:
        on = p.on_off[idx]
        alive[on] &= p.spells.active(idx[on], t[on])
    return alive


def _rate_bound(spec: WorldSpec, clock: _Clock, p: _People) -> FloatArray | None:
    """Per customer, an upper bound of the world's rate factor (None: the world has none)."""
    if spec.tenure is None and spec.rate_drift == 0.0 and spec.changes is None:
        return None
    bound = np.ones(len(p.signup))
    if spec.tenure is not None:
        bound = bound * tenure_bound(p.tenure, spec.tenure)
    if spec.rate_drift > 0.0:
        bound = bound * np.exp(spec.rate_drift * clock.end / 365.25)
    return bound


def _rate_factor(
    spec: WorldSpec, p: _People, idx: IntArray, t: FloatArray, plan_hi: FloatArray
) -> FloatArray:
    """The world's purchase-rate multiplier at t: tenure curve, business drift, plan in force."""
    factor = np.ones(len(idx))
    if spec.tenure is not None:
        factor = factor * tenure_factor(p.tenure[idx], t - p.signup[idx], spec.tenure)
    if spec.rate_drift != 0.0:
        factor = factor * np.exp(spec.rate_drift * t / 365.25)
    if spec.changes is not None:
        factor = factor * PLAN_RATE[p.history.plan_of(idx, t)] / plan_hi[idx]
    return factor


@dataclass(frozen=True, eq=False)
class _Thinning:
    """The repeat purchases' thinning: candidates at `rate()` per customer and day, a candidate
    kept with probability accept / bound while the customer is alive. The bound does not depend
    on the (scenario-dependent) channel or on the scenario."""

    spec: WorldSpec
    clock: _Clock
    p: _People
    scenario: Scenario
    bound: float
    plan_hi: FloatArray
    world_bound: FloatArray | None

    @classmethod
    def of(cls, spec: WorldSpec, clock: _Clock, p: _People, scenario: Scenario) -> _Thinning:
        bound = float(p.ch_rate.max() * np.max(spec.season))
        plan_hi = PLAN_RATE[p.history.plan].max(axis=1)
        return cls(spec, clock, p, scenario, bound, plan_hi, _rate_bound(spec, clock, p))

    def rate(self) -> FloatArray:
        rate = self.p.lam * self.plan_hi * self.bound
        return rate if self.world_bound is None else rate * self.world_bound

    def accept(self, idx: IntArray, t: FloatArray) -> FloatArray:
        p, clock = self.p, self.clock
        accept = p.ch_rate[idx] * _season(t, clock.start_us, np.array(self.spec.season))
        if self.scenario == "price_increase":
            accept = np.where(t >= clock.change, accept * PRICE_RATE_FACTOR, accept)
        if self.world_bound is not None:
            factor = _rate_factor(self.spec, p, idx, t, self.plan_hi)
            accept = accept * factor / self.world_bound[idx]
        return accept


def _orders(
    rng: _Streams, spec: WorldSpec, clock: _Clock, p: _People, scenario: Scenario
) -> _Orders:
    """Repeat purchases by thinning, plus first orders at signup (time zero of Pareto/NBD).

    The bound does not depend on the (scenario-dependent) channel or on the scenario.
    """
    th = _Thinning.of(spec, clock, p, scenario)
    idx, t = _candidates(rng.buy, th.rate(), p.signup, clock.end)
    u_keep = rng.buy.random(len(idx))
    u_sales = rng.buy.random(len(idx))
    u_sales_pick = rng.buy.random(len(idx))
    z = rng.spend.gamma(P, 1.0, len(idx)) / p.nu[idx]
    margin_rate = rng.spend.normal(MARGIN_MEAN, MARGIN_SD, len(idx))
    u_refund = rng.refund.random(len(idx))
    refund_delay = rng.refund.uniform(1.0, 30.0, len(idx))
    keep = (u_keep * th.bound < th.accept(idx, t)) & _alive(p, idx, t)

    n = len(p.signup)
    has_first = rng.first.random(n) < FIRST_PURCHASE_SHARE
    first = [rng.first.random(n), rng.first.random(n), rng.first.gamma(P, 1.0, n) / p.nu]
    first += [rng.first.normal(MARGIN_MEAN, MARGIN_SD, n), rng.first.random(n)]
    first += [rng.first.uniform(1.0, 30.0, n)]
    f_sales, f_pick, f_z, f_margin, f_refund, f_delay = (a[has_first] for a in first)
    cust = np.concatenate([np.flatnonzero(has_first), idx[keep]])
    times = np.concatenate([p.signup[has_first], t[keep]])
    order = np.lexsort((cust, times))

    def merged(at_first: FloatArray, at_repeat: FloatArray) -> FloatArray:
        return np.concatenate([at_first, at_repeat[keep]])[order]

    return _Orders(
        cust=cust[order],
        t=times[order],
        z=merged(f_z, z),
        margin_rate=merged(f_margin, margin_rate),
        u_sales=merged(f_sales, u_sales),
        u_pick=merged(f_pick, u_sales_pick),
        u_refund=merged(f_refund, u_refund),
        delay=merged(f_delay, refund_delay),
    )


def _order_values(
    spec: WorldSpec, clock: _Clock, p: _People, o: _Orders, scenario: Scenario
) -> tuple[FloatArray, FloatArray | float, IntArray]:
    """Per order: value before price changes, the price factor, and the sales channel."""
    price: FloatArray | float = 1.0
    if scenario == "price_increase":
        price = np.where(o.t >= clock.change, PRICE_FACTOR, 1.0)
    sales = np.where(o.u_sales < 0.75, p.preferred[o.cust], pick(o.u_pick, SALES_MIX))
    value = o.z * p.ch_spend[o.cust] * PLAN_SPEND[p.history.plan_of(o.cust, o.t)]
    if spec.spend_season is not None:
        value = value * _season(o.t, clock.start_us, np.array(spec.spend_season))
    if spec.behaviour is not None:
        level = np.clip(p.engagement / np.median(p.engagement), 0.2, 5.0)
        value = value * level[o.cust] ** spec.behaviour.spend_link
        value = value * np.array(spec.behaviour.sales_spend)[sales]
    if spec.changes is not None:
        value = value * COUNTRY_SPEND[p.history.country_of(o.cust, o.t)]
    return value, price, sales


def _line_items(
    rng: _Streams, lines: Lines, value: FloatArray, price: FloatArray | float
) -> tuple[LineItems, ObjectArray]:
    """The orders' line items, drawn from the line streams, and the SKU names they index."""
    streams = (rng.line_count, rng.line_share, rng.line_qty, rng.line_sku)
    prices = np.broadcast_to(np.asarray(price, dtype=np.float64), value.shape)
    li = line_items(streams, value=value, price=prices, spec=lines)
    return li, _ids("SKU", np.arange(1, lines.skus + 1, dtype=np.int64), 4)


class _Drawn(NamedTuple):
    """What the purchases are written from: the streams, the world, its customers and orders."""

    rng: _Streams
    spec: WorldSpec
    clock: _Clock
    people: _People
    orders: _Orders
    scenario: Scenario


def _transactions(drawn: _Drawn, cust_ids: ObjectArray, *, first_order: int = 1) -> pd.DataFrame:
    """One row per order (per line in line worlds), then refund rows of earlier orders; order
    ids are numbered from `first_order` in time order."""
    rng, spec, clock, p, o, scenario = drawn
    value, price, sales = _order_values(spec, clock, p, o, scenario)
    margin_rate = np.clip(o.margin_rate, 0.05, 0.6)
    numbers = np.arange(first_order, first_order + len(o.t), dtype=np.int64)
    order_id = _ids("O", numbers, 8)
    sales_names = np.array([c[0] for c in SALES_CHANNELS], dtype=object)
    rows: dict[str, Column]
    relabel: dict[str, ObjectArray] = {}
    if spec.lines is None:
        amount = np.maximum(np.round(value * price, 2), 1.0)
        margin = np.round(amount * margin_rate, 2)
        rows = {"amount": amount, "margin": margin, "order_id": order_id}
        rows["channel"] = sales_names[sales]
        cust, t = o.cust, o.t
        refund = (o.u_refund < REFUND_SHARE) & (o.t + o.delay < clock.end)
        delay = o.delay
    else:
        li, sku_names = _line_items(rng, spec.lines, value, price)
        rows = {"amount": li.amount, "margin": np.round(li.amount * margin_rate[li.order], 2)}
        rows |= {"order_id": order_id[li.order], "channel": sales_names[sales][li.order]}
        number = pd.Series(li.number).astype(str).to_numpy(dtype=object)
        rows |= {"line_id": number, "sku": sku_names[li.sku], "quantity": li.quantity}
        rows["unit_price"] = li.unit_price
        cust, t = o.cust[li.order], o.t[li.order]
        delay = rng.line_delay.uniform(1.0, 30.0, len(t))
        refund = (rng.line_refund.random(len(t)) < REFUND_SHARE) & (t + delay < clock.end)
        relabel = {"line_id": "R" + number[refund]}
    return _with_refunds(rows, cust, t, refund, delay, cust_ids, clock.start_us, relabel)


def _with_refunds(
    rows: dict[str, Column],
    cust: IntArray,
    t: FloatArray,
    refund: BoolArray,
    delay: FloatArray,
    cust_ids: ObjectArray,
    start_us: int,
    relabel: dict[str, ObjectArray],
) -> pd.DataFrame:
    """Purchase rows plus a negated copy of the refunded ones, `delay` days later, by time.

    A refund keeps its order's order_id; `relabel` gives refund rows their own values of
    some columns (a refunded line's line_id is "R" + the line's number, its own key).
    """
    negated = ("amount", "margin", "quantity")
    all_cust = np.concatenate([cust, cust[refund]])
    all_t = np.concatenate([t, t[refund] + delay[refund]])
    tx_order = np.lexsort((all_cust, all_t))
    frame = {"customer_id": cust_ids[all_cust[tx_order]], "ts": _ts(all_t[tx_order], start_us)}
    for name, col in rows.items():
        if name in relabel:
            back: Column = relabel[name]
        elif name in negated:
            back = np.negative(col[refund])
        else:
            back = col[refund]
        frame[name] = np.concatenate([col, back])[tx_order]
    first = ["customer_id", "ts", "amount", "margin", "order_id", "channel"]
    return pd.DataFrame(frame)[first + [c for c in frame if c not in first]]


# --- the decisions' planted truths (clv.inputs.planted) -------------------------------------


class _Plans(NamedTuple):
    seed: int
    costs: CostPlan | None
    adoption: AdoptionPlan | None
    experiment: ExperimentPlan | None


@dataclass(frozen=True, eq=False)
class _Planted:
    """What planting gives the generated data: transactions with the effects' purchases, the
    decisions' tables and their truths."""

    transactions: pd.DataFrame
    acquisition_costs: pd.DataFrame | None = None
    assignments: pd.DataFrame | None = None
    truths: Truths = field(default_factory=Truths)
    early_adopter: BoolArray | None = None


def _plant(
    drawn: _Drawn,
    plans: _Plans,
    cust_ids: ObjectArray,
    transactions: pd.DataFrame,
    events: pd.DataFrame,
    period: tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp],
) -> _Planted:
    """The decisions' tables and truths; the purchases the planted effects add, merged into
    `transactions` by time (the world's own rows unchanged, in their order)."""
    if drawn.spec.retail is not None and (plans.adoption or plans.experiment):
        raise DataError(
            "the retail world's export cannot carry planted purchase effects: plant early "
            "adoption or an experiment in another world (acquisition costs are fine)"
        )
    p = drawn.people
    signup_ts = _ts(p.signup, drawn.clock.start_us)
    costs = cac = None
    if plans.costs is not None:
        costs, cac = _plant_costs(plans.costs, plans.seed, p, signup_ts, period)
    effects = _Effects(drawn, _Thinning.of(drawn.spec, drawn.clock, p, drawn.scenario), cust_ids)
    adoption = None
    if plans.adoption is not None:
        adoption = _plant_adoption(effects, plans.adoption, plans.seed, events, signup_ts)
    experiment = None
    if plans.experiment is not None:
        experiment = _plant_experiment(effects, plans, period, adoption)
    added = [adoption.rows] if adoption else []
    added += [experiment.treated_rows] if experiment else []
    return _Planted(
        transactions=_merged(transactions, added),
        acquisition_costs=costs,
        assignments=experiment.assignments if experiment else None,
        truths=Truths(
            cac=cac,
            adoption=adoption.truth if adoption else None,
            experiment=experiment.truth if experiment else None,
        ),
        early_adopter=adoption.adopter if adoption else None,
    )


@dataclass(frozen=True, eq=False)
class _Effects:
    """What the planted effects' purchases are drawn from: the world, its thinning, the ids."""

    drawn: _Drawn
    thinning: _Thinning
    cust_ids: ObjectArray

    def rows(self, seed: int, branch: int, boost: Boost, *, first_order: int) -> _Added:
        """The transactions rows of the purchases `boost` adds (own streams: `branch`)."""
        rng = _Streams.of(seed, branch=branch)
        extra = _extra_orders(rng, self.thinning, boost)
        drawn = self.drawn._replace(rng=rng, orders=extra)
        return _Added(extra, _transactions(drawn, self.cust_ids, first_order=first_order))


class _Added(NamedTuple):
    orders: _Orders
    rows: pd.DataFrame


@dataclass(frozen=True, eq=False)
class _Adoption:
    adopter: BoolArray
    lift_from: FloatArray
    """Days from the start at which an adopter's lift begins (inf: not an adopter)."""
    orders: _Orders
    rows: pd.DataFrame
    truth: AdoptionTruth


def _plant_adoption(
    effects: _Effects, plan: AdoptionPlan, seed: int, events: pd.DataFrame, signup_ts: pd.Series
) -> _Adoption:
    names = [name for name, _ in EVENT_RATES]
    if plan.event_type not in names:
        raise DataError(f"early adoption: event_type must be one of {', '.join(names)}")
    p = effects.drawn.people
    adopter = early_adopters(events, pd.Index(effects.cust_ids), signup_ts, plan)
    lift_from = np.where(adopter, p.signup + plan.window_days, np.inf)
    boost = Boost(scale=np.where(adopter, plan.lift, 0.0), begin=lift_from)
    first = len(effects.drawn.orders.t) + 1
    added = effects.rows(seed, _Branch.ADOPTION, boost, first_order=first)
    truth = AdoptionTruth(
        plan.event_type, plan.window_days, plan.lift, int(adopter.sum()), added.rows
    )
    return _Adoption(adopter, lift_from, added.orders, added.rows, truth)


@dataclass(frozen=True, eq=False)
class _Experiment:
    assignments: pd.DataFrame
    treated_rows: pd.DataFrame
    truth: ExperimentTruth


def _plant_experiment(
    effects: _Effects,
    plans: _Plans,
    period: tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp],
    adoption: _Adoption | None,
) -> _Experiment:
    """Assign the active customers at the experiment's date; the treatment's purchases, drawn
    for both arms (control's are the counterfactual)."""
    plan = plans.experiment
    assert plan is not None
    t0, t_end, t_change = period
    at = t_change if plan.at is None else utc(plan.at)
    if not t0 < at < t_end:
        span = f"{t0.date()}..{t_end.date()}"
        raise DataError(f"experiment date {at} is not inside the period {span}")
    at_day = (at - t0) / pd.Timedelta(days=1)
    p, o = effects.drawn.people, effects.drawn.orders
    cust, t = o.cust, o.t
    first = len(o.t) + 1
    if adoption is not None:  # the adopters' added purchases count as buying too
        cust = np.concatenate([cust, adoption.orders.cust])
        t = np.concatenate([t, adoption.orders.t])
        first += len(adoption.orders.t)
    eligible = _active(p.signup, cust, t, at=at_day, days=plan.active_days)
    chosen = assign(eligible, plan=plan, rng=_branch_rng(plans.seed, _Branch.ASSIGNMENT))
    boost = Boost(
        scale=np.where(chosen.enrolled, plan.uplift, 0.0),
        begin=np.where(chosen.enrolled, at_day, np.inf),
        lift=plans.adoption.lift if plans.adoption is not None else 0.0,
        lift_from=adoption.lift_from if adoption is not None else None,
    )
    rows = effects.rows(plans.seed, _Branch.EXPERIMENT, boost, first_order=first).rows
    assignments = assignment_rows(effects.cust_ids, chosen, plan=plan, at=at)
    treated = assignments.loc[assignments["arm"] == TREATMENT, "customer_id"]
    truth = ExperimentTruth(plan.name, at, plan.uplift, int(chosen.enrolled.sum()), rows)
    return _Experiment(assignments, rows[rows["customer_id"].isin(treated)], truth)


def _plant_costs(
    plan: CostPlan,
    seed: int,
    p: _People,
    signup_ts: pd.Series,
    period: tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp],
) -> tuple[pd.DataFrame, CacTruth]:
    names = [c.name for c in CHANNELS]
    if sorted(name for name, _ in plan.cac) != sorted(names):
        raise DataError(f"acquisition costs: give a CAC for each channel ({', '.join(names)})")
    channel = pd.Series(np.array(names, dtype=object)[p.channel])
    frame = cost_table(
        signup_ts,
        channel,
        months=period_months(period[0], period[1]),
        plan=plan,
        rng=_branch_rng(seed, _Branch.COSTS),
    )
    return frame, CacTruth(cac=dict(plan.cac), noise=plan.noise)


def _active(
    signup: FloatArray, cust: IntArray, t: FloatArray, *, at: float, days: float
) -> BoolArray:
    """Customers who signed up before `at` and bought (an order at `t`) in the `days` before."""
    last = np.full(len(signup), -np.inf)
    before = t < at
    np.maximum.at(last, cust[before], t[before])
    return (signup < at) & (last >= at - days)


def _extra_orders(rng: _Streams, th: _Thinning, boost: Boost) -> _Orders:
    """The purchases a boost adds: a second process thinned like the world's own, candidates at
    boost.most x the customer's candidate rate from boost.begin, a candidate kept with
    probability accept / bound x factor / most (so at factor x the customer's rate), with order
    draws from `rng`'s streams."""
    p = th.p
    most = boost.most
    idx, t = _candidates(rng.buy, th.rate() * most, boost.begin, th.clock.end)
    u_keep, u_sales, u_pick = (rng.buy.random(len(idx)) for _ in range(3))
    z = rng.spend.gamma(P, 1.0, len(idx)) / p.nu[idx]
    margin_rate = rng.spend.normal(MARGIN_MEAN, MARGIN_SD, len(idx))
    u_refund = rng.refund.random(len(idx))
    delay = rng.refund.uniform(1.0, 30.0, len(idx))
    accept = th.accept(idx, t) * boost.factor(idx, t) / most[idx]
    keep = (u_keep * th.bound < accept) & _alive(p, idx, t)
    order = np.lexsort((idx[keep], t[keep]))

    def kept(a: FloatArray) -> FloatArray:
        return a[keep][order]

    return _Orders(
        cust=idx[keep][order],
        t=kept(t),
        z=kept(z),
        margin_rate=kept(margin_rate),
        u_sales=kept(u_sales),
        u_pick=kept(u_pick),
        u_refund=kept(u_refund),
        delay=kept(delay),
    )


def _merged(transactions: pd.DataFrame, added: list[pd.DataFrame]) -> pd.DataFrame:
    """The world's rows and the added ones, by time (stable: the world's rows first at a tie)."""
    parts = [transactions, *(a for a in added if len(a))]
    if len(parts) == 1:
        return transactions
    merged = pd.concat(parts, ignore_index=True)
    return merged.sort_values("ts", kind="stable", ignore_index=True)


# --- the retail world: a shop's point-of-sale export ---------------------------------------


@dataclass(frozen=True, eq=False)
class _Export:
    """What the retail world adds to or puts instead of the other worlds' tables."""

    transactions: pd.DataFrame
    identities: pd.DataFrame
    order_totals: pd.DataFrame
    contacts: Contacts
    settings: IngestSettings


@dataclass(frozen=True)
class _Rows:
    """Export rows of one kind of invoice (0 purchases, 1 cancellations, 2 cancellations of
    invoices before the export), with the canonical customer and the rate of each row."""

    kind: int
    seq: IntArray
    """Tie-break of rows at the same time: a line's position, stable across scenarios."""
    cust: IntArray
    written: ObjectArray
    """The id on the row: the customer's, or one of its aliases."""
    t: FloatArray
    order_id: ObjectArray
    sku: ObjectArray
    quantity: IntArray
    unit_price: FloatArray
    currency: ObjectArray
    rate: FloatArray
    """Units of the workspace currency per unit of the row's currency."""
    refund_of: ObjectArray
    """The invoice a cancellation cancels, when it is in the export (else None)."""


def _retail_export(drawn: _Drawn, cust_ids: ObjectArray) -> _Export:
    """The line-item purchases as invoice lines, cancellations, aliases and personal data.

    Every draw comes in fixed blocks per customer, invoice or line from streams of its own, so
    the rows before a scenario's change date are the same in every scenario.
    """
    rng, spec, clock, p, o, scenario = drawn
    retail, lines = spec.retail, spec.lines
    assert retail is not None and lines is not None
    n = len(p.signup)
    people = contacts(rng.retail_people, n)
    alias = aliases(rng.retail_people.random((n, 6)), signup=p.signup, end=clock.end, spec=retail)
    ids = _alias_ids(rng.retail_people.integers(0, 1 << 62, n), people, alias, cust_ids)
    value, price, _ = _order_values(spec, clock, p, o, scenario)
    li, sku_names = _line_items(rng, lines, value, price)
    u_order = rng.retail_orders.random((len(o.t), 4))
    u_line = rng.retail_lines.random((len(li.order), 3))
    parts: tuple[_Rows, ...] = _invoices(
        u_order, u_line, retail, clock, p, o, li, alias, ids, sku_names
    )
    parts += (_unlinked(rng.retail_extra, retail, lines, clock, p, cust_ids, sku_names),)
    settings = IngestSettings(
        cancellation_pattern=CANCELLATION_PATTERN,
        currency=retail.currency,
        currency_rates={retail.foreign: retail.rate},
        personal_columns=PERSONAL_COLUMNS,
    )
    return _Export(
        transactions=_export_rows(parts, clock.start_us),
        identities=_identities(alias, ids, clock.start_us),
        order_totals=_order_totals(parts, cust_ids, clock.start_us),
        contacts=people,
        settings=settings,
    )


def _alias_ids(
    device: IntArray, people: Contacts, alias: Aliases, cust_ids: ObjectArray
) -> ObjectArray:
    """Per customer (rows) the id of each kind in Aliases.ID_KINDS (None: no such alias).

    A retired id looks like a customer id past the last one; an e-mail id is "e:" + 20 hex
    digits of the SHA-256 of the e-mail; a device id is "d:" + 16 hex digits.
    """
    n = len(cust_ids)
    ids = np.full((n, len(Aliases.ID_KINDS)), None, dtype=object)
    ids[:, 0] = cust_ids
    retired = np.isfinite(alias.merged_until)
    ids[retired, 1] = _ids("C", n + 1 + np.arange(int(retired.sum()), dtype=np.int64), 6)
    mail = [hashlib.sha256(str(e).encode()).hexdigest()[:20] for e in people.email[alias.email]]
    ids[alias.email, 2] = np.array(["e:" + h for h in mail], dtype=object)
    ids[alias.device, 3] = np.array([f"d:{d:016x}" for d in device[alias.device]], dtype=object)
    return ids


def _invoices(
    u_order: FloatArray,
    u_line: FloatArray,
    retail: Retail,
    clock: _Clock,
    p: _People,
    o: _Orders,
    li: LineItems,
    alias: Aliases,
    ids: ObjectArray,
    sku_names: ObjectArray,
) -> tuple[_Rows, _Rows]:
    """Purchase invoices (some lines written twice) and their cancellations.

    Draws per invoice: cancelled, cancellation delay, currency, alias; per line: written twice,
    returned, units returned. A foreign invoice's unit prices are the list prices / rate,
    rounded to cents.
    """
    order_id = (retail.first_invoice + np.arange(len(o.t))).astype(str).astype(object)
    written = ids[o.cust, alias.kinds(u_order[:, 3], o.cust, o.t, retail)]
    country = np.array([c[0] for c in COUNTRIES])[p.history.country_of(o.cust, o.t)]
    foreign = np.isin(country, EUROZONE) & (u_order[:, 2] < retail.foreign_share)
    currency = np.where(foreign, retail.foreign, retail.currency).astype(object)
    rate = np.where(foreign, retail.rate, 1.0)
    unit_price = np.where(
        foreign[li.order], np.round(li.unit_price / retail.rate, 2), li.unit_price
    )

    def invoice_lines(
        kind: int, line: IntArray, t: FloatArray, invoice: ObjectArray, quantity: IntArray
    ) -> _Rows:
        """Rows of the lines `line`: `t` and `invoice` per order, `quantity` per line."""
        of = li.order[line]
        return _Rows(
            kind=kind,
            seq=line,
            cust=o.cust[of],
            written=written[of],
            t=t[of],
            order_id=invoice[of],
            sku=sku_names[li.sku[line]],
            quantity=quantity[line],
            unit_price=unit_price[line],
            currency=currency[of],
            rate=rate[of],
            refund_of=order_id[of] if kind else np.full(len(line), None, dtype=object),
        )

    row = np.repeat(np.arange(len(li.order)), 1 + (u_line[:, 0] < retail.identical_share))
    bought = invoice_lines(0, row, o.t, order_id, li.quantity)
    at = o.t + 1.0 + 29.0 * u_order[:, 1]
    cancelled = (u_order[:, 0] < retail.cancel_share) & (at < clock.end)
    units = returned_units(
        u_line[:, 1], u_line[:, 2], order=li.order, quantity=li.quantity, spec=retail
    )
    line = np.flatnonzero(cancelled[li.order] & (units > 0))
    cancellation = np.char.add("C", order_id.astype(str)).astype(object)
    back = invoice_lines(1, line, at, cancellation, -units)
    return bought, back


def _unlinked(
    rng: np.random.Generator,
    retail: Retail,
    lines: Lines,
    clock: _Clock,
    p: _People,
    cust_ids: ObjectArray,
    sku_names: ObjectArray,
) -> _Rows:
    """Cancellations of invoices from before the export: 1-2 lines at list price, in the
    workspace currency, within 30 days of the customer's signup (draws per customer)."""
    n = len(p.signup)
    u = rng.random((n, 3))
    who = np.flatnonzero((p.signup < retail.unlinked_days) & (u[:, 0] < retail.unlinked_share))
    pool = min(retail.first_invoice - 1, max(20_000, 4 * len(who)))
    number = retail.first_invoice - 1 - rng.choice(pool, size=len(who), replace=False)
    of = np.repeat(np.arange(len(who)), 1 + (u[who, 2] < 0.3))
    sku = rng.integers(0, lines.skus, len(of))
    units = 1 + pick(rng.random(len(of)), QUANTITY_PROBS)
    t = (p.signup[who] + 0.5 + 29.5 * u[who, 1])[of]
    keep = np.flatnonzero(t < clock.end)
    cust = who[of][keep]
    return _Rows(
        kind=2,
        seq=keep,
        cust=cust,
        written=cust_ids[cust],
        t=t[keep],
        order_id=np.char.add("C", number[of][keep].astype(str)).astype(object),
        sku=sku_names[sku[keep]],
        quantity=-units[keep],
        unit_price=catalog(lines)[sku[keep]],
        currency=np.full(len(keep), retail.currency, dtype=object),
        rate=np.ones(len(keep)),
        refund_of=np.full(len(keep), None, dtype=object),
    )


def _concat(parts: tuple[_Rows, ...], name: str) -> Column:
    return np.concatenate([getattr(part, name) for part in parts])


def _export_order(parts: tuple[_Rows, ...]) -> IntArray:
    """Rows by time, then customer, then kind, then position (an invoice's lines in order)."""
    kind = np.concatenate([np.full(len(part.t), part.kind) for part in parts])
    keys = (_concat(parts, "seq"), kind, _concat(parts, "cust"), _concat(parts, "t"))
    return np.lexsort(keys).astype(np.int64)


def _export_rows(parts: tuple[_Rows, ...], start_us: int) -> pd.DataFrame:
    """The transactions file: one row per invoice line, no amount and no line id."""
    order = _export_order(parts)
    return pd.DataFrame(
        {
            "customer_id": _concat(parts, "written")[order],
            "ts": _ts(np.asarray(_concat(parts, "t"), dtype=np.float64)[order], start_us),
            "order_id": _concat(parts, "order_id")[order],
            "sku": _concat(parts, "sku")[order],
            "quantity": np.asarray(_concat(parts, "quantity"), dtype=np.int64)[order],
            "unit_price": np.asarray(_concat(parts, "unit_price"), dtype=np.float64)[order],
            "currency": _concat(parts, "currency")[order],
        }
    )


def _order_totals(parts: tuple[_Rows, ...], cust_ids: ObjectArray, start_us: int) -> pd.DataFrame:
    """Truth: per (canonical customer_id, order_id) the amount a correct ingest stores.

    amount = sum over the invoice's rows of quantity x unit_price x rate, in float64 (rows
    the till wrote twice count twice; a cancellation is an invoice of its own, "C" + number,
    with negative quantities). Columns: customer_id (canonical), order_id, ts, amount (in the
    workspace currency), currency (the invoice's), refund_of (the cancelled invoice, when in
    the export) and written_id (the id on the invoice's rows: the customer's or an alias).
    Summation order differs from ingest's, so compare amounts with a tolerance (1e-6).
    """
    order = _export_order(parts)
    quantity = np.asarray(_concat(parts, "quantity"), dtype=np.float64)[order]
    unit_price = np.asarray(_concat(parts, "unit_price"), dtype=np.float64)[order]
    rate = np.asarray(_concat(parts, "rate"), dtype=np.float64)[order]
    cust = np.asarray(_concat(parts, "cust"), dtype=np.int64)[order]
    rows = pd.DataFrame(
        {
            "customer_id": cust_ids[cust],
            "order_id": _concat(parts, "order_id")[order],
            "t": np.asarray(_concat(parts, "t"), dtype=np.float64)[order],
            "amount": quantity * unit_price * rate,
            "currency": _concat(parts, "currency")[order],
            "refund_of": _concat(parts, "refund_of")[order],
            "written_id": _concat(parts, "written")[order],
        }
    )
    first = {c: "first" for c in ("t", "currency", "refund_of", "written_id")}
    totals = rows.groupby(["customer_id", "order_id"], sort=False, dropna=False).agg(
        amount=("amount", "sum"), **{c: (c, how) for c, how in first.items()}
    )
    totals = totals.reset_index()
    totals.insert(2, "ts", _ts(totals.pop("t").to_numpy(), start_us))
    totals["refund_of"] = (
        totals["refund_of"].astype(object).where(totals["refund_of"].notna(), None)
    )
    return totals


def _identities(alias: Aliases, ids: ObjectArray, start_us: int) -> pd.DataFrame:
    """identities.csv: alias_id, customer_id, valid_from (missing: always), by customer."""
    has = np.column_stack([np.isfinite(alias.merged_until), alias.email, alias.device])
    cust, kind = np.nonzero(has)
    since = np.where(kind == 1, alias.email_from[cust], np.inf)
    return pd.DataFrame(
        {
            "alias_id": ids[cust, kind + 1],
            "customer_id": ids[cust, 0],
            "valid_from": _maybe_ts(since, start_us),
        }
    )


def _with_contacts(frame: pd.DataFrame, people: Contacts, cust_ids: ObjectArray) -> pd.DataFrame:
    """The customers table with the personal columns (PERSONAL_COLUMNS) after the others."""
    at = pd.Index(cust_ids).get_indexer(frame["customer_id"])
    out = frame.copy()
    for name in PERSONAL_COLUMNS:
        out[name] = np.asarray(getattr(people, name), dtype=object)[at]
    return out


def ingest_overrides(settings: IngestSettings) -> dict[str, object]:
    """The ingest settings that differ from the defaults, as clv.yaml spells them."""
    chosen: dict[str, object] = settings.model_dump(mode="json", exclude_defaults=True)
    rates = chosen.get("currency_rates")
    if isinstance(rates, list | dict):  # a mapping in YAML, however the settings hold it
        chosen["currency_rates"] = dict(rates)
    return chosen


def ingest_block(settings: IngestSettings) -> str:
    """The `ingest:` block of clv.yaml for these settings (`ingest_overrides`)."""
    block = {"ingest": ingest_overrides(settings)}
    return yaml.safe_dump(block, sort_keys=False, default_flow_style=None)


def _customers(spec: WorldSpec, clock: _Clock, p: _People, cust_ids: ObjectArray) -> pd.DataFrame:
    """One row per customer (btyd) or per customer and attribute change, from `valid_from`."""
    channel_names = np.array([c.name for c in CHANNELS], dtype=object)
    country_names = np.array([c[0] for c in COUNTRIES], dtype=object)
    plan_names = np.array([p[0] for p in PLANS], dtype=object)
    if spec.classic:
        cust = np.arange(len(p.signup), dtype=np.int64)
        since = p.signup
    else:
        cust, since = p.history.rows(p.signup)
    frame = pd.DataFrame(
        {
            "customer_id": cust_ids[cust],
            "signup_ts": _ts(p.signup[cust], clock.start_us),
            "acquisition_channel": channel_names[p.channel[cust]],
            "country": country_names[p.history.country_of(cust, since)],
            "plan": plan_names[p.history.plan_of(cust, since)],
        }
    )
    if not spec.classic:
        frame["valid_from"] = _ts(since, clock.start_us)
    return frame


def _event_level(
    spec: WorldSpec,
    p: _People,
    idx: IntArray,
    t: FloatArray,
    level: FloatArray,
    alive: BoolArray,
    support: bool,
) -> tuple[FloatArray, BoolArray]:
    """The world's changes to an event's level: ghosts, silent customers, dormant spells."""
    if p.ghost_until is not None and spec.behaviour is not None and not support:
        ghosting = ~alive & (t < p.ghost_until[idx])
        level = np.where(ghosting, level * spec.behaviour.ghost_level, level)
        alive = alive | ghosting
    if p.event_level is not None:
        level = level * p.event_level[idx]
    if p.spells is not None and spec.on_off is not None:
        on = p.on_off[idx]
        dormant = np.zeros(len(idx), dtype=bool)
        dormant[on] = ~p.spells.active(idx[on], t[on])
        level = np.where(dormant, level * spec.on_off.event_level, level)
    return level, alive


def _events(
    rng: _Streams,
    spec: WorldSpec,
    clock: _Clock,
    p: _People,
    scenario: Scenario,
    cust_ids: ObjectArray,
) -> pd.DataFrame:
    """Behaviour events by thinning: logins and feature use fade before churn, tickets rise."""
    out_idx: list[IntArray] = []
    out_t: list[FloatArray] = []
    out_type: list[ObjectArray] = []
    for name, rate in EVENT_RATES:
        support = name == "support_ticket"
        peak = SUPPORT_PEAK if support else 1.0
        idx, t = _candidates(rng.event, p.engagement * rate * peak, p.signup, clock.end)
        u = rng.event.random(len(idx))
        left = p.death[idx] - t
        if p.fade_days is None:
            closeness = np.clip(1.0 - left / PRECHURN_DAYS, 0.0, 1.0)
        else:
            fade = p.fade_days[idx]
            closeness = np.clip(1.0 - left / np.maximum(fade, 1e-9), 0.0, 1.0) * (fade > 0)
        if support:
            level = 1.0 + (SUPPORT_PEAK - 1.0) * closeness
        else:
            level = 1.0 - (1.0 - FADE_FLOOR) * closeness
            if scenario == "engagement_drop":
                level = np.where(t >= clock.change, level * ENGAGEMENT_FACTOR, level)
        alive = left > 0
        if not spec.classic:
            level, alive = _event_level(spec, p, idx, t, level, alive, support)
        keep = (u * peak < level) & alive
        out_idx.append(idx[keep])
        out_t.append(t[keep])
        out_type.append(np.full(int(keep.sum()), name, dtype=object))
    ev_idx, ev_t, ev_type = np.concatenate(out_idx), np.concatenate(out_t), np.concatenate(out_type)
    ev_order = np.lexsort((ev_idx, ev_t))
    return pd.DataFrame(
        {
            "customer_id": cust_ids[ev_idx[ev_order]],
            "ts": _ts(ev_t[ev_order], clock.start_us),
            "event_type": ev_type[ev_order],
        }
    )


def _truth(spec: WorldSpec, clock: _Clock, p: _People, cust_ids: ObjectArray) -> pd.DataFrame:
    """The hidden truth per customer (columns: see GeneratedData)."""
    first = p.history.plan[:, 0]
    churned = p.death < clock.end
    truth = pd.DataFrame(
        {
            "customer_id": cust_ids,
            "purchase_rate": p.lam * PLAN_RATE[first] * p.ch_rate,
            "dropout_rate": p.dropout
            if spec.classic
            else _dormancy_hazard(spec, p.dropout, p.on_off),
            "mean_spend": P / p.nu * p.ch_spend * PLAN_SPEND[first],
            "churn_ts": _ts(np.where(churned, p.death, 0.0), clock.start_us).where(churned),
        }
    )
    if spec.classic:
        return truth
    n = len(p.signup)
    never = np.full(n, np.inf)
    spells = p.spells
    truth["tenure_type"] = np.array(TENURE_TYPES, dtype=object)[p.tenure]
    truth["on_off"] = p.on_off
    truth["first_dormant_ts"] = _maybe_ts(spells.switch(0) if spells else never, clock.start_us)
    truth["first_return_ts"] = _maybe_ts(spells.switch(1) if spells else never, clock.start_us)
    truth["comebacks"] = spells.returns(clock.end) if spells else np.zeros(n, np.int64)
    truth["event_profile"] = _event_profiles(p)
    truth["attribute_changes"] = p.history.changes()
    return truth


def _event_profiles(p: _People) -> ObjectArray:
    if p.fade_days is None or p.ghost_until is None or p.event_level is None:
        return np.full(len(p.signup), "fades", dtype=object)
    profile = np.where(p.fade_days > 0, "fades", "no_fade").astype(object)
    profile[p.ghost_until > p.death] = "ghost"
    profile[p.event_level < 1.0] = "silent"
    return profile


def _ts_text(series: pd.Series) -> npt.NDArray[np.str_]:
    """ISO 8601 with a Z; a missing time (NaT) as an empty cell."""
    values = series.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    text = np.datetime_as_string(values, unit="us", timezone="UTC")
    return np.where(np.isnat(values), "", text)


def write_raw(
    data: GeneratedData, out_dir: Path | str, *, fmt: RawFormat = "csv"
) -> dict[TableName, Path]:
    """Write the raw tables as `<out_dir>/<table>.<fmt>`; CSV timestamps are ISO 8601 Z."""
    return write_tables(data.tables(), out_dir, fmt=fmt)


def write_tables(
    tables: Mapping[TableName, pd.DataFrame], out_dir: Path | str, *, fmt: RawFormat = "csv"
) -> dict[TableName, Path]:
    """Each frame as `<out_dir>/<table>.<fmt>` (a temporary file, then renamed); CSV
    timestamps are ISO 8601 Z, a missing time an empty cell."""
    if fmt not in ("csv", "parquet"):
        raise DataError(f"unknown format {fmt!r}: choose csv or parquet")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[TableName, Path] = {}
    for table, frame in tables.items():
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
PLANTED_KINDS: tuple[RejectReason, ...] = (
    RejectReason.MISSING_ID,
    RejectReason.BAD_TIMESTAMP,
    RejectReason.FUTURE_TIMESTAMP,
    RejectReason.BAD_AMOUNT,
    RejectReason.MISSING_VALUE,
    RejectReason.BEFORE_MIN_DATE,
    RejectReason.IMPLAUSIBLE_AMOUNT,
    RejectReason.MIXED_CURRENCY,
    RejectReason.DUPLICATE,
)
"""What `plant_bad_rows` plants: every reason a transactions row of a file can have (not
`duplicate_line`: a file without line ids has none; `non_numeric_value`: a bad margin)."""
BAD_CELLS: dict[RejectReason, str] = {
    RejectReason.MISSING_ID: "",
    RejectReason.BAD_TIMESTAMP: "not-a-date",
    RejectReason.FUTURE_TIMESTAMP: "2099-01-01T00:00:00Z",
    RejectReason.BAD_AMOUNT: "12,5O",
    RejectReason.MISSING_VALUE: "",
    RejectReason.BEFORE_MIN_DATE: "1899-12-30T00:00:00Z",
    RejectReason.IMPLAUSIBLE_AMOUNT: "1000000000",
    RejectReason.MIXED_CURRENCY: "JPY",
}
"""The cell each kind of bad row gets (1899-12-30: the zero date of spreadsheets)."""


def _bad_columns(kind: RejectReason, columns: pd.Index) -> tuple[str, ...]:
    """The columns a bad row of `kind` gets its bad cell in, taking turns when several: the
    amount, or in a file without one (amount = quantity x unit_price) the factors."""
    has_amount = "amount" in columns
    if kind is RejectReason.MISSING_ID:
        return ("customer_id",)
    if kind in (
        RejectReason.BAD_TIMESTAMP,
        RejectReason.FUTURE_TIMESTAMP,
        RejectReason.BEFORE_MIN_DATE,
    ):
        return ("ts",)
    if kind is RejectReason.BAD_AMOUNT:
        return ("amount",) if has_amount else ("quantity", "unit_price")
    if kind is RejectReason.MISSING_VALUE:
        return ("amount", "ts") if has_amount else ("unit_price", "ts")
    if kind is RejectReason.IMPLAUSIBLE_AMOUNT:
        return ("amount",) if has_amount else ("quantity",)
    if kind is RejectReason.MIXED_CURRENCY:
        return ("currency",)
    raise ValueError(f"no bad cell for {kind.value}")


def _corrupt(frame: pd.DataFrame, at: IntArray, kind: RejectReason) -> None:
    """Put the bad cell of `kind` into rows `at` of a text frame (in place)."""
    columns = _bad_columns(kind, frame.columns)
    for k, column in enumerate(columns):
        frame.loc[at[k :: len(columns)], column] = BAD_CELLS[kind]


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
        if kind is RejectReason.DUPLICATE:
            frame.iloc[at] = frame.iloc[at - 1].to_numpy()
        else:
            _corrupt(frame, at, kind)
    frame.to_csv(path, index=False)
    return {kind.value: per_kind for kind in CORRUPTION_KINDS}


@dataclass(frozen=True, eq=False)
class PlantedRows:
    """A transactions frame as text cells (as a CSV holds them) with bad rows planted.

    Row numbers are 1-based data rows of `frame`, as ingest's quarantine files number them.
    """

    frame: pd.DataFrame
    rejected: pd.DataFrame
    """row_number, reason: the rows a correct ingest quarantines, by row number."""
    accepted: pd.DataFrame
    """row_number and the cells of the planted rows a correct ingest stores: the first of each
    exact-duplicate pair (a copy of a real line without its order id). Nothing else planted is
    stored, so the real rows' order totals (`GeneratedData.order_totals`) stay the truth."""

    @property
    def reasons(self) -> dict[str, int]:
        """Rows to quarantine per `RejectReason` value."""
        counts = self.rejected["reason"].value_counts()
        return {k.value: int(counts[k.value]) for k in PLANTED_KINDS if k.value in counts}

    @property
    def planted(self) -> npt.NDArray[np.bool_]:
        """Per row of `frame`: planted (else one of the generated rows, in their order)."""
        mask = np.zeros(len(self.frame), dtype=bool)
        rows = np.concatenate([self.rejected["row_number"], self.accepted["row_number"]])
        mask[rows.astype(np.int64) - 1] = True
        return mask


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell as the text `write_raw` writes to a CSV (missing: empty)."""
    out: dict[str, object] = {}
    for name in frame.columns:
        col = frame[name]
        if isinstance(col.dtype, pd.DatetimeTZDtype):
            out[str(name)] = _ts_text(col)
        else:
            out[str(name)] = col.astype(object).where(col.notna(), "").astype(str).to_numpy()
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))


def plant_bad_rows(transactions: pd.DataFrame, *, per_kind: int = 3, seed: int = 0) -> PlantedRows:
    """`transactions` (a generated frame) as text, with `per_kind` bad rows of each kind of
    PLANTED_KINDS at random places (mixed_currency only when there is a currency column).

    A bad row is a corrupted copy of a purchase row (one no other row repeats) that keeps its
    order id, so a bad row that got in would change that order's total. An exact duplicate is
    a pair of copies of a row with the order id blanked: in a file of order lines without line
    ids, identical rows of one order are one line bought twice (summed), so only rows without
    an order id are duplicates; the first of a pair is a valid row.
    """
    text = _as_text(transactions)
    rng = np.random.default_rng(seed)
    kinds = [k for k in PLANTED_KINDS if k is not RejectReason.MIXED_CURRENCY or "currency" in text]
    value = transactions["quantity" if "quantity" in transactions else "amount"].to_numpy()
    source = np.flatnonzero((value > 0) & ~text.duplicated(keep=False).to_numpy())
    if len(source) < per_kind * len(kinds):
        raise DataError(f"{len(source)} purchase rows: too few to plant {per_kind} per kind")
    bad = text.iloc[rng.choice(source, size=per_kind * len(kinds), replace=False)]
    bad = bad.reset_index(drop=True)
    reason = np.repeat(np.array([k.value for k in kinds], dtype=object), per_kind)
    pairs = np.flatnonzero(reason == RejectReason.DUPLICATE.value)
    for kind in kinds:
        if kind is not RejectReason.DUPLICATE:
            _corrupt(bad, np.flatnonzero(reason == kind.value), kind)
    bad.loc[pairs, "order_id"] = ""
    planted = pd.concat([bad, bad.iloc[pairs]], ignore_index=True)
    place = np.concatenate([np.arange(len(text)), rng.uniform(0, len(text), len(planted))])
    order = np.argsort(place, kind="stable")
    frame = pd.concat([text, planted], ignore_index=True).iloc[order].reset_index(drop=True)
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    at = position[len(text) :] + 1
    first = np.minimum(at[pairs], at[len(bad) :])  # of each pair, the one ingest keeps
    kept = np.isin(at, first)
    rejected = pd.DataFrame({"row_number": at, "reason": np.concatenate([reason, reason[pairs]])})
    accepted = frame.iloc[np.sort(first) - 1].reset_index(drop=True)
    accepted.insert(0, "row_number", np.sort(first))
    return PlantedRows(
        frame=frame,
        rejected=rejected[~kept].sort_values("row_number", ignore_index=True),
        accepted=accepted,
    )
