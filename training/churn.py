"""The churn classifier: XGBoost `binary:logistic` with fixed, conservative parameters.

Tuning and probability calibration of this model are a later step; it is early-stopped on the
validation snapshot's log-loss so that it does not over-fit.
"""

from __future__ import annotations

import xgboost as xgb

from clv.training.booster import MAX_BIN, BoosterParams

CHURN_ROUNDS = 500
CHURN_EARLY_STOPPING = 30


def churn_params(*, nthread: int, seed: int) -> BoosterParams:
    return {
        "objective": "binary:logistic",
        "tree_method": "hist",
        "max_bin": MAX_BIN,
        "eval_metric": "logloss",
        "max_depth": 4,
        "eta": 0.05,
        "min_child_weight": 5.0,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "nthread": nthread,
        "seed": seed,
        "verbosity": 0,
    }


def fit_churn(
    dtrain: xgb.DMatrix,
    dvalid: xgb.DMatrix | None = None,
    *,
    nthread: int,
    seed: int,
    rounds: int = CHURN_ROUNDS,
) -> xgb.Booster:
    """Fit on train; with `dvalid`, stop early on its log-loss and keep the best trees only."""
    booster = xgb.train(
        churn_params(nthread=nthread, seed=seed),
        dtrain,
        num_boost_round=rounds,
        evals=[(dvalid, "validation")] if dvalid is not None else None,
        early_stopping_rounds=CHURN_EARLY_STOPPING if dvalid is not None else None,
        verbose_eval=False,
    )
    if dvalid is None:
        return booster
    # Drop the trees after the best iteration so that every predictor sees the same model.
    return booster[: booster.best_iteration + 1]
