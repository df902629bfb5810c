"""What every decision reads per customer: when and how they were acquired, the margin they
brought since (discounted to their acquisition, by month of age), and the served model's
prediction of what they bring next.

Rules, one place for all analyses:
- A customer is the canonical customer at `as_of` (identities resolved as of then): an alias's
  rows count for the customer it is then.
- Acquired at: the customer's signup_ts (the earliest version that has one), else their first
  transaction. Channel: the acquisition_channel of their first version (None when unknown).
- Age months: month m of a customer is [acquired + m * MONTH, acquired + (m + 1) * MONTH), MONTH
  = 365.25 / 12 days. A customer is observed at month m when acquired + (m + 1) * MONTH <= as_of;
  per-month figures average over the customers observed at that month (a right-censored
  triangle: a younger customer does not count as zero).
- Realized value: margin (the `margin` column, else amount x `model.margin_rate`; refunds lower
  it) of transactions before `as_of`, each discounted to the acquisition time at
  `model.annual_discount_rate`, like the labels.
- Predicted value: the served model's CLV at `as_of` (its horizon, discounted to `as_of`) and its
  P10-P90. A sum over customers takes them as independent, each normal with the spread of its
  P10-P90 (sd = (P90 - P10) / 2.563): the sum's P10-P90 is sum +- 1.2816 sqrt(sum sd^2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from clv.core.contracts import TS_DTYPE
from clv.core.time import utc_series
from clv.inputs.identities import IdentityMap, canonical_ids
from clv.training.labels import order_margins

MONTH_DAYS = 365.25 / 12
Z90 = 1.2815515655446004
"""The standard normal's 90th percentile: P10-P90 is +-Z90 standard deviations."""


@dataclass(frozen=True, eq=False)
class Customers:
    """One row per canonical customer known at `as_of`: customer_id, acquired_at, channel,
    age_months (whole months observed), and their predicted clv, clv_p10, clv_p90 (NaN when
    the model did not score them)."""

    frame: pd.DataFrame
    margins: pd.DataFrame
    """Transactions before as_of: customer_id, ts, amount, margin, discounted (to acquisition),
    age_month."""
    as_of: pd.Timestamp


def _canonical(ids: pd.Series, identities: IdentityMap | None, as_of: pd.Timestamp) -> pd.Series:
    return pd.Series(canonical_ids(ids.astype(str), identities, as_of), index=ids.index)


def customers_at(
    transactions: pd.DataFrame,
    customers: pd.DataFrame | None,
    scores: pd.DataFrame | None,
    *,
    as_of: pd.Timestamp,
    margin_rate: float,
    annual_discount_rate: float,
    identities: IdentityMap | None = None,
) -> Customers:
    """The customers known before `as_of` (a transaction or a signup before it) and their
    values (see the module rules). `scores`: customer_id, clv, clv_p10, clv_p90 at as_of."""
    tx = transactions.loc[utc_series(transactions["ts"]) < as_of].copy()
    tx["customer_id"] = _canonical(tx["customer_id"], identities, as_of)
    tx["ts"] = utc_series(tx["ts"]).astype(TS_DTYPE)
    amount = pd.to_numeric(tx["amount"], errors="coerce").fillna(0.0)
    tx["amount"], tx["margin"] = amount, order_margins(tx, margin_rate=margin_rate)
    first_tx = tx.groupby("customer_id")["ts"].min()

    signup = pd.Series(dtype=TS_DTYPE)
    channel = pd.Series(dtype=object)
    if customers is not None and not customers.empty:
        c = customers.copy()
        c["customer_id"] = _canonical(c["customer_id"], identities, as_of)
        order = utc_series(c["valid_from"]) if "valid_from" in c.columns else None
        if order is not None:
            c = c.assign(_order=order.fillna(pd.Timestamp.min.tz_localize("UTC")))
            c = c.sort_values(["customer_id", "_order"], kind="stable")
        firsts = c.groupby("customer_id", sort=False)
        if "signup_ts" in c.columns:
            signup = firsts["signup_ts"].apply(lambda s: utc_series(s).dropna().min())
        if "acquisition_channel" in c.columns:
            channel = firsts["acquisition_channel"].first()

    acquired = pd.concat([signup.rename("signup"), first_tx.rename("first_tx")], axis=1)
    acquired_at = utc_series(acquired["signup"]).fillna(utc_series(acquired["first_tx"]))
    frame = pd.DataFrame({"acquired_at": acquired_at.astype(TS_DTYPE)})
    frame = frame.loc[frame["acquired_at"].notna() & (frame["acquired_at"] < as_of)]
    frame.index.name = "customer_id"
    frame["channel"] = channel.reindex(frame.index)
    age_days = (as_of - frame["acquired_at"]).dt.total_seconds() / 86_400.0
    frame["age_months"] = np.floor(age_days / MONTH_DAYS).astype(np.int64)
    for column in ("clv", "clv_p10", "clv_p90"):
        frame[column] = np.nan
    if scores is not None and not scores.empty:
        by_id = scores.assign(customer_id=scores["customer_id"].astype(str)).set_index(
            "customer_id"
        )
        for column in ("clv", "clv_p10", "clv_p90"):
            frame[column] = by_id[column].reindex(frame.index).to_numpy(dtype=float)
    frame = frame.reset_index()

    tx = tx.merge(frame[["customer_id", "acquired_at"]], on="customer_id", how="inner")
    years = (tx["ts"] - tx["acquired_at"]).dt.total_seconds() / (365.0 * 86_400.0)
    years = years.clip(lower=0.0)  # a purchase before the recorded signup counts undiscounted
    tx["discounted"] = tx["margin"] / np.power(1.0 + annual_discount_rate, years)
    tx["age_month"] = np.floor(years * 365.0 / MONTH_DAYS).astype(np.int64)
    margins = tx[["customer_id", "ts", "amount", "margin", "discounted", "age_month"]]
    return Customers(frame=frame, margins=margins.reset_index(drop=True), as_of=as_of)


@dataclass(frozen=True)
class Interval:
    """A value with its P10 and P90."""

    value: float
    p10: float
    p90: float

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "p10": self.p10, "p90": self.p90}

    def scaled(self, factor: float) -> Interval:
        lo, hi = sorted((self.p10 * factor, self.p90 * factor))
        return Interval(self.value * factor, lo, hi)

    def shifted(self, amount: float) -> Interval:
        return Interval(self.value + amount, self.p10 + amount, self.p90 + amount)


def predicted_sum(frame: pd.DataFrame) -> Interval:
    """The sum of the customers' predicted clv, with its P10-P90 (independent customers, each
    normal with its own P10-P90 spread). Unscored customers count as 0."""
    clv = frame["clv"].fillna(0.0).to_numpy(dtype=float)
    sd = ((frame["clv_p90"] - frame["clv_p10"]).fillna(0.0) / (2 * Z90)).to_numpy(dtype=float)
    total = float(clv.sum())
    spread = Z90 * float(np.sqrt(np.square(sd).sum()))
    return Interval(total, total - spread, total + spread)


def realized_by_month(values: Customers, members: pd.Index | None = None) -> pd.DataFrame:
    """Per age month m of the chosen customers (all by default): observed (customers observed
    at m), cumulative discounted margin per observed customer through m, active share (a
    purchase in month m) and ARPU (revenue in month m per observed customer)."""
    frame = values.frame
    if members is not None:
        frame = frame.loc[frame["customer_id"].isin(members)]
    tx = values.margins.loc[values.margins["customer_id"].isin(frame["customer_id"])]
    ages = frame.set_index("customer_id")["age_months"]
    months = int(ages.max()) if len(ages) else 0
    rows = []
    per_month = (
        tx.assign(bought=tx["amount"] > 0)
        .groupby(["customer_id", "age_month"])
        .agg(discounted=("discounted", "sum"), revenue=("amount", "sum"), bought=("bought", "max"))
    )
    wide = (
        per_month["discounted"]
        .unstack(fill_value=0.0)
        .reindex(index=ages.index, columns=range(months), fill_value=0.0)
    )
    revenue = (
        per_month["revenue"]
        .unstack(fill_value=0.0)
        .reindex(index=ages.index, columns=range(months), fill_value=0.0)
    )
    bought = (
        per_month["bought"]
        .unstack(fill_value=False)
        .reindex(index=ages.index, columns=range(months), fill_value=False)
    )
    cumulative = wide.cumsum(axis=1)
    for m in range(months):
        seen = ages > m  # month m has ended for them
        n = int(seen.sum())
        if n == 0:
            break
        rows.append(
            {
                "month": m,
                "observed": n,
                "cumulative_margin": float(cumulative.loc[seen, m].mean()),
                "active_share": float(bought.loc[seen, m].astype(bool).mean()),
                "arpu": float(revenue.loc[seen, m].mean()),
            }
        )
    return pd.DataFrame(
        rows, columns=["month", "observed", "cumulative_margin", "active_share", "arpu"]
    )


def realized_to_date(values: Customers) -> pd.Series:
    """Each customer's discounted margin from acquisition to as_of, by customer_id."""
    total = values.margins.groupby("customer_id")["discounted"].sum()
    return total.reindex(values.frame["customer_id"], fill_value=0.0)
