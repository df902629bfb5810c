"""Training: labels -> the recipe evaluated out of time at rolling origins -> the recipe
fitted at the end of the log -> MLflow run and registered version.

`run` gathers the data (entity rows from the feature build, features from Feast, labels and
the naive rules' past margins from the transaction log: clv.training.dataset); `fit_and_log`
does the rest on an in-memory frame, so that tests and other callers can feed it synthetic data:

1. the BG/NBD + Gamma-Gamma offset fitted on every snapshot (clv.training.offsets);
2. the recipe (clv.training.recipe.fit_recipe) fitted at the test origin and at up to
   `evaluation.backtest_origins` earlier origins from the rows known there, each scored on its
   origin's snapshot beside every simple baseline (clv.training.backtest). An unembargoed
   evaluation is recorded as such (`evaluation.embargoed`), and the gates refuse it;
3. the same recipe fitted at the end of the log: the registered model;
4. the run, its evidence (choices.json) and the version's tags logged (clv.training.lineage).
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from clv.core.errors import DataError
from clv.core.settings import Settings
from clv.core.tags import CONTRACTUAL_TAG
from clv.evaluation.metrics import ChurnMetrics, ValueMetrics
from clv.model.intervals import IntervalMetrics
from clv.training.backtest import (
    OriginEvaluation,
    evaluate_at_origins,
    origins_for,
    served_origin,
)
from clv.training.champion import ChampionModel
from clv.training.dataset import FeatureSource, Progress, TrainingData, load_training_data
from clv.training.labels import KEYS, LABEL_COLUMNS
from clv.training.lineage import log_version
from clv.training.offsets import fit_offsets
from clv.training.recipe import Recipe, fit_at
from clv.training.refit import RefitBackend
from clv.training.study import TuningRequest, best_value

if TYPE_CHECKING:
    import optuna

    from clv.training.contractual import ContractualSummary
    from clv.training.mlflow_io import LoggedVersion, TrainingRun
    from clv.training.objective import ObjectiveChoice
    from clv.training.readiness import Readiness


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    version: str
    model_name: str
    study_name: str
    best_trial: int
    best_params: dict[str, float | int]
    validation_score: float
    evaluation: OriginEvaluation
    """Every predictor on the test origin (the version's metrics)."""
    backtests: tuple[OriginEvaluation, ...]
    embargoed: bool
    evaluation_reason: str
    split: dict[str, object]
    trials: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    objective: ObjectiveChoice | None = None
    """The served value model's kind and the validation evidence it was chosen on."""
    readiness: Readiness | None = None
    """The data's readiness report, when the run checked it (`run(readiness=...)`)."""
    contractual: ContractualSummary | None = None
    """The subscribers' contractual part, when the workspace holds subscriptions."""

    @property
    def model_metrics(self) -> ValueMetrics:
        return self.evaluation.value["model"]

    @property
    def baseline_metrics(self) -> ValueMetrics:
        return self.evaluation.value["baseline"]

    @property
    def default_metrics(self) -> ValueMetrics:
        return self.evaluation.value["default"]

    @property
    def churn_metrics(self) -> ChurnMetrics:
        return self.evaluation.churn

    @property
    def interval_metrics(self) -> IntervalMetrics:
        return self.evaluation.interval

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        """Test-origin metrics keyed by predictor (the served recipe as `model`, every
        simple baseline, the default XGBoost), then the served
        recipe's churn and interval metrics."""
        out = {k: v.as_dict() for k, v in self.evaluation.value.items()}
        out["churn"] = self.evaluation.churn.as_dict()
        out["interval"] = self.evaluation.interval.as_dict()
        return out

    def evaluation_summary(self) -> dict[str, object]:
        """Embargo status, origins and every origin's metrics (for `clv train --json`)."""
        return {
            "embargoed": self.embargoed,
            "reason": self.evaluation_reason,
            "test": self.evaluation.summary(),
            "backtests": [e.summary() for e in self.backtests],
            "best_baseline": self.evaluation.best_baseline,
        }


def run(
    settings: Settings,
    *,
    n_trials: int | None = None,
    workers: int | None = None,
    source: FeatureSource | None = None,
    progress: Progress | None = None,
    champion: Callable[[Settings], ChampionModel | None] | None = None,
    readiness: Callable[[Settings], Readiness | None] | None = None,
) -> TrainResult:
    """Train on the workspace's features and transactions; log and register one version.

    `workers` (default `tuning.workers`) processes tune each Optuna study (one per evaluated
    origin and one for the registered model; clv.training.tuning). `readiness` checks the data
    once the services are known to answer (clv.training.readiness_io.require_ready: it raises to
    refuse); its result is the TrainResult's `readiness`. `champion` loads the live champion
    (see fit_and_log) after it."""
    from clv.core.services import require_optuna_storage, require_tracking

    say = progress or (lambda _msg: None)
    # Fail fast, in one line, before any work: the services this run will write to.
    require_tracking(settings)
    require_optuna_storage(settings)
    checked = readiness(settings) if readiness is not None else None
    live = champion(settings) if champion is not None else None
    if source is None:
        from clv.features import feast_io

        source = feast_io
    from clv.core.compute import dask_client, worker_memory_mb
    from clv.training import distributed

    scale = distributed.plan_scale(settings)
    if scale.in_process:
        say("labels: reading entity rows and transactions")
        data = load_training_data(settings, source=source)
        result = fit_and_log(
            settings, data, n_trials=n_trials, workers=workers, progress=say, champion=live
        )
        return replace(result, readiness=checked)
    worker_memory_mb(settings)  # a cluster that cannot start fails before any work
    buckets = scale.buckets
    say(f"scale: {scale.describe()}: {buckets} customer buckets, final fits on Dask")
    directory = settings.state_dir / "training-sets" / uuid.uuid4().hex[:12]
    try:
        parts = distributed.write_parts(
            settings, source=source, buckets=buckets, directory=directory, progress=say
        )
        sample = distributed.sample_data(settings, parts, source=source)
        say(f"sample: tuning and evaluation on bucket 1 of {buckets} ({len(sample.frame):,} rows)")
        with dask_client(settings) as client:
            result = fit_and_log(
                settings,
                sample,
                n_trials=n_trials,
                workers=workers,
                progress=say,
                refit_backend=distributed.DaskRefit(client, parts),
                champion=live,
            )
        return replace(result, readiness=checked)
    finally:  # derived data: rebuilt from the offline store by the next run
        shutil.rmtree(directory, ignore_errors=True)


def fit_and_log(
    settings: Settings,
    data: TrainingData,
    *,
    n_trials: int | None = None,
    timeout_seconds: float | None = None,
    progress: Progress | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    workers: int | None = None,
    refit_backend: RefitBackend | None = None,
    champion: ChampionModel | None = None,
) -> TrainResult:
    """Evaluate the recipe out of time, fit it at the end of the log, log and register it.

    The recipe (clv.training.recipe) is fitted at the test origin and at each backtest origin
    from the rows known there, and scored on that origin's snapshot beside every simple
    baseline (clv.training.backtest); the version's metrics are the test origin's. The
    registered model is the same recipe fitted at the end of the log (`served_origin`);
    `refit_backend` fits its final boosters (clv.training.refit; by default in this process;
    `DaskRefit` on a cluster, with `data` then a customer sample that tuning and evaluation use).

    With `workers` > 1 (default `tuning.workers`) that many processes tune each study
    (clv.training.tuning); the trial sequence is then not reproducible. With `champion`, the live
    champion's held-out bundle is scored on the test origin's rows too (clv.training.champion)."""
    from clv.training import contractual, mlflow_io

    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    trials, n_workers = _checked(settings, data, n_trials=n_trials, workers=workers)
    origins = origins_for(settings, data)
    say(f"evaluation: {origins.describe()}")
    say("offset: BG/NBD + Gamma-Gamma fitted on each snapshot's purchase histories")
    offsets = fit_offsets(data, margin_rate=settings.model.margin_rate, seed=settings.tuning.seed)
    settings.ensure_dirs()
    prefix = _study_prefix(settings)
    with mlflow_io.training_run(settings, run_name=mlflow_io.run_name()) as mrun:
        request = _tuning_request(
            settings, mrun, trials, n_workers, prefix, timeout=timeout_seconds, pruner=pruner
        )
        recipes, evaluations = evaluate_at_origins(
            settings, data, origins, offsets, tuning=request, say=say
        )
        end = served_origin(settings, data)
        say(f"served: the recipe fitted at the end of the log ({end.date()})")
        served = fit_at(
            settings, data, end, offsets, tuning=request, refit_backend=refit_backend, progress=say
        )
        say("mlflow: logging the run, tables and plots, and registering the model")
        logged = log_version(
            settings,
            mrun,
            data,
            served=served,
            recipes=recipes,
            evaluations=evaluations,
            offsets=offsets,
            n_workers=n_workers,
            champion=champion,
        )
        contract = contractual.train_and_log(settings, mrun, say=say)
        if contract is not None:
            mrun.tag_version(logged.version, {CONTRACTUAL_TAG: "true"})
    seconds = time.perf_counter() - started
    result = _result(settings, logged, served, recipes, evaluations, seconds=seconds)
    return replace(result, contractual=contract)


def _checked(
    settings: Settings, data: TrainingData, *, n_trials: int | None, workers: int | None
) -> tuple[int, int]:
    """The trials and tuning processes per study (arguments over settings); raises before any
    work on a budget below 1 or a frame without the contract's columns."""
    tuning = settings.tuning
    trials = n_trials if n_trials is not None else tuning.n_trials
    if trials < 1:
        raise ValueError("n_trials must be at least 1")
    n_workers = workers if workers is not None else tuning.workers
    if n_workers < 1:
        raise ValueError("workers must be at least 1")
    missing = [c for c in (*data.feature_names, *KEYS, *LABEL_COLUMNS) if c not in data.frame]
    if missing:
        raise DataError(f"training frame lacks columns {missing}")
    return trials, n_workers


def _study_prefix(settings: Settings) -> str:
    """The run's Optuna study names start with this (one study per fitted origin)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{settings.mlflow.experiment}-{stamp}-{uuid.uuid4().hex[:6]}"


def _tuning_request(
    settings: Settings,
    mrun: TrainingRun,
    trials: int,
    workers: int,
    study_prefix: str,
    *,
    timeout: float | None,
    pruner: optuna.pruners.BasePruner | None,
) -> TuningRequest:
    """How every recipe fit of this run tunes; its trials log as nested runs of `mrun`."""
    from clv.training.objective import default_pruner

    return TuningRequest(
        trials=trials,
        workers=workers,
        timeout=timeout if timeout is not None else settings.tuning.timeout_seconds,
        pruner=pruner if pruner is not None else default_pruner(),
        logger=mrun.trial_logger(),
        study_prefix=study_prefix,
    )


def _result(
    settings: Settings,
    logged: LoggedVersion,
    served: Recipe,
    recipes: list[Recipe],
    evaluations: list[OriginEvaluation],
    *,
    seconds: float,
) -> TrainResult:
    """The version, the served fit's study and choice, and the test origin's evaluation."""
    return TrainResult(
        run_id=logged.run_id,
        version=logged.version,
        model_name=settings.mlflow.model_name,
        study_name=served.tuned.study.study_name,
        best_trial=served.tuned.study.best_trial.number,
        best_params=served.tuned.final_params.as_dict(),
        validation_score=best_value(served.tuned.study),
        evaluation=evaluations[0],
        backtests=tuple(evaluations[1:]),
        embargoed=recipes[0].split.embargoed,
        evaluation_reason=recipes[0].split.reason,
        split=recipes[0].split.summary(),
        trials=served.tuned.counts,
        seconds=seconds,
        objective=served.tuned.choice,
    )
