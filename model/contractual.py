"""Contractual (subscription) CLV: the shifted-Beta-Geometric retention model, Kaplan-Meier
survival in discrete periods, and the discounted sum of margin over survival.

sBG (Fader & Hardie 2007, "How to project customer retention", J. Interactive Marketing 21(1)):
at the end of each period an active subscriber cancels with probability theta, constant for her
and distributed Beta(alpha, beta) across subscribers. Her lifetime T (the period in which she
churns, t = 1, 2, ...) is shifted-geometric given theta, and sBG after mixing. Valuation
(Fader & Hardie 2010, "Customer-base valuation in a contractual setting: the perils of
ignoring heterogeneity", Marketing Science 29(1)): a subscriber's discounted expected residual
lifetime (DERL) after n renewals is a Gaussian hypergeometric function of (alpha, beta + n).

Time convention throughout: periods are whole contract periods. A subscriber pays at the start
of each period in which she is active; `durations` are periods, and
- churned at t: she paid for periods 1..t and did not renew at the end of period t (T = t);
- censored at t: she is known to have renewed after period t (T > t), fate unknown beyond.
S(t) = P(T > t) is the probability of having made t renewals, i.e. of paying for period t + 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaln, digamma, hyp2f1

from clv.core.records import FloatRecord

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
CURVE_COLUMNS = ("period", "at_risk", "churned", "censored", "survival", "variance")


def _periods(t: npt.ArrayLike) -> FloatArray:
    """Whole, non-negative periods as floats (for the Beta-function arguments)."""
    arr = np.asarray(t, dtype=np.float64)
    if np.any(arr < 0) or np.any(arr != np.round(arr)):
        raise ValueError("periods must be whole numbers >= 0")
    return arr


@dataclass(frozen=True)
class SbgParams(FloatRecord):
    """Fitted sBG heterogeneity: theta ~ Beta(alpha, beta) (Fader & Hardie 2007)."""

    alpha: float
    beta: float

    def churn_probability(self, t: npt.ArrayLike) -> FloatArray:
        """P(T = t) = B(alpha + 1, beta + t - 1) / B(alpha, beta), t >= 1: eq. 1 mixed over the
        beta of eq. 3 (F&H 2007, Appendix B; eq. 7 is the same as a recursion in t)."""
        tt = _periods(t)
        if np.any(tt < 1):
            raise ValueError("P(T = t) is defined for t >= 1")
        a, b = self.alpha, self.beta
        return np.asarray(np.exp(betaln(a + 1.0, b + tt - 1.0) - betaln(a, b)), dtype=np.float64)

    def survival(self, t: npt.ArrayLike) -> FloatArray:
        """S(t) = P(T > t) = B(alpha, beta + t) / B(alpha, beta), S(0) = 1: eq. 2 mixed over the
        beta of eq. 3 (F&H 2007, Appendix B)."""
        tt = _periods(t)
        a, b = self.alpha, self.beta
        return np.asarray(np.exp(betaln(a, b + tt) - betaln(a, b)), dtype=np.float64)

    def retention(self, t: npt.ArrayLike) -> FloatArray:
        """r(t) = S(t) / S(t - 1) = (beta + t - 1) / (alpha + beta + t - 1), t >= 1 (F&H 2007,
        eq. 8): rising with t, the sorting effect of heterogeneity."""
        tt = _periods(t)
        if np.any(tt < 1):
            raise ValueError("the retention rate r(t) is defined for t >= 1")
        return np.asarray(
            (self.beta + tt - 1.0) / (self.alpha + self.beta + tt - 1.0), dtype=np.float64
        )

    def after_renewals(self, renewals: int) -> SbgParams:
        """The sBG of a subscriber who has renewed n times: theta | T > n ~ Beta(alpha, beta + n)
        (Bayes with the likelihood S(n | theta) = (1 - theta)^n; F&H 2010, section 3)."""
        if renewals < 0:
            raise ValueError("renewals must be >= 0")
        return SbgParams(self.alpha, self.beta + renewals)

    def conditional_survival(self, t: npt.ArrayLike, *, renewals: int) -> FloatArray:
        """P(T > n + t | T > n) = S(n + t) / S(n): survival t more periods after n renewals,
        which is the sBG survival of `after_renewals(n)`."""
        return self.after_renewals(renewals).survival(t)

    def derl(self, discount_rate: float, *, renewals: int = 0) -> float:
        """Discounted expected residual lifetime of a subscriber who has made n renewals,
        valued just before her next renewal decision (F&H 2010, eq. 6, their n - 1 = our n):

        DERL(d | alpha, beta, n) = (beta + n) / (alpha + beta + n)
                                   x 2F1(1, beta + n + 1; alpha + beta + n + 1; 1 / (1 + d)),

        i.e. sum_{k >= 1} P(T > n + k | T > n) (1 + d)^-(k - 1): the payment at the coming
        renewal counts undiscounted, the k-th one is discounted k - 1 periods. Multiply by the
        margin per period for the residual lifetime value. With d = 0 it is the expected number
        of further payments, finite only for alpha > 1 (else infinite).
        """
        if discount_rate < 0:
            raise ValueError("the discount rate must be >= 0")
        if renewals < 0:
            raise ValueError("renewals must be >= 0")
        b = self.beta + renewals
        c = self.alpha + b
        if discount_rate == 0:
            return self.expected_remaining_lifetime(renewals=renewals)
        return float(b / c * hyp2f1(1.0, b + 1.0, c + 1.0, 1.0 / (1.0 + discount_rate)))

    def expected_remaining_lifetime(self, *, renewals: int = 0) -> float:
        """Expected number of further renewals after n: E[(1 - theta) / theta | T > n]
        = (beta + n) / (alpha - 1) for alpha > 1, infinite otherwise (DERL at d = 0)."""
        if renewals < 0:
            raise ValueError("renewals must be >= 0")
        if self.alpha <= 1.0:
            return float("inf")
        return (self.beta + renewals) / (self.alpha - 1.0)


def lifetime_arrays(durations: npt.ArrayLike, churned: npt.ArrayLike) -> tuple[IntArray, BoolArray]:
    """Validated (durations, churned) as arrays: whole periods >= 0, churners at >= 1."""
    raw = np.asarray(durations, dtype=np.float64).ravel()
    event = np.asarray(churned, dtype=np.bool_).ravel()
    if raw.size != event.size:
        raise ValueError(f"durations and churned differ in length: {raw.size}, {event.size}")
    if not np.all(np.isfinite(raw)) or np.any(raw < 0) or np.any(raw != np.round(raw)):
        raise ValueError("durations must be whole numbers of periods >= 0")
    t = raw.astype(np.int64)
    if np.any(t[event] < 1):
        raise ValueError("a churned subscription has a duration of at least 1 period")
    return t, event


def sbg_log_likelihood(
    params: SbgParams, durations: npt.ArrayLike, churned: npt.ArrayLike
) -> FloatArray:
    """Per-subscription log-likelihood: ln P(T = t) if churned at t, ln S(t) if censored at t
    (F&H 2007, eq. B3 written per subscription; its cohort form groups equal terms)."""
    t, event = lifetime_arrays(durations, churned)
    a, b = params.alpha, params.beta
    tt = t.astype(np.float64)
    ln_p = betaln(a + 1.0, b + np.maximum(tt, 1.0) - 1.0) - betaln(a, b)
    ln_s = betaln(a, b + tt) - betaln(a, b)
    return np.asarray(np.where(event, ln_p, ln_s), dtype=np.float64)


def _sbg_gradient(
    alpha: float, beta: float, t: FloatArray, event: BoolArray
) -> tuple[FloatArray, FloatArray]:
    """d/d(alpha, beta) of each log-likelihood term, from d ln B(x, y)/dx = psi(x) - psi(x + y)."""
    a, b = alpha, beta
    base_a = -digamma(a) + digamma(a + b)
    base_b = -digamma(b) + digamma(a + b)
    tp = np.maximum(t, 1.0)
    p_a = digamma(a + 1.0) - digamma(a + b + tp) + base_a
    p_b = digamma(b + tp - 1.0) - digamma(a + b + tp) + base_b
    s_a = digamma(a) - digamma(a + b + t) + base_a
    s_b = digamma(b + t) - digamma(a + b + t) + base_b
    return np.where(event, p_a, s_a), np.where(event, p_b, s_b)


def fit_sbg(
    durations: npt.ArrayLike,
    churned: npt.ArrayLike,
    *,
    weights: npt.ArrayLike | None = None,
) -> SbgParams:
    """Maximum-likelihood sBG from individual subscriptions (F&H 2007, eq. B3), optionally
    weighted (a weight is a count of identical subscriptions).

    L-BFGS on (ln alpha, ln beta) with the analytic gradient, so that the optimum is found to
    many more digits than the published three.
    """
    t_int, event = lifetime_arrays(durations, churned)
    w = np.ones(t_int.size) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if w.size != t_int.size or np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError("weights must be finite, >= 0 and one per subscription")
    if not np.any(event & (w > 0)):
        raise ValueError("the sBG needs at least one churned subscription")
    t = t_int.astype(np.float64)
    total = float(w.sum())

    def nll(theta: FloatArray) -> tuple[float, FloatArray]:
        a, b = np.exp(theta)
        ll = sbg_log_likelihood(SbgParams(float(a), float(b)), t_int, event)
        d_a, d_b = _sbg_gradient(float(a), float(b), t, event)
        grad = np.array([a * float(w @ d_a), b * float(w @ d_b)])  # chain rule: d/d ln x
        return -float(w @ ll) / total, -grad / total

    res = minimize(
        nll,
        np.zeros(2),
        jac=True,
        method="L-BFGS-B",
        bounds=[(-12.0, 12.0)] * 2,
        options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 1000},
    )
    a, b = np.exp(res.x)
    return SbgParams(float(a), float(b))


def cohort_lifetimes(survivors: npt.ArrayLike) -> tuple[IntArray, BoolArray, FloatArray]:
    """A cohort's survivor counts at the start of periods 0..k (first = cohort size) as
    weighted subscriptions: n_{t-1} - n_t churned at t (t = 1..k), n_k censored at k."""
    n = np.asarray(survivors, dtype=np.float64).ravel()
    if n.size < 2 or n[0] <= 0 or np.any(n < 0) or np.any(np.diff(n) > 0):
        raise ValueError("survivors must be >= 2 non-increasing counts starting above 0")
    k = n.size - 1
    durations = np.concatenate([np.arange(1, k + 1), [k]]).astype(np.int64)
    churned = np.concatenate([np.ones(k, dtype=np.bool_), [False]])
    weights = np.concatenate([-np.diff(n), [n[-1]]])
    return durations, churned, weights


def fit_sbg_cohort(survivors: npt.ArrayLike) -> SbgParams:
    """Maximum-likelihood sBG from one cohort's survivor counts at the start of periods 0..k
    (F&H 2007, eq. B3: sum_t (n_{t-1} - n_t) ln P(T = t) + n_k ln S(k)); proportions work too."""
    durations, churned, weights = cohort_lifetimes(survivors)
    return fit_sbg(durations, churned, weights=weights)


@dataclass(frozen=True, eq=False)
class SurvivalCurve:
    """A Kaplan-Meier curve over periods 0..H: S(0) = 1, then S(t) = prod_{j <= t}
    (1 - d_j / n_j) (Kaplan & Meier 1958), with Greenwood's variance
    Var S(t) = S(t)^2 sum_{j <= t} d_j / (n_j (n_j - d_j)) (Greenwood 1926).

    n_t counts the subscriptions with duration >= t (active during period t): one censored at
    t renewed after t, so it is at risk at t and never a churn there. Past the last period
    with anyone at risk the curve is carried flat (at_risk = 0 tells).
    """

    periods: IntArray
    at_risk: IntArray
    churned: IntArray
    censored: IntArray
    survival: FloatArray
    variance: FloatArray

    def as_frame(self) -> pd.DataFrame:
        """One row per period: period, at_risk, churned, censored, survival, variance."""
        columns = (self.periods, self.at_risk, self.churned, self.censored)
        return pd.DataFrame(
            dict(zip(CURVE_COLUMNS, (*columns, self.survival, self.variance), strict=True))
        )


def kaplan_meier(
    durations: npt.ArrayLike, churned: npt.ArrayLike, *, horizon: int | None = None
) -> SurvivalCurve:
    """Kaplan-Meier survival in whole periods 0..horizon (default: the longest duration)."""
    t, event = lifetime_arrays(durations, churned)
    h = int(t.max(initial=0)) if horizon is None else int(horizon)
    if h < 0:
        raise ValueError("horizon must be >= 0")
    churns = np.bincount(t[event], minlength=h + 1)[: h + 1]
    censors = np.bincount(t[~event], minlength=h + 1)[: h + 1]
    ends = np.bincount(t, minlength=h + 1)  # subscriptions whose duration is exactly t
    at_risk = (t.size - np.concatenate([[0], np.cumsum(ends)[:-1]]))[: h + 1]
    churns[0] = 0  # no one churns in period 0 (a churned duration is >= 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        hazard = np.where(at_risk > 0, churns / at_risk, 0.0)
        term = np.where(at_risk > churns, churns / (at_risk * (at_risk - churns)), 0.0)
    survival = np.cumprod(1.0 - hazard)
    variance = survival**2 * np.cumsum(term)
    return SurvivalCurve(
        periods=np.arange(h + 1, dtype=np.int64),
        at_risk=at_risk.astype(np.int64),
        churned=churns.astype(np.int64),
        censored=censors.astype(np.int64),
        survival=np.asarray(survival, dtype=np.float64),
        variance=np.asarray(variance, dtype=np.float64),
    )


def kaplan_meier_by_group(
    durations: npt.ArrayLike,
    churned: npt.ArrayLike,
    groups: npt.ArrayLike | pd.Series,
    *,
    horizon: int | None = None,
) -> pd.DataFrame:
    """One Kaplan-Meier curve per group (e.g. per plan) over the same periods 0..horizon, long:
    group, period, at_risk, churned, censored, survival, variance. A missing label is a group."""
    t, event = lifetime_arrays(durations, churned)
    labels = pd.Series(groups).reset_index(drop=True)
    if labels.size != t.size:
        raise ValueError(f"groups and durations differ in length: {labels.size}, {t.size}")
    h = int(t.max(initial=0)) if horizon is None else int(horizon)
    codes, uniques = pd.factorize(labels, sort=True, use_na_sentinel=False)
    frames = []
    for code, group in enumerate(uniques):
        sel = codes == code
        frame = kaplan_meier(t[sel], event[sel], horizon=h).as_frame()
        frames.append(frame.assign(group=group)[["group", *CURVE_COLUMNS]])
    if not frames:
        return pd.DataFrame(columns=["group", *CURVE_COLUMNS])
    return pd.concat(frames, ignore_index=True)


def contractual_clv(
    mrr: npt.ArrayLike,
    survival: npt.ArrayLike,
    *,
    margin: float | npt.ArrayLike,
    discount_rate: float,
) -> FloatArray:
    """CLV_i = sum_{t=0}^{H-1} MRR_it x margin_i x S_i(t) x (1 + d)^-t, one value per customer.

    Timing: column t is the payment at the start of the (t + 1)-th period from the valuation
    date, made iff the customer is active then, with probability S_i(t); it is discounted t
    periods, so with S_i(0) = 1 the current period's payment counts undiscounted. `mrr` and
    `survival` are (customers, H) and broadcast together; `margin` is a scalar, one per
    customer (customers,) or one per cell; `discount_rate` is per period.
    """
    value = np.asarray(mrr, dtype=np.float64)
    surv = np.asarray(survival, dtype=np.float64)
    if value.ndim != 2 or surv.ndim != 2:
        raise ValueError("mrr and survival must be 2-D: (customers, periods)")
    if np.any((surv < 0) | (surv > 1)):
        raise ValueError("survival probabilities must lie in [0, 1]")
    if discount_rate <= -1:
        raise ValueError("the discount rate must be > -1")
    m = np.asarray(margin, dtype=np.float64)
    if m.ndim == 1:
        m = m[:, None]  # one margin per customer
    cells = np.broadcast_shapes(value.shape, surv.shape, m.shape)
    factor = (1.0 + discount_rate) ** -np.arange(cells[1], dtype=np.float64)
    return np.asarray((value * m * surv * factor).sum(axis=1), dtype=np.float64)
