"""The feedback loop: for cohorts whose label window has passed, predicted then vs happened.

Two cohorts, both scored by the judged model on point-in-time features of their snapshot:
- the churn cohort: the newest snapshot t with t + churn window <= as-of (it matures first);
  churn is judged by its reliability table, ECE and Brier score, and the predicted CLV's
  ranking is checked early against the value realised in that window;
- the value cohort: the newest snapshot t with t + horizon <= as-of; normalized Gini, RMSE,
  bias, the decile table and the P10-P90 coverage.
A cohort is "in training" when the registered model was fitted on its rows (the model is refit
on every complete row): then its metrics are in-sample and the report says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.calibration import expected_calibration_error, reliability_table
from training.intervals import interval_metrics
from training.metrics import bias_pct, decile_table, normalized_gini, rmse


@dataclass(frozen=True)
class Cohort:
    """A matured snapshot and whether the judged model was fitted on it."""

    kind: str
    """"churn" or "value"."""
    snapshot: pd.Timestamp
    window_days: int
    in_training: bool


def matured_snapshot(
    snapshots: Sequence[pd.Timestamp], *, as_of: pd.Timestamp, window_days: int
) -> pd.Timestamp | None:
    """The newest snapshot whose window of `window_days` closes by `as_of` (None if none)."""
    window = pd.Timedelta(days=window_days)
    done = [s for s in snapshots if s + window <= as_of]
    return max(done) if done else None


def choose_cohort(
    kind: str,
    snapshots: Sequence[pd.Timestamp],
    *,
    as_of: pd.Timestamp,
    window_days: int,
    trained_through: pd.Timestamp | None,
) -> Cohort | None:
    """The newest matured cohort; `trained_through` is the last snapshot fitted on (None:
    unknown, taken as in training so that the report never overstates independence)."""
    snap = matured_snapshot(snapshots, as_of=as_of, window_days=window_days)
    if snap is None:
        return None
    in_training = trained_through is None or snap <= trained_through
    return Cohort(kind, snap, window_days, in_training)


@dataclass(frozen=True)
class ChurnBacktest:
    cohort: Cohort
    n: int
    churn_rate: float
    mean_predicted: float
    ece: float
    brier: float
    reliability: pd.DataFrame
    early_gini: float
    """Normalized Gini of predicted CLV against the value realised within the churn window."""


@dataclass(frozen=True)
class ValueBacktest:
    cohort: Cohort
    n: int
    gini: float
    rmse: float
    bias_pct: float
    coverage: float
    deciles: pd.DataFrame


def churn_backtest(
    cohort: Cohort,
    *,
    churn_label: np.ndarray,
    churn_probability: np.ndarray,
    window_value: np.ndarray,
    clv: np.ndarray,
) -> ChurnBacktest:
    """Calibration of churn probabilities on a matured cohort (rows with a label only)."""
    y = np.asarray(churn_label, dtype=np.float64)
    p = np.asarray(churn_probability, dtype=np.float64)
    ok = np.isfinite(y) & np.isfinite(p)
    y, p = y[ok], p[ok]
    value = np.clip(np.asarray(window_value, dtype=np.float64)[ok], 0.0, None)
    pred = np.asarray(clv, dtype=np.float64)[ok]
    return ChurnBacktest(
        cohort=cohort,
        n=int(y.size),
        churn_rate=float(y.mean()) if y.size else float("nan"),
        mean_predicted=float(p.mean()) if p.size else float("nan"),
        ece=expected_calibration_error(y, p) if y.size else float("nan"),
        brier=float(np.mean((p - y) ** 2)) if y.size else float("nan"),
        reliability=reliability_table(y, p),
        early_gini=normalized_gini(value, pred) if y.size else float("nan"),
    )


def value_backtest(
    cohort: Cohort,
    *,
    clv_label: np.ndarray,
    clv: np.ndarray,
    clv_p10: np.ndarray,
    clv_p90: np.ndarray,
) -> ValueBacktest:
    """Ranking, error, bias, deciles and interval coverage on a matured value cohort.

    The label is clipped at 0 like the value model's target (training.objective)."""
    y = np.asarray(clv_label, dtype=np.float64)
    ok = np.isfinite(y)
    y = np.clip(y[ok], 0.0, None)
    pred = np.asarray(clv, dtype=np.float64)[ok]
    lo, hi = np.asarray(clv_p10, np.float64)[ok], np.asarray(clv_p90, np.float64)[ok]
    return ValueBacktest(
        cohort=cohort,
        n=int(y.size),
        gini=normalized_gini(y, pred) if y.size else float("nan"),
        rmse=rmse(y, pred) if y.size else float("nan"),
        bias_pct=bias_pct(y, pred) if y.size else float("nan"),
        coverage=interval_metrics(y, lo, hi).coverage_p10_p90,
        deciles=decile_table(y, pred),
    )
