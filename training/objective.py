"""The value model's search space and Optuna objective (XGBoost `reg:tweedie`).

The value model predicts E[max(CLV, 0)]: the label is clipped at 0 because the Tweedie
objective (a log link with compound Poisson-Gamma variance, 1 < p < 2) needs y >= 0 and models
the point mass at zero (customers who buy nothing) and the skewed positive part in one
distribution. Refund-heavy negative windows are rare and count as zero value.

Trials are compared on validation RMSE, which also drives early stopping and pruning: it is a
consistent scoring function for the mean, comparable across trials whatever the tuned power,
and it is the metric the evaluation and the kind choice use. (The Tweedie log-likelihood at a
fixed power 1.5, used before, is dominated by the many small values: on the demo data it
early-stopped at 3x the rounds, whose extra corrections to the offset hurt the older test
customers: test RMSE 179 against 161 when stopped on RMSE, same configuration.)

Data is prepared once (`TuningData`) and shared by every trial; the objective never reloads or
re-splits it. The value booster's `base_margin` (the log of the BG/NBD + Gamma-Gamma baseline,
clv.model.bundle) lives in the matrices, so every trial learns a correction to the same offset.

The kind of value model is chosen by evidence before tuning (`choose_value_model`): a Tweedie
booster on every row against a hurdle, P(purchase) from a `binary:logistic` booster times a
Tweedie booster of the value given a purchase (fitted on buyers only, with the same offset),
both with the same modest configuration (`COMPARISON_PARAMS`), early-stopped on validation and
compared by validation RMSE. Optuna then tunes the chosen kind's value booster (for a hurdle:
the value-given-purchase booster; the purchase classifier keeps fixed parameters).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import optuna
import xgboost as xgb
from optuna_integration import XGBoostPruningCallback

from clv.training.booster import MAX_BIN, BoosterParams
from clv.training.churn import CHURN_ROUNDS, fit_churn

SELECTION_METRIC = "rmse"
OBSERVATION_KEY = f"validation-{SELECTION_METRIC}"
EARLY_STOPPING_ROUNDS = 30
REPORT_EVERY = 10
"""Rounds between reports to the pruner: each report is a storage write and read."""
EvalsLog = dict[str, dict[str, list[float] | list[tuple[float, float]]]]


@dataclass(frozen=True)
class ValueParams:
    """Hyper-parameters of the value booster (XGBoost names where they differ: eta, lambda);
    the defaults are XGBoost's own, with 100 rounds (see DEFAULT_VALUE_PARAMS)."""

    max_depth: int = 6
    learning_rate: float = 0.3
    min_child_weight: float = 1.0
    subsample: float = 1.0
    colsample_bytree: float = 1.0
    reg_lambda: float = 1.0
    reg_alpha: float = 0.0
    tweedie_variance_power: float = 1.5
    num_boost_round: int = 100

    def booster_params(self, *, nthread: int, seed: int, offset: bool = False) -> BoosterParams:
        """XGBoost's parameters; with `offset`, base_score 1 (a log-link intercept of 0). XGBoost
        uses a row's base_margin in place of base_score, so this only keeps the stored config
        from showing an unused intercept (log mean y)."""
        extra: BoosterParams = {"base_score": 1.0} if offset else {}
        return {
            **extra,
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
"""XGBoost's defaults with the Tweedie objective and 100 rounds (the scikit-learn default);
the "default" model of the evaluation is fitted with them and WITHOUT the offset."""
COMPARISON_PARAMS = ValueParams(
    max_depth=4,
    learning_rate=0.05,
    min_child_weight=5.0,
    subsample=0.8,
    colsample_bytree=0.8,
    num_boost_round=1000,
)
"""The one configuration both value-model kinds are compared with (early-stopped)."""

ValueModelKind = Literal["tweedie", "hurdle"]


@dataclass(frozen=True)
class ObjectiveChoice:
    """Which value model kind is tuned and registered, and the validation evidence."""

    kind: ValueModelKind
    tweedie_rmse: float
    hurdle_rmse: float
    reason: str

    def as_evidence(self) -> dict[str, object]:
        """The choice and both kinds' validation RMSE (choices.json, evaluation.json)."""
        return {
            "kind": self.kind,
            "validation_rmse": {"tweedie": self.tweedie_rmse, "hurdle": self.hurdle_rmse},
            "reason": self.reason,
        }


def choose_value_model(
    *, tweedie_rmse: float, hurdle_rmse: float, min_gain_pct: float = 0.0
) -> ObjectiveChoice:
    """The kind with the lower validation RMSE; a hurdle must beat Tweedie by `min_gain_pct`
    percent (ties and a non-finite score go to Tweedie: one booster instead of two)."""
    if not np.isfinite(hurdle_rmse):
        return ObjectiveChoice("tweedie", tweedie_rmse, hurdle_rmse, "hurdle not scored")
    if not np.isfinite(tweedie_rmse):
        return ObjectiveChoice("hurdle", tweedie_rmse, hurdle_rmse, "tweedie not scored")
    gain = 100.0 * (tweedie_rmse - hurdle_rmse) / tweedie_rmse
    kind: ValueModelKind = "hurdle" if gain > min_gain_pct else "tweedie"
    return ObjectiveChoice(
        kind,
        tweedie_rmse,
        hurdle_rmse,
        f"validation RMSE tweedie {tweedie_rmse:.2f} vs hurdle {hurdle_rmse:.2f} "
        f"(hurdle gain {gain:+.2f}%, needs > {min_gain_pct:+.2f}%): {kind}",
    )


def suggest_value_params(trial: optuna.Trial) -> ValueParams:
    """The search space: common XGBoost ranges, held to shallow, slow, regularised trees.
    Chosen on the old protocol (docs/decisions/modelling-constants.md)."""
    return ValueParams(
        max_depth=trial.suggest_int("max_depth", 2, 6),
        learning_rate=trial.suggest_float("learning_rate", 0.01, 0.1, log=True),
        min_child_weight=trial.suggest_float("min_child_weight", 5.0, 100.0, log=True),
        subsample=trial.suggest_float("subsample", 0.5, 1.0),
        colsample_bytree=trial.suggest_float("colsample_bytree", 0.4, 1.0),
        reg_lambda=trial.suggest_float("reg_lambda", 0.1, 30.0, log=True),
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
    offset: bool = False
    """Whether the matrices carry a base_margin (see `ValueParams.booster_params`)."""

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
        offset_train: npt.NDArray[np.float64] | None = None,
        offset_valid: npt.NDArray[np.float64] | None = None,
    ) -> TuningData:
        names = list(feature_names)

        def matrix(
            x: npt.NDArray[np.float32],
            y: npt.NDArray[np.float64],
            offset: npt.NDArray[np.float64] | None,
            *,
            max_bin: int | None = None,
            ref: xgb.QuantileDMatrix | None = None,
        ) -> xgb.QuantileDMatrix:
            return xgb.QuantileDMatrix(
                x,
                label=y,
                base_margin=offset,
                feature_names=names,
                nthread=nthread,
                max_bin=max_bin,
                ref=ref,
            )

        # the validation matrix uses the training matrix's quantile cuts (`ref`)
        train = matrix(x_train, y_train, offset_train, max_bin=MAX_BIN)
        valid = matrix(x_valid, y_valid, offset_valid, ref=train)
        return cls(train=train, validation=valid, offset=offset_train is not None)


@dataclass(frozen=True)
class TuningArrays:
    """The tuning rows as plain arrays: what a tuning worker process receives (pickled), since
    XGBoost matrices do not cross processes; each worker builds its own `TuningData` once."""

    x_train: npt.NDArray[np.float32]
    y_train: npt.NDArray[np.float64]
    x_valid: npt.NDArray[np.float32]
    y_valid: npt.NDArray[np.float64]
    feature_names: tuple[str, ...]
    offset_train: npt.NDArray[np.float64] | None = None
    offset_valid: npt.NDArray[np.float64] | None = None

    def data(self, *, nthread: int) -> TuningData:
        return TuningData.from_arrays(
            self.x_train,
            self.y_train,
            self.x_valid,
            self.y_valid,
            feature_names=self.feature_names,
            nthread=nthread,
            offset_train=self.offset_train,
            offset_valid=self.offset_valid,
        )


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
    offset: bool = False,
) -> FittedValue:
    """Train the value booster; with `validation`, stop early on the selection metric."""
    evals = [(validation, "validation")] if validation is not None else []
    booster = xgb.train(
        params.booster_params(nthread=nthread, seed=seed, offset=offset),
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
    """Optuna objective: validation RMSE of one sampled configuration."""

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
            offset=self.data.offset,
        )
        trial.set_user_attr("best_iteration", fitted.best_iteration)
        return fitted.best_score


def default_pruner() -> optuna.pruners.BasePruner:
    """Median pruning after 3 complete trials and 20 rounds (reports every REPORT_EVERY)."""
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=20)


@dataclass(frozen=True)
class ValueRows:
    """A value model's rows: features, clipped labels and the log-baseline offset (or None)."""

    x: npt.NDArray[np.float32]
    y: npt.NDArray[np.float64]
    offset: npt.NDArray[np.float64] | None = None

    def take(self, rows: npt.NDArray[np.bool_] | npt.NDArray[np.int64]) -> ValueRows:
        return ValueRows(
            self.x[rows], self.y[rows], None if self.offset is None else self.offset[rows]
        )

    def matrix(
        self,
        feature_names: Sequence[str],
        *,
        nthread: int,
        label: npt.NDArray[np.float64] | None = None,
        offset: bool = True,
        ref: xgb.DMatrix | None = None,
    ) -> xgb.QuantileDMatrix:
        return xgb.QuantileDMatrix(
            self.x,
            label=self.y if label is None else label,
            base_margin=self.offset if offset else None,
            feature_names=list(feature_names),
            max_bin=MAX_BIN,
            ref=ref,
            nthread=nthread,
        )


@dataclass(frozen=True)
class ValueComparison:
    choice: ObjectiveChoice
    purchase_rounds: int
    """Early-stopped rounds of the hurdle's purchase classifier (reused when it is refitted)."""


def _purchase_classifier(
    train: ValueRows,
    valid: ValueRows | None,
    feature_names: Sequence[str],
    *,
    nthread: int,
    seed: int,
    rounds: int | None = None,
) -> xgb.Booster:
    """P(value > 0): the churn classifier's fixed parameters (clv.training.churn) on y > 0."""
    dtrain = train.matrix(
        feature_names, nthread=nthread, label=(train.y > 0).astype(np.float64), offset=False
    )
    dvalid = None
    if valid is not None:
        dvalid = valid.matrix(
            feature_names,
            nthread=nthread,
            label=(valid.y > 0).astype(np.float64),
            offset=False,
            ref=dtrain,
        )
    return fit_churn(dtrain, dvalid, nthread=nthread, seed=seed, rounds=rounds or CHURN_ROUNDS)


def compare_value_models(
    train: ValueRows,
    valid: ValueRows,
    feature_names: Sequence[str],
    *,
    nthread: int,
    seed: int,
    params: ValueParams = COMPARISON_PARAMS,
) -> ValueComparison:
    """Tweedie against hurdle, each with `params` and early-stopped on validation; scored by
    validation RMSE and decided by `choose_value_model`."""
    dtrain = train.matrix(feature_names, nthread=nthread)
    dvalid = valid.matrix(feature_names, nthread=nthread, ref=dtrain)
    has_offset = train.offset is not None
    tweedie = fit_value(
        params, dtrain, nthread=nthread, seed=seed, validation=dvalid, offset=has_offset
    ).booster
    pred_t = _predict(tweedie, valid, best=True)
    tweedie_rmse = float(np.sqrt(np.mean((pred_t - valid.y) ** 2)))

    buyers, valid_buyers = train.take(train.y > 0), valid.take(valid.y > 0)
    hurdle_rmse, purchase_rounds = float("nan"), 1
    if buyers.y.size >= 10 and valid_buyers.y.size >= 1 and 0 < buyers.y.size < train.y.size:
        d_buy = buyers.matrix(feature_names, nthread=nthread)
        d_vbuy = valid_buyers.matrix(feature_names, nthread=nthread, ref=d_buy)
        severity = fit_value(
            params, d_buy, nthread=nthread, seed=seed, validation=d_vbuy, offset=has_offset
        ).booster
        purchase = _purchase_classifier(train, valid, feature_names, nthread=nthread, seed=seed)
        purchase_rounds = purchase.num_boosted_rounds()
        p_buy = np.asarray(purchase.inplace_predict(valid.x), dtype=np.float64)
        pred_h = p_buy * _predict(severity, valid, best=True)
        hurdle_rmse = float(np.sqrt(np.mean((pred_h - valid.y) ** 2)))
    return ValueComparison(
        choose_value_model(tweedie_rmse=tweedie_rmse, hurdle_rmse=hurdle_rmse), purchase_rounds
    )


def _predict(
    booster: xgb.Booster, rows: ValueRows, *, best: bool = False
) -> npt.NDArray[np.float64]:
    """exp(offset + trees), up to the early-stopped best iteration when `best`."""
    end = int(booster.best_iteration) + 1 if best else 0
    pred = booster.inplace_predict(rows.x, iteration_range=(0, end), base_margin=rows.offset)
    return np.asarray(pred, dtype=np.float64)


def fit_value_model(
    kind: ValueModelKind,
    params: ValueParams,
    rows: ValueRows,
    feature_names: Sequence[str],
    *,
    purchase_rounds: int,
    nthread: int,
    seed: int,
) -> tuple[xgb.Booster, xgb.Booster | None]:
    """The value booster (with the offset) and, for a hurdle, the purchase classifier; the
    hurdle's value booster is fitted on buyers (y > 0) only."""
    has_offset = rows.offset is not None
    if kind == "tweedie":
        d = rows.matrix(feature_names, nthread=nthread)
        return fit_value(params, d, nthread=nthread, seed=seed, offset=has_offset).booster, None
    buyers = rows.take(rows.y > 0)
    value = fit_value(
        params,
        buyers.matrix(feature_names, nthread=nthread),
        nthread=nthread,
        seed=seed,
        offset=has_offset,
    ).booster
    purchase = _purchase_classifier(
        rows, None, feature_names, nthread=nthread, seed=seed, rounds=purchase_rounds
    )
    return value, purchase
