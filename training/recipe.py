"""The recipe, fitted at an origin from the rows known there (clv.evaluation.protocol):
Tweedie vs hurdle and an Optuna study on an embargoed train / validation split
(clv.training.study); churn and quantile boosters early-stopped on validation, the value blend
and level, the churn calibration and the interval scales chosen there from train-only fits
(clv.training.choices); then every booster refitted with those rounds on every row known at the
origin, the BG/NBD + Gamma-Gamma offset parameters and the level frozen at the anchor snapshot
(clv.training.final)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from clv.core.settings import Settings
from clv.evaluation.protocol import RecipeSplit, split_at
from clv.model.baseline import SnapshotBaselines
from clv.model.bundle import ClvModel
from clv.training.card import card_for, encoder
from clv.training.choices import ValidationChoices, choose_on_validation
from clv.training.dataset import Progress, TrainingData, value_target
from clv.training.final import final_model
from clv.training.offsets import offset_fn
from clv.training.refit import RefitBackend
from clv.training.study import TunedValue, TuningRequest, tune_value_model

if TYPE_CHECKING:
    import pandas as pd
    import xgboost as xgb

    from clv.training.objective import ValueRows


@dataclass
class Recipe:
    """One fit of the recipe at an origin: the model it serves and what it was chosen on."""

    split: RecipeSplit
    model: ClvModel
    default: xgb.Booster
    """XGBoost's default value booster (the `default` predictor)."""
    tuned: TunedValue
    chosen: ValidationChoices
    refit_report: dict[str, str | int | float]


def fit_recipe(
    settings: Settings,
    data: TrainingData,
    split: RecipeSplit,
    offsets: SnapshotBaselines | None,
    *,
    tuning: TuningRequest,
    refit_backend: RefitBackend | None = None,
    progress: Progress | None = None,
) -> Recipe:
    """The whole recipe at `split.origin`, from the rows known then: Tweedie vs hurdle and
    Optuna on train / validation, churn and quantile boosters early-stopped on validation;
    the blend and level, the churn calibration and the interval scales chosen on validation
    with the train-only fits; then the final boosters on every known row with those rounds,
    the baseline parameters and the level frozen at the anchor snapshot."""
    say = progress or (lambda _msg: None)
    names = list(data.feature_names)
    enc = encoder(card_for(settings, data, split.train))
    train, valid = split_rows(settings, enc, split, offsets)
    tuned = tune_value_model(settings, split, train, valid, names, tuning=tuning, say=say)
    chosen = choose_on_validation(settings, split, offsets, enc, train, tuned, say=say)
    default = default_booster(settings, train, valid, names)
    model, refit_report = final_model(
        settings, data, split, offsets, tuned, chosen, backend=refit_backend
    )
    return Recipe(split, model, default, tuned, chosen, refit_report)


def split_at_origin(settings: Settings, data: TrainingData, origin: pd.Timestamp) -> RecipeSplit:
    """What the recipe fitted at `origin` sees (clv.evaluation.protocol.split_at)."""
    m = settings.model
    return split_at(
        data.frame, origin, horizon_days=m.horizon_days, churn_window_days=m.churn_window_days
    )


def fit_at(
    settings: Settings,
    data: TrainingData,
    origin: pd.Timestamp,
    offsets: SnapshotBaselines | None,
    *,
    tuning: TuningRequest,
    refit_backend: RefitBackend | None = None,
    progress: Progress | None = None,
) -> Recipe:
    """The recipe fitted at `origin`, from what it sees there (`split_at_origin`)."""
    split = split_at_origin(settings, data, origin)
    return fit_recipe(
        settings,
        data,
        split,
        offsets,
        tuning=tuning,
        refit_backend=refit_backend,
        progress=progress,
    )


def split_rows(
    settings: Settings, enc: ClvModel, split: RecipeSplit, offsets: SnapshotBaselines | None
) -> tuple[ValueRows, ValueRows]:
    """The train and validation rows as the value model's matrices, clipped labels and
    per-row offsets (each row under its own snapshot's baseline fit)."""
    from clv.training.objective import ValueRows

    offset = offset_fn(settings, offsets)

    def offset_of(frame: pd.DataFrame) -> np.ndarray | None:
        return offset(frame) if offset is not None else None

    train = ValueRows(enc.matrix(split.train), value_target(split.train), offset_of(split.train))
    x_va, y_va = enc.matrix(split.validation), value_target(split.validation)
    return train, ValueRows(x_va, y_va, offset_of(split.validation))


def default_booster(
    settings: Settings, train: ValueRows, valid: ValueRows, names: list[str]
) -> xgb.Booster:
    """XGBoost's default value booster on train and validation, without the offset: the
    `default` predictor every evaluation scores beside the tuned one."""
    import xgboost as xgb

    from clv.training.objective import DEFAULT_VALUE_PARAMS, fit_value

    nthread, seed = settings.tuning.nthread, settings.tuning.seed
    x_fit = np.concatenate([train.x, valid.x])
    y_fit = np.concatenate([train.y, valid.y])
    d_default = xgb.QuantileDMatrix(x_fit, label=y_fit, feature_names=names, nthread=nthread)
    return fit_value(DEFAULT_VALUE_PARAMS, d_default, nthread=nthread, seed=seed).booster
