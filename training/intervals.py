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
