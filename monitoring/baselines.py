"""The simple baselines training scores beside the model, rebuilt on a matured cohort's rows.

The same predictors as `clv.training.backtest.evaluate_recipe`: `baseline`, BG/NBD + Gamma-Gamma
fitted on the snapshot's own RFM features (clv.model.baseline; features only, no label, so no
leakage), and the naive rules `last_horizon` and `run_rate` (clv.model.naive) on the margins
the log holds strictly before the snapshot (clv.training.labels.past_margins).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd

from clv.inputs.identities import IdentityMap
from clv.model.baseline import OFFSET_COLUMNS, OFFSET_FIT_ROWS, baseline_clv, fit_baseline
from clv.model.naive import NAIVE_RULES, naive_predictions
from clv.training.labels import past_margins

FloatArray = npt.NDArray[np.float64]
BASELINES = ("baseline", *NAIVE_RULES)
"""Every simple predictor the matured value cohort scores beside the champion."""
LABELS = {"baseline": "BG/NBD + Gamma-Gamma"}
"""How a sentence names a predictor (the naive rules by their own names)."""


def label(predictor: str) -> str:
    """The predictor's name in a sentence a reviewer reads."""
    return LABELS.get(predictor, predictor)


@dataclass(frozen=True)
class BaselinePredictions:
    """Per simple baseline, its prediction for each row of the cohort, or why it has none."""

    predictions: Mapping[str, FloatArray] = field(default_factory=dict)
    unavailable: Mapping[str, str] = field(default_factory=dict)
    """Baseline -> the reason it could not predict (a failed fit, missing features)."""


def cohort_baselines(
    frame: pd.DataFrame,
    transactions: pd.DataFrame,
    *,
    horizon_days: int,
    annual_discount_rate: float,
    margin_rate: float,
    seed: int,
    identities: IdentityMap | None = None,
) -> BaselinePredictions:
    """Every simple baseline's CLV over (t, t + horizon] for the rows of one snapshot's frame
    (customer_id, event_timestamp and the `clv_v1` features), in row order; `identities`: the
    log's aliases count for their customer, as in the features."""
    predictions: dict[str, FloatArray] = {}
    unavailable: dict[str, str] = {}
    missing = [c for c in OFFSET_COLUMNS if c not in frame.columns]
    if missing:
        unavailable["baseline"] = f"not scored: the features lack {', '.join(missing)}"
    else:
        try:
            fit = fit_baseline(frame, margin_rate=margin_rate, max_rows=OFFSET_FIT_ROWS, seed=seed)
        except ValueError as err:  # too few repeat buyers for Gamma-Gamma
            unavailable["baseline"] = f"not scored: the BG/NBD + Gamma-Gamma fit failed ({err})"
        else:
            predictions["baseline"] = baseline_clv(
                fit, frame, horizon_days=horizon_days, annual_discount_rate=annual_discount_rate
            )
    past = past_margins(
        transactions,
        frame[["customer_id", "event_timestamp"]],
        horizon_days=horizon_days,
        margin_rate=margin_rate,
        identities=identities,
    )
    naive = naive_predictions(
        past, horizon_days=horizon_days, annual_discount_rate=annual_discount_rate
    )
    predictions.update(naive)
    return BaselinePredictions(predictions, unavailable)
