"""The recipe evaluated out of time: fitted at the test origin (the latest snapshot with a
complete label) and at up to `evaluation.backtest_origins` earlier origins, each fit scored on
its origin's snapshot beside every simple baseline (BG/NBD + Gamma-Gamma fitted on the origin's
histories, the naive rules of clv.model.naive, a default XGBoost). Nothing it freezes is refitted
on the scored rows, so the metrics describe what serving does."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from clv.core.contracts import BASELINE_PREDICTORS
from clv.core.settings import Settings
from clv.evaluation.metrics import ChurnMetrics, ValueMetrics, churn_metrics, value_metrics
from clv.evaluation.protocol import Origins, evaluation_origins
from clv.model.baseline import SnapshotBaselines, baseline_clv
from clv.model.bundle import ClvModel
from clv.model.intervals import IntervalMetrics, interval_metrics
from clv.model.naive import NAIVE_RULES, naive_predictions
from clv.training.dataset import Progress, TrainingData, value_target
from clv.training.labels import PAST_COLUMNS
from clv.training.recipe import Recipe, fit_at
from clv.training.study import TuningRequest

BASELINES: tuple[str, ...] = BASELINE_PREDICTORS
"""The simple predictors every evaluation scores: BG/NBD + Gamma-Gamma and the naive rules
(the contract's names, which the `baselines` gate reads)."""


@dataclass(frozen=True)
class OriginEvaluation:
    """Every predictor scored on one origin's snapshot, labels after it (out of time)."""

    origin: pd.Timestamp
    embargoed: bool
    value: dict[str, ValueMetrics]
    """By predictor: model (the served recipe), baseline (BG/NBD + Gamma-Gamma fitted on the
    origin's histories), last_horizon and run_rate (clv.model.naive), default (XGBoost with
    default parameters)."""
    churn: ChurnMetrics
    churn_raw: ChurnMetrics
    interval: IntervalMetrics
    interval_raw: IntervalMetrics
    predictions: dict[str, np.ndarray]
    rows: pd.DataFrame
    churn_scored: tuple[np.ndarray, np.ndarray, np.ndarray]
    """The rows with a churn label and a churn probability: (label, calibrated, raw)."""
    churn_value: np.ndarray = field(default_factory=lambda: np.empty(0))
    """The served clv on the `churn_scored` rows (reliability per value segment)."""

    @property
    def best_baseline(self) -> str:
        """The simple baseline with the highest normalized Gini here."""
        return max(BASELINES, key=lambda k: _finite(self.value[k].gini))

    def summary(self) -> dict[str, object]:
        return {
            "origin": self.origin.date().isoformat(),
            "embargoed": self.embargoed,
            "rows": len(self.rows),
            **{k: v.as_dict() for k, v in self.value.items()},
            "churn": self.churn.as_dict(),
            "interval": self.interval.as_dict(),
        }


def _finite(value: float) -> float:
    return value if np.isfinite(value) else -np.inf


def origins_for(settings: Settings, data: TrainingData) -> Origins:
    """The test origin and the backtest origins of this training frame."""
    e = settings.evaluation
    return evaluation_origins(
        data.frame,
        horizon_days=settings.model.horizon_days,
        backtests=e.backtest_origins,
        spacing_days=e.origin_spacing_days,
    )


def origin_rows(data: TrainingData, origin: pd.Timestamp) -> pd.DataFrame:
    """The origin snapshot's rows with a complete CLV label (the out-of-time test set)."""
    frame = data.frame
    sel = (frame["event_timestamp"] == origin) & frame["clv_label"].notna()
    return frame.loc[sel].reset_index(drop=True)


def served_origin(settings: Settings, data: TrainingData) -> pd.Timestamp:
    """Where the registered model's recipe is fitted: the end of the log (every label known);
    for a frame without one, the latest snapshot plus the longer label window."""
    if data.data_end is not None:
        return pd.Timestamp(data.data_end)
    m = settings.model
    latest = pd.Timestamp(data.frame["event_timestamp"].max())
    return latest + pd.Timedelta(days=max(m.horizon_days, m.churn_window_days))


def evaluate_at_origins(
    settings: Settings,
    data: TrainingData,
    origins: Origins,
    offsets: SnapshotBaselines | None,
    *,
    tuning: TuningRequest,
    say: Progress,
) -> tuple[list[Recipe], list[OriginEvaluation]]:
    """The recipe fitted at every origin (test origin first) and scored on that snapshot."""
    evaluations: list[OriginEvaluation] = []
    recipes: list[Recipe] = []
    for i, origin in enumerate(origins.all):
        label = "test" if i == 0 else f"backtest {i}/{len(origins.backtests)}"
        say(f"{label}: the recipe as fitted on {origin.date()}, scored on that snapshot")
        recipe = fit_at(settings, data, origin, offsets, tuning=tuning, progress=say)
        recipes.append(recipe)
        evaluations.append(evaluate_recipe(settings, recipe, origin_rows(data, origin), offsets))
        if i == 0 and not recipe.split.embargoed:
            say(f"warning: evaluation NOT embargoed: {recipe.split.reason}")
    return recipes, evaluations


def evaluate_recipe(
    settings: Settings,
    recipe: Recipe,
    test: pd.DataFrame,
    offsets: SnapshotBaselines | None,
) -> OriginEvaluation:
    """The recipe's served model, its default booster and every baseline on `test` (one
    snapshot's rows with complete labels, at the recipe's origin)."""
    model = recipe.model
    x_te, y_te = model.matrix(test), value_target(test)
    pred = model.predict_matrix(x_te)
    predictions = _predictions(settings, recipe, test, x_te, pred["clv"], offsets)
    # Without a churn booster (no two classes, or no churn label known at validation) the
    # churn metrics are NaN, and the gates say there is no eval.churn.ece.
    has_churn = test["churn_label"].notna().to_numpy() & np.isfinite(pred["churn_probability"])
    y_churn = test["churn_label"].to_numpy(dtype=np.float64)[has_churn]
    raw_prob = _raw_churn(model, x_te)[has_churn]
    return OriginEvaluation(
        origin=recipe.split.origin,
        embargoed=recipe.split.embargoed,
        value={k: value_metrics(y_te, v) for k, v in predictions.items()},
        churn=churn_metrics(y_churn, pred["churn_probability"][has_churn]),
        churn_raw=churn_metrics(y_churn, raw_prob),
        interval=interval_metrics(y_te, pred["clv_p10"], pred["clv_p90"]),
        interval_raw=interval_metrics(
            y_te,
            np.asarray(model.quantiles["clv_p10"].inplace_predict(x_te)),
            np.asarray(model.quantiles["clv_p90"].inplace_predict(x_te)),
        ),
        predictions=predictions,
        rows=test,
        churn_scored=(y_churn, pred["churn_probability"][has_churn], raw_prob),
        churn_value=pred["clv"][has_churn],
    )


def _predictions(
    settings: Settings,
    recipe: Recipe,
    test: pd.DataFrame,
    x_te: np.ndarray,
    served: np.ndarray,
    offsets: SnapshotBaselines | None,
) -> dict[str, np.ndarray]:
    """Every predictor's clv on `test`: the served recipe (`served`), the BG/NBD + Gamma-Gamma
    fit of the origin's histories, the naive rules (NaN without the past margins) and the
    default booster."""
    m = settings.model
    base_fit = offsets.fits.get(recipe.split.origin) if offsets is not None else None
    return {
        "model": served,
        "baseline": baseline_clv(
            base_fit,
            test,
            horizon_days=m.horizon_days,
            annual_discount_rate=m.annual_discount_rate,
        )
        if base_fit is not None
        else np.full(len(test), np.nan),
        **(
            naive_predictions(
                test, horizon_days=m.horizon_days, annual_discount_rate=m.annual_discount_rate
            )
            if all(c in test.columns for c in PAST_COLUMNS)
            else {k: np.full(len(test), np.nan) for k in NAIVE_RULES}
        ),
        "default": np.asarray(recipe.default.inplace_predict(x_te), dtype=np.float64),
    }


def _raw_churn(model: ClvModel, x: np.ndarray) -> np.ndarray:
    """Uncalibrated churn probabilities (the booster's own sigmoid)."""
    if model.churn is None:
        return np.full(x.shape[0], np.nan)
    return np.asarray(model.churn.inplace_predict(x), dtype=np.float64)


def backtest_table(evaluations: list[OriginEvaluation]) -> pd.DataFrame:
    """One row per origin and predictor: its value metrics, and the served recipe's churn
    ECE and interval coverage on the model's rows."""
    rows = []
    for e in evaluations:
        for who, metrics in e.value.items():
            row: dict[str, object] = {
                "origin": e.origin.date().isoformat(),
                "embargoed": e.embargoed,
                "predictor": who,
                **metrics.as_dict(),
            }
            if who == "model":
                row["churn_ece"] = e.churn.ece
                row["coverage_p10_p90"] = e.interval.coverage_p10_p90
            rows.append(row)
    return pd.DataFrame(rows)


def backtest_aggregate(table: pd.DataFrame) -> dict[str, float]:
    """Over every origin: each predictor's mean and worst Gini, RMSE and |bias| %, and how
    often the model beat the best baseline on Gini and on RMSE."""
    out: dict[str, float] = {"origins": float(table["origin"].nunique())}
    for who, rows in table.groupby("predictor"):
        out[f"{who}_gini_mean"] = float(rows["gini"].mean())
        out[f"{who}_gini_min"] = float(rows["gini"].min())
        out[f"{who}_rmse_mean"] = float(rows["rmse"].mean())
        out[f"{who}_rmse_max"] = float(rows["rmse"].max())
        out[f"{who}_abs_bias_pct_max"] = float(rows["bias_pct"].abs().max())
    wins_gini = wins_rmse = 0
    for _origin, rows in table.groupby("origin"):
        by = rows.set_index("predictor")
        base = by.loc[[b for b in BASELINES if b in by.index]]
        wins_gini += int(by.loc["model", "gini"] > base["gini"].max())
        wins_rmse += int(by.loc["model", "rmse"] < base["rmse"].min())
    out["model_beats_baselines_gini"] = float(wins_gini)
    out["model_beats_baselines_rmse"] = float(wins_rmse)
    return out
