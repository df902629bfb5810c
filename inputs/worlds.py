"""World families of the seeded generator: which mechanisms shape a generated world.

- `btyd`: Pareto/NBD purchases, Gamma-Gamma spend, a mild Nov/Dec peak and behaviour that fades
  exactly before a permanent death: the BG/NBD baseline's own family, row for row as before.
- `seasonal`: the btyd customers under a strong Nov/Dec peak and a summer trough, on both the
  order rate and the order value.
- `growth`: signup cohorts grow 7% a month and the business-wide order rate drifts up by
  ~28% a year.
- `decline`: signup cohorts shrink 3% a month and the business-wide order rate drifts down by
  ~22% a year.
- `tenure`: about a third of the customers ramp up over their first months, a third start hot
  and cool down, the rest buy at a flat rate.
- `comeback`: no permanent death: every customer alternates active spells and dormant spells
  of months (a two-state on/off process), logging in less while dormant, and comes back.
- `behaviour`: spend depends on acquisition and sales channel, plan and engagement; events
  track activity without being an oracle (some churners keep logging in, some buyers never
  do); plans and countries change during the period.
- `lines`: the btyd purchase process, but every order is 1-6 line items (sku, quantity,
  unit price) written one row per line, and refunds return single lines.
- `mixed`: the demo's world: strong seasonality, mild growth, tenure effects, a third of the
  customers on/off, behaviour-driven spend with non-oracle events, line items and attribute
  changes.
- `retail`: the `lines` purchase process under a strong Nov/Dec peak, written as a shop's
  point-of-sale export (`Retail`): invoice lines without amount or line id, lines the till
  wrote twice, cancellation invoices "C" + the invoice number (some partial, some of invoices
  from before the export), EUR invoices beside GBP ones, customers also buying under a hashed
  e-mail, a device id or a retired id (identities.csv), and personal columns in customers.csv.

Outside `retail` a refund carries its order's `order_id` and comes 1-30 days after it. Outside
`btyd` the customers table has a `valid_from` column: one row per customer and attribute
change, the first at signup.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

WorldName = Literal[
    "btyd",
    "seasonal",
    "growth",
    "decline",
    "tenure",
    "comeback",
    "behaviour",
    "lines",
    "mixed",
    "retail",
]
WORLDS: tuple[WorldName, ...] = get_args(WorldName)
DEFAULT_WORLD: WorldName = "mixed"

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Tenure:
    """Purchase rate by tenure: ramp-up customers start at `ramp_floor` and approach 1 over
    `ramp_days`; decay customers start at `decay_peak` and cool to `decay_floor` over
    `decay_days`; the others stay at 1."""

    ramp_share: float
    decay_share: float
    ramp_days: float = 60.0
    ramp_floor: float = 0.1
    decay_days: float = 120.0
    decay_peak: float = 2.5
    decay_floor: float = 0.5


TENURE_TYPES = ("flat", "ramp_up", "decay")


def tenure_types(u: FloatArray, spec: Tenure) -> IntArray:
    """0 flat, 1 ramp-up, 2 decay (indexes of TENURE_TYPES), from one uniform per customer."""
    ramp = u < spec.ramp_share
    decay = ~ramp & (u < spec.ramp_share + spec.decay_share)
    return np.where(ramp, 1, np.where(decay, 2, 0)).astype(np.int64)


def tenure_factor(kind: IntArray, age: FloatArray, spec: Tenure) -> FloatArray:
    """The purchase-rate multiplier at `age` days of tenure."""
    ramp = spec.ramp_floor + (1.0 - spec.ramp_floor) * -np.expm1(-age / spec.ramp_days)
    decay = spec.decay_floor + (spec.decay_peak - spec.decay_floor) * np.exp(-age / spec.decay_days)
    return np.select([kind == 1, kind == 2], [ramp, decay], 1.0)


def tenure_bound(kind: IntArray, spec: Tenure) -> FloatArray:
    """An upper bound of tenure_factor per customer (for thinning)."""
    return np.where(kind == 2, max(spec.decay_peak, 1.0), 1.0)


@dataclass(frozen=True)
class OnOff:
    """A two-state hidden process instead of death for `share` of the customers: an active
    spell ends at the customer's dropout rate x `active_speedup`; a dormant spell (no orders,
    events at `event_level`) lasts `dormant_days` on average (Gamma-distributed per customer)."""

    share: float
    active_speedup: float = 1.5
    dormant_days: float = 200.0
    event_level: float = 0.3


@dataclass(frozen=True)
class Behaviour:
    """Spend and events linked to engagement, with events that are no oracle of churn."""

    engagement_link: float = 0.6
    """Engagement = Gamma noise x (purchase rate / mean) ** this (btyd: 0.3)."""
    spend_link: float = 0.35
    """Order value x (engagement / mean engagement) ** this."""
    sales_spend: tuple[float, float, float] = (1.0, 1.15, 0.85)
    """Order value multiplier by sales channel (web, app, store)."""
    fade_share: float = 0.4
    """Share of churners whose logins fade before death (over 0.5-2x the btyd 60 days)."""
    ghost_share: float = 0.3
    """Share of churners who keep logging in after death, at `ghost_level`, ~`ghost_days`."""
    ghost_level: float = 0.5
    ghost_days: float = 150.0
    silent_share: float = 0.12
    """Share of customers who buy as usual but log `silent_level` of the usual events."""
    silent_level: float = 0.05


@dataclass(frozen=True)
class Lines:
    """Orders of 1..`max_lines` lines (P(one more line) = `more`) from a catalog of `skus`
    priced from `min_price` to `max_price` in geometric steps; quantities: QUANTITY_PROBS."""

    max_lines: int = 6
    more: float = 0.5
    skus: int = 400
    min_price: float = 1.99
    max_price: float = 499.99


QUANTITY_PROBS = np.array([0.72, 0.20, 0.08])
"""P(quantity = 1, 2, 3) of a line."""


@dataclass(frozen=True)
class Retail:
    """A shop's point-of-sale export of the purchase process (the `retail` world).

    Invoices are numbered from `first_invoice` in time order; a cancellation invoice is "C" +
    the number of the invoice it cancels. Shares are of lines, invoices or customers as named.
    """

    first_invoice: int = 536_365
    identical_share: float = 0.03
    """Share of lines the till writes twice, as two identical rows of the invoice."""
    cancel_share: float = 0.05
    """Share of invoices cancelled (wholly or in part) 1-30 days later."""
    return_share: float = 0.6
    """P(a line of a cancelled invoice is returned); at least one line is."""
    partial_share: float = 0.5
    """P(a returned line of several units returns only some of them)."""
    unlinked_share: float = 0.15
    """Share of the customers signing up in the first `unlinked_days` who cancel, within 30
    days of signup, an invoice from before the export (not in it: an unlinked refund)."""
    unlinked_days: float = 60.0
    currency: str = "GBP"
    foreign: str = "EUR"
    rate: float = 0.86
    """Units of `currency` per unit of `foreign` (the `ingest.currency_rates` entry)."""
    foreign_share: float = 0.12
    """Share of a eurozone customer's invoices billed in `foreign`."""
    email_share: float = 0.08
    """Customers who also check out as guests under their hashed e-mail ("e:...")."""
    email_dated_share: float = 0.7
    """... whose link has a valid_from (0-60 days after signup); the others: always."""
    email_use: float = 0.4
    """P(an invoice after the link is under the e-mail id)."""
    device_share: float = 0.05
    """Customers who also buy under a device id ("d:...", valid always)."""
    device_use: float = 0.3
    merged_share: float = 0.03
    """Customers with a retired id, merged into theirs (valid always): the invoices before
    the merge (a uniform time after signup) carry the retired id."""


@dataclass(frozen=True)
class Changes:
    """Attribute changes: `plan_share` of the customers change plan once after ~`mean_days`
    (a `second_share` of them again), `country_share` move country once."""

    plan_share: float = 0.3
    second_share: float = 0.25
    country_share: float = 0.05
    mean_days: float = 240.0


Season = tuple[float, float, float, float, float, float, float, float, float, float, float, float]
"""A multiplier per month of year, January first."""

BTYD_SEASON: Season = (0.90, 0.85, 0.95, 1.0, 1.0, 0.95, 0.95, 1.0, 1.0, 1.05, 1.35, 1.60)
STRONG_SEASON: Season = (0.85, 0.75, 0.85, 0.9, 0.85, 0.6, 0.5, 0.6, 0.9, 1.1, 1.8, 2.4)
STRONG_SPEND_SEASON: Season = (0.95, 0.9, 0.95, 1.0, 0.95, 0.9, 0.85, 0.9, 1.0, 1.05, 1.2, 1.3)
MIXED_SEASON: Season = (0.9, 0.8, 0.9, 0.95, 0.95, 0.8, 0.7, 0.8, 0.95, 1.05, 1.5, 1.9)
MIXED_SPEND_SEASON: Season = (1.0, 0.95, 1.0, 1.0, 1.0, 0.95, 0.9, 0.95, 1.0, 1.0, 1.1, 1.2)


@dataclass(frozen=True)
class WorldSpec:
    """The mechanisms a world switches on; `None` leaves a mechanism off (as in btyd)."""

    season: Season
    spend_season: Season | None = None
    cohort_growth: float = 0.04
    """Signups grow by this share per month (negative: shrink)."""
    rate_drift: float = 0.0
    """Business-wide order rate x exp(rate_drift x years since the start)."""
    tenure: Tenure | None = None
    on_off: OnOff | None = None
    behaviour: Behaviour | None = None
    lines: Lines | None = None
    changes: Changes | None = None
    retail: Retail | None = None
    classic: bool = False
    """Today's btyd tables and truth exactly: no `valid_from` column, no extra truth columns."""


WORLD_SPECS: dict[WorldName, WorldSpec] = {
    "btyd": WorldSpec(season=BTYD_SEASON, classic=True),
    "seasonal": WorldSpec(season=STRONG_SEASON, spend_season=STRONG_SPEND_SEASON),
    "growth": WorldSpec(season=BTYD_SEASON, cohort_growth=0.07, rate_drift=0.25),
    "decline": WorldSpec(season=BTYD_SEASON, cohort_growth=-0.03, rate_drift=-0.25),
    "tenure": WorldSpec(season=BTYD_SEASON, tenure=Tenure(ramp_share=0.35, decay_share=0.35)),
    "comeback": WorldSpec(season=BTYD_SEASON, on_off=OnOff(share=1.0)),
    "behaviour": WorldSpec(season=BTYD_SEASON, behaviour=Behaviour(), changes=Changes()),
    "lines": WorldSpec(season=BTYD_SEASON, lines=Lines()),
    "mixed": WorldSpec(
        season=MIXED_SEASON,
        spend_season=MIXED_SPEND_SEASON,
        cohort_growth=0.03,
        rate_drift=0.05,
        tenure=Tenure(ramp_share=0.25, decay_share=0.25, decay_peak=2.0),
        on_off=OnOff(share=0.35),
        behaviour=Behaviour(),
        lines=Lines(),
        changes=Changes(),
    ),
    "retail": WorldSpec(season=STRONG_SEASON, lines=Lines(), retail=Retail()),
}


def pick(u: FloatArray, probs: FloatArray) -> IntArray:
    """Inverse-CDF choice: the index of the category each uniform draw falls into."""
    cdf = np.cumsum(probs / probs.sum())
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(probs) - 1).astype(np.int64)


@dataclass(frozen=True)
class Spells:
    """Alternating active and dormant spells: row i holds the times customer i switches state
    (the first switch goes dormant), every value below `horizon`, padded with horizon - 0.5."""

    switches: FloatArray
    horizon: float

    def _passed(self, idx: IntArray, t: FloatArray) -> IntArray:
        n, k = self.switches.shape
        offset = np.arange(n, dtype=np.float64) * self.horizon
        flat = (self.switches + offset[:, None]).ravel()
        found = np.searchsorted(flat, t + offset[idx], side="right")
        return (found - idx * k).astype(np.int64)

    def active(self, idx: IntArray, t: FloatArray) -> BoolArray:
        """Whether customer idx[j] is in an active spell at time t[j]."""
        return np.asarray(self._passed(idx, t) % 2 == 0)

    def switch(self, k: int) -> FloatArray:
        """The time of each customer's k-th switch (0: first dormancy), inf if after the end."""
        end = self.horizon - 1.0
        col = (
            self.switches[:, k] if k < self.switches.shape[1] else np.full(len(self.switches), end)
        )
        return np.where(col < end, col, np.inf)

    def returns(self, end: float) -> IntArray:
        """Completed dormant spells (comebacks) per customer before `end`."""
        back = self.switches[:, 1::2] < end
        return np.asarray(back.sum(axis=1), dtype=np.int64)


def on_off_spells(
    rng: np.random.Generator,
    *,
    hazard: FloatArray,
    dormant_mean: FloatArray,
    signup: FloatArray,
    end: float,
    pivot: float | None,
    speedup: float,
) -> Spells:
    """Spells from signup to past `end`: active ~ Exp(hazard), dormant ~ Exp(1 / dormant_mean).

    After `pivot` (engagement_drop) active spells run out `speedup` times faster. Draws come in
    chunks until every customer is covered even at that speed, so the draws do not depend on
    whether there is a pivot: the same seed gives the same spells before it.
    """
    chunk, cols, reach = 8, [], signup.copy()
    while True:
        act = rng.exponential(1.0, (len(hazard), chunk)) / hazard[:, None]
        dorm = rng.exponential(1.0, (len(hazard), chunk)) * dormant_mean[:, None]
        pair = np.empty((len(hazard), 2 * chunk))
        pair[:, 0::2], pair[:, 1::2] = act, dorm
        cols.append(pair)
        reach = reach + (act / speedup).sum(axis=1) + dorm.sum(axis=1)
        if reach.min() >= end:
            break
    durations = np.concatenate(cols, axis=1)
    switches = np.empty_like(durations)
    t = signup.copy()
    for k in range(durations.shape[1]):
        d = durations[:, k]
        if pivot is not None and k % 2 == 0:
            before = np.maximum(pivot - t, 0.0)
            d = np.where(d <= before, d, before + (d - before) / speedup)
        t = t + d
        switches[:, k] = t
    horizon = end + 1.0
    return Spells(np.minimum(switches, horizon - 0.5), horizon)


@dataclass(frozen=True)
class History:
    """Point-in-time attributes: plan[:, 0] from signup, plan[:, 1] from plan_at[:, 0],
    plan[:, 2] from plan_at[:, 1]; country[:, 1] from country_at (inf: no change)."""

    plan: IntArray
    plan_at: FloatArray
    country: IntArray
    country_at: FloatArray

    @classmethod
    def constant(cls, plan: IntArray, country: IntArray) -> History:
        never = np.full(len(plan), np.inf)
        return cls(
            np.stack([plan, plan, plan], axis=1),
            np.stack([never, never], axis=1),
            np.stack([country, country], axis=1),
            never,
        )

    def plan_of(self, idx: IntArray, t: FloatArray) -> IntArray:
        p = np.where(t >= self.plan_at[idx, 0], self.plan[idx, 1], self.plan[idx, 0])
        return np.where(t >= self.plan_at[idx, 1], self.plan[idx, 2], p)

    def country_of(self, idx: IntArray, t: FloatArray) -> IntArray:
        return np.where(t >= self.country_at[idx], self.country[idx, 1], self.country[idx, 0])

    def rows(self, signup: FloatArray) -> tuple[IntArray, FloatArray]:
        """(customer index, valid_from) of every attribute row, sorted by customer then time."""
        n = len(signup)
        times = [signup, self.plan_at[:, 0], self.plan_at[:, 1], self.country_at]
        cust = np.concatenate([np.arange(n, dtype=np.int64)] * len(times))
        t = np.concatenate(times)
        real = np.isfinite(t)
        cust, t = cust[real], t[real]
        order = np.lexsort((t, cust))
        return cust[order], t[order]

    def changes(self) -> IntArray:
        """Attribute changes per customer."""
        at = np.column_stack([self.plan_at, self.country_at])
        return np.asarray(np.isfinite(at).sum(axis=1), dtype=np.int64)


def attribute_history(
    rng: np.random.Generator,
    *,
    plan: IntArray,
    country: IntArray,
    signup: FloatArray,
    end: float,
    spec: Changes,
    moves: FloatArray,
    country_mix: FloatArray,
) -> History:
    """Plan moves (row p of `moves`: where plan p goes) and country moves after signup."""
    n = len(plan)
    u = rng.random((n, 6))
    delay = rng.exponential(spec.mean_days, (n, 3))
    cdf = np.cumsum(moves / moves.sum(axis=1, keepdims=True), axis=1)
    first = (u[:, 1, None] > cdf[plan]).sum(axis=1)
    second = (u[:, 2, None] > cdf[first]).sum(axis=1)
    at1 = np.where(u[:, 0] < spec.plan_share, signup + delay[:, 0], np.inf)
    at2 = np.where(u[:, 3] < spec.second_share, at1 + delay[:, 1], np.inf)
    moved = pick(u[:, 5], country_mix)
    moved = np.where(moved == country, (moved + 1) % len(country_mix), moved)
    at_c = np.where(u[:, 4] < spec.country_share, signup + delay[:, 2], np.inf)
    at1, at2, at_c = (np.where(a < end, a, np.inf) for a in (at1, at2, at_c))
    return History(
        np.stack([plan, first, second], axis=1).astype(np.int64),
        np.stack([at1, at2], axis=1),
        np.stack([country, moved], axis=1).astype(np.int64),
        at_c,
    )


@dataclass(frozen=True)
class LineItems:
    """Order lines: the order each belongs to (index), its number in the order (1..), the sku
    (catalog index), quantity, unit price and amount = quantity x unit price."""

    order: IntArray
    number: IntArray
    sku: IntArray
    quantity: IntArray
    unit_price: FloatArray
    amount: FloatArray


def catalog(spec: Lines) -> FloatArray:
    """List prices of the skus, log-spaced between the cheapest and the dearest."""
    return np.round(np.geomspace(spec.min_price, spec.max_price, spec.skus), 2)


def line_items(
    rngs: tuple[np.random.Generator, np.random.Generator, np.random.Generator, np.random.Generator],
    *,
    value: FloatArray,
    price: FloatArray,
    spec: Lines,
) -> LineItems:
    """Split each order's value (before price changes) into lines of catalog skus.

    Each draw kind has its own stream (`rngs`: line count, value shares, quantity, sku jitter)
    and orders arrive sorted by time, so the lines of the orders before a scenario's change
    date are the same in every scenario. A line's sku is the catalog item priced nearest above
    its share of the order value (jittered); its unit price is the list price x `price`.
    """
    r_count, r_share, r_qty, r_sku = rngs
    more = np.power(spec.more, np.arange(spec.max_lines)).astype(np.float64)
    lines = 1 + pick(r_count.random(len(value)), more)
    order = np.repeat(np.arange(len(value), dtype=np.int64), lines)
    first = np.repeat(np.cumsum(lines) - lines, lines)
    number = np.arange(len(order), dtype=np.int64) - first + 1
    share = r_share.gamma(2.0, 1.0, len(order))
    share = share / np.bincount(order, share, minlength=len(value))[order]
    quantity = 1 + pick(r_qty.random(len(order)), QUANTITY_PROBS)
    target = value[order] * share / quantity * r_sku.lognormal(0.0, 0.15, len(order))
    prices = catalog(spec)
    sku = np.minimum(np.searchsorted(prices, target), len(prices) - 1).astype(np.int64)
    unit_price = np.round(prices[sku] * price[order], 2)
    amount = np.round(quantity * unit_price, 2)
    return LineItems(order, number, sku, quantity, unit_price, amount)


def returned_units(
    u: FloatArray, u_units: FloatArray, *, order: IntArray, quantity: IntArray, spec: Retail
) -> IntArray:
    """Units returned per line if its order is cancelled (0: kept).

    Lines come grouped by order (as `line_items` makes them). Each line is returned with
    P(`return_share`), and so is the line with an order's smallest draw `u`, so a cancellation
    holds at least one line; a returned line of q > 1 units returns 1..q-1 of them with
    P(`partial_share`), else all.
    """
    starts = np.flatnonzero(np.r_[True, order[1:] != order[:-1]])
    lowest = np.repeat(np.minimum.reduceat(u, starts), np.diff(np.r_[starts, len(u)]))
    returned = (u < spec.return_share) | (u == lowest)
    partial = (quantity > 1) & (u_units < spec.partial_share)
    some = 1 + np.floor(u_units / spec.partial_share * (quantity - 1)).astype(np.int64)
    units = np.where(partial, np.minimum(some, quantity - 1), quantity)
    return np.where(returned, units, 0).astype(np.int64)


@dataclass(frozen=True)
class Aliases:
    """Other ids of each customer (index = customer), in days from the period start."""

    email: BoolArray
    email_from: FloatArray
    """When the e-mail was linked; -inf: always (valid_from missing)."""
    device: BoolArray
    merged_until: FloatArray
    """Invoices before this carry the retired id; -inf: no retired id."""

    ID_KINDS = ("customer", "retired", "email", "device")

    def kinds(self, u: FloatArray, cust: IntArray, t: FloatArray, spec: Retail) -> IntArray:
        """Which id (index of ID_KINDS) each invoice is written under: the retired id before
        the merge, else the e-mail with P(email_use) after the link (strictly, by more than a
        tenth of a second, so it holds at the invoice's own time), else the device id with
        P(device_use), else the customer id."""
        kind = np.where(self.device[cust] & (u >= 1.0 - spec.device_use), 3, 0)
        linked = self.email[cust] & (t > self.email_from[cust] + 1e-6)
        kind = np.where(linked & (u < spec.email_use), 2, kind)
        return np.where(t < self.merged_until[cust], 1, kind).astype(np.int64)


def aliases(u: FloatArray, *, signup: FloatArray, end: float, spec: Retail) -> Aliases:
    """Aliases from six uniforms per customer (u: n x 6)."""
    email_from = np.where(u[:, 1] < spec.email_dated_share, signup + 60.0 * u[:, 2], -np.inf)
    email = (u[:, 0] < spec.email_share) & (email_from < end)
    merged = u[:, 4] < spec.merged_share
    merged_until = np.where(merged, signup + u[:, 5] * (end - signup), -np.inf)
    return Aliases(email, email_from, u[:, 3] < spec.device_share, merged_until)


FIRST_NAMES = (
    "Olivia", "Amelia", "Isla", "Ava", "Mia", "Ivy", "Lily", "Isabella", "Rosie", "Sophia",
    "Grace", "Freya", "Alice", "Emily", "Ella", "Poppy", "Evie", "Ruby", "Harper", "Sienna",
    "Noah", "Oliver", "George", "Arthur", "Muhammad", "Leo", "Harry", "Oscar", "Archie", "Henry",
    "Theo", "Jack", "Charlie", "Freddie", "Thomas", "Alfie", "Finley", "Jacob", "Samuel", "Lucas",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel",
    "Robinson", "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall",
    "Wood", "Jackson", "Clarke", "Khan", "Lewis", "Harris", "Martin", "Cooper", "King", "Lee",
    "Baker", "Hughes", "Edwards", "Turner", "Hill", "Moore", "Clark", "Scott", "Ward", "Morris",
)  # fmt: skip
STREETS = (
    "Church", "Station", "Mill", "Park", "Victoria", "Green", "Manor", "Kings", "Queens", "High",
    "School", "North", "Springfield", "Grange", "Orchard", "Chapel", "Meadow", "Windsor",
)  # fmt: skip
STREET_KINDS = ("Road", "Street", "Lane", "Avenue", "Close", "Way", "Gardens", "Crescent")
TOWNS = (
    ("London", "SE"), ("Manchester", "M"), ("Bristol", "BS"), ("Leeds", "LS"),
    ("Birmingham", "B"), ("Glasgow", "G"), ("Sheffield", "S"), ("Liverpool", "L"),
    ("Edinburgh", "EH"), ("Cardiff", "CF"), ("Nottingham", "NG"), ("Brighton", "BN"),
    ("Oxford", "OX"), ("York", "YO"), ("Norwich", "NR"), ("Exeter", "EX"),
)  # fmt: skip
MAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.co.uk")
POSTCODE_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"


@dataclass(frozen=True)
class Contacts:
    """Fake personal data per customer (index = customer): unique e-mails (the customer's
    number is part of the local part), UK phone numbers in Ofcom's range for drama
    (07700 900000-900999) and UK-style addresses, all from the word lists above."""

    email: npt.NDArray[np.str_]
    name: npt.NDArray[np.str_]
    phone: npt.NDArray[np.str_]
    address: npt.NDArray[np.str_]


def contacts(rng: np.random.Generator, n: int) -> Contacts:
    """Contacts of n customers from one block of draws (n x 11)."""
    d = rng.integers(0, 1 << 30, (n, 11))

    def word(words: tuple[str, ...], k: int) -> npt.NDArray[np.str_]:
        return np.array(words)[d[:, k] % len(words)]

    first, last = word(FIRST_NAMES, 0), word(LAST_NAMES, 1)
    number = np.arange(1, n + 1).astype(str)
    local = np.char.lower(np.char.add(np.char.add(first, "."), np.char.add(last, number)))
    email = np.char.add(np.char.add(local, "@"), word(MAIL_DOMAINS, 2))
    name = np.char.add(np.char.add(first, " "), last)
    phone = np.char.add("+44 7700 900", np.char.zfill((d[:, 3] % 1000).astype(str), 3))
    town = np.array(TOWNS)[d[:, 4] % len(TOWNS)]
    letters = np.array(list(POSTCODE_LETTERS))
    postcode: list[npt.NDArray[np.str_] | str] = [
        town[:, 1],
        (1 + d[:, 5] % 20).astype(str),
        " ",
        (d[:, 6] % 10).astype(str),
        letters[d[:, 7] % len(letters)],
        letters[(d[:, 7] // len(letters)) % len(letters)],
    ]
    address = (1 + d[:, 8] % 180).astype(str)
    parts = [" ", word(STREETS, 9), " ", word(STREET_KINDS, 10), ", ", town[:, 0], " ", *postcode]
    for part in parts:
        address = np.char.add(address, part)
    return Contacts(email, name, phone, address)
