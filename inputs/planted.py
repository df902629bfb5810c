"""Planted truths for the decisions: what acquiring customers cost, an early-adoption effect and
a randomized retention experiment, each with the truth an analysis must recover.

The generator (`clv.inputs.generator.generate`) plants them only when asked (`costs=`,
`adoption=`, `experiment=`); without them a world is byte for byte what it was. This module
holds the options, the truths and the pure pieces (the cost table, who adopted early, who was
assigned to which arm, the experiment's true effect); the generator draws the purchases.

Both effects on value are rate multipliers drawn as a second Poisson process on top of a
customer's own (superposition): `factor` x the customer's purchase rate, thinned by the same
season, tenure, plan and life, with order values from the same distributions. So in
expectation a boosted customer's margin over any window is exactly (1 + factor) x the margin
they would have brought without it; the rows the boost added are kept (`extra`), and for the
experiment also the rows it would have added to the control arm (the counterfactual).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from clv.core.contracts import TS_DTYPE
from clv.core.errors import DataError
from clv.inputs.parse import month_start

DEFAULT_CAC: tuple[tuple[str, float], ...] = (
    ("organic", 8.0),
    ("paid_search", 90.0),
    ("social", 60.0),
    ("referral", 40.0),
    ("affiliate", 80.0),
)
"""True cost of acquiring one customer per channel (workspace currency): whole numbers, so
spend / new_customers is the planted CAC exactly in float64; set so the channels' CAC:CLV
differ (referral repays its CAC many times over, affiliate barely)."""
CONTROL, TREATMENT = "control", "treatment"

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class CostPlan:
    """Acquisition costs: per channel and calendar month of the period, spend = true CAC x the
    customers the channel acquired that month (the exact count is `new_customers`), times a
    mean-one log-normal noise of sd `noise` (0: exact)."""

    cac: tuple[tuple[str, float], ...] = DEFAULT_CAC
    noise: float = 0.0

    def __post_init__(self) -> None:
        if self.noise < 0 or any(c < 0 for _, c in self.cac):
            raise DataError("acquisition costs: CAC and noise must not be negative")


@dataclass(frozen=True)
class AdoptionPlan:
    """Early adoption: a customer with an `event_type` event in their first `window_days`
    (event ts < signup_ts + window) buys at (1 + lift) x their rate from signup + window on."""

    event_type: str = "feature_use"
    window_days: float = 14.0
    lift: float = 0.25

    def __post_init__(self) -> None:
        if self.window_days <= 0 or self.lift < 0:
            raise DataError("early adoption: window_days must be positive, lift not negative")


@dataclass(frozen=True)
class ExperimentPlan:
    """A randomized retention experiment: at `at` (default: the change date) every customer
    who signed up before it and bought in the `active_days` before it is eligible; a share
    `share` of them is enrolled, each enrolled customer assigned to treatment with probability
    `treatment_share` (independent seeded draws), else control. Treatment buys at
    (1 + uplift) x their rate after `at`."""

    name: str = "retention"
    at: pd.Timestamp | str | None = None
    active_days: float = 180.0
    share: float = 1.0
    treatment_share: float = 0.5
    uplift: float = 0.2

    def __post_init__(self) -> None:
        if not (0 < self.share <= 1 and 0 < self.treatment_share < 1):
            raise DataError("experiment: share must be in (0, 1], treatment_share in (0, 1)")
        if self.uplift < 0 or self.active_days <= 0:
            raise DataError("experiment: uplift must not be negative, active_days positive")


@dataclass(frozen=True, eq=False)
class CacTruth:
    """The planted cost of acquiring a customer, per channel."""

    cac: Mapping[str, float]
    noise: float
    """0: every row's spend / new_customers is the channel's CAC exactly; else only in
    expectation (sum of spend / sum of new_customers tends to it)."""


@dataclass(frozen=True, eq=False)
class AdoptionTruth:
    """The planted early-adoption effect (the customers are `truth.early_adopter`)."""

    event_type: str
    window_days: float
    lift: float
    """Adopters' purchase rate x (1 + lift) from signup + window_days: their expected margin
    after the window is (1 + lift) x what it would be without the effect."""
    adopters: int
    extra: pd.DataFrame
    """The transactions rows the lift added (all in `transactions`)."""


@dataclass(frozen=True, eq=False)
class ExperimentTruth:
    """The planted retention experiment and its true effect."""

    name: str
    assigned_at: pd.Timestamp
    uplift: float
    """Treatment's purchase rate x (1 + uplift) after assigned_at: its expected margin over
    any window after it is (1 + uplift) x control's."""
    assigned: int
    """Customers in the experiment (both arms)."""
    extra: pd.DataFrame
    """For every assigned customer, the transactions rows the treatment adds: treatment's are
    in `transactions`, control's are the counterfactual (never written)."""

    def effect(
        self, *, horizon_days: float | None = None, annual_discount_rate: float = 0.0
    ) -> float:
        """The true average effect in this sample: per assigned customer, the margin the
        treatment adds (control: would add) in (assigned_at, assigned_at + horizon], each row
        discounted to assigned_at as the CLV labels discount (clv.training.labels); the
        estimand of a difference in means between the arms."""
        return sample_effect(
            self.extra,
            start=self.assigned_at,
            customers=self.assigned,
            horizon_days=horizon_days,
            annual_discount_rate=annual_discount_rate,
        )


@dataclass(frozen=True, eq=False)
class Truths:
    """What the generator planted for the decisions (None: not planted)."""

    cac: CacTruth | None = None
    adoption: AdoptionTruth | None = None
    experiment: ExperimentTruth | None = None

    def as_dict(self) -> dict[str, object]:
        """The planted parameters (not the rows), as JSON values; {} when nothing was planted."""
        out: dict[str, object] = {}
        if self.cac is not None:
            out["cac"] = {"per_channel": dict(self.cac.cac), "noise": self.cac.noise}
        if self.adoption is not None:
            a = self.adoption
            out["adoption"] = {
                "event_type": a.event_type,
                "window_days": a.window_days,
                "lift": a.lift,
                "adopters": a.adopters,
            }
        if self.experiment is not None:
            e = self.experiment
            out["experiment"] = {
                "name": e.name,
                "assigned_at": e.assigned_at.isoformat(),
                "uplift": e.uplift,
                "assigned": e.assigned,
                "effect_margin_per_customer": e.effect(),
            }
        return out

    def describe(self) -> list[str]:
        """One line per planted truth, for a summary."""
        lines = []
        if self.cac is not None:
            per = ", ".join(f"{k} {v:g}" for k, v in self.cac.cac.items())
            noise = f" (spend noise {self.cac.noise:g})" if self.cac.noise else ""
            lines.append(f"CAC per channel: {per}{noise}")
        if self.adoption is not None:
            a = self.adoption
            lines.append(
                f"early adoption: {a.adopters:,} customers with {a.event_type} within "
                f"{a.window_days:g} days of signup buy at {1 + a.lift:g} x their rate after"
            )
        if self.experiment is not None:
            e = self.experiment
            lines.append(
                f"experiment {e.name}: {e.assigned:,} customers assigned at "
                f"{e.assigned_at.date()}, treatment purchase rate x {1 + e.uplift:g} "
                f"(true effect {e.effect():.2f} margin per customer)"
            )
        return lines


def period_months(start: pd.Timestamp, end: pd.Timestamp) -> pd.DatetimeIndex:
    """The first instants (UTC) of the calendar months that [start, end) touches."""
    first = month_start(pd.Series([start, end - pd.Timedelta(microseconds=1)]).astype(TS_DTYPE))
    return pd.date_range(first.iloc[0], first.iloc[1], freq="MS").as_unit("us")


def cost_table(
    signup_ts: pd.Series,
    channel: pd.Series,
    *,
    months: pd.DatetimeIndex,
    plan: CostPlan,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """acquisition_costs rows: every channel of `plan` x every month of `months`, by month then
    channel name (as ingest stores them); new_customers counts the signups (one per customer)
    of the channel that month."""
    signups = pd.DataFrame({"channel": channel.to_numpy(), "month": month_start(signup_ts)})
    counts = signups.value_counts(["channel", "month"])
    by_name = dict(sorted(plan.cac))
    grid = pd.MultiIndex.from_product([months, list(by_name)], names=["month", "channel"])
    n = counts.reorder_levels(["month", "channel"]).reindex(grid, fill_value=0)
    n = n.to_numpy(dtype=np.float64)
    cac = np.tile(np.array(list(by_name.values()), dtype=np.float64), len(months))
    spend = cac * n
    if plan.noise > 0:
        factor = np.exp(plan.noise * rng.standard_normal(len(n)) - plan.noise**2 / 2)
        spend = np.round(spend * factor, 2)
    return pd.DataFrame(
        {
            "channel": grid.get_level_values("channel").to_numpy(dtype=object),
            "month": pd.Series(grid.get_level_values("month")).astype(TS_DTYPE),
            "spend": spend,
            "new_customers": n,
        }
    )


def early_adopters(
    events: pd.DataFrame, customer_ids: pd.Index, signup_ts: pd.Series, plan: AdoptionPlan
) -> BoolArray:
    """Per customer (in `customer_ids` order): an `event_type` event before signup_ts +
    window_days, as the written tables say."""
    of_type = events[events["event_type"] == plan.event_type]
    at = customer_ids.get_indexer(of_type["customer_id"])
    window = pd.Timedelta(days=plan.window_days).to_timedelta64()
    until = _naive(signup_ts) + window
    early = _naive(of_type["ts"]) < until[at]
    out = np.zeros(len(customer_ids), dtype=bool)
    out[at[early]] = True
    return out


def _naive(ts: pd.Series) -> npt.NDArray[np.datetime64]:
    """UTC timestamps as naive datetime64[us] (UTC)."""
    return ts.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")


@dataclass(frozen=True, eq=False)
class Assignment:
    """Who is in the experiment and in which arm (per customer, index = customer)."""

    enrolled: BoolArray
    treated: BoolArray


def assign(eligible: BoolArray, *, plan: ExperimentPlan, rng: np.random.Generator) -> Assignment:
    """Enrol `plan.share` of the eligible and draw each one's arm (two draws per customer,
    whoever is eligible, so the arms do not depend on anything else drawn)."""
    u = rng.random((len(eligible), 2))
    enrolled = eligible & (u[:, 0] < plan.share)
    return Assignment(enrolled=enrolled, treated=enrolled & (u[:, 1] < plan.treatment_share))


def assignment_rows(
    customer_ids: npt.NDArray[np.object_], a: Assignment, *, plan: ExperimentPlan, at: pd.Timestamp
) -> pd.DataFrame:
    """assignments rows: one per enrolled customer, by customer id."""
    who = np.flatnonzero(a.enrolled)
    return pd.DataFrame(
        {
            "experiment": np.full(len(who), plan.name, dtype=object),
            "customer_id": customer_ids[who],
            "arm": np.where(a.treated[who], TREATMENT, CONTROL).astype(object),
            "assigned_at": pd.Series(np.full(len(who), at)).astype(TS_DTYPE),
        }
    )


def sample_effect(
    rows: pd.DataFrame,
    *,
    start: pd.Timestamp,
    customers: int,
    horizon_days: float | None,
    annual_discount_rate: float,
) -> float:
    """Sum over `rows` (ts, margin) in (start, start + horizon] of margin / (1 + r) ** (days
    since start / 365), per customer of `customers` (labels' discounting, clv.training.labels)."""
    if customers == 0:
        return float("nan")
    days = (rows["ts"] - start) / pd.Timedelta(days=1)
    inside = days > 0
    if horizon_days is not None:
        inside &= days <= horizon_days
    discount = (1.0 + annual_discount_rate) ** (-days[inside] / 365.0)
    return float((rows["margin"][inside] * discount).sum() / customers)


@dataclass(frozen=True)
class Boost:
    """A purchase-rate multiplier 1 + factor(i, t) on top of customer i's own rate, drawn as
    a second process: factor = scale_i x (1 + lift x [t >= lift_from_i]) from begin_i on."""

    scale: FloatArray
    begin: FloatArray
    """Days from the period's start (inf: never)."""
    lift: float = 0.0
    lift_from: FloatArray | None = None

    @property
    def most(self) -> FloatArray:
        """Per customer, the largest factor."""
        return self.scale * (1.0 + self.lift)

    def factor(self, idx: npt.NDArray[np.int64], t: FloatArray) -> FloatArray:
        f = self.scale[idx]
        if self.lift_from is not None and self.lift:
            f = f * (1.0 + self.lift * (t >= self.lift_from[idx]))
        return f
