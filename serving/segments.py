"""Customer segments: a value tier crossed with a churn-risk flag, e.g. "high value / at risk".

Value tiers cut the CLV at two thresholds (`serving.value_thresholds`). When those are not
configured, the cut points are the terciles of the champion's predictions on its training
reference sample, so each tier holds about a third of the customers the model was fitted on
and the tiers move with the model rather than with a currency guess in the config.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

VALUE_TIERS = ("low value", "mid value", "high value")
AT_RISK = "at risk"
HEALTHY = "healthy"
UNKNOWN = "unknown"
HIGH_VALUE_AT_RISK = f"{VALUE_TIERS[2]} / {AT_RISK}"

Floats = npt.ArrayLike
FEW = 16
"""Up to this many customers, `segment` labels them one by one (the same labels)."""


def segment(
    clv: Floats,
    churn_probability: Floats,
    *,
    value_thresholds: tuple[float, float],
    churn_threshold: float,
) -> npt.NDArray[np.object_]:
    """One label per customer: "<tier> value / <at risk|healthy>".

    Tier: low if clv < t1, mid if t1 <= clv < t2, high if clv >= t2. At risk if
    churn_probability >= churn_threshold. A missing value on either side reads "unknown".
    """
    v = np.asarray(clv, dtype=np.float64).reshape(-1)
    p = np.asarray(churn_probability, dtype=np.float64).reshape(-1)
    if v.shape != p.shape:
        raise ValueError(f"clv has {v.size} values but churn_probability has {p.size}")
    low, high = value_thresholds
    if low > high:
        raise ValueError(f"value_thresholds must be ascending, got {value_thresholds}")
    if v.size <= FEW and low == low and high == high:  # a request's few: no numpy round trips
        return np.asarray(
            [
                _label(c, q, low, high, churn_threshold)
                for c, q in zip(v.tolist(), p.tolist(), strict=True)
            ],
            dtype=object,
        )
    tier_idx = np.searchsorted(np.array([low, high]), v, side="right")
    tiers = np.asarray(VALUE_TIERS, dtype=object)[np.minimum(tier_idx, 2)]
    tiers = np.where(np.isnan(v), UNKNOWN, tiers)
    risk = np.where(np.isnan(p), UNKNOWN, np.where(p >= churn_threshold, AT_RISK, HEALTHY))
    labels = [f"{t} / {r}" for t, r in zip(tiers.tolist(), risk.tolist(), strict=True)]
    return np.asarray(labels, dtype=object)


def _label(clv: float, churn: float, low: float, high: float, churn_threshold: float) -> str:
    """`segment`'s label for one customer (thresholds not NaN)."""
    tier = UNKNOWN if clv != clv else VALUE_TIERS[0 if clv < low else 1 if clv < high else 2]
    risk = UNKNOWN if churn != churn else AT_RISK if churn >= churn_threshold else HEALTHY
    return f"{tier} / {risk}"


def tercile_thresholds(clv: Floats) -> tuple[float, float]:
    """The 1/3 and 2/3 quantiles of a set of CLV predictions (NaN ignored)."""
    v = np.asarray(clv, dtype=np.float64).reshape(-1)
    v = v[~np.isnan(v)]
    if v.size == 0:
        raise ValueError("no CLV values to take terciles of")
    low, high = np.quantile(v, [1.0 / 3.0, 2.0 / 3.0])
    return float(low), float(high)
