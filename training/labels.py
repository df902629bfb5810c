"""Labels from the transaction log AFTER each snapshot: discounted CLV and churn.

For an entity row (customer c, snapshot time t) with horizon H days, the CLV label is the
present value at t of the margin the customer brings in the half-open window (t, t + H]:

    clv_label(c, t) = sum_{i: c_i = c, t < ts_i <= t + H} m_i / (1 + r) ** ((ts_i - t) / 365 days)

where r is the annual discount rate and m_i the order's margin: the `margin` column where present
and not null, else amount_i x margin_rate (a refund, amount < 0, lowers the label). The exponent
uses exact elapsed time in fractional days, i.e. annual compounding of a continuous time offset
(the discrete-time CLV of Gupta & Lehmann 2003, eq. 1, with per-transaction timing).
An order exactly at t belongs to the snapshot's past (the features), not to its label.

churn_label(c, t) = 1 when the customer makes no purchase (amount > 0) in (t, t + W], W the churn
window, else 0.

Identities (`clv.inputs.identities`): the customer is the one that exists at the origin t. A
row of an alias counts for the customer the alias is at t (before or after t), so a merged
customer's future purchases under an alias count once, for them; an alias mapped only after t is
still its own customer in the labels at t. Without identities every id is its own customer.

A label exists only when its window is fully observed: clv_label is NaN when t + H > data_end,
churn_label is NaN when t + W > data_end (the two completeness rules are separate).

Vectorised: the discounted margin and the purchase count are cumulated per customer once, and each
window is the difference of two as-of lookups (`pandas.merge_asof`), so the cost is
O((T + S) log(T + S)) for T transactions and S entity rows, not one pass per customer.
The discount factor splits as (1 + r)^(-(ts - t0)/365) x (1 + r)^((t - t0)/365) for a reference
time t0, which lets one cumulative sum serve every snapshot.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clv.core.contracts import TS_DTYPE
from clv.core.errors import DataError
from clv.core.time import utc, utc_series
from clv.inputs.identities import IdentityMap, epoch_keys, expand_rows

LABEL_COLUMNS = ("clv_label", "churn_label")
KEYS = ("customer_id", "event_timestamp")
_DAY_US = 86_400 * 1_000_000


def make_labels(
    transactions: pd.DataFrame,
    snapshots: pd.DataFrame,
    *,
    horizon_days: int,
    churn_window_days: int,
    annual_discount_rate: float,
    margin_rate: float,
    data_end: pd.Timestamp,
    identities: IdentityMap | None = None,
) -> pd.DataFrame:
    """CLV and churn labels for entity rows (customer_id, event_timestamp), same row order.

    Returns columns customer_id, event_timestamp, clv_label, churn_label (float; NaN where the
    window is not complete by `data_end`). `identities`: aliases count for their customer as of
    each row's t (see the module docstring).
    """
    missing_tx = [c for c in ("customer_id", "ts", "amount") if c not in transactions.columns]
    if missing_tx:
        raise DataError(f"transactions lack columns {missing_tx}: re-run `clv data ingest`")
    missing_snap = [c for c in KEYS if c not in snapshots.columns]
    if missing_snap:
        raise DataError(f"entity rows lack columns {missing_snap}")

    end = utc(data_end)

    ents = pd.DataFrame(
        {
            "customer_id": snapshots["customer_id"].astype(str).to_numpy(),
            "event_timestamp": utc_series(snapshots["event_timestamp"]).array,
            "_row": np.arange(len(snapshots)),
        }
    )
    out = ents[["customer_id", "event_timestamp"]].copy()
    if ents.empty:
        out["clv_label"] = pd.Series(dtype=float)
        out["churn_label"] = pd.Series(dtype=float)
        return out

    tx = _prepared(transactions, margin_rate=margin_rate, identities=identities)
    _key(ents, tx, identities)
    t_us = ents["event_timestamp"].astype("int64").to_numpy()
    ref_us = int(t_us.min())
    log_growth = np.log1p(annual_discount_rate)
    # Discounted to the reference time t0; see the module docstring.
    tx_us = tx["ts"].astype("int64").to_numpy()
    tx["_pv"] = tx["_margin"].to_numpy() * np.exp(-log_growth * (tx_us - ref_us) / (365 * _DAY_US))
    tx["_pv_cum"] = tx.groupby("_key", sort=False)["_pv"].cumsum()
    tx["_buy_cum"] = tx.groupby("_key", sort=False)["_buy"].cumsum()

    horizon = pd.Timedelta(days=horizon_days)
    window = pd.Timedelta(days=churn_window_days)
    at_t = _cumulative_at(tx, ents, ents["event_timestamp"])
    at_h = _cumulative_at(tx, ents, ents["event_timestamp"] + horizon)
    at_w = _cumulative_at(tx, ents, ents["event_timestamp"] + window)

    grow_to_t = np.exp(log_growth * (t_us - ref_us) / (365 * _DAY_US))
    clv = (at_h["_pv_cum"] - at_t["_pv_cum"]) * grow_to_t
    buys = at_w["_buy_cum"] - at_t["_buy_cum"]
    churn = (buys <= 0).astype(float)

    clv_done = (ents["event_timestamp"] + horizon <= end).to_numpy()
    churn_done = (ents["event_timestamp"] + window <= end).to_numpy()
    out["clv_label"] = np.where(clv_done, clv, np.nan)
    out["churn_label"] = np.where(churn_done, churn, np.nan)
    return out


def order_margins(transactions: pd.DataFrame, *, margin_rate: float) -> pd.Series:
    """Each row's margin: the `margin` column where present and not null, else amount x
    margin_rate (a refund, amount < 0, is a negative margin). The one rule labels, baselines
    and decisions use."""
    amount = pd.to_numeric(transactions["amount"], errors="coerce").fillna(0.0)
    margin = amount * margin_rate
    if "margin" in transactions.columns:
        given = pd.to_numeric(transactions["margin"], errors="coerce")
        margin = given.where(given.notna(), margin)
    return margin


def _prepared(
    transactions: pd.DataFrame, *, margin_rate: float, identities: IdentityMap | None
) -> pd.DataFrame:
    """customer_id, ts, margin per order, a purchase flag and `_lo`, the epoch of the row's
    customer (`clv.inputs.identities.expand_rows`: an alias's row once per epoch), sorted by
    time."""
    amount = pd.to_numeric(transactions["amount"], errors="coerce").fillna(0.0)
    margin = order_margins(transactions, margin_rate=margin_rate)
    tx = pd.DataFrame(
        {
            "customer_id": transactions["customer_id"].astype(str).to_numpy(),
            "ts": utc_series(transactions["ts"]).array,
            "_margin": margin.to_numpy(dtype=float),
            "_buy": (amount > 0).to_numpy(dtype=np.int64),
        }
    )
    tx = tx.dropna(subset=["ts"])
    tx, lo = expand_rows(tx, identities)
    tx = tx.assign(_lo=lo)
    return tx.sort_values(["ts"], kind="stable").reset_index(drop=True)


def _key(ents: pd.DataFrame, tx: pd.DataFrame, identities: IdentityMap | None) -> None:
    """Set `_key` on entity and transaction rows: one integer per customer and epoch (as-of
    joins and group-bys on ints are several times faster than on strings). An entity row
    (c, t) takes the key of the customer c is at t, in the epoch holding t."""
    ids, lo = epoch_keys(ents["customer_id"], ents["event_timestamp"], identities)
    keys, _ = pd.factorize(np.concatenate([ids, tx["customer_id"].to_numpy(dtype=object)]))
    if identities is not None and not identities.empty:
        pairs = pd.MultiIndex.from_arrays([keys, np.concatenate([lo, tx["_lo"].to_numpy()])])
        keys, _ = pd.factorize(pairs)
    ents["_key"] = keys[: len(ents)]
    tx["_key"] = keys[len(ents) :]


def _cumulative_at(tx: pd.DataFrame, ents: pd.DataFrame, when: pd.Series) -> pd.DataFrame:
    """Each entity's cumulative sums over its transactions with ts <= when (0 before the first)."""
    left = pd.DataFrame(
        {
            "_key": ents["_key"].to_numpy(),
            "_at": when.array,
            "_row": ents["_row"],
        }
    )
    left["_at"] = left["_at"].astype(TS_DTYPE)
    left = left.sort_values("_at", kind="stable")
    right = tx[["_key", "ts", "_pv_cum", "_buy_cum"]].rename(columns={"ts": "_at"})
    merged = pd.merge_asof(
        left, right, on="_at", by="_key", direction="backward", allow_exact_matches=True
    )
    merged = merged.sort_values("_row")
    return pd.DataFrame(
        {
            "_pv_cum": merged["_pv_cum"].fillna(0.0).to_numpy(),
            "_buy_cum": merged["_buy_cum"].fillna(0).to_numpy(dtype=float),
        }
    )


PAST_COLUMNS = ("past_margin_horizon", "past_margin_lifetime", "past_days")
"""What the naive rules read, from the log strictly before t (like the features): margin in
[t - horizon, t), margin before t, and days from the customer's first transaction to t."""


def past_margins(
    transactions: pd.DataFrame,
    snapshots: pd.DataFrame,
    *,
    horizon_days: int,
    margin_rate: float,
    identities: IdentityMap | None = None,
) -> pd.DataFrame:
    """PAST_COLUMNS for entity rows (customer_id, event_timestamp), same row order; rows of a
    customer with no transaction before t get 0 margin and NaN days. `identities`: an alias's
    rows count for its customer as of t, like the features."""
    ents = pd.DataFrame(
        {
            "customer_id": snapshots["customer_id"].astype(str).to_numpy(),
            "event_timestamp": utc_series(snapshots["event_timestamp"]).array,
            "_row": np.arange(len(snapshots)),
        }
    )
    out = pd.DataFrame(index=range(len(ents)))
    if ents.empty:
        for c in PAST_COLUMNS:
            out[c] = pd.Series(dtype=float)
        return out
    tx = _prepared(transactions, margin_rate=margin_rate, identities=identities)
    _key(ents, tx, identities)
    tx["_pv_cum"] = tx.groupby("_key", sort=False)["_margin"].cumsum()
    tx["_buy_cum"] = tx.groupby("_key", sort=False).cumcount().astype(float) + 1.0
    first = tx.groupby("_key", sort=False)["ts"].min()
    t = ents["event_timestamp"]
    # Strictly before t: the as-of lookup at t minus one microsecond.
    tick = pd.Timedelta(microseconds=1)
    at_t = _cumulative_at(tx, ents, t - tick)
    at_h = _cumulative_at(tx, ents, t - pd.Timedelta(days=horizon_days) - tick)
    start = ents["_key"].map(first)
    days = (t - start.astype(TS_DTYPE)).dt.total_seconds().to_numpy() / 86_400.0
    seen = at_t["_buy_cum"].to_numpy() > 0
    out["past_margin_horizon"] = (at_t["_pv_cum"] - at_h["_pv_cum"]).to_numpy()
    out["past_margin_lifetime"] = at_t["_pv_cum"].to_numpy()
    out["past_days"] = np.where(seen, days, np.nan)
    return out
