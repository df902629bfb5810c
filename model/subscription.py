"""The contractual models as served: the discrete-time retention hazard, the expansion
boosters, and the value they give (monthly survival, renewal probability, expected lifetime,
contractual CLV with P10 / P90 and the expected MRR path). Training (person-period rows,
fits, baselines) is clv.training.survival and clv.training.expansion; the features are
clv.features.subscription_features.

Discrete-time hazard (Tutz & Schmid 2016, "Modeling Discrete Time-to-Event Data", ch. 3):
h_ik = P(T_i = k | T_i >= k, x_i) for the k-th renewal decision after an origin, in billing
periods (a month, or a year on annual plans); S_i(k) = prod_{j <= k} (1 - h_ij) (eq. 2.3).
Everything leaving this module is monthly: S_i(t) = P(still subscribed t months after the
origin), the period survival at the number of renewal dates within t months. Why: the model
card in docs/decisions/contractual-model.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd
import xgboost as xgb

from clv.core.contracts import BILLING_PERIOD_MONTHS
from clv.core.time import add_months, utc
from clv.model.contractual import SbgParams, contractual_clv

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

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

EXPANSION_MONTHS = 3
"""The expansion label's window: the MRR change over the next quarter."""
EXPANSION_HOLD_MONTHS = 3
"""The MRR path compounds the predicted growth this many months, then holds (chosen on
SAAS_DEVELOPMENT: docs/decisions/contractual-model.md)."""


class MarginMap(Protocol):
    """A calibration of a booster's margin into a probability (clv.evaluation.calibration's
    CalibrationChoice is one)."""

    def apply(self, margin: npt.ArrayLike) -> FloatArray: ...


def plan_matrix(frame: pd.DataFrame, plans: Sequence[str], names: Sequence[str]) -> xgb.DMatrix:
    """The boosters' matrix of `names` (plan_code: the plan's index in `plans`, NaN unknown)."""
    codes = pd.Categorical(frame["plan"], categories=list(plans)).codes
    x = frame.assign(plan_code=np.where(codes < 0, np.nan, codes))
    return xgb.DMatrix(x[list(names)].to_numpy(dtype=np.float64), feature_names=list(names))


OFFSET_CLIP = 1e-6
"""The sBG hazard is clipped to [OFFSET_CLIP, 1 - OFFSET_CLIP] before its logit."""


def sbg_hazard(sbg: Mapping[str, SbgParams], rows: pd.DataFrame) -> FloatArray:
    """The sBG's hazard of each person-period row: P(T = n + k | T > n + k - 1) =
    alpha / (alpha + beta + n + k - 1) (Fader & Hardie 2007, eq. 8: 1 - r(n + k)), n the
    renewals at the origin, k the row's renewal after it, the sBG of its billing kind (a kind
    the fit never saw: the other kind's)."""
    annual = rows["annual"].to_numpy(dtype=np.int64)
    n = rows["renewals"].to_numpy(dtype=np.float64)
    k = rows["k"].to_numpy(dtype=np.float64)
    h = np.full(len(rows), np.nan)
    for code, kind in ((0, "month"), (1, "year")):
        sel = annual == code
        if sel.any():
            p = sbg.get(kind) or next(iter(sbg.values()))
            h[sel] = p.alpha / (p.alpha + p.beta + n[sel] + k[sel] - 1.0)
    return np.asarray(np.clip(h, OFFSET_CLIP, 1.0 - OFFSET_CLIP), dtype=np.float64)


def sbg_margin(sbg: Mapping[str, SbgParams], rows: pd.DataFrame) -> FloatArray:
    """logit(sbg_hazard): the hazard booster's offset."""
    h = sbg_hazard(sbg, rows)
    return np.asarray(np.log(h) - np.log1p(-h), dtype=np.float64)


@dataclass(frozen=True, eq=False)
class HazardModel:
    """The fitted discrete-time hazard: booster over FEATURES + PERIOD_FEATURES, and a map of
    its margin (training/survival_calibration.py; None: the booster's own probability)."""

    booster: xgb.Booster
    plans: tuple[str, ...]
    rows: int
    """Person-period rows it was fitted on."""
    calibration: MarginMap | None = None
    sbg: Mapping[str, SbgParams] | None = None
    """The sBG per billing kind whose logit hazard the booster starts from (its base_margin:
    sbg_margin), fitted on what is known at the forecast origin; None: no offset."""

    def matrix(self, frame: pd.DataFrame) -> xgb.DMatrix:
        m = plan_matrix(frame, self.plans, [*FEATURES, *PERIOD_FEATURES])
        if self.sbg is not None:
            m.set_base_margin(sbg_margin(self.sbg, frame))
        return m

    def margin(self, frame: pd.DataFrame) -> FloatArray:
        """The booster's log-odds of h per person-period row."""
        return np.asarray(self.booster.predict(self.matrix(frame), output_margin=True), np.float64)

    def hazard(self, frame: pd.DataFrame) -> FloatArray:
        """h per person-period row: the booster's, or its calibration's map of the margin."""
        if self.calibration is None:
            return np.asarray(self.booster.predict(self.matrix(frame)), dtype=np.float64)
        return self.calibration.apply(self.margin(frame))

    def calibrated(self, calibration: MarginMap) -> HazardModel:
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


def renewal_counts(
    features: pd.DataFrame, *, origin: pd.Timestamp, horizon_months: int
) -> IntArray:
    """c_i(t), t = 0..H: the renewal dates of subscription i in (origin, origin + t months]."""
    t0 = utc(origin)
    pm = features["billing_period"].map(BILLING_PERIOD_MONTHS).to_numpy(dtype=np.int64)
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


@dataclass(frozen=True, eq=False)
class ExpansionForecast:
    """Per subscription at an origin (index = the features' index)."""

    index: pd.Index
    p_expansion: FloatArray
    """P(MRR in 3 months > MRR now | still subscribed)."""
    quarter_growth: FloatArray
    """E[MRR in 3 months / MRR now | still subscribed]."""

    @property
    def monthly_growth(self) -> FloatArray:
        return np.asarray(self.quarter_growth ** (1.0 / EXPANSION_MONTHS), dtype=np.float64)


@dataclass(frozen=True, eq=False)
class ExpansionModel:
    """The two fitted boosters over FEATURES."""

    classifier: xgb.Booster
    growth: xgb.Booster
    plans: tuple[str, ...]
    rows: int

    def matrix(self, frame: pd.DataFrame) -> xgb.DMatrix:
        return plan_matrix(frame, self.plans, FEATURES)

    def predict(self, features: pd.DataFrame) -> ExpansionForecast:
        dm = self.matrix(features)
        p = np.asarray(self.classifier.predict(dm), dtype=np.float64)
        g = np.clip(np.asarray(self.growth.predict(dm), dtype=np.float64), 0.0, None)
        return ExpansionForecast(features.index, p, g)


def mrr_path(
    mrr: npt.ArrayLike,
    monthly_growth: npt.ArrayLike,
    *,
    horizon_months: int,
    hold_after: int | None = EXPANSION_HOLD_MONTHS,
) -> FloatArray:
    """(n, H): MRR_t = MRR_0 x g^min(t, hold_after), t = 0..H-1 (hold_after None: g^t)."""
    m = np.asarray(mrr, dtype=np.float64)
    g = np.asarray(monthly_growth, dtype=np.float64)
    t = np.arange(horizon_months)
    if hold_after is not None:
        t = np.minimum(t, hold_after)
    return np.asarray(m[:, None] * g[:, None] ** t[None, :], dtype=np.float64)
