"""The value model's search space and Optuna objective (XGBoost `reg:tweedie`).

The value model predicts E[max(CLV, 0)]: the label is clipped at 0 because the Tweedie
objective (a log link with compound Poisson-Gamma variance, 1 < p < 2) needs y >= 0 and models
the point mass at zero (customers who buy nothing) and the skewed positive part in one
distribution. Refund-heavy negative windows are rare and count as zero value.

Trials are compared on the validation Tweedie negative log-likelihood at a FIXED power 1.5
(`tweedie-nloglik@1.5`): the tuned power changes the training loss, so each trial's own loss
is not comparable across trials, while any Tweedie deviance with 1 <= p <= 2 is a consistent
scoring function for the mean. The same metric drives early stopping and pruning.

Data is prepared once (`TuningData`) and shared by every trial; the objective never reloads or
re-splits it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
import optuna
import xgboost as xgb
from optuna_integration import XGBoostPruningCallback

SELECTION_METRIC = "tweedie-nloglik@1.5"
OBSERVATION_KEY = f"validation-{SELECTION_METRIC}"
EARLY_STOPPING_ROUNDS = 30
REPORT_EVERY = 10
"""Rounds between reports to the pruner: each report is a storage write and read."""
MAX_BIN = 256

BoosterParams = dict[str, float | int | str]
EvalsLog = dict[str, dict[str, list[float] | list[tuple[float, float]]]]


@dataclass(frozen=True)
class ValueParams:
    """Hyper-parameters of the value booster (XGBoost names where they differ: eta, lambda)."""

    max_depth: int = 6
    learning_rate: float = 0.3
    min_child_weight: float = 1.0
    subsample: float = 1.0
    colsample_bytree: float = 1.0
    reg_lambda: float = 1.0
    reg_alpha: float = 0.0
    tweedie_variance_power: float = 1.5
    num_boost_round: int = 100

    def booster_params(self, *, nthread: int, seed: int) -> BoosterParams:
        return {
            "objective": "reg:tweedie",
            "tree_method": "hist",
            "max_bin": MAX_BIN,
            "eval_metric": SELECTION_METRIC,
            "max_depth": self.max_depth,
            "eta": self.learning_rate,
            "min_child_weight": self.min_child_weight,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "lambda": self.reg_lambda,
            "alpha": self.reg_alpha,
            "tweedie_variance_power": self.tweedie_variance_power,
            "nthread": nthread,
            "seed": seed,
            "verbosity": 0,
        }

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


DEFAULT_VALUE_PARAMS = ValueParams()
"""XGBoost's defaults with the Tweedie objective and 100 rounds (the scikit-learn default)."""


def suggest_value_params(trial: optuna.Trial) -> ValueParams:
    """The search space (ranges follow common XGBoost tuning practice)."""
    return ValueParams(
        max_depth=trial.suggest_int("max_depth", 2, 10),
        learning_rate=trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        min_child_weight=trial.suggest_float("min_child_weight", 0.5, 50.0, log=True),
        subsample=trial.suggest_float("subsample", 0.5, 1.0),
        colsample_bytree=trial.suggest_float("colsample_bytree", 0.4, 1.0),
        reg_lambda=trial.suggest_float("reg_lambda", 1e-3, 30.0, log=True),
        reg_alpha=trial.suggest_float("reg_alpha", 1e-3, 10.0, log=True),
        tweedie_variance_power=trial.suggest_float("tweedie_variance_power", 1.05, 1.95),
        num_boost_round=trial.suggest_int("num_boost_round", 100, 1000, step=50),
    )


def params_from_trial(values: dict[str, object]) -> ValueParams:
    """ValueParams from a trial's `params` mapping (e.g. `study.best_params`)."""
    fields = ValueParams.__dataclass_fields__
    return ValueParams(**{k: v for k, v in values.items() if k in fields})  # type: ignore[arg-type]


@dataclass(frozen=True)
class TuningData:
    """Train and validation matrices, built once per study (clipped value labels)."""

    train: xgb.DMatrix
    validation: xgb.DMatrix

    @classmethod
    def from_arrays(
        cls,
        x_train: npt.NDArray[np.float32],
        y_train: npt.NDArray[np.float64],
        x_valid: npt.NDArray[np.float32],
        y_valid: npt.NDArray[np.float64],
        *,
        feature_names: Sequence[str],
        nthread: int,
    ) -> TuningData:
        names = list(feature_names)
        train = xgb.QuantileDMatrix(
            x_train, label=y_train, feature_names=names, max_bin=MAX_BIN, nthread=nthread
        )
        valid = xgb.QuantileDMatrix(
            x_valid, label=y_valid, feature_names=names, ref=train, nthread=nthread
        )
        return cls(train=train, validation=valid)


@dataclass(frozen=True)
class FittedValue:
    booster: xgb.Booster
    best_iteration: int
    best_score: float


def fit_value(
    params: ValueParams,
    dtrain: xgb.DMatrix,
    *,
    nthread: int,
    seed: int,
    validation: xgb.DMatrix | None = None,
    callbacks: Sequence[xgb.callback.TrainingCallback] = (),
) -> FittedValue:
    """Train the value booster; with `validation`, stop early on the selection metric."""
    evals = [(validation, "validation")] if validation is not None else []
    booster = xgb.train(
        params.booster_params(nthread=nthread, seed=seed),
        dtrain,
        num_boost_round=params.num_boost_round,
        evals=evals,
        early_stopping_rounds=EARLY_STOPPING_ROUNDS if validation is not None else None,
        verbose_eval=False,
        callbacks=list(callbacks) or None,
    )
    if validation is None:
        return FittedValue(booster, params.num_boost_round - 1, float("nan"))
    return FittedValue(booster, int(booster.best_iteration), float(booster.best_score))


class SparsePruningCallback(XGBoostPruningCallback):  # type: ignore[misc]
    """Optuna's XGBoost pruning callback, reporting every `every` rounds instead of each one.

    With a persistent (SQLite) study every report and pruning check is a database round trip
    (~10 ms), which on small data costs more than the boosting round itself.
    """

    def __init__(self, trial: optuna.Trial, observation_key: str, *, every: int) -> None:
        super().__init__(trial, observation_key)
        self._every = every

    def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: EvalsLog) -> bool:
        if epoch % self._every:
            return False
        return bool(super().after_iteration(model, epoch, evals_log))


class ValueObjective:
    """Optuna objective: validation `tweedie-nloglik@1.5` of one sampled configuration."""

    def __init__(self, data: TuningData, *, nthread: int, seed: int) -> None:
        self.data = data
        self.nthread = nthread
        self.seed = seed

    def __call__(self, trial: optuna.Trial) -> float:
        params = suggest_value_params(trial)
        fitted = fit_value(
            params,
            self.data.train,
            nthread=self.nthread,
            seed=self.seed,
            validation=self.data.validation,
            callbacks=[SparsePruningCallback(trial, OBSERVATION_KEY, every=REPORT_EVERY)],
        )
        trial.set_user_attr("best_iteration", fitted.best_iteration)
        return fitted.best_score
