"""The quantile boosters behind the [P10, P90] interval: XGBoost's pinball loss with fixed,
modest parameters (docs/decisions/modelling-constants.md), early-stopped on validation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clv.training.booster import BoosterParams

if TYPE_CHECKING:
    import xgboost as xgb

QUANTILE_ROUNDS = 1000


def quantile_params(alpha: float, *, nthread: int, seed: int) -> BoosterParams:
    """The booster parameters of quantile `alpha` (shared by the validation and final fits)."""
    return {
        "objective": "reg:quantileerror",
        "quantile_alpha": alpha,
        "tree_method": "hist",
        "eval_metric": "quantile",
        "max_depth": 4,
        "eta": 0.05,
        "min_child_weight": 5.0,
        "subsample": 0.8,
        "nthread": nthread,
        "seed": seed,
        "verbosity": 0,
    }


def fit_quantile(
    dtrain: xgb.DMatrix,
    alpha: float,
    *,
    nthread: int,
    seed: int,
    rounds: int = QUANTILE_ROUNDS,
    dvalid: xgb.DMatrix | None = None,
) -> xgb.Booster:
    """One quantile booster (pinball loss); with `dvalid`, early-stopped on its pinball loss."""
    import xgboost as xgb

    booster = xgb.train(
        quantile_params(alpha, nthread=nthread, seed=seed),
        dtrain,
        num_boost_round=rounds,
        evals=[(dvalid, "validation")] if dvalid is not None else None,
        early_stopping_rounds=30 if dvalid is not None else None,
        verbose_eval=False,
    )
    return booster[: booster.best_iteration + 1] if dvalid is not None else booster
