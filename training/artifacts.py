"""The files a training run logs beside its record: the evaluation tables and plots of the test
origin (evaluation/), the reference sample drift is measured against, the model's input example."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from clv.evaluation.calibration import reliability_by_segment, reliability_table
from clv.evaluation.metrics import decile_table
from clv.evaluation.tables import metric_table as evaluation_metric_table
from clv.evaluation.tables import slice_metrics
from clv.model.bundle import ClvModel
from clv.training.dataset import value_target
from clv.training.labels import KEYS

if TYPE_CHECKING:
    import optuna

    from clv.training.backtest import OriginEvaluation
    from clv.training.mlflow_io import TrainingRun

REFERENCE_ROWS = 20_000
EXPLAIN_ROWS = 1_000
"""Test rows whose per-feature SHAP contributions are logged with the run."""
VALUE_SEGMENTS = ("low value", "middle value", "high value")


def log_evaluation_files(
    mrun: TrainingRun,
    test: OriginEvaluation,
    backtests: pd.DataFrame,
    evaluated: ClvModel,
    study: optuna.Study,
) -> None:
    """Metric tables, slices, deciles, reliability, contributions and plots under evaluation/."""
    from clv.training import plots

    y_te = value_target(test.rows)
    y_churn, prob, raw_prob = test.churn_scored
    side_by_side = {k: v for k, v in test.predictions.items() if np.isfinite(v).any()}
    deciles = {k: decile_table(y_te, v) for k, v in side_by_side.items()}
    reliability = {
        "raw": reliability_table(y_churn, raw_prob),
        "calibrated": reliability_table(y_churn, prob),
    }
    with tempfile.TemporaryDirectory(prefix="clv-eval-") as tmp:
        out = Path(tmp)
        evaluation_metric_table({k: v.as_dict() for k, v in test.value.items()}).to_csv(
            out / "metrics.csv"
        )
        backtests.to_csv(out / "backtests.csv", index=False)
        slice_metrics(test.rows, y_te, side_by_side).to_csv(out / "slices.csv", index=False)
        for name, frame in deciles.items():
            frame.to_csv(out / f"deciles_{name}.csv", index=False)
        for name, frame in reliability.items():
            frame.to_csv(out / f"reliability_{name}.csv", index=False)
        by_value = reliability_by_value(test)
        if by_value is not None:
            by_value.to_csv(out / "reliability_by_value.csv", index=False)
        sample = test.rows.head(EXPLAIN_ROWS)
        contrib = evaluated.contributions(sample)
        contrib.insert(0, "customer_id", sample["customer_id"].to_numpy())
        contrib.to_parquet(out / "contributions_test_sample.parquet", index=False)
        plots.decile_chart(deciles, out / "decile_chart.png")
        plots.reliability_diagram(reliability, out / "reliability_diagram.png")
        plots.optuna_history(study, out / "optuna_history.png")
        mrun.log_files(out, artifact_path="evaluation")


def reliability_by_value(test: OriginEvaluation) -> pd.DataFrame | None:
    """The calibrated churn probability's reliability within terciles of the served clv."""
    y_churn, prob, _raw = test.churn_scored
    value = test.churn_value
    if value.size != y_churn.size or value.size < 10 * len(VALUE_SEGMENTS):
        return None
    ranks = pd.Series(value).rank(method="first")
    segments = pd.qcut(ranks, len(VALUE_SEGMENTS), labels=list(VALUE_SEGMENTS))
    return reliability_by_segment(y_churn, prob, segments)


def reference_sample(
    frame: pd.DataFrame, model: ClvModel, names: list[str], *, seed: int
) -> pd.DataFrame:
    """Up to REFERENCE_ROWS training rows: keys, features, labels and the model's predictions."""
    rows = frame
    if len(rows) > REFERENCE_ROWS:
        rows = rows.sample(n=REFERENCE_ROWS, random_state=seed)
    cols = [*KEYS, *names, "clv_label", "churn_label"]
    sample = rows[cols].reset_index(drop=True)
    preds = model.predict(sample)
    return pd.concat([sample, preds], axis=1)


def input_example(
    frame: pd.DataFrame, names: list[str], categorical: tuple[str, ...], n: int = 5
) -> pd.DataFrame:
    """A few feature rows for the logged model's signature, preferring rows without nulls.

    Numeric features are cast to float64 and categorical ones to text, so that the signature
    accepts missing values (an integer column in the signature would reject NaN when served).
    """
    feats = frame[names]
    full = feats.loc[feats.notna().all(axis=1)]
    example = (full if len(full) >= n else feats).head(n).reset_index(drop=True)
    return pd.DataFrame(
        {
            name: (
                example[name].astype("string").astype(object)
                if name in categorical
                else pd.to_numeric(example[name], errors="coerce").astype("float64")
            )
            for name in names
        }
    )
