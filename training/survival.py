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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import pandas as pd
import xgboost as xgb

from clv.core.contracts import BILLING_PERIOD_MONTHS
from clv.core.time import months_of, utc
from clv.features.subscription_features import invoices_before, subscription_features
from clv.model.contractual import SbgParams, fit_sbg, kaplan_meier
from clv.model.subscription import (
    FEATURES,
    HazardModel,
    RetentionForecast,
    monthly_survival,
    renewal_counts,
)
from clv.training.booster import BoosterParams
from clv.training.churn import churn_params

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

HAZARD_PARAMS: BoosterParams = {
    **churn_params(nthread=1, seed=0),
    "min_child_weight": 20.0,  # a larger leaf for a rarer label (one per renewal)
}
"""The churn classifier's configuration (clv.training.churn), a larger leaf weight; nthread
and seed are fit_hazard's."""
HAZARD_ROUNDS = 300
"""Chosen on SAAS_DEVELOPMENT: docs/decisions/contractual-model.md."""


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
    pm = billing_period.map(BILLING_PERIOD_MONTHS).to_numpy(dtype=np.int64)
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
    rows: pd.DataFrame,
    *,
    rounds: int = HAZARD_ROUNDS,
    nthread: int = 2,
    seed: int = 0,
    sbg: Mapping[str, SbgParams] | None = None,
    valid: tuple[pd.DataFrame, Mapping[str, SbgParams] | None] | None = None,
) -> tuple[HazardModel, list[float]]:
    """XGBoost `binary:logistic` on person-period rows (label `churned`), boosted from the
    logit of `sbg`'s hazard (HazardModel.sbg: fitted on what the rows' labels know) when given;
    with `valid` (rows, the sBG serving them), also its logloss after each round."""
    plans = tuple(sorted(rows["plan"].dropna().unique()))
    model = HazardModel(booster=xgb.Booster(), plans=plans, rows=len(rows), sbg=sbg)
    params: BoosterParams = {**HAZARD_PARAMS, "nthread": nthread, "seed": seed}
    dtrain = model.matrix(rows)
    dtrain.set_label(rows["churned"].to_numpy(dtype=np.float64))
    evals: list[tuple[xgb.DMatrix, str]] = []
    if valid is not None:
        dvalid = replace(model, sbg=valid[1]).matrix(valid[0])
        dvalid.set_label(valid[0]["churned"].to_numpy(dtype=np.float64))
        evals = [(dvalid, "valid")]
    history: dict[str, dict[str, list[float]]] = {}
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=rounds,
        evals=evals,
        evals_result=history,
        verbose_eval=False,
    )
    curve = [float(v) for v in history.get("valid", {}).get("logloss", [])]
    return replace(model, booster=booster), curve


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
    pm = f["billing_period"].map(BILLING_PERIOD_MONTHS).to_numpy(dtype=np.int64)
    churned = f["churned"].to_numpy(dtype=bool)
    dur = f["invoices"].to_numpy(dtype=np.int64) * pm - (~churned).astype(np.int64)
    fpm = features["billing_period"].map(BILLING_PERIOD_MONTHS).to_numpy(dtype=np.int64)
    n = features["tenure_periods"].to_numpy(dtype=np.int64)
    since = np.floor(months_of(utc(origin) - features["paid_from"])).astype(np.int64)
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
