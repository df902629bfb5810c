"""Point-in-time subscription features: one row per paying subscription active at t, from
the subscriptions, subscription_changes, events and invoice rows with timestamps before t only.

The contractual models read them (clv.model.subscription: the hazard, the expansion boosters),
in training at every origin and in scoring at the snapshot. Invoices are the transactions of
channel SUBSCRIPTION_CHANNEL (core/contracts.py): they hold the billing dates (a trial's length
is in no other table). Why each feature: docs/decisions/contractual-model.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clv.core.contracts import BILLING_PERIOD_MONTHS, SUBSCRIPTION_CHANNEL
from clv.core.time import add_months, months_of, utc

RATE_WINDOW_DAYS = 365
"""one_off_history's recent margin: the year before t."""
USAGE_EVENT_EXCLUDED = "support_ticket"
"""Every event but a support ticket is usage."""


def invoices_before(transactions: pd.DataFrame, *, before: pd.Timestamp) -> pd.DataFrame:
    """Subscription invoices with ts < `before`: subscription_id, ts, amount, margin."""
    inv = transactions.loc[
        (transactions["channel"] == SUBSCRIPTION_CHANNEL) & (transactions["ts"] < before)
    ]
    sid = inv["order_id"].astype(str).str.rsplit("-", n=1).str[0]
    return pd.DataFrame(
        {
            "subscription_id": sid.to_numpy(),
            "ts": inv["ts"].to_numpy(),
            "amount": inv["amount"].to_numpy(),
            "margin": inv["margin"].to_numpy(),
        }
    )


def _state_moves(subs: pd.DataFrame, changes: pd.DataFrame, t: pd.Timestamp) -> pd.DataFrame:
    """Per subscription: plan, seats, mrr at t (its row, then its changes with ts < t) and the
    upgrades, downgrades (a plan change raising / lowering the MRR per seat) and seat changes."""
    cols = ["subscription_id", "ts", "plan", "seats", "mrr"]
    opening = subs.assign(ts=subs["started_at"], _o=0)[[*cols, "_o"]]
    seen = changes.loc[changes["ts"] < t, cols].merge(
        subs[["subscription_id", "started_at"]], on="subscription_id"
    )
    seen = seen.loc[seen["ts"] >= seen["started_at"], cols].assign(_o=1)
    steps = pd.concat([opening, seen], ignore_index=True)
    steps = steps.sort_values(["subscription_id", "ts", "_o"], kind="stable")
    g = steps.groupby("subscription_id", sort=False)
    steps[["plan", "seats", "mrr"]] = g[["plan", "seats", "mrr"]].ffill()
    prev = steps.groupby("subscription_id", sort=False)[["plan", "seats", "mrr"]].shift()
    per_seat = steps["mrr"] / steps["seats"].clip(lower=1)
    prev_per_seat = prev["mrr"] / prev["seats"].clip(lower=1)
    moved = prev["plan"].notna() & (steps["plan"] != prev["plan"])
    steps["upgrades"] = (moved & (per_seat > prev_per_seat)).astype(np.int64)
    steps["downgrades"] = (moved & (per_seat < prev_per_seat)).astype(np.int64)
    steps["seat_changes"] = (prev["seats"].notna() & (steps["seats"] != prev["seats"])).astype(
        np.int64
    )
    out = steps.groupby("subscription_id", sort=False).agg(
        plan=("plan", "last"),
        seats=("seats", "last"),
        mrr=("mrr", "last"),
        upgrades=("upgrades", "sum"),
        downgrades=("downgrades", "sum"),
        seat_changes=("seat_changes", "sum"),
    )
    return out


def _event_counts(events: pd.DataFrame, customers: pd.Series, t: pd.Timestamp) -> pd.DataFrame:
    """Per customer (index of `customers`): usage events in the 30 and 90 days before t, their
    trend log((u30 + 1) / (u90 / 3 + 1)), the last 30 days against the year's monthly mean
    log((u30 + 1) / (u365 / 12 + 1)), and support tickets in the 90 days before t."""
    recent = events.loc[(events["ts"] < t) & (events["ts"] >= t - pd.Timedelta(days=365))]
    ticket = recent["event_type"] == USAGE_EVENT_EXCLUDED
    last30 = recent["ts"] >= t - pd.Timedelta(days=30)
    last90 = recent["ts"] >= t - pd.Timedelta(days=90)
    frame = pd.DataFrame(
        {
            "customer_id": recent["customer_id"].to_numpy(),
            "usage_30d": (~ticket & last30).to_numpy(dtype=np.int64),
            "usage_90d": (~ticket & last90).to_numpy(dtype=np.int64),
            "usage_365d": (~ticket).to_numpy(dtype=np.int64),
            "tickets_90d": (ticket & last90).to_numpy(dtype=np.int64),
        }
    )
    counts = frame.groupby("customer_id").sum().reindex(customers.unique(), fill_value=0)
    counts = counts.reindex(customers.to_numpy()).set_axis(customers.index)
    u30 = counts["usage_30d"] + 1.0
    counts["usage_trend"] = np.log(u30 / (counts["usage_90d"] / 3.0 + 1.0))
    counts["usage_vs_year"] = np.log(u30 / (counts["usage_365d"] / 12.0 + 1.0))
    return counts


def subscription_features(
    subscriptions: pd.DataFrame,
    changes: pd.DataFrame,
    events: pd.DataFrame,
    *,
    as_of: pd.Timestamp | str,
    transactions: pd.DataFrame,
) -> pd.DataFrame:
    """One row per paying subscription active at `as_of` (index subscription_id), from rows
    with timestamps < as_of only (an `ended_at` at or after it reads as not ended).

    Paying: at least one invoice before as_of (a trial in progress is a conversion question,
    not a renewal one). Besides FEATURES (plan_code excepted): customer_id, plan,
    billing_period, paid_from (the first invoice), next_renewal (the end of the period in
    progress), and `transactions` supplies the billing dates: the trial's length, hence the
    first invoice, is in no other table.
    """
    t = utc(as_of)
    started = subscriptions.loc[subscriptions["started_at"] < t]
    ended = (started["ended_at"] < t).fillna(False).to_numpy(dtype=bool)
    inv = invoices_before(transactions, before=t).groupby("subscription_id")["ts"]
    billed = pd.DataFrame({"invoices": inv.size(), "paid_from": inv.min()})
    subs = started.loc[~ended].merge(billed, left_on="subscription_id", right_index=True)
    subs = subs.set_index("subscription_id", drop=False)
    state = _state_moves(subs.reset_index(drop=True), changes, t).reindex(subs.index)
    pm = subs["billing_period"].map(BILLING_PERIOD_MONTHS).to_numpy(dtype=np.int64)
    n = subs["invoices"].to_numpy(dtype=np.int64)
    next_renewal = add_months(subs["paid_from"], n * pm)
    out = pd.DataFrame(index=subs.index)
    out["customer_id"] = subs["customer_id"]
    out["plan"] = state["plan"]
    out["billing_period"] = subs["billing_period"]
    out["paid_from"] = subs["paid_from"]
    out["next_renewal"] = next_renewal
    out["tenure_months"] = months_of(t - subs["started_at"])
    out["tenure_periods"] = n
    out["renewals"] = n - 1
    out["seats"] = state["seats"].astype(np.int64)
    out["mrr"] = state["mrr"].astype(np.float64)
    out["mrr_per_seat"] = out["mrr"] / out["seats"].clip(lower=1)
    out["annual"] = (pm == 12).astype(np.int64)
    out["trial"] = subs["trial"].astype(np.int64)
    out["months_to_renewal"] = months_of(next_renewal - t)
    counts = _event_counts(events, subs["customer_id"], t)
    for c in ("usage_30d", "usage_90d", "usage_trend", "usage_vs_year", "tickets_90d"):
        out[c] = counts[c].to_numpy()
    for c in ("upgrades", "downgrades", "seat_changes"):
        out[c] = state[c].astype(np.int64)
    gone = started.loc[ended].groupby("customer_id").size()
    out["earlier_ended"] = gone.reindex(out["customer_id"]).fillna(0).to_numpy(dtype=np.int64)
    return out


def one_off_history(transactions: pd.DataFrame, *, as_of: pd.Timestamp | str) -> pd.DataFrame:
    """Per customer with a one-off purchase (a transaction not of SUBSCRIPTION_CHANNEL) before
    `as_of` (index customer_id): frequency (repeat purchase days), recency (first to last
    purchase day), T (first purchase day to as_of) and tenure_days in days, monetary_value (the
    mean value of the repeat purchase days), margin and amount summed, and margin_recent in the
    RATE_WINDOW_DAYS before as_of: the clv_v1 conventions (features/definitions.py), on the
    one-off purchases only."""
    t = utc(as_of)
    tx = transactions.loc[
        (transactions["channel"] != SUBSCRIPTION_CHANNEL) & (transactions["ts"] < t)
    ]
    day = tx["ts"].dt.floor("D")
    recent = (tx["ts"] >= t - pd.Timedelta(days=RATE_WINDOW_DAYS)).to_numpy()
    days = (
        pd.DataFrame(
            {
                "customer_id": tx["customer_id"].to_numpy(),
                "day": day.to_numpy(),
                "amount": tx["amount"].to_numpy(dtype=np.float64),
                "margin": tx["margin"].to_numpy(dtype=np.float64),
                "margin_recent": np.where(recent, tx["margin"].to_numpy(dtype=np.float64), 0.0),
            }
        )
        .groupby(["customer_id", "day"], sort=True)
        .sum()
        .reset_index()
    )
    by = days.groupby("customer_id", sort=True)
    first, last = by["day"].min(), by["day"].max()
    n = by.size()
    total = by["amount"].sum()
    first_value = by["amount"].first()
    span = pd.Series(utc(t).floor("D"), index=first.index) - first
    out = pd.DataFrame(
        {
            "frequency": (n - 1).astype(np.float64),
            "recency": (last - first).dt.total_seconds() / 86_400.0,
            "T": (t - first).dt.total_seconds() / 86_400.0,
            "monetary_value": np.where(n > 1, (total - first_value) / (n - 1).clip(lower=1), 0.0),
            "tenure_days": span.dt.days.astype(np.float64),
            "amount": total,
            "margin": by["margin"].sum(),
            "margin_recent": by["margin_recent"].sum(),
        }
    )
    out.index.name = "customer_id"
    return out
