"""The recipe's value booster tuned on an embargoed train / validation split: Tweedie against
hurdle (clv.training.objective.compare_value_models), then one seeded Optuna study of the chosen
kind, in this process or in `workers` processes (clv.training.tuning)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from clv.core.errors import DataError
from clv.core.settings import Settings
from clv.evaluation.protocol import RecipeSplit
from clv.training.dataset import Progress

if TYPE_CHECKING:
    import optuna

    from clv.training.mlflow_io import TrialLogger
    from clv.training.objective import (
        ObjectiveChoice,
        TuningArrays,
        ValueComparison,
        ValueParams,
        ValueRows,
    )
    from clv.training.tuning import ParallelOutcome


@dataclass(frozen=True)
class TuningRequest:
    """How one recipe fit tunes: trials, processes, limits and where trials are logged."""

    trials: int
    workers: int
    timeout: float | None
    pruner: optuna.pruners.BasePruner
    logger: TrialLogger
    study_prefix: str


@dataclass(frozen=True)
class TunedValue:
    """The value model's kind (and the comparison it was chosen on) and its tuned parameters."""

    comparison: ValueComparison
    study: optuna.Study
    final_params: ValueParams
    counts: dict[str, int]
    """Trials by state (complete, pruned, fail, ...)."""
    tune_rows: int
    tune_customers: int
    parallel: ParallelOutcome | None = None

    @property
    def choice(self) -> ObjectiveChoice:
        """The value model's kind and the validation evidence it was chosen on."""
        return self.comparison.choice


def tune_value_model(
    settings: Settings,
    split: RecipeSplit,
    train: ValueRows,
    valid: ValueRows,
    names: list[str],
    *,
    tuning: TuningRequest,
    say: Progress,
) -> TunedValue:
    """Tweedie vs hurdle on the (sampled) train rows, judged on validation, then the study of
    the chosen kind on the rows it fits (a hurdle's value booster: buyers only)."""
    import optuna

    from clv.training.objective import TuningArrays, compare_value_models

    nthread, seed = settings.tuning.nthread, settings.tuning.seed
    tune_rows = tuning_rows(split.train, settings.tuning.sample_customers, seed=seed)
    comparison = compare_value_models(
        train.take(tune_rows), valid, names, nthread=nthread, seed=seed
    )
    choice = comparison.choice
    kind = choice.kind
    say(f"objective: {choice.reason}")
    tune_fit = tune_rows if kind == "tweedie" else tune_rows[train.y[tune_rows] > 0]
    valid_fit = np.arange(len(valid.y)) if kind == "tweedie" else np.flatnonzero(valid.y > 0)
    fit_train, fit_valid = train.take(tune_fit), valid.take(valid_fit)
    arrays = TuningArrays(
        fit_train.x,
        fit_train.y,
        fit_valid.x,
        fit_valid.y,
        feature_names=tuple(names),
        offset_train=fit_train.offset,
        offset_valid=fit_valid.offset,
    )
    say(
        f"tuning: {tuning.trials} trial(s) of the {kind} value booster on {len(tune_fit):,} "
        f"train / {len(valid_fit):,} validation rows, embargo {split.embargo_days} days"
    )
    study, parallel = tune(settings, arrays, tuning, split.origin)
    counts = {
        state.name.lower(): sum(1 for t in study.trials if t.state == state)
        for state in optuna.trial.TrialState
    }
    if not counts.get("complete"):
        raise DataError("no Optuna trial completed: raise --trials or the timeout")
    return TunedValue(
        comparison=comparison,
        study=study,
        final_params=final_params(study),
        counts=counts,
        tune_rows=len(tune_rows),
        tune_customers=int(split.train["customer_id"].iloc[tune_rows].nunique()),
        parallel=parallel,
    )


def tuning_rows(train: pd.DataFrame, sample_customers: int | None, *, seed: int) -> np.ndarray:
    """Row positions used for tuning: all, or every row of a seeded sample of customers."""
    if sample_customers is None:
        return np.arange(len(train))
    customers = train["customer_id"].unique()
    if sample_customers >= len(customers):
        return np.arange(len(train))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(customers, size=sample_customers, replace=False)
    return np.flatnonzero(train["customer_id"].isin(chosen).to_numpy())


def tune(
    settings: Settings, arrays: TuningArrays, tuning: TuningRequest, origin: pd.Timestamp
) -> tuple[optuna.Study, ParallelOutcome | None]:
    """One Optuna study of the value booster on the arrays (seeded TPE, pruning)."""
    import optuna

    from clv.training.objective import ValueObjective
    from clv.training.tuning import WorkerJob, optimize_parallel, parallel_sampler, rdb_storage

    nthread, seed = settings.tuning.nthread, settings.tuning.seed
    name = f"{tuning.study_prefix}-origin-{origin.date().isoformat()}"
    objective = ValueObjective(arrays.data(nthread=nthread), nthread=nthread, seed=seed)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if tuning.workers == 1:
        study = optuna.create_study(
            storage=settings.optuna_storage,
            study_name=name,
            direction="minimize",
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=tuning.pruner,
        )
        study.optimize(
            objective,
            n_trials=tuning.trials,
            timeout=tuning.timeout,
            callbacks=[tuning.logger],
            show_progress_bar=sys.stderr.isatty(),
        )
        return study, None
    study = optuna.create_study(
        storage=rdb_storage(settings.optuna_storage, logger=tuning.logger),
        study_name=name,
        direction="minimize",
        sampler=parallel_sampler(seed),
        pruner=tuning.pruner,
    )
    job = WorkerJob(
        storage=settings.optuna_storage,
        study_name=name,
        arrays=arrays,
        n_trials=tuning.trials,
        nthread=nthread,
        seed=seed,
        pruner=tuning.pruner,
        logger=tuning.logger,
        deadline=time.time() + tuning.timeout if tuning.timeout is not None else None,
    )
    return study, optimize_parallel(study, objective, job, workers=tuning.workers)


def final_params(study: optuna.Study) -> ValueParams:
    """The best trial's parameters with its early-stopped number of rounds."""
    from clv.training.objective import params_from_trial

    best = study.best_trial
    params = params_from_trial(dict(best.params))
    rounds = int(best.user_attrs.get("best_iteration", params.num_boost_round - 1)) + 1
    return replace(params, num_boost_round=max(1, rounds))


def best_value(study: optuna.Study) -> float:
    """The best trial's validation score (NaN when it has none)."""
    value = study.best_trial.value
    return float(value) if value is not None else float("nan")
