"""Cohorts: who was acquired when, or who adopted what early, and what they are worth.

Two kinds (`clv.decisions.values` has the per-customer rules):
- signup month: the calendar month (UTC) of acquisition;
- early adoption: the customers who used an event type within their first N days
  (`decisions.adoption_days`) against those who did not, among customers at least N days old.

Per cohort: the realized triangle (cumulative discounted margin per customer, active share and
ARPU by month of age, each over the customers observed that month), the margin realized to
date, the served model's predicted value (a sum with P10-P90), and the outlook per customer:
realized to date plus predicted. A cohort is flagged when its outlook per customer fell below
the P10 of the previous run's outlook: a drop larger than the model's own uncertainty, not the
noise of a rerun.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

from clv.core.time import utc_series
from clv.decisions.values import (
    Customers,
    Interval,
    predicted_sum,
    realized_by_month,
    realized_to_date,
)

CohortKind = Literal["signup_month", "adoption"]


@dataclass(frozen=True, eq=False)
class Cohort:
    name: str
    kind: CohortKind
    customers: int
    realized_per_customer: float
    """Discounted margin from acquisition to as_of, per customer."""
    predicted: Interval
    """The cohort's predicted value over the model's horizon (a sum)."""
    triangle: pd.DataFrame = field(repr=False)
    previous_outlook: float | None = None
    flagged: bool = False

    @property
    def outlook_per_customer(self) -> Interval:
        n = max(self.customers, 1)
        return self.predicted.scaled(1.0 / n).shifted(self.realized_per_customer)

    @property
    def change(self) -> float | None:
        """The outlook per customer against the previous run's, as a share (None: no run)."""
        if self.previous_outlook is None or self.previous_outlook == 0:
            return None
        return self.outlook_per_customer.value / self.previous_outlook - 1.0

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "customers": self.customers,
            "realized_per_customer": self.realized_per_customer,
            "predicted": self.predicted.as_dict(),
            "outlook_per_customer": self.outlook_per_customer.as_dict(),
            "previous_outlook_per_customer": self.previous_outlook,
            "change": self.change,
            "flagged": self.flagged,
            "triangle": self.triangle.to_dict(orient="records"),
        }


def signup_months(values: Customers) -> dict[str, pd.Index]:
    """Customers by the calendar month of their acquisition ("2024-01": ids), oldest first."""
    month = utc_series(values.frame["acquired_at"]).dt.strftime("%Y-%m")
    groups = values.frame.groupby(month.to_numpy())["customer_id"]
    return {str(k): pd.Index(v) for k, v in sorted(groups)}


def adopters(
    values: Customers, events: pd.DataFrame, *, event_type: str, days: int
) -> dict[str, pd.Index]:
    """Customers at least `days` old at as_of, split by whether they had an `event_type` event
    within `days` of acquisition (events before as_of only; ids as in `values`)."""
    frame = values.frame
    old_enough = frame.loc[
        utc_series(frame["acquired_at"]) + pd.Timedelta(days=days) <= values.as_of
    ]
    ev = events.loc[
        (events["event_type"].astype(str) == event_type) & (utc_series(events["ts"]) < values.as_of)
    ]
    ev = ev.assign(customer_id=ev["customer_id"].astype(str), ts=utc_series(ev["ts"]))
    joined = ev.merge(old_enough[["customer_id", "acquired_at"]], on="customer_id")
    early = joined.loc[
        (joined["ts"] >= joined["acquired_at"])
        & (joined["ts"] < joined["acquired_at"] + pd.Timedelta(days=days))
    ]
    used = set(early["customer_id"])
    ids = old_enough["customer_id"]
    yes = pd.Index(ids[ids.isin(used)])
    no = pd.Index(ids[~ids.isin(used)])
    return {
        f"{event_type} within {days} days": yes,
        f"no {event_type} within {days} days": no,
    }


def cohort_table(
    values: Customers,
    groups: dict[str, pd.Index],
    *,
    kind: CohortKind,
    previous: dict[str, dict[str, float]] | None = None,
) -> list[Cohort]:
    """One Cohort per group (groups without customers are left out). `previous`: the last
    run's `outlook_per_customer` per cohort name (value, p10, p90)."""
    realized = realized_to_date(values)
    by_id = values.frame.set_index("customer_id")
    out = []
    for name, ids in groups.items():
        if len(ids) == 0:
            continue
        members = by_id.loc[ids]
        before = (previous or {}).get(name)
        cohort = Cohort(
            name=name,
            kind=kind,
            customers=len(ids),
            realized_per_customer=float(realized.reindex(ids).mean()),
            predicted=predicted_sum(members),
            triangle=realized_by_month(values, ids),
            previous_outlook=None if before is None else float(before["value"]),
        )
        if before is not None:
            fell = cohort.outlook_per_customer.value < float(before["p10"])
            cohort = Cohort(**{**cohort.__dict__, "flagged": bool(fell)})
        out.append(cohort)
    return out


def largest_drop(cohorts: list[Cohort]) -> Cohort | None:
    """The cohort whose outlook per customer fell most against the previous run."""
    changed = [c for c in cohorts if c.change is not None]
    return min(changed, key=lambda c: c.change or 0.0) if changed else None


def triangle_frame(cohorts: list[Cohort]) -> pd.DataFrame:
    """Every cohort's triangle in one long frame (cohort, kind, month, ...)."""
    parts = [c.triangle.assign(cohort=c.name, kind=c.kind) for c in cohorts]
    if not parts:
        return pd.DataFrame(columns=["cohort", "kind", "month"])
    frame = pd.concat(parts, ignore_index=True)
    first = ["cohort", "kind"]
    return frame[first + [c for c in frame.columns if c not in first]]
