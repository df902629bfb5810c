"""CLV intervals: XGBoost quantile regression for P10/P50/P90, conformalised on validation.

Quantile boosters (`reg:quantileerror`, the pinball loss) fitted on the train snapshots give
P10 and P90; on a later population they rarely cover 80%. Conformalized quantile regression
(Romano, Patterson & Candes 2019, eq. 6-7) widens them by one constant: with nonconformity
E_i = max(q10(x_i) - y_i, y_i - q90(x_i)) on the validation rows, the interval is
[q10 - Q, q90 + Q] where Q is the ceil((n + 1)(1 - alpha)) / n empirical quantile of E
(alpha = 0.2 for 80%). Q may be negative (the raw interval was too wide). P10 is floored at 0:
the value model's target is clipped at 0 (training.objective).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
QUANTILES = {"clv_p10": 0.1, "clv_p50": 0.5, "clv_p90": 0.9}


@dataclass(frozen=True)
class IntervalMetrics:
    coverage_p10_p90: float
    """Share of rows whose label lies in [P10, P90]."""
    mean_width: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def interval_metrics(
    y: npt.ArrayLike, lower: npt.ArrayLike, upper: npt.ArrayLike
) -> IntervalMetrics:
    a, lo, hi = (np.asarray(v, dtype=np.float64).ravel() for v in (y, lower, upper))
    if a.size == 0:
        return IntervalMetrics(float("nan"), float("nan"), 0)
    covered = (a >= lo) & (a <= hi)
    return IntervalMetrics(float(covered.mean()), float(np.mean(hi - lo)), int(a.size))


def conformal_adjustment(
    y: npt.ArrayLike, lower: npt.ArrayLike, upper: npt.ArrayLike, *, coverage: float = 0.8
) -> float:
    """CQR's Q: the finite-sample (1 - alpha) quantile of max(lo - y, y - hi)."""
    a, lo, hi = (np.asarray(v, dtype=np.float64).ravel() for v in (y, lower, upper))
    n = a.size
    if n == 0:
        return 0.0
    scores = np.sort(np.maximum(lo - a, a - hi))
    k = min(n, int(np.ceil((n + 1) * coverage)))
    return float(scores[k - 1])


def adjusted(lower: FloatArray, upper: FloatArray, q: float) -> tuple[FloatArray, FloatArray]:
    """[max(lo - Q, 0), hi + Q], kept ordered."""
    lo = np.maximum(lower - q, 0.0)
    hi = np.maximum(upper + q, lo)
    return lo, hi


MAX_SCALE = 100.0
"""Cap of the interval scale when the target coverage is not reachable (e.g. P90 = P50 rows)."""


def _log_bounds(
    lower: npt.ArrayLike, median: npt.ArrayLike, upper: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """log1p of the three quantiles, floored at 0 and sorted per row (crossing is possible)."""
    qs = np.sort(
        np.stack([np.asarray(v, dtype=np.float64).ravel() for v in (lower, median, upper)]),
        axis=0,
    )
    lo, mid, hi = np.log1p(np.maximum(qs, 0.0))
    return lo, mid, hi


def scaled_interval(
    lower: npt.ArrayLike,
    median: npt.ArrayLike,
    upper: npt.ArrayLike,
    point: npt.ArrayLike,
    scale: tuple[float, float],
) -> tuple[FloatArray, FloatArray]:
    """[P10, P90] scaled around P50 in log1p space, then stretched to hold `point`.

    lo = max(expm1(M - s_lo (M - L)), 0), hi = expm1(M + s_hi (H - M)) with L, M, H = log1p of
    P10, P50, P90: a scale below 1 narrows that side (a P10 of 0 rises above 0 when P50 > 0),
    above 1 widens it, down to 0 at most (the target is clipped at 0, so a negative P10 would
    cover nothing more); the intervals are nested in each scale. The point prediction (the
    mean) is kept inside.
    """
    lo_l, mid_l, hi_l = _log_bounds(lower, median, upper)
    c = np.asarray(point, dtype=np.float64).ravel()
    lo = np.maximum(np.expm1(mid_l - scale[0] * (mid_l - lo_l)), 0.0)
    hi = np.expm1(mid_l + scale[1] * (hi_l - mid_l))
    return np.minimum(lo, c), np.maximum(hi, c)


def interval_scores(
    y: npt.ArrayLike,
    lower: npt.ArrayLike,
    median: npt.ArrayLike,
    upper: npt.ArrayLike,
    point: npt.ArrayLike,
) -> tuple[FloatArray, FloatArray]:
    """Per row, the smallest lower and upper scales >= 0 whose `scaled_interval` holds y
    (inf if none does)."""
    a = np.maximum(np.asarray(y, dtype=np.float64).ravel(), 0.0)
    c = np.asarray(point, dtype=np.float64).ravel()
    lo_l, mid_l, hi_l = _log_bounds(lower, median, upper)
    ly = np.log1p(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        up = np.where(hi_l > mid_l, (ly - mid_l) / (hi_l - mid_l), np.inf)
        down = np.where(mid_l > lo_l, (mid_l - ly) / (mid_l - lo_l), np.inf)
    up = np.where((ly <= mid_l) | (a <= c), 0.0, up)
    down = np.where((ly >= mid_l) | (a >= c), 0.0, down)
    return np.asarray(down, dtype=np.float64), np.asarray(up, dtype=np.float64)


def _conformal_quantile(scores: FloatArray, level: float) -> float:
    """The ceil((n + 1) level)-th smallest score, capped at MAX_SCALE."""
    ordered = np.sort(scores)
    n = ordered.size
    if n == 0:
        return 1.0
    k = min(n, int(np.ceil((n + 1) * level)))
    return float(min(ordered[k - 1], MAX_SCALE))


def interval_scale(
    y: npt.ArrayLike,
    lower: npt.ArrayLike,
    median: npt.ArrayLike,
    upper: npt.ArrayLike,
    point: npt.ArrayLike,
    *,
    coverage: float = 0.8,
) -> tuple[float, float]:
    """Split-conformal (lower, upper) scales of [P10, P90] for `coverage`, in two steps.

    A normalised conformity score (Romano, Patterson & Candes 2019, eq. 8 for the asymmetric
    version; Lei et al. 2018 for locally weighted scores): the lower scale is the
    (1 + coverage) / 2 conformal quantile of the lower scores (at most half the misses below),
    then the upper scale is the smallest that brings the joint coverage to `coverage`. Two
    steps because the lower score has a point mass: a zero label (half of the CLV labels) with
    P10 = 0 needs a lower scale of exactly 1, so the lower side alone cannot be tuned
    continuously; the upper side, over positive labels, can. Unlike CQR's additive Q, the
    scales shrink an interval that over-covers. Capped at MAX_SCALE.
    """
    down, up = interval_scores(y, lower, median, upper, point)
    s_lo = _conformal_quantile(down, 1.0 - (1.0 - coverage) / 2.0)
    joint = np.where(down <= s_lo, up, np.inf)
    return s_lo, _conformal_quantile(joint, coverage)
