"""Calibration of churn probabilities: ECE, reliability tables, and raw / Platt / isotonic by
evidence.

Expected calibration error (Naeini, Cooper & Hauskrecht 2015; Guo et al. 2017, eq. 3) over
equal-width bins B_1..B_M of the predicted probability:

    ECE = sum_m |B_m| / n x |mean(y in B_m) - mean(p in B_m)|

Platt scaling (Platt 1999) refits the classifier's log-odds s as sigmoid(a s + b) on held-out
data; isotonic regression (Zadrozny & Elkan 2002) fits the best non-decreasing step function of
s by pool-adjacent-violators, served as breakpoints interpolated linearly. Which of raw, Platt
and isotonic to serve is decided on the validation snapshot by two-fold cross-fitting: each
calibrator is fitted on one half and its ECE measured on the other (and vice versa), so that
the decision is not made on the data the calibrator was fitted to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.optimize import minimize

FloatArray = npt.NDArray[np.float64]
N_BINS = 10
Method = Literal["raw", "platt", "isotonic"]
METHODS: tuple[Method, ...] = ("raw", "platt", "isotonic")
"""The candidates, simplest first (0 parameters, 2, up to one breakpoint per row)."""
ECE_TOLERANCE = 0.005
"""A more complex calibrator must lower the cross-fitted ECE by more than this (set a priori:
docs/decisions/modelling-constants.md, "Churn calibration")."""


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
class Isotonic:
    """p = the linear interpolation of breakpoints (x: margins, increasing; y: probabilities)
    at a classifier's log-odds s, flat beyond the end points."""

    x: tuple[float, ...]
    y: tuple[float, ...]

    def apply(self, margin: npt.ArrayLike) -> FloatArray:
        return np.interp(np.asarray(margin, dtype=np.float64), self.x, self.y)

    def as_dict(self) -> dict[str, list[float]]:
        return {"x": list(self.x), "y": list(self.y)}


def fit_isotonic(margin: npt.ArrayLike, y: npt.ArrayLike) -> Isotonic:
    """Isotonic regression of y on the margin (scikit-learn's PAV, clipped to [0, 1]) as its
    breakpoints, which `Isotonic.apply` interpolates exactly as `IsotonicRegression.predict`."""
    from sklearn.isotonic import IsotonicRegression  # here: scikit-learn takes ~1.5 s to import

    s = np.asarray(margin, dtype=np.float64).ravel()
    a = np.asarray(y, dtype=np.float64).ravel()
    fitted = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(s, a)
    return Isotonic(
        x=tuple(float(v) for v in fitted.X_thresholds_),
        y=tuple(float(v) for v in fitted.y_thresholds_),
    )


def _sigmoid(margin: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-margin)), dtype=np.float64)


@dataclass(frozen=True)
class CandidateScore:
    """A candidate's cross-fitted calibration on validation."""

    ece: float
    brier: float

    def as_dict(self) -> dict[str, float]:
        return {"ece": self.ece, "brier": self.brier}


@dataclass(frozen=True)
class CalibrationChoice:
    """The calibration served (`method`, its calibrator fitted on all of validation), every
    candidate's cross-fitted scores, and why."""

    method: Method
    calibrator: Platt | Isotonic | None
    reason: str
    candidates: dict[Method, CandidateScore] = field(default_factory=dict)
    tolerance: float = ECE_TOLERANCE

    @classmethod
    def uncalibrated(cls, reason: str) -> CalibrationChoice:
        """Raw probabilities with no evidence (no churn model, too few rows)."""
        return cls("raw", None, reason)

    @property
    def platt(self) -> Platt | None:
        return self.calibrator if isinstance(self.calibrator, Platt) else None

    @property
    def isotonic(self) -> Isotonic | None:
        return self.calibrator if isinstance(self.calibrator, Isotonic) else None

    def apply(self, margin: npt.ArrayLike) -> FloatArray:
        """Churn probabilities from the classifier's log-odds under the chosen method."""
        s = np.asarray(margin, dtype=np.float64)
        return self.calibrator.apply(s) if self.calibrator is not None else _sigmoid(s)

    def as_evidence(self) -> dict[str, str | float]:
        """Flat, for MLflow: method, reason, tolerance, `<candidate>.ece` / `.brier`, and the
        isotonic breakpoint count when served."""
        out: dict[str, str | float] = {
            "method": self.method,
            "reason": self.reason,
            "tolerance": self.tolerance,
        }
        for name, score in self.candidates.items():
            out.update({f"{name}.{stat}": value for stat, value in score.as_dict().items()})
        if self.isotonic is not None:
            out["isotonic.breakpoints"] = float(len(self.isotonic.x))
        return out


_FITTERS: dict[Method, Callable[[FloatArray, FloatArray], Platt | Isotonic]] = {
    "platt": fit_platt,
    "isotonic": fit_isotonic,
}


def _cross_fitted(
    s: FloatArray, a: FloatArray, fold: npt.NDArray[np.int64]
) -> dict[Method, FloatArray]:
    """Each candidate's probabilities on every row, fitted on the other fold (raw: no fit)."""
    out: dict[Method, FloatArray] = {"raw": _sigmoid(s)}
    for m, fitter in _FITTERS.items():
        out[m] = np.empty_like(s)
        for k in (0, 1):
            fit, held = fold != k, fold == k
            out[m][held] = fitter(s[fit], a[fit]).apply(s[held])
    return out


def choose_calibration(
    margin: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    seed: int,
    n_bins: int = N_BINS,
    tolerance: float = ECE_TOLERANCE,
) -> CalibrationChoice:
    """The simplest of raw, Platt, isotonic (in that order) whose two-fold cross-fitted
    validation ECE is within `tolerance` of the lowest.

    Every candidate is scored on the same folds, out of fold, so isotonic's in-sample
    perfection earns nothing. The tolerance is the price of complexity: ECE differences
    smaller than it are sampling noise at validation sizes and immaterial to decisions on a
    churn probability, so the simpler, smoother calibrator is kept on ties and near-ties.
    """
    s = np.asarray(margin, dtype=np.float64).ravel()
    a = np.asarray(y, dtype=np.float64).ravel()
    if s.size < 20 or len(np.unique(a)) < 2:
        return CalibrationChoice.uncalibrated("too few validation rows")
    fold = np.random.default_rng(seed).permutation(s.size) % 2
    probs = _cross_fitted(s, a, fold)
    scores = {
        m: CandidateScore(
            ece=expected_calibration_error(a, p, n_bins=n_bins),
            brier=float(np.mean((p - a) ** 2)),  # Brier (1950)
        )
        for m, p in probs.items()
    }
    best = min(score.ece for score in scores.values())
    method = next(m for m in METHODS if scores[m].ece <= best + tolerance)
    calibrator = _FITTERS[method](s, a) if method != "raw" else None
    eces = ", ".join(f"{m} {scores[m].ece:.4f}" for m in METHODS)
    verdict = "raw probabilities kept" if method == "raw" else f"{method} calibration chosen"
    return CalibrationChoice(
        method,
        calibrator,
        f"{verdict}: cross-fitted validation ECE {eces} "
        f"(the simplest within {tolerance:.3f} of the lowest)",
        scores,
        tolerance,
    )


def reliability_by_segment(
    y: npt.ArrayLike,
    prob: npt.ArrayLike,
    segments: npt.ArrayLike | pd.Series,
    *,
    n_bins: int = N_BINS,
) -> pd.DataFrame:
    """One row per segment (e.g. a predicted-value tercile): rows, mean predicted, observed
    rate and the segment's own ECE. A missing segment label is a segment of its own."""
    a = np.asarray(y, dtype=np.float64).ravel()
    p = np.clip(np.asarray(prob, dtype=np.float64).ravel(), 0.0, 1.0)
    labels = pd.Series(segments).reset_index(drop=True)  # keeps a categorical's order
    if not a.size == p.size == labels.size:
        raise ValueError(
            f"y, prob and segments differ in length: {a.size}, {p.size}, {labels.size}"
        )
    codes, uniques = pd.factorize(labels, sort=True, use_na_sentinel=False)
    rows = []
    for code, segment in enumerate(uniques):
        sel = codes == code
        rows.append(
            {
                "segment": segment,
                "rows": int(sel.sum()),
                "mean_predicted": float(p[sel].mean()),
                "observed_rate": float(a[sel].mean()),
                "ece": expected_calibration_error(a[sel], p[sel], n_bins=n_bins),
            }
        )
    return pd.DataFrame(rows, columns=["segment", "rows", "mean_predicted", "observed_rate", "ece"])
