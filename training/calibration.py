"""Calibration of churn probabilities: ECE, the reliability table, and Platt scaling by evidence.

Expected calibration error (Naeini, Cooper & Hauskrecht 2015; Guo et al. 2017, eq. 3) over
equal-width bins B_1..B_M of the predicted probability:

    ECE = sum_m |B_m| / n x |mean(y in B_m) - mean(p in B_m)|

Platt scaling (Platt 1999) refits the classifier's log-odds s as sigmoid(a s + b) on held-out
data. Whether to use it is decided on the validation snapshot by two-fold cross-fitting: the
scaling is fitted on one half and its ECE measured on the other (and vice versa), so that the
decision is not made on the data the scaling was fitted to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.optimize import minimize

FloatArray = npt.NDArray[np.float64]
N_BINS = 10


def _bins(prob: FloatArray, n_bins: int) -> npt.NDArray[np.int64]:
    """Bin index of each probability: [0, 1/n), ..., [(n-1)/n, 1] (the last bin is closed)."""
    return np.minimum((prob * n_bins).astype(np.int64), n_bins - 1)


def reliability_table(
    y: npt.ArrayLike, prob: npt.ArrayLike, *, n_bins: int = N_BINS
) -> pd.DataFrame:
    """One row per non-empty bin: bounds, count, mean predicted and observed rate, |gap|."""
    a = np.asarray(y, dtype=np.float64).ravel()
    p = np.clip(np.asarray(prob, dtype=np.float64).ravel(), 0.0, 1.0)
    idx = _bins(p, n_bins)
    rows = []
    for m in np.unique(idx):
        sel = idx == m
        mean_p, rate = float(p[sel].mean()), float(a[sel].mean())
        rows.append(
            {
                "bin": int(m),
                "lower": m / n_bins,
                "upper": (m + 1) / n_bins,
                "n": int(sel.sum()),
                "mean_predicted": mean_p,
                "observed_rate": rate,
                "gap": abs(rate - mean_p),
            }
        )
    return pd.DataFrame(
        rows, columns=["bin", "lower", "upper", "n", "mean_predicted", "observed_rate", "gap"]
    )


def expected_calibration_error(
    y: npt.ArrayLike, prob: npt.ArrayLike, *, n_bins: int = N_BINS
) -> float:
    """ECE over `n_bins` equal-width bins (see the module docstring); NaN without rows."""
    table = reliability_table(y, prob, n_bins=n_bins)
    total = table["n"].sum()
    if total == 0:
        return float("nan")
    return float((table["n"] * table["gap"]).sum() / total)


@dataclass(frozen=True)
class Platt:
    """p = sigmoid(a s + b) for a classifier's log-odds s."""

    a: float = 1.0
    b: float = 0.0

    def apply(self, margin: npt.ArrayLike) -> FloatArray:
        s = np.asarray(margin, dtype=np.float64)
        return np.asarray(1.0 / (1.0 + np.exp(-(self.a * s + self.b))), dtype=np.float64)

    def as_dict(self) -> dict[str, float]:
        return {"a": self.a, "b": self.b}


def fit_platt(margin: npt.ArrayLike, y: npt.ArrayLike) -> Platt:
    """Platt's a, b by maximum likelihood (log-loss of sigmoid(a s + b) against y)."""
    s = np.asarray(margin, dtype=np.float64).ravel()
    a = np.asarray(y, dtype=np.float64).ravel()

    def nll(theta: FloatArray) -> float:
        z = theta[0] * s + theta[1]
        # log(1 + e^z) - y z, the logistic log-loss written stably
        return float(np.mean(np.logaddexp(0.0, z) - a * z))

    res = minimize(nll, np.array([1.0, 0.0]), method="L-BFGS-B")
    return Platt(a=float(res.x[0]), b=float(res.x[1]))


@dataclass(frozen=True)
class CalibrationChoice:
    """Whether Platt scaling is applied, the scaling (fitted on all of validation) and why."""

    platt: Platt | None
    ece_raw: float
    ece_platt: float
    reason: str


def choose_calibration(
    margin: npt.ArrayLike, y: npt.ArrayLike, *, seed: int, n_bins: int = N_BINS
) -> CalibrationChoice:
    """Platt scaling when its two-fold cross-fitted ECE on validation beats the raw ECE."""
    s = np.asarray(margin, dtype=np.float64).ravel()
    a = np.asarray(y, dtype=np.float64).ravel()
    if s.size < 20 or len(np.unique(a)) < 2:
        return CalibrationChoice(None, float("nan"), float("nan"), "too few validation rows")
    raw = 1.0 / (1.0 + np.exp(-s))
    fold = np.random.default_rng(seed).permutation(s.size) % 2
    scaled = np.empty_like(s)
    for k in (0, 1):
        fitted = fit_platt(s[fold != k], a[fold != k])
        scaled[fold == k] = fitted.apply(s[fold == k])
    ece_raw = expected_calibration_error(a, raw, n_bins=n_bins)
    ece_platt = expected_calibration_error(a, scaled, n_bins=n_bins)
    if ece_platt < ece_raw:
        return CalibrationChoice(
            fit_platt(s, a),
            ece_raw,
            ece_platt,
            f"Platt scaling lowers validation ECE {ece_raw:.4f} -> {ece_platt:.4f} (cross-fitted)",
        )
    return CalibrationChoice(
        None,
        ece_raw,
        ece_platt,
        f"raw probabilities kept: Platt ECE {ece_platt:.4f} >= raw {ece_raw:.4f}",
    )
