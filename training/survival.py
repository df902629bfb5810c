"""Contractual retention: point-in-time subscription features, a discrete-time hazard model
(XGBoost on person-period rows) and the sBG / Kaplan-Meier baselines, all as monthly survival.

Discrete-time hazard (Tutz & Schmid 2016, "Modeling Discrete Time-to-Event Data", ch. 3;
Singer & Willett 1993): h_ik = P(T_i = k | T_i >= k, x_i) for the k-th renewal decision after
an origin, fitted as a binary classifier on one row per (subscription, origin, k) observed;
S_i(k) = prod_{j <= k} (1 - h_ij) (Tutz & Schmid eq. 2.3). A right-censored subscription
contributes only the renewals it was seen to make, which is what makes the likelihood correct.

Time: the hazard's period is the billing period (a month, or a year on annual plans), k = 1 the
renewal at the end of the period in progress at the origin. Everything leaving this module is
monthly: S_i(t) = P(still subscribed t months after the origin), t = 0..H, the period survival
evaluated at the number of renewal dates that fall within t months. Why: the model card in
docs/decisions/contractual-model.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import pandas as pd
import xgboost as xgb

from clv.core.time import utc
from clv.evaluation.calibration import CalibrationChoice
from clv.model.contractual import SbgParams, contractual_clv, fit_sbg, kaplan_meier
from clv.training.booster import BoosterParams
from clv.training.churn import churn_params

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

MONTH_DAYS = 30.4375
"""Days in an average month: fractional months of tenure and to the next renewal."""
PERIOD_MONTHS = {"month": 1, "year": 12}
USAGE_EVENT_EXCLUDED = "support_ticket"
"""Every event but a support ticket is usage."""
SUBSCRIPTION_CHANNEL = "subscription"
"""Transactions of this channel are invoices; their order_id is `<subscription_id>-<number>`."""

FEATURES: tuple[str, ...] = (
    "tenure_months",
    "tenure_periods",
    "renewals",
    "plan_code",
    "seats",
    "mrr",
    "mrr_per_seat",
    "annual",
    "trial",
    "months_to_renewal",
    "usage_30d",
    "usage_90d",
    "usage_trend",
    "usage_vs_year",
    "tickets_90d",
    "upgrades",
    "downgrades",
    "seat_changes",
    "earlier_ended",
)
"""The origin's features the hazard model reads (plan_code is set from the model's plans)."""
PERIOD_FEATURES: tuple[str, ...] = ("k", "tenure_at_k")
"""Added per person-period row: the renewal's number after the origin, tenure (months) then."""

HAZARD_PARAMS: BoosterParams = {
    **churn_params(nthread=1, seed=0),
    "min_child_weight": 20.0,  # a larger leaf for a rarer label (one per renewal)
}
"""The churn classifier's configuration (clv.training.churn), a larger leaf weight; nthread
and seed are fit_hazard's."""
HAZARD_ROUNDS = 300
"""Chosen on SAAS_DEVELOPMENT: docs/decisions/contractual-model.md."""


# ----------------------------------------------------------------------------------- calendar


def add_months(ts: pd.Series, months: npt.ArrayLike) -> pd.Series:
    """`ts` plus whole calendar months, the day clamped to the month's last (pd.DateOffset's
    rule, the billing grid's), time of day kept; vectorized, months one per row or a scalar."""
    v = ts.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    add = np.broadcast_to(np.asarray(months, dtype=np.int64), v.shape)
    day = v.astype("datetime64[D]")
    month = v.astype("datetime64[M]")
    dom = (day - month.astype("datetime64[D]")).astype(np.int64)
    tod = v - day.astype("datetime64[us]")
    target = month + add.astype("timedelta64[M]")
    first = target.astype("datetime64[D]")
    length = ((target + np.timedelta64(1, "M")).astype("datetime64[D]") - first).astype(np.int64)
    out = (first + np.minimum(dom, length - 1).astype("timedelta64[D]")).astype(
        "datetime64[us]"
    ) + tod
    return pd.Series(out, index=ts.index).dt.tz_localize("UTC")


def _months(delta: pd.Series) -> FloatArray:
    return np.asarray(delta.dt.total_seconds().to_numpy() / (86_400.0 * MONTH_DAYS), np.float64)


# ----------------------------------------------------------------------------------- features


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
    pm = subs["billing_period"].map(PERIOD_MONTHS).to_numpy(dtype=np.int64)
    n = subs["invoices"].to_numpy(dtype=np.int64)
    next_renewal = add_months(subs["paid_from"], n * pm)
    out = pd.DataFrame(index=subs.index)
    out["customer_id"] = subs["customer_id"]
    out["plan"] = state["plan"]
    out["billing_period"] = subs["billing_period"]
    out["paid_from"] = subs["paid_from"]
    out["next_renewal"] = next_renewal
    out["tenure_months"] = _months(t - subs["started_at"])
    out["tenure_periods"] = n
    out["renewals"] = n - 1
    out["seats"] = state["seats"].astype(np.int64)
    out["mrr"] = state["mrr"].astype(np.float64)
    out["mrr_per_seat"] = out["mrr"] / out["seats"].clip(lower=1)
    out["annual"] = (pm == 12).astype(np.int64)
    out["trial"] = subs["trial"].astype(np.int64)
    out["months_to_renewal"] = _months(next_renewal - t)
    counts = _event_counts(events, subs["customer_id"], t)
    for c in ("usage_30d", "usage_90d", "usage_trend", "usage_vs_year", "tickets_90d"):
        out[c] = counts[c].to_numpy()
    for c in ("upgrades", "downgrades", "seat_changes"):
        out[c] = state[c].astype(np.int64)
    gone = started.loc[ended].groupby("customer_id").size()
    out["earlier_ended"] = gone.reindex(out["customer_id"]).fillna(0).to_numpy(dtype=np.int64)
    return out


# ------------------------------------------------------------------------- lifetimes, labels


@dataclass(frozen=True, eq=False)
class Lifetimes:
    """Each paying subscription's lifetime in its billing periods as known at `known_until`:
    invoices before it, churned (ended before it); duration = invoices if churned, else
    invoices - 1 (renewed that often; the last period is in progress): clv.model.contractual's
    convention."""

    frame: pd.DataFrame
    """index subscription_id: invoices, churned, duration, billing_period, plan, paid_from."""


def lifetimes(
    subscriptions: pd.DataFrame, transactions: pd.DataFrame, *, known_until: pd.Timestamp
) -> Lifetimes:
    """The lifetimes of every subscription with an invoice before `known_until`."""
    t = utc(known_until)
    inv = invoices_before(transactions, before=t).groupby("subscription_id")["ts"]
    subs = subscriptions.loc[subscriptions["started_at"] < t].set_index("subscription_id")
    subs = subs.join(pd.DataFrame({"invoices": inv.size(), "paid_from": inv.min()}), how="inner")
    churned = (subs["ended_at"] < t).fillna(False).to_numpy(dtype=bool)
    n = subs["invoices"].to_numpy(dtype=np.int64)
    frame = pd.DataFrame(
        {
            "invoices": n,
            "churned": churned,
            "duration": np.where(churned, n, n - 1),
            "billing_period": subs["billing_period"].to_numpy(),
            "plan": subs["plan"].to_numpy(),
            "paid_from": subs["paid_from"],
        },
        index=subs.index,
    )
    return Lifetimes(frame)


def max_periods(billing_period: pd.Series, *, horizon_months: int) -> IntArray:
    """Renewal decisions a horizon of H months can hold: H monthly, ceil(H / 12) yearly."""
    pm = billing_period.map(PERIOD_MONTHS).to_numpy(dtype=np.int64)
    return np.asarray(np.ceil(horizon_months / pm), dtype=np.int64)


def person_periods(
    features: pd.DataFrame, known: Lifetimes, *, horizon_months: int
) -> pd.DataFrame:
    """Person-period rows of the subscriptions in `features` (at one origin): k = 1.. for each
    renewal decision after it seen by `known` (whose end must be at or before the evaluation
    origin: that is the embargo), label `churned` 1 at the last row of a churner, at most
    `max_periods` rows each. Columns: FEATURES but plan_code, plan, PERIOD_FEATURES, churned."""
    life = known.frame.reindex(features.index)
    seen = life["invoices"].to_numpy(dtype=np.int64) - features["tenure_periods"].to_numpy()
    churned = life["churned"].to_numpy(dtype=bool)
    rows = np.minimum(
        seen + churned, max_periods(features["billing_period"], horizon_months=horizon_months)
    )
    idx = np.repeat(np.arange(len(features)), rows)
    k = np.arange(len(idx)) - np.repeat(np.cumsum(rows) - rows, rows) + 1
    out = features.iloc[idx][[c for c in FEATURES if c != "plan_code"] + ["plan"]]
    out = out.reset_index(drop=True)
    pm = np.where(out["annual"].to_numpy() == 1, 12, 1)
    out["k"] = k
    out["tenure_at_k"] = out["tenure_months"] + out["months_to_renewal"] + (k - 1) * pm
    out["churned"] = (churned[idx] & (k == seen[idx] + 1)).astype(np.int64)
    return out


# ------------------------------------------------------------------------------ hazard model


def plan_matrix(frame: pd.DataFrame, plans: Sequence[str], names: Sequence[str]) -> xgb.DMatrix:
    """The boosters' matrix of `names` (plan_code: the plan's index in `plans`, NaN unknown)."""
    codes = pd.Categorical(frame["plan"], categories=list(plans)).codes
    x = frame.assign(plan_code=np.where(codes < 0, np.nan, codes))
    return xgb.DMatrix(x[list(names)].to_numpy(dtype=np.float64), feature_names=list(names))


@dataclass(frozen=True, eq=False)
class HazardModel:
    """The fitted discrete-time hazard: booster over FEATURES + PERIOD_FEATURES, and the
    calibration of its margin (training/survival_calibration.py; None: the booster's own)."""

    booster: xgb.Booster
    plans: tuple[str, ...]
    rows: int
    """Person-period rows it was fitted on."""
    calibration: CalibrationChoice | None = None

    def matrix(self, frame: pd.DataFrame) -> xgb.DMatrix:
        return plan_matrix(frame, self.plans, [*FEATURES, *PERIOD_FEATURES])

    def margin(self, frame: pd.DataFrame) -> FloatArray:
        """The booster's log-odds of h per person-period row."""
        return np.asarray(self.booster.predict(self.matrix(frame), output_margin=True), np.float64)

    def hazard(self, frame: pd.DataFrame) -> FloatArray:
        """h per person-period row: the booster's, or its calibration's map of the margin."""
        if self.calibration is None:
            return np.asarray(self.booster.predict(self.matrix(frame)), dtype=np.float64)
        return self.calibration.apply(self.margin(frame))

    def calibrated(self, calibration: CalibrationChoice) -> HazardModel:
        """The same booster, its hazard mapped through `calibration`."""
        return replace(self, calibration=calibration)

    def period_survival(self, features: pd.DataFrame, *, periods: int) -> FloatArray:
        """S_i(k), k = 0..periods in billing periods: prod_{j <= k} (1 - h_ij) (Tutz & Schmid
        2016, eq. 2.3), h_ij predicted with the origin's features and k = j (calibrated, if
        the model is)."""
        n = len(features)
        rows = features.iloc[np.tile(np.arange(n), periods)].reset_index(drop=True)
        k = np.repeat(np.arange(1, periods + 1), n)
        pm = np.where(rows["annual"].to_numpy() == 1, 12, 1)
        rows["k"] = k
        rows["tenure_at_k"] = rows["tenure_months"] + rows["months_to_renewal"] + (k - 1) * pm
        h = self.hazard(rows).reshape(periods, n).T
        surv = np.cumprod(1.0 - h, axis=1)
        return np.asarray(np.hstack([np.ones((n, 1)), surv]), dtype=np.float64)


def training_rows(
    subscriptions: pd.DataFrame,
    changes: pd.DataFrame,
    events: pd.DataFrame,
    transactions: pd.DataFrame,
    *,
    origins: Sequence[pd.Timestamp],
    known_until: pd.Timestamp,
    horizon_months: int,
) -> pd.DataFrame:
    """Person-period rows from every training origin (each before `known_until`), labels
    seen by `known_until` only; an `origin` column tells them apart."""
    t = utc(known_until)
    if any(utc(o) >= t for o in origins):
        raise ValueError("every training origin must be before known_until (the embargo)")
    known = lifetimes(subscriptions, transactions, known_until=t)
    frames = []
    for origin in origins:
        feats = subscription_features(
            subscriptions, changes, events, as_of=origin, transactions=transactions
        )
        frames.append(
            person_periods(feats, known, horizon_months=horizon_months).assign(origin=utc(origin))
        )
    return pd.concat(frames, ignore_index=True)


def fit_hazard(
    rows: pd.DataFrame, *, rounds: int = HAZARD_ROUNDS, nthread: int = 2, seed: int = 0
) -> HazardModel:
    """XGBoost `binary:logistic` on person-period rows (label `churned`)."""
    plans = tuple(sorted(rows["plan"].dropna().unique()))
    model = HazardModel(booster=xgb.Booster(), plans=plans, rows=len(rows))
    params: BoosterParams = {**HAZARD_PARAMS, "nthread": nthread, "seed": seed}
    dtrain = model.matrix(rows)
    dtrain.set_label(rows["churned"].to_numpy(dtype=np.float64))
    booster = xgb.train(params, dtrain, num_boost_round=rounds)
    return HazardModel(booster=booster, plans=plans, rows=len(rows))


# --------------------------------------------------------------------- monthly survival, value


def renewal_counts(
    features: pd.DataFrame, *, origin: pd.Timestamp, horizon_months: int
) -> IntArray:
    """c_i(t), t = 0..H: the renewal dates of subscription i in (origin, origin + t months]."""
    t0 = utc(origin)
    pm = features["billing_period"].map(PERIOD_MONTHS).to_numpy(dtype=np.int64)
    n = features["tenure_periods"].to_numpy(dtype=np.int64)
    bounds = [t0 + pd.DateOffset(months=t) for t in range(horizon_months + 1)]
    counts = np.zeros((len(features), horizon_months + 1), dtype=np.int64)
    for j in range(horizon_months + 1):
        date = add_months(features["paid_from"], (n + j) * pm)
        naive = date.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
        for t, bound in enumerate(bounds):
            counts[:, t] += naive <= bound.tz_convert("UTC").tz_localize(None).to_datetime64()
    return counts


def monthly_survival(period_survival: FloatArray, counts: IntArray) -> FloatArray:
    """S_i(t) = S_i^period(c_i(t)): subscribed t months on iff it renewed at every date then."""
    c = np.minimum(counts, period_survival.shape[1] - 1)
    return np.asarray(np.take_along_axis(period_survival, c, axis=1), dtype=np.float64)


@dataclass(frozen=True, eq=False)
class RetentionForecast:
    """Per subscription at an origin (index = features' index)."""

    index: pd.Index
    survival: FloatArray
    """(n, H + 1): S_i(t) = P(subscribed t months after the origin), S_i(0) = 1."""
    renewal: FloatArray
    """P(renewing at the next renewal date)."""

    @property
    def horizon(self) -> int:
        return int(self.survival.shape[1] - 1)

    def expected_lifetime(self) -> FloatArray:
        """Expected months subscribed within the horizon, sum_{t < H} S_i(t) (truncated at H)."""
        return np.asarray(self.survival[:, :-1].sum(axis=1), dtype=np.float64)

    def risk(self) -> FloatArray:
        """Higher for sooner churn (for the concordance): minus the truncated lifetime."""
        return -self.expected_lifetime()


def value_frame(
    forecast: RetentionForecast,
    mrr: npt.ArrayLike,
    *,
    margin: float,
    monthly_discount: float,
    quantiles: tuple[float, float] = (0.1, 0.9),
) -> pd.DataFrame:
    """Contractual CLV over the horizon, sum_{t < H} MRR x margin x S_i(t) (1 + d)^-t
    (clv.model.contractual.contractual_clv; MRR held at today's, or `mrr` (n, H) a path, e.g.
    clv.training.expansion.mrr_path), and its P10 / P90 under the predicted lifetime L
    (P(L > t) = S_i(t)): the value is non-decreasing in L, so its quantiles are the value at
    L's quantiles."""
    h = forecast.horizon
    m = np.asarray(mrr, dtype=np.float64)
    path = m if m.ndim == 2 else m[:, None]
    surv = forecast.survival[:, :h]
    clv = contractual_clv(path, surv, margin=margin, discount_rate=monthly_discount)
    per_month = (
        np.broadcast_to(path, surv.shape) * margin * (1.0 + monthly_discount) ** -np.arange(h)
    )
    cum = np.hstack([np.zeros((len(m), 1)), np.cumsum(per_month, axis=1)])  # value if L = l
    out = pd.DataFrame(
        {
            "renewal_probability": forecast.renewal,
            "expected_lifetime_months": forecast.expected_lifetime(),
            "clv": clv,
        },
        index=forecast.index,
    )
    cdf = 1.0 - forecast.survival  # P(L <= l), l = 0..H (L = H: still subscribed at H)
    cdf[:, -1] = 1.0
    for q in quantiles:
        lq = np.argmax(cdf >= q - 1e-12, axis=1)
        out[f"clv_p{round(q * 100)}"] = cum[np.arange(len(m)), lq]
    return out


def model_forecast(
    model: HazardModel, features: pd.DataFrame, *, origin: pd.Timestamp, horizon_months: int
) -> RetentionForecast:
    """The hazard model's monthly survival and next-renewal probability."""
    per = model.period_survival(features, periods=horizon_months)
    counts = renewal_counts(features, origin=origin, horizon_months=horizon_months)
    return RetentionForecast(features.index, monthly_survival(per, counts), per[:, 1])


# --------------------------------------------------------------------------------- baselines


def fit_sbg_by_period(known: Lifetimes) -> dict[str, SbgParams]:
    """One sBG per billing period kind, in its own periods (Fader & Hardie 2007)."""
    f = known.frame
    return {
        str(kind): fit_sbg(g["duration"].to_numpy(), g["churned"].to_numpy())
        for kind, g in f.groupby("billing_period")
    }


def sbg_forecast(
    params: dict[str, SbgParams],
    features: pd.DataFrame,
    *,
    origin: pd.Timestamp,
    horizon_months: int,
) -> RetentionForecast:
    """sBG survival given each subscription's renewals so far: P(T > n + k | T > n), the
    survival of `SbgParams.after_renewals(n)`, in its billing periods."""
    periods = horizon_months + 1
    per = np.ones((len(features), periods + 1))
    kinds = features["billing_period"].to_numpy()
    renewals = features["renewals"].to_numpy(dtype=np.int64)
    for kind in np.unique(kinds):
        for n in np.unique(renewals[kinds == kind]):
            sel = (kinds == kind) & (renewals == n)
            s = params[str(kind)].conditional_survival(np.arange(periods + 1), renewals=int(n))
            per[sel] = s
    counts = renewal_counts(features, origin=origin, horizon_months=horizon_months)
    return RetentionForecast(features.index, monthly_survival(per, counts), per[:, 1])


def kaplan_meier_forecast(
    known: Lifetimes, features: pd.DataFrame, *, origin: pd.Timestamp, horizon_months: int
) -> RetentionForecast:
    """A Kaplan-Meier curve per plan in months of paid tenure, conditional on the tenure so far:
    S(tau + t) / S(tau), tau the whole months since the first invoice. Months of paid tenure:
    invoices x period months if churned, one less if still active (clv.model.contractual's
    convention in months)."""
    f = known.frame
    pm = f["billing_period"].map(PERIOD_MONTHS).to_numpy(dtype=np.int64)
    churned = f["churned"].to_numpy(dtype=bool)
    dur = f["invoices"].to_numpy(dtype=np.int64) * pm - (~churned).astype(np.int64)
    fpm = features["billing_period"].map(PERIOD_MONTHS).to_numpy(dtype=np.int64)
    n = features["tenure_periods"].to_numpy(dtype=np.int64)
    since = np.floor(_months(utc(origin) - features["paid_from"])).astype(np.int64)
    tau = np.clip(since, (n - 1) * fpm, n * fpm - 1)
    h = horizon_months
    span = int(max(dur.max(initial=0), tau.max(initial=0))) + h + 1
    surv = np.ones((len(features), h + 1))
    plans = features["plan"].to_numpy()
    pooled = kaplan_meier(dur, churned, horizon=span).survival
    for plan in np.unique(plans):
        sel_train = f["plan"].to_numpy() == plan
        curve = (
            kaplan_meier(dur[sel_train], churned[sel_train], horizon=span).survival
            if sel_train.any()
            else pooled
        )
        sel = plans == plan
        grid = tau[sel, None] + np.arange(h + 1)
        base = curve[tau[sel]][:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            surv[sel] = np.where(base > 0, curve[grid] / base, 0.0)
    counts = renewal_counts(features, origin=origin, horizon_months=h)
    first = np.argmax(counts >= 1, axis=1)  # the month holding the next renewal date
    renewal = surv[np.arange(len(features)), first]
    return RetentionForecast(features.index, surv, renewal)
