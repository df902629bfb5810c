"""Survival metrics for retention models in whole periods, with right-censoring: Harrell's
concordance, the IPCW Brier score and its integral, and the predicted against the Kaplan-Meier
retention curve.

Durations follow clv.model.contractual: churned at t means the subscriber's last paid period
was t (T = t); censored at t means she is known to have renewed after period t (T > t). A
predicted survival matrix has one row per subscriber and column t - 1 = S_i(t), t = 1..H.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from clv.core.records import FloatRecord
from clv.model.contractual import kaplan_meier, lifetime_arrays

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Concordance(FloatRecord):
    """Harrell's C and the pair counts behind it."""

    c_index: float
    comparable: int
    concordant: int
    tied_risk: int


def concordance_index(
    durations: npt.ArrayLike, churned: npt.ArrayLike, risk: npt.ArrayLike
) -> Concordance:
    """Harrell's C (Harrell et al. 1982, JAMA 247; 1996, Stat. Med. 15): among comparable
    pairs, the share where the one who churned first had the higher risk, ties in risk 1/2.

    A pair (i, j) is comparable iff i churned (observed) and T_j > T_i is known: d_j > d_i, or
    d_j = d_i with j censored (she renewed after the period i churned in). Two churns in the
    same period are not comparable. `risk` is higher for sooner churn (e.g. 1 - S_i(t), or
    minus the expected lifetime). NaN without comparable pairs. O(n x distinct durations).
    """
    t, event = lifetime_arrays(durations, churned)
    r = np.asarray(risk, dtype=np.float64).ravel()
    if r.size != t.size:
        raise ValueError(f"risk and durations differ in length: {r.size}, {t.size}")
    later = np.empty(0)  # sorted risks of those known to outlive the current period
    comparable = concordant = tied = 0
    for period in np.unique(t)[::-1]:
        here = t == period
        later = _merge(later, r[here & ~event])  # censored at `period` outlive its churns
        churn_risk = r[here & event]
        lo = np.searchsorted(later, churn_risk, side="left")
        hi = np.searchsorted(later, churn_risk, side="right")
        concordant += int(lo.sum())  # later ones with a lower risk
        tied += int((hi - lo).sum())
        comparable += later.size * churn_risk.size
        later = _merge(later, churn_risk)
    c = (concordant + 0.5 * tied) / comparable if comparable else float("nan")
    return Concordance(c_index=c, comparable=comparable, concordant=concordant, tied_risk=tied)


def _merge(sorted_values: FloatArray, new: FloatArray) -> FloatArray:
    add = np.sort(new)
    return np.insert(sorted_values, np.searchsorted(sorted_values, add), add)


def censoring_survival(
    durations: npt.ArrayLike, churned: npt.ArrayLike, *, horizon: int
) -> FloatArray:
    """G(u) = P(C > u), u = 0..horizon: the Kaplan-Meier curve of the censoring time C.

    G(u) = prod_{v <= u} (1 - c_v / (n_v - d_v)), with n_v at risk (duration >= v), d_v churned
    and c_v censored at v: a churner at v is not at risk of an observed censoring at v (her
    C >= v is all that is known), so censoring comes after churn in a tied period.
    """
    t, event = lifetime_arrays(durations, churned)
    size = max(int(horizon), int(t.max(initial=0))) + 1
    ends = np.bincount(t, minlength=size)
    churns = np.bincount(t[event], minlength=size)
    censors = np.bincount(t[~event], minlength=size)
    at_risk = t.size - np.concatenate([[0], np.cumsum(ends)[:-1]])
    exposed = at_risk - churns
    with np.errstate(divide="ignore", invalid="ignore"):
        hazard = np.where(exposed > 0, censors / exposed, 0.0)
    return np.asarray(np.cumprod(1.0 - hazard)[: int(horizon) + 1], dtype=np.float64)


def _ipcw_terms(
    t: IntArray, event: BoolArray, predicted: FloatArray, period: int, g: FloatArray
) -> FloatArray:
    """Each subscriber's weighted squared error at `period` (see `brier_score`); needs
    G(period - 1) > 0. An observed churner at T_i always has G(T_i - 1) > 0 (she was exposed)."""
    churned_by = event & (t <= period)
    alive_after = (t > period) | ((t == period) & ~event)
    g_churn = g[np.clip(t - 1, 0, None)]  # G(T_i - 1) = P(C >= T_i)
    with np.errstate(divide="ignore"):
        w_churn = np.where(churned_by, 1.0 / g_churn, 0.0)
    w_alive = np.where(alive_after, 1.0 / g[period - 1], 0.0)  # G(t - 1) = P(C >= t)
    return np.asarray(w_churn * predicted**2 + w_alive * (1.0 - predicted) ** 2, dtype=np.float64)


def brier_score(
    durations: npt.ArrayLike,
    churned: npt.ArrayLike,
    predicted_survival: npt.ArrayLike,
    *,
    period: int,
) -> float:
    """IPCW Brier score of S_i(t) at period t (Graf et al. 1999, Stat. Med. 18, BS^c(t)):

    BS(t) = 1/n sum_i [ S_i(t)^2 1(T_i <= t, churned) / G(T_i - 1)
                        + (1 - S_i(t))^2 1(T_i > t) / G(t - 1) ],

    G(u) = P(C > u) the censoring survival (`censoring_survival`). Graf et al. weight by
    G(T_i-) and G(t); in whole periods, where censoring at t reveals T > t, a churn at T_i is
    seen iff C >= T_i and the status at t is known iff C >= t, hence G(T_i - 1) and G(t - 1).
    Without censoring G = 1 and it is the plain Brier score of 1(T_i > t).
    `predicted_survival` is S_i(t), one per subscriber. NaN when G(t - 1) = 0.
    """
    t, event = lifetime_arrays(durations, churned)
    pred = np.asarray(predicted_survival, dtype=np.float64).ravel()
    if pred.size != t.size:
        raise ValueError(f"predicted_survival and durations differ: {pred.size}, {t.size}")
    if period < 1:
        raise ValueError("the Brier score is evaluated at periods >= 1")
    g = censoring_survival(t, event, horizon=max(period, int(t.max(initial=0))))
    if g[period - 1] <= 0:
        return float("nan")
    return float(_ipcw_terms(t, event, pred, period, g).mean())


def integrated_brier_score(
    durations: npt.ArrayLike, churned: npt.ArrayLike, predicted_survival: npt.ArrayLike
) -> float:
    """IBS = 1/H sum_{t=1}^{H} BS(t) over the H columns (S_i(1) .. S_i(H)) of the predicted
    survival (Graf et al. 1999, integrated over [0, H] against dt / H).

    In whole periods the status, and so BS, changes only at the period boundaries: the mean
    over periods 1..H is the integral of that step function over (0, H], with no trapezoid to
    interpolate between periods and every period weighing the same.
    """
    t, event = lifetime_arrays(durations, churned)
    pred = np.asarray(predicted_survival, dtype=np.float64)
    if pred.ndim != 2 or pred.shape[0] != t.size or pred.shape[1] < 1:
        raise ValueError("predicted_survival must be (subscribers, periods >= 1)")
    horizon = pred.shape[1]
    g = censoring_survival(t, event, horizon=max(horizon, int(t.max(initial=0))))
    scores = [
        float(_ipcw_terms(t, event, pred[:, k - 1], k, g).mean()) if g[k - 1] > 0 else np.nan
        for k in range(1, horizon + 1)
    ]
    return float(np.mean(scores))


@dataclass(frozen=True, eq=False)
class RetentionGap:
    """The mean predicted survival against the Kaplan-Meier curve, periods 1..H."""

    periods: IntArray
    predicted: FloatArray
    realized: FloatArray
    at_risk: IntArray

    @property
    def gap(self) -> FloatArray:
        """Predicted minus realized, per period (positive: retention over-predicted)."""
        return np.asarray(self.predicted - self.realized, dtype=np.float64)

    @property
    def max_abs_gap(self) -> float:
        return float(np.max(np.abs(self.gap))) if self.gap.size else float("nan")

    @property
    def worst_period(self) -> int:
        """The period of the largest absolute gap (the first on ties)."""
        return int(self.periods[int(np.argmax(np.abs(self.gap)))])


def retention_gap(
    durations: npt.ArrayLike, churned: npt.ArrayLike, predicted_survival: npt.ArrayLike
) -> RetentionGap:
    """Mean over subscribers of S_i(t) against the Kaplan-Meier S(t) of what happened, for the
    H columns t = 1..H of `predicted_survival` (subscribers, H)."""
    t, event = lifetime_arrays(durations, churned)
    pred = np.asarray(predicted_survival, dtype=np.float64)
    if pred.ndim != 2 or pred.shape[0] != t.size or pred.shape[1] < 1:
        raise ValueError("predicted_survival must be (subscribers, periods >= 1)")
    horizon = pred.shape[1]
    curve = kaplan_meier(t, event, horizon=horizon)
    return RetentionGap(
        periods=curve.periods[1:],
        predicted=np.asarray(pred.mean(axis=0), dtype=np.float64),
        realized=curve.survival[1:],
        at_risk=curve.at_risk[1:],
    )
