"""The feedback loop: for cohorts whose label window has passed, predicted then vs happened.

Two cohorts, both scored by the judged model on point-in-time features of their snapshot:
- the churn cohort: the newest snapshot t with t + churn window <= as-of (it matures first);
  churn is judged by its reliability table, ECE and Brier score, and the predicted CLV's
  ranking is checked early against the value realised in that window;
- the value cohort: the newest snapshot t with t + horizon <= as-of; normalized Gini, RMSE,
  MAE, bias, the decile table and the P10-P90 coverage; and the same value metrics, on the same
  rows, for every simple baseline training scores beside the model (clv.monitoring.baselines).
A cohort is "in training" when the registered model was fitted on its rows (the model is refit
on every complete row): then its metrics are in-sample and the report says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from clv.evaluation.calibration import expected_calibration_error, reliability_table
from clv.evaluation.metrics import bias_pct, decile_table, mae, normalized_gini, rmse
from clv.model.intervals import interval_metrics
from clv.monitoring.baselines import BASELINES, BaselinePredictions, label


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
class PredictorScore:
    """One predictor's value metrics on the matured cohort's labelled rows; `reason` says why
    it has none (its metrics are then NaN)."""

    predictor: str
    n: int
    gini: float
    rmse: float
    mae: float
    bias_pct: float
    reason: str | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class ValueBacktest:
    cohort: Cohort
    n: int
    gini: float
    rmse: float
    bias_pct: float
    coverage: float
    deciles: pd.DataFrame
    mae: float = float("nan")
    baselines: tuple[PredictorScore, ...] = ()
    """Every simple baseline (clv.monitoring.baselines.BASELINES) on the same rows, in
    that order."""

    @property
    def champion(self) -> PredictorScore:
        """The judged model's own scores, in the baselines' form."""
        return PredictorScore("champion", self.n, self.gini, self.rmse, self.mae, self.bias_pct)


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
    baselines: BaselinePredictions | None = None,
) -> ValueBacktest:
    """Ranking, error, bias, deciles and interval coverage on a matured value cohort, and the
    value metrics of every simple baseline on the same labelled rows (None: none given).

    The label is clipped at 0 like the value model's target (clv.training.objective)."""
    y = np.asarray(clv_label, dtype=np.float64)
    ok = np.isfinite(y)
    y = np.clip(y[ok], 0.0, None)
    pred = np.asarray(clv, dtype=np.float64)[ok]
    lo, hi = np.asarray(clv_p10, np.float64)[ok], np.asarray(clv_p90, np.float64)[ok]
    champion = score_predictor("champion", y, pred)
    given = baselines if baselines is not None else BaselinePredictions()
    return ValueBacktest(
        cohort=cohort,
        n=int(y.size),
        gini=champion.gini,
        rmse=champion.rmse,
        bias_pct=champion.bias_pct,
        coverage=interval_metrics(y, lo, hi).coverage_p10_p90,
        deciles=decile_table(y, pred),
        mae=champion.mae,
        baselines=tuple(_baseline_score(name, y, ok, given) for name in BASELINES),
    )


def score_predictor(predictor: str, y: np.ndarray, pred: np.ndarray) -> PredictorScore:
    """Normalized Gini, RMSE, MAE and bias of `pred` against labels `y` (same rows)."""
    nan = float("nan")
    if not y.size:
        return PredictorScore(predictor, 0, nan, nan, nan, nan)
    return PredictorScore(
        predictor,
        int(y.size),
        gini=normalized_gini(y, pred),
        rmse=rmse(y, pred),
        mae=mae(y, pred),
        bias_pct=bias_pct(y, pred),
    )


def _baseline_score(
    name: str, y: np.ndarray, ok: np.ndarray, given: BaselinePredictions
) -> PredictorScore:
    nan = float("nan")
    if name not in given.predictions:
        reason = given.unavailable.get(name, "not scored")
        return PredictorScore(name, 0, nan, nan, nan, nan, reason=reason)
    pred = np.asarray(given.predictions[name], dtype=np.float64)[ok]
    bad = int((~np.isfinite(pred)).sum())
    if bad:
        reason = f"not scored: {bad:,} of {pred.size:,} predictions are not finite"
        return PredictorScore(name, int(y.size), nan, nan, nan, nan, reason=reason)
    return score_predictor(name, y, pred)


@dataclass(frozen=True)
class BaselineComparison:
    """The champion against the best simple baseline on one metric of the matured cohort."""

    metric: str
    """"gini" (higher is better) or "rmse" (lower is better)."""
    champion: float
    best: PredictorScore | None
    """The scored baseline best on this metric; None when none has a finite value."""

    @property
    def best_value(self) -> float:
        return float(getattr(self.best, self.metric)) if self.best is not None else math.nan

    @property
    def beats(self) -> bool | None:
        """Whether the champion is strictly better; None when either side is unmeasured."""
        if self.best is None or not math.isfinite(self.champion):
            return None
        if self.metric == "gini":
            return self.champion > self.best_value
        return self.champion < self.best_value


def compare_with_baselines(value: ValueBacktest) -> tuple[BaselineComparison, BaselineComparison]:
    """The champion against the best baseline by normalized Gini and by RMSE (each metric
    picks its own best baseline)."""
    scored = [b for b in value.baselines if b.reason is None]
    by_gini = [b for b in scored if math.isfinite(b.gini)]
    by_rmse = [b for b in scored if math.isfinite(b.rmse)]
    return (
        BaselineComparison("gini", value.gini, max(by_gini, key=lambda b: b.gini, default=None)),
        BaselineComparison("rmse", value.rmse, min(by_rmse, key=lambda b: b.rmse, default=None)),
    )


def comparison_sentence(value: ValueBacktest) -> str:
    """One sentence: does the champion beat the best baseline on Gini and on RMSE?"""
    gini, err = compare_with_baselines(value)

    def clause(c: BaselineComparison, metric: str, fmt: str) -> str:
        if c.best is None:
            return f"cannot be compared on {metric} (no baseline scored)"
        if c.beats is None:
            return f"cannot be compared on {metric} (the champion's is not measured)"
        verb = "beats" if c.beats else "does not beat"
        return (
            f"{verb} the best baseline on {metric} ({format(c.champion, fmt)} vs "
            f"{format(c.best_value, fmt)} for {label(c.best.predictor)})"
        )

    return (
        f"On the matured cohort the champion {clause(gini, 'normalized Gini', '.3f')} "
        f"and {clause(err, 'RMSE', '.2f')}."
    )
