"""The evaluation tables: metrics side by side for the tuned model, the baseline and the default
model, overall and per slice (signup cohort, acquisition channel), as plain frames."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pandas as pd

from clv.evaluation.metrics import value_metrics

SLICE_COLUMNS = ("signup_cohort", "acquisition_channel")
MIN_SLICE_ROWS = 30


def slice_key(frame: pd.DataFrame, column: str) -> pd.Series:
    """The slice a row belongs to; signup cohorts (YYYY-MM) are grouped by year."""
    values = frame[column].astype("string").fillna("unknown")
    if column == "signup_cohort":
        return values.str.slice(0, 4)
    return values


def slice_metrics(
    frame: pd.DataFrame,
    y: npt.ArrayLike,
    predictions: Mapping[str, npt.ArrayLike],
    *,
    columns: tuple[str, ...] = SLICE_COLUMNS,
) -> pd.DataFrame:
    """Long table: slice column, slice value, predictor, then every value metric.

    Slices with fewer than MIN_SLICE_ROWS rows are left out (their metrics are noise).
    """
    a = np.asarray(y, dtype=np.float64)
    preds = {k: np.asarray(v, dtype=np.float64) for k, v in predictions.items()}
    rows: list[dict[str, object]] = []
    for column in columns:
        if column not in frame.columns:
            continue
        keys = slice_key(frame, column).to_numpy()
        for value in sorted(set(keys)):
            sel = keys == value
            if sel.sum() < MIN_SLICE_ROWS:
                continue
            for name, pred in preds.items():
                rows.append(
                    {
                        "slice": column,
                        "value": str(value),
                        "predictor": name,
                        **value_metrics(a[sel], pred[sel]).as_dict(),
                    }
                )
    return pd.DataFrame(rows)


def metric_table(metrics: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """Metric name x predictor, for printing and logging."""
    return pd.DataFrame({k: dict(v) for k, v in metrics.items()})
