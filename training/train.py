"""Training: labels -> the recipe evaluated out of time at rolling origins -> the recipe
fitted at the end of the log -> MLflow run and registered version.

`run` gathers the data (entity rows from the feature build, features from Feast, labels and
the naive rules' past margins from the transaction log); `fit_and_log` does the rest on an
in-memory frame, so that tests and other callers can feed it synthetic data.

The recipe (`fit_recipe`), fitted at an origin from the rows known there (clv.evaluation.protocol):
Tweedie vs hurdle and an Optuna study on an embargoed train / validation split; churn and
quantile boosters early-stopped on validation; the value blend and level, the churn
calibration (raw, Platt or isotonic) and the interval scales per value band chosen on
validation from train-only fits; then every booster refitted with those rounds on every row
known at the origin, the BG/NBD + Gamma-Gamma offset parameters and the level frozen at the
anchor snapshot. Every choice's evidence is logged with the run (choices.json).

Evaluation (`evaluate_recipe`): the recipe fitted at the test origin (the latest snapshot with
a complete label) and at up to `evaluation.backtest_origins` earlier origins is scored on that
origin's snapshot beside every simple baseline (BG/NBD + Gamma-Gamma fitted on the origin's
histories, the naive rules of clv.model.naive, a default XGBoost). Nothing it freezes is
refitted on the scored rows, so the metrics describe what serving does. The registered model
is the same recipe fitted at the end of the log. An unembargoed evaluation is recorded as such
(`evaluation.embargoed`), and the gates refuse it.

Value prediction: the boosted model (a log correction to the BG/NBD + Gamma-Gamma offset) is
blended with the baseline, and possibly scaled so that its total over the anchor snapshot
equals the baseline's: the weight and the level are chosen per fit on validation
(clv.training.blend), and the run logs the evidence (choices.json).
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from clv.core.contracts import BASELINE_PREDICTORS, CHAMPION_VERSION_TAG, EMBARGOED_TAG
from clv.core.errors import DataError, NotReadyError
from clv.core.settings import Settings
from clv.evaluation.calibration import (
    CalibrationChoice,
    choose_calibration,
    reliability_by_segment,
    reliability_table,
)
from clv.evaluation.metrics import (
    ChurnMetrics,
    ValueMetrics,
    churn_metrics,
    decile_table,
    paired_bootstrap,
    value_metrics,
)
from clv.evaluation.protocol import Origins, RecipeSplit, evaluation_origins, split_at
from clv.evaluation.tables import metric_table as evaluation_metric_table
from clv.evaluation.tables import slice_metrics
from clv.model.baseline import SnapshotBaselines, baseline_clv, fit_snapshot_baselines
from clv.model.bundle import ClvModel, ModelCard, level_scale
from clv.model.intervals import (
    QUANTILES,
    BandCoverage,
    BandedScale,
    IntervalMetrics,
    band_coverage,
    banded_interval,
    banded_interval_scale,
    interval_metrics,
    interval_scale,
)
from clv.model.naive import NAIVE_RULES, naive_predictions
from clv.training.blend import FIXED, BlendChoice, choose_blend
from clv.training.labels import KEYS, LABEL_COLUMNS, PAST_COLUMNS, as_utc, make_labels, past_margins
from clv.training.refit import BaselineOffset, InMemoryRefit, RefitBackend, refit_jobs

if TYPE_CHECKING:
    import optuna
    import xgboost as xgb

    from clv.training.mlflow_io import LoggedVersion, TrainingRun, TrialLogger
    from clv.training.objective import ObjectiveChoice, TuningArrays, ValueParams
    from clv.training.readiness import Readiness
    from clv.training.tuning import ParallelOutcome

REFERENCE_ROWS = 20_000
EXPLAIN_ROWS = 1_000
"""Test rows whose per-feature SHAP contributions are logged with the run."""
EXCLUDED_FEATURES = ("signup_cohort",)
"""Calendar-time features the boosters do not use (an unseen newest cohort is a NaN level);
the column stays in the contract for the evaluation slices. Chosen on the old protocol: see
docs/decisions/modelling-constants.md."""
FIXED_BLEND: BlendChoice | None = None
"""None: every fit chooses its blend weight and level on validation (clv.training.blend); a
BlendChoice here serves that one instead (benchmarks.development compares the two)."""
Progress = Callable[[str], None]


class FeatureSource(Protocol):
    """Where training gets features; `clv.features.feast_io` (the module) satisfies it."""

    def feature_names(self, settings: Settings) -> list[str]: ...

    def categorical_features(self, settings: Settings) -> list[str]: ...

    def historical_features(self, settings: Settings, entities: pd.DataFrame) -> pd.DataFrame: ...


@dataclass(frozen=True)
class TrainingData:
    """Entity rows with features and labels (NaN label = window not complete)."""

    frame: pd.DataFrame
    feature_names: tuple[str, ...]
    categorical: tuple[str, ...] = ()
    feature_service: str = "clv_v1"
    data_end: pd.Timestamp | None = None


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
    from clv.core.services import check_database

    say = progress or (lambda _msg: None)
    # Fail fast, in one line, before any work: the services this run will write to.
    check_database(settings.tracking_uri, purpose="MLflow tracking database")
    check_database(settings.optuna_storage, purpose="Optuna storage")
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


def load_training_data(
    settings: Settings,
    *,
    source: FeatureSource,
    buckets: int = 1,
    bucket: int = 0,
    data_end: pd.Timestamp | None = None,
) -> TrainingData:
    """Entity rows of the feature build, labels from the log, features through `source`.

    With `buckets` > 1, only the customers of one hash bucket (clv.core.store.bucket_predicate):
    labels and features are per customer, so the buckets' frames together are the whole
    training set. `data_end` (default: the log's last timestamp) must then be passed, the same
    for every bucket. Raises DataError when no row has a complete label."""
    frame, data_end = labelled_rows(
        settings, source=source, buckets=buckets, bucket=bucket, data_end=data_end
    )
    if frame.empty:
        m = settings.model
        raise DataError(
            f"no snapshot has a complete {m.horizon_days}-day label window before {data_end}: "
            "build features with earlier snapshots or generate a longer history"
        )
    return TrainingData(
        frame=frame,
        feature_names=tuple(source.feature_names(settings)),
        categorical=tuple(source.categorical_features(settings)),
        feature_service=settings.features.service,
        data_end=data_end,
    )


def log_end(settings: Settings) -> pd.Timestamp:
    """The transaction log's last timestamp (labels are complete up to it)."""
    from clv.core.store import duckdb_connection, table_path

    path = table_path(settings, "transactions")
    if not path.exists():
        raise NotReadyError("no transactions ingested: run `clv data ingest`")
    con = duckdb_connection()
    try:
        row = con.execute("SELECT max(ts) FROM read_parquet(?)", [str(path)]).fetchone()
    finally:
        con.close()
    if row is None or row[0] is None:
        raise DataError("no transactions ingested: run `clv data ingest`")
    return pd.Timestamp(row[0]).tz_convert("UTC")


def labelled_rows(
    settings: Settings,
    *,
    source: FeatureSource,
    buckets: int,
    bucket: int,
    data_end: pd.Timestamp | None,
) -> tuple[pd.DataFrame, pd.Timestamp]:
    """One bucket's rows with at least one complete label, features joined point in time."""
    from clv.core.store import read_parquet_bucket, read_table_bucket
    from clv.features.build import require_features
    from clv.inputs.identities import read_identities

    path = require_features(settings)
    end = data_end if data_end is not None else log_end(settings)
    identities = read_identities(settings)  # a customer's aliases share its bucket
    groups = identities.groups if identities is not None else None
    entities = read_parquet_bucket(
        path, buckets=buckets, bucket=bucket, columns=list(KEYS), groups=groups
    )
    entities = entities.drop_duplicates(ignore_index=True)
    entities["customer_id"] = entities["customer_id"].astype(str)
    entities["event_timestamp"] = as_utc(entities["event_timestamp"])
    transactions = read_table_bucket(
        settings, "transactions", buckets=buckets, bucket=bucket, groups=groups
    )
    m = settings.model
    labels = make_labels(
        transactions,
        entities,
        horizon_days=m.horizon_days,
        churn_window_days=m.churn_window_days,
        annual_discount_rate=m.annual_discount_rate,
        margin_rate=m.margin_rate,
        data_end=end,
        identities=identities,
    )
    past = past_margins(
        transactions,
        entities,
        horizon_days=m.horizon_days,
        margin_rate=m.margin_rate,
        identities=identities,
    )
    labels = pd.concat([labels, past], axis=1)
    labelled = labels.loc[labels["clv_label"].notna() | labels["churn_label"].notna()]
    if labelled.empty:
        return labelled.reset_index(drop=True), end
    feats = source.historical_features(settings, labelled[list(KEYS)].reset_index(drop=True))
    feats["event_timestamp"] = as_utc(feats["event_timestamp"])
    feats["customer_id"] = feats["customer_id"].astype(str)
    frame = feats.merge(labelled, on=list(KEYS), how="inner", validate="many_to_one")
    return frame, end


@dataclass(frozen=True)
class ChampionModel:
    """The live champion's held-out (evaluated) bundle, scored on the new version's test rows
    so that the gates compare the two on the same snapshot (`eval.champion.*` tags)."""

    version: str
    model: ClvModel


def champion_tags(
    champion: ChampionModel, test: OriginEvaluation, *, samples: int, level: float, seed: int
) -> dict[str, str]:
    """`eval.champion.*`: the champion scored on `test`'s rows (labels after its origin), and
    the paired bootstrap of the candidate minus the champion there (none when `level` is 0)."""
    rows = test.rows
    try:
        pred = champion.model.predict(rows)
    except (KeyError, ValueError) as exc:  # another feature contract: no same-rows evidence
        return {"eval.champion.error": f"v{champion.version} could not score: {exc}"[:500]}
    y = _value_target(rows)
    theirs = pred["clv"].to_numpy(np.float64)
    value = value_metrics(y, theirs)
    prob = pred["churn_probability"].to_numpy(np.float64)
    has_churn = rows["churn_label"].notna().to_numpy() & np.isfinite(prob)
    churn = churn_metrics(rows["churn_label"].to_numpy(np.float64)[has_churn], prob[has_churn])
    cover = interval_metrics(
        y, pred["clv_p10"].to_numpy(np.float64), pred["clv_p90"].to_numpy(np.float64)
    )
    noise = (
        paired_bootstrap(
            y, test.predictions["model"], theirs, samples=samples, level=level, seed=seed
        ).as_dict()
        if level > 0
        else {}
    )
    return {
        CHAMPION_VERSION_TAG: champion.version,
        "eval.champion.gini": repr(value.gini),
        "eval.champion.rmse": repr(value.rmse),
        "eval.champion.bias_pct": repr(value.bias_pct),
        "eval.champion.churn_ece": repr(churn.ece),
        "eval.champion.coverage_p10_p90": repr(cover.coverage_p10_p90),
    } | {f"eval.champion.{key}": repr(v) for key, v in noise.items()}


def card_for(settings: Settings, data: TrainingData, fitted_on: pd.DataFrame) -> ModelCard:
    """The model card; category levels are those seen in the rows the model is fitted on."""
    return ModelCard(
        feature_service=data.feature_service,
        feature_names=list(data.feature_names),
        categories={
            name: sorted(str(v) for v in fitted_on[name].dropna().astype("string").unique())
            for name in data.categorical
        },
        horizon_days=settings.model.horizon_days,
        churn_window_days=settings.model.churn_window_days,
        excluded_features=[n for n in EXCLUDED_FEATURES if n in data.feature_names],
    )


def split_at_origin(settings: Settings, data: TrainingData, origin: pd.Timestamp) -> RecipeSplit:
    """What the recipe fitted at `origin` sees (clv.evaluation.protocol.split_at)."""
    m = settings.model
    return split_at(
        data.frame, origin, horizon_days=m.horizon_days, churn_window_days=m.churn_window_days
    )


def origins_for(settings: Settings, data: TrainingData) -> Origins:
    """The test origin and the backtest origins of this training frame."""
    e = settings.evaluation
    return evaluation_origins(
        data.frame,
        horizon_days=settings.model.horizon_days,
        backtests=e.backtest_origins,
        spacing_days=e.origin_spacing_days,
    )


@dataclass(frozen=True)
class TuningRequest:
    """How one recipe fit tunes: trials, processes, limits and where trials are logged."""

    trials: int
    workers: int
    timeout: float | None
    pruner: optuna.pruners.BasePruner
    logger: TrialLogger
    study_prefix: str


@dataclass
class Recipe:
    """One fit of the recipe at an origin: the model it serves and what it was chosen on."""

    split: RecipeSplit
    model: ClvModel
    default: xgb.Booster
    study: optuna.Study
    final_params: ValueParams
    choice: ObjectiveChoice
    blend: BlendChoice
    calibration: CalibrationChoice
    scale: tuple[float, float]
    valid_interval: IntervalMetrics
    bands: BandedScale
    valid_bands: BandCoverage
    tune_rows: int
    tune_customers: int
    counts: dict[str, int]
    refit_report: dict[str, str | int | float]
    parallel: ParallelOutcome | None = None


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
    import optuna
    import xgboost as xgb

    from clv.training.objective import (
        DEFAULT_VALUE_PARAMS,
        TuningArrays,
        ValueRows,
        compare_value_models,
        fit_value,
    )

    say = progress or (lambda _msg: None)
    nthread, seed = settings.tuning.nthread, settings.tuning.seed
    names = list(data.feature_names)
    enc = _encoder(card_for(settings, data, split.train))
    offset_fn = _offset_fn(settings, offsets)

    def offset_of(frame: pd.DataFrame) -> np.ndarray | None:
        return offset_fn(frame) if offset_fn is not None else None

    x_tr, y_tr, off_tr = enc.matrix(split.train), _value_target(split.train), offset_of(split.train)
    x_va, y_va = enc.matrix(split.validation), _value_target(split.validation)
    off_va = offset_of(split.validation)
    tune_rows = _tuning_rows(split.train, settings.tuning.sample_customers, seed=seed)
    comparison = compare_value_models(
        ValueRows(x_tr[tune_rows], y_tr[tune_rows], _take(off_tr, tune_rows)),
        ValueRows(x_va, y_va, off_va),
        names,
        nthread=nthread,
        seed=seed,
    )
    choice = comparison.choice
    kind = choice.kind
    say(f"objective: {choice.reason}")
    tune_fit = tune_rows if kind == "tweedie" else tune_rows[y_tr[tune_rows] > 0]
    valid_fit = np.arange(len(y_va)) if kind == "tweedie" else np.flatnonzero(y_va > 0)
    arrays = TuningArrays(
        x_tr[tune_fit],
        y_tr[tune_fit],
        x_va[valid_fit],
        y_va[valid_fit],
        feature_names=tuple(names),
        offset_train=_take(off_tr, tune_fit),
        offset_valid=_take(off_va, valid_fit),
    )
    say(
        f"tuning: {tuning.trials} trial(s) of the {kind} value booster on {len(tune_fit):,} "
        f"train / {len(valid_fit):,} validation rows, embargo {split.embargo_days} days"
    )
    study, parallel = _tune(settings, arrays, tuning, split.origin)
    counts = {
        state.name.lower(): sum(1 for t in study.trials if t.state == state)
        for state in optuna.trial.TrialState
    }
    if not counts.get("complete"):
        raise DataError("no Optuna trial completed: raise --trials or the timeout")
    final_params = _final_params(study)

    # Boosters fitted on train only, judged on validation: calibration and interval scales.
    churn = _fit_churn_eval(split, enc, names, nthread=nthread, seed=seed)
    calibration = _churn_calibration(split, enc, churn, seed=seed)
    quantiles = _fit_quantiles(split, enc, names, nthread=nthread, seed=seed)
    x_fit = np.concatenate([x_tr, x_va])
    y_fit = np.concatenate([y_tr, y_va])
    from clv.training.objective import fit_value_model

    # The tuned value model on the train rows only: validation is out of time for it.
    value_tv, purchase_tv = fit_value_model(
        kind,
        final_params,
        ValueRows(x_tr, y_tr, off_tr),
        names,
        purchase_rounds=comparison.purchase_rounds,
        nthread=nthread,
        seed=seed,
    )
    on_valid = ClvModel(
        replace(
            enc.card,
            value_model=kind,
            value_offset=_offset_card(offsets, split.validation_time, settings),
        ),
        value=value_tv,
        quantiles=quantiles,
        purchase=purchase_tv,
    )
    blend = _blend_choice(split, on_valid)
    say(f"blend: {blend.reason}")
    scale, valid_interval, bands, valid_bands = _interval_scale(
        split,
        ClvModel(
            replace(on_valid.card, value_blend=blend.weight, value_level=blend.level),
            value=value_tv,
            quantiles=quantiles,
            purchase=purchase_tv,
        ),
    )
    say(
        f"intervals: scales per predicted-value band ({len(bands.scales)}) cover "
        f"{valid_interval.coverage_p10_p90:.3f} of validation, per decile "
        f"{valid_bands.describe()}; one band: {scale[0]:.3f} / {scale[1]:.3f} around P50"
    )
    d_default = xgb.QuantileDMatrix(x_fit, label=y_fit, feature_names=names, nthread=nthread)
    default = fit_value(DEFAULT_VALUE_PARAMS, d_default, nthread=nthread, seed=seed).booster

    model, refit_report = _final_model(
        settings,
        data,
        split,
        offsets,
        kind=kind,
        blend=blend,
        calibration=calibration,
        scale=scale,
        bands=bands,
        value=(final_params, comparison.purchase_rounds),
        rounds={"churn": churn, **quantiles},
        backend=refit_backend,
    )
    return Recipe(
        split=split,
        model=model,
        default=default,
        study=study,
        final_params=final_params,
        choice=choice,
        blend=blend,
        calibration=calibration,
        scale=scale,
        valid_interval=valid_interval,
        bands=bands,
        valid_bands=valid_bands,
        tune_rows=len(tune_rows),
        tune_customers=int(split.train["customer_id"].iloc[tune_rows].nunique()),
        counts=counts,
        refit_report=refit_report,
        parallel=parallel,
    )


def _blend_choice(split: RecipeSplit, on_valid: ClvModel) -> BlendChoice:
    """The blend weight and level (clv.training.blend) of `on_valid` (the train-only boosters with
    the validation snapshot's own offset parameters) on the validation snapshot."""
    if FIXED_BLEND is not None and on_valid.card.value_offset is not None:
        return FIXED_BLEND
    x_va = on_valid.matrix(split.validation)
    offset = on_valid.value_offset(x_va)
    if offset is None:
        return FIXED
    unblended = ClvModel(
        replace(on_valid.card, value_blend=1.0, value_scale=1.0),
        value=on_valid.value,
        purchase=on_valid.purchase,
    )
    return choose_blend(_value_target(split.validation), offset, unblended.value_margin(x_va))


def _interval_scale(
    split: RecipeSplit, on_valid: ClvModel
) -> tuple[tuple[float, float], IntervalMetrics, BandedScale, BandCoverage]:
    """The conformal scales that make [P10, P90] cover 80% of validation for `on_valid` (the
    train-only boosters as served, with the validation snapshot's own offset parameters): one
    pair over all rows (for readers of `interval_scale`) and the served pairs per
    predicted-value band; the coverage the banded scales reach there, overall and per
    predicted-value decile."""
    x_va, y_va = on_valid.matrix(split.validation), _value_target(split.validation)
    on_valid = _anchored(on_valid, x_va)
    quantiles = on_valid.quantiles
    point = on_valid.predict_matrix(x_va)["clv"]
    raw = {k: np.asarray(b.inplace_predict(x_va), dtype=np.float64) for k, b in quantiles.items()}
    lo, mid, hi = raw["clv_p10"], raw["clv_p50"], raw["clv_p90"]
    scale = interval_scale(y_va, lo, mid, hi, point)
    bands = banded_interval_scale(y_va, lo, mid, hi, point)
    served = banded_interval(lo, mid, hi, point, bands)
    return scale, interval_metrics(y_va, *served), bands, band_coverage(y_va, *served, point)


def _final_model(
    settings: Settings,
    data: TrainingData,
    split: RecipeSplit,
    offsets: SnapshotBaselines | None,
    *,
    kind: str,
    blend: BlendChoice,
    calibration: CalibrationChoice,
    scale: tuple[float, float],
    bands: BandedScale,
    value: tuple[ValueParams, int],
    rounds: dict[str, xgb.Booster | None],
    backend: RefitBackend | None,
) -> tuple[ClvModel, dict[str, str | int | float]]:
    """The served form of the recipe: every booster refitted on every row known at the origin
    with the rounds found on validation (`value`: the tuned parameters and the hurdle's
    purchase rounds; `rounds`: the churn and quantile boosters), the calibration and scales
    found there, the baseline parameters and the level frozen at the anchor snapshot."""
    from clv.training.churn import churn_params

    nthread, seed = settings.tuning.nthread, settings.tuning.seed
    known = split.known
    value_rows = known.loc[known["clv_label"].notna()]
    churn_rows = known.loc[known["churn_label"].notna()]
    card = replace(
        card_for(settings, data, value_rows),
        value_model=kind,
        value_blend=blend.weight,
        value_level=blend.level,
        churn_calibration=calibration.platt.as_dict() if calibration.platt else None,
        churn_isotonic=calibration.isotonic.as_dict() if calibration.isotonic else None,
        interval_scale=list(scale),
        interval_bands=bands.as_dict(),
        value_offset=_offset_card(offsets, split.anchor_time, settings),
    )
    has_offset = offsets is not None
    params, purchase_rounds = value
    churn = rounds.get("churn")
    quantiles = {k: b for k, b in rounds.items() if k in QUANTILES and b is not None}
    jobs = refit_jobs(
        value=(
            params.booster_params(nthread=nthread, seed=seed, offset=has_offset),
            params.num_boost_round,
        ),
        purchase=(
            (churn_params(nthread=nthread, seed=seed), purchase_rounds)
            if kind == "hurdle"
            else None
        ),
        quantiles={
            k: (_quantile_params(QUANTILES[k], nthread=nthread, seed=seed), b.num_boosted_rounds())
            for k, b in quantiles.items()
        },
        churn=(
            (churn_params(nthread=nthread, seed=seed), churn.num_boosted_rounds())
            if churn is not None and churn_rows["churn_label"].nunique() == 2
            else None
        ),
        offset=has_offset,
    )
    full = _encoder(card)
    fitter = backend if backend is not None else InMemoryRefit(known)
    refit = fitter.fit(jobs, encoder=full, offset=_offset_fn(settings, offsets))
    fitted = refit.boosters
    model = _anchored(
        ClvModel(
            card,
            value=fitted["value"],
            churn=fitted.get("churn"),
            quantiles={k: fitted[k] for k in quantiles},
            purchase=fitted.get("purchase"),
        ),
        full.matrix(split.anchor),
    )
    return model, refit.report


def _tune(
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


def _final_params(study: optuna.Study) -> ValueParams:
    """The best trial's parameters with its early-stopped number of rounds."""
    from clv.training.objective import params_from_trial

    best = study.best_trial
    params = params_from_trial(dict(best.params))
    rounds = int(best.user_attrs.get("best_iteration", params.num_boost_round - 1)) + 1
    return replace(params, num_boost_round=max(1, rounds))


@dataclass(frozen=True)
class OriginEvaluation:
    """Every predictor scored on one origin's snapshot, labels after it (out of time)."""

    origin: pd.Timestamp
    embargoed: bool
    value: dict[str, ValueMetrics]
    """By predictor: model (the served recipe), baseline (BG/NBD + Gamma-Gamma fitted on the
    origin's histories), last_horizon and run_rate (clv.model.naive), default (XGBoost with
    default parameters)."""
    churn: ChurnMetrics
    churn_raw: ChurnMetrics
    interval: IntervalMetrics
    interval_raw: IntervalMetrics
    predictions: dict[str, np.ndarray]
    rows: pd.DataFrame
    churn_scored: tuple[np.ndarray, np.ndarray, np.ndarray]
    """The rows with a churn label and a churn probability: (label, calibrated, raw)."""
    churn_value: np.ndarray = field(default_factory=lambda: np.empty(0))
    """The served clv on the `churn_scored` rows (reliability per value segment)."""

    @property
    def best_baseline(self) -> str:
        """The simple baseline with the highest normalized Gini here."""
        return max(BASELINES, key=lambda k: _finite(self.value[k].gini))

    def summary(self) -> dict[str, object]:
        return {
            "origin": self.origin.date().isoformat(),
            "embargoed": self.embargoed,
            "rows": len(self.rows),
            **{k: v.as_dict() for k, v in self.value.items()},
            "churn": self.churn.as_dict(),
            "interval": self.interval.as_dict(),
        }


BASELINES: tuple[str, ...] = BASELINE_PREDICTORS
"""The simple predictors every evaluation scores: BG/NBD + Gamma-Gamma and the naive rules
(the contract's names, which the `baselines` gate reads)."""


def _finite(value: float) -> float:
    return value if np.isfinite(value) else -np.inf


def evaluate_recipe(
    settings: Settings,
    recipe: Recipe,
    test: pd.DataFrame,
    offsets: SnapshotBaselines | None,
) -> OriginEvaluation:
    """The recipe's served model, its default booster and every baseline on `test` (one
    snapshot's rows with complete labels, at the recipe's origin)."""
    m = settings.model
    model = recipe.model
    x_te, y_te = model.matrix(test), _value_target(test)
    pred = model.predict_matrix(x_te)
    base_fit = offsets.fits.get(recipe.split.origin) if offsets is not None else None
    predictions: dict[str, np.ndarray] = {
        "model": pred["clv"],
        "baseline": baseline_clv(
            base_fit,
            test,
            horizon_days=m.horizon_days,
            annual_discount_rate=m.annual_discount_rate,
        )
        if base_fit is not None
        else np.full(len(test), np.nan),
        **(
            naive_predictions(
                test, horizon_days=m.horizon_days, annual_discount_rate=m.annual_discount_rate
            )
            if all(c in test.columns for c in PAST_COLUMNS)
            else {k: np.full(len(test), np.nan) for k in NAIVE_RULES}
        ),
        "default": np.asarray(recipe.default.inplace_predict(x_te), dtype=np.float64),
    }
    # Without a churn booster (no two classes, or no churn label known at validation) the
    # churn metrics are NaN, and the gates say there is no eval.churn.ece.
    has_churn = test["churn_label"].notna().to_numpy() & np.isfinite(pred["churn_probability"])
    y_churn = test["churn_label"].to_numpy(dtype=np.float64)[has_churn]
    raw_prob = _raw_churn(model, x_te)[has_churn]
    return OriginEvaluation(
        origin=recipe.split.origin,
        embargoed=recipe.split.embargoed,
        value={k: value_metrics(y_te, v) for k, v in predictions.items()},
        churn=churn_metrics(y_churn, pred["churn_probability"][has_churn]),
        churn_raw=churn_metrics(y_churn, raw_prob),
        interval=interval_metrics(y_te, pred["clv_p10"], pred["clv_p90"]),
        interval_raw=interval_metrics(
            y_te,
            np.asarray(model.quantiles["clv_p10"].inplace_predict(x_te)),
            np.asarray(model.quantiles["clv_p90"].inplace_predict(x_te)),
        ),
        predictions=predictions,
        rows=test,
        churn_scored=(y_churn, pred["churn_probability"][has_churn], raw_prob),
        churn_value=pred["clv"][has_churn],
    )


def origin_rows(data: TrainingData, origin: pd.Timestamp) -> pd.DataFrame:
    """The origin snapshot's rows with a complete CLV label (the out-of-time test set)."""
    frame = data.frame
    sel = (frame["event_timestamp"] == origin) & frame["clv_label"].notna()
    return frame.loc[sel].reset_index(drop=True)


def served_origin(settings: Settings, data: TrainingData) -> pd.Timestamp:
    """Where the registered model's recipe is fitted: the end of the log (every label known);
    for a frame without one, the latest snapshot plus the longer label window."""
    if data.data_end is not None:
        return pd.Timestamp(data.data_end)
    m = settings.model
    latest = pd.Timestamp(data.frame["event_timestamp"].max())
    return latest + pd.Timedelta(days=max(m.horizon_days, m.churn_window_days))


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

    The recipe (`fit_recipe`) is fitted at the test origin and at each backtest origin from
    the rows known there, and scored on that origin's snapshot beside every simple baseline
    (`evaluate_recipe`); the version's metrics are the test origin's. The registered model is
    the same recipe fitted at the end of the log (`served_origin`); `refit_backend` fits its
    final boosters (clv.training.refit; by default in this process; `DaskRefit` on a cluster, with
    `data` then a customer sample that tuning and evaluation use).

    With `workers` > 1 (default `tuning.workers`) that many processes tune each study
    (clv.training.tuning); the trial sequence is then not reproducible. With `champion`, the live
    champion's held-out bundle is scored on the test origin's rows too (`champion_tags`)."""
    from clv.training import mlflow_io
    from clv.training.objective import default_pruner

    say = progress or (lambda _msg: None)
    started = time.perf_counter()
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
    origins = origins_for(settings, data)
    say(f"evaluation: {origins.describe()}")
    say("offset: BG/NBD + Gamma-Gamma fitted on each snapshot's purchase histories")
    offsets = fit_offsets(data, margin_rate=settings.model.margin_rate, seed=tuning.seed)
    settings.ensure_dirs()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    study_prefix = f"{settings.mlflow.experiment}-{stamp}-{uuid.uuid4().hex[:6]}"
    timeout = timeout_seconds if timeout_seconds is not None else tuning.timeout_seconds

    with mlflow_io.training_run(settings, run_name=mlflow_io.run_name()) as mrun:
        request = TuningRequest(
            trials=trials,
            workers=n_workers,
            timeout=timeout,
            pruner=pruner if pruner is not None else default_pruner(),
            logger=mrun.trial_logger(),
            study_prefix=study_prefix,
        )
        evaluations: list[OriginEvaluation] = []
        recipes: list[Recipe] = []
        for i, origin in enumerate(origins.all):
            label = "test" if i == 0 else f"backtest {i}/{len(origins.backtests)}"
            say(f"{label}: the recipe as fitted on {origin.date()}, scored on that snapshot")
            recipe = fit_recipe(
                settings,
                data,
                split_at_origin(settings, data, origin),
                offsets,
                tuning=request,
                progress=say,
            )
            recipes.append(recipe)
            evaluations.append(
                evaluate_recipe(
                    settings,
                    recipe,
                    origin_rows(data, origin),
                    offsets,
                )
            )
            if i == 0 and not recipe.split.embargoed:
                say(f"warning: evaluation NOT embargoed: {recipe.split.reason}")
        end = served_origin(settings, data)
        say(f"served: the recipe fitted at the end of the log ({end.date()})")
        served = fit_recipe(
            settings,
            data,
            split_at_origin(settings, data, end),
            offsets,
            tuning=request,
            refit_backend=refit_backend,
            progress=say,
        )
        say("mlflow: logging the run, tables and plots, and registering the model")
        logged = _log_version(
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
    test = evaluations[0]
    return TrainResult(
        run_id=logged.run_id,
        version=logged.version,
        model_name=settings.mlflow.model_name,
        study_name=served.study.study_name,
        best_trial=served.study.best_trial.number,
        best_params=served.final_params.as_dict(),
        validation_score=_best_value(served.study),
        evaluation=test,
        backtests=tuple(evaluations[1:]),
        embargoed=recipes[0].split.embargoed,
        evaluation_reason=recipes[0].split.reason,
        split=recipes[0].split.summary(),
        trials=served.counts,
        seconds=time.perf_counter() - started,
        objective=served.choice,
    )


def _best_value(study: optuna.Study) -> float:
    value = study.best_trial.value
    return float(value) if value is not None else float("nan")


def _log_version(
    settings: Settings,
    mrun: TrainingRun,
    data: TrainingData,
    *,
    served: Recipe,
    recipes: list[Recipe],
    evaluations: list[OriginEvaluation],
    offsets: SnapshotBaselines | None,
    n_workers: int,
    champion: ChampionModel | None,
) -> LoggedVersion:
    """The MLflow run (params, metrics, tags, documents, evaluation files) and the version;
    `recipes` are the evaluation fits, the test origin's first."""
    from clv.training import mlflow_io

    evaluated = recipes[0]
    names = list(data.feature_names)
    test = evaluations[0]
    seed = settings.tuning.seed
    table = {k: v.as_dict() for k, v in test.value.items()}
    fp = fingerprint(data.frame, names)
    commit = mlflow_io.git_commit() or "unknown"
    split = evaluated.split
    served_split = served.split
    training_range = (
        f"{served_split.train_times[0].isoformat()}/{served_split.validation_time.isoformat()}"
    )
    base_fit = offsets.fits.get(test.origin) if offsets is not None else None
    base_params = base_fit.as_dict() if base_fit is not None else {}
    backtests = backtest_table(evaluations)
    aggregate = backtest_aggregate(backtests)
    embargoed = split.embargoed
    record = mlflow_io.RunRecord(
        params={
            **_run_params(settings, served, evaluated, data),
            **{f"baseline.{k}": v for k, v in base_params.items()},
            "evaluation.embargoed": str(embargoed).lower(),
            "evaluation.reason": split.reason[:500],
            "split.test_rows": len(test.rows),
            "evaluation.origins": ",".join(e.origin.date().isoformat() for e in evaluations),
            "tuning.rows": served.tune_rows,
            "tuning.customers": served.tune_customers,
            "churn.calibration": served.calibration.method,
            "interval.method": INTERVAL_METHOD,
            "interval.bands": len(served.bands.scales),
            "interval.scale_lower": served.scale[0],
            "interval.scale_upper": served.scale[1],
            "value_model": served.choice.kind,
            "value_model.reason": served.choice.reason,
            "value_blend": served.model.card.value_blend,
            "value_level": served.model.card.value_level,
            "value_blend.reason": served.blend.reason[:500],
            "value_scale": served.model.card.value_scale,
            "value_offset": "log BG/NBD+GG CLV, per-snapshot fits; served: frozen at "
            f"{served_split.anchor_time.date()}"
            if offsets is not None
            else "none",
            "offset.failed_snapshots": len(offsets.failed) if offsets is not None else 0,
            "excluded_features": ",".join(served.model.card.excluded_features),
            "tuning.workers": n_workers,
            "tuning.reproducible": "yes (one process, seeded TPE)"
            if n_workers == 1
            else f"no: {n_workers} processes share each study; the TPE sequence depends on timing",
            **_parallel_params([r.parallel for r in (*recipes, served) if r.parallel is not None]),
            **served.refit_report,
        },
        metrics={
            **{f"test_{k}": v for k, v in table["model"].items()},
            **{
                f"test_{who}_{k}": v
                for who, row in table.items()
                if who != "model"
                for k, v in row.items()
            },
            **{f"test_churn_{k}": v for k, v in test.churn.as_dict().items()},
            **{f"test_churn_raw_{k}": v for k, v in test.churn_raw.as_dict().items()},
            **{f"test_interval_{k}": v for k, v in test.interval.as_dict().items()},
            **{f"test_interval_raw_{k}": v for k, v in test.interval_raw.as_dict().items()},
            **{f"backtest_{k}": v for k, v in aggregate.items()},
            "evaluation_embargoed": float(embargoed),
            "evaluation_origins": float(len(evaluations)),
            "validation_rmse_tweedie": served.choice.tweedie_rmse,
            "validation_rmse_hurdle": served.choice.hurdle_rmse,
            "validation_interval_coverage": served.valid_interval.coverage_p10_p90,
            "validation_interval_mean_width": served.valid_interval.mean_width,
            **{
                f"validation_churn_{stat}_{method}": value
                for method, score in served.calibration.candidates.items()
                for stat, value in score.as_dict().items()
            },
            "best_validation_score": _best_value(served.study),
            "best_trial": float(served.study.best_trial.number),
            "trials_complete": float(served.counts.get("complete", 0)),
            "trials_pruned": float(served.counts.get("pruned", 0)),
            "trials_failed": float(served.counts.get("fail", 0)),
        },
        tags={
            "clv.feature_service": data.feature_service,
            "clv.data_fingerprint": fp,
            "clv.git_commit": commit,
            "clv.training_start": served_split.train_times[0].isoformat(),
            "clv.training_end": served_split.validation_time.isoformat(),
            "clv.test_snapshot": test.origin.isoformat(),
            "clv.evaluation.embargoed": str(embargoed).lower(),
            "clv.churn_calibration": served.calibration.reason,
            "optuna.study": served.study.study_name,
            "optuna.storage": _redacted(settings.optuna_storage),
        },
        documents={
            "features.json": {
                "feature_service": data.feature_service,
                "feature_names": names,
                "excluded_features": served.model.card.excluded_features,
                "categories": served.model.card.categories,
            },
            "split.json": {"test": split.summary(), "served": served_split.summary()},
            "evaluation.json": {
                "embargoed": embargoed,
                "reason": split.reason,
                "test": test.summary(),
                "backtests": [e.summary() for e in evaluations[1:]],
                "aggregate": aggregate,
                "churn_raw": test.churn_raw.as_dict(),
                "interval_raw": test.interval_raw.as_dict(),
                "churn_calibration": served.calibration.reason,
                "value_model": {
                    "kind": served.choice.kind,
                    "validation_rmse": {
                        "tweedie": served.choice.tweedie_rmse,
                        "hurdle": served.choice.hurdle_rmse,
                    },
                    "reason": served.choice.reason,
                },
                "interval_validation": served.valid_interval.as_dict(),
            },
            "baseline.json": base_params,
            "importance_gain.json": gain_importance(served.model.value),
            "choices.json": choices_evidence(served, recipes, backtests),
        },
    )
    mrun.log_record(record)
    _log_evaluation_files(mrun, test, backtests, evaluated.model, served.study)
    reference = _reference_sample(
        served.split.known.loc[served.split.known["clv_label"].notna()],
        served.model,
        names,
        seed=seed,
    )
    example = _input_example(test.rows, names, data.categorical)
    logged = mrun.log_model(
        served.model, reference=reference, input_example=example, evaluated=evaluated.model
    )
    mrun.tag_version(
        logged.version,
        version_tags(
            table,
            churn=test.churn,
            interval=test.interval,
            feature_service=data.feature_service,
            feature_names=names,
            test_snapshot=test.origin,
            training_range=training_range,
            data_fingerprint=fp,
            git_commit=commit,
            embargoed=embargoed,
            evaluation_reason=split.reason,
            aggregate=aggregate,
        )
        | (
            champion_tags(
                champion,
                test,
                samples=settings.registry.bootstrap_samples,
                level=settings.registry.noise_level,
                seed=seed,
            )
            if champion is not None
            else {}
        ),
    )
    return logged


def _log_evaluation_files(
    mrun: TrainingRun,
    test: OriginEvaluation,
    backtests: pd.DataFrame,
    evaluated: ClvModel,
    study: optuna.Study,
) -> None:
    """Metric tables, slices, deciles, reliability, contributions and plots under evaluation/."""
    from clv.training import plots

    y_te = _value_target(test.rows)
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
        by_value = _reliability_by_value(test)
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


INTERVAL_METHOD = (
    "xgboost quantile, conformal log1p scales around P50 per predicted-value band (validation)"
)
VALUE_SEGMENTS = ("low value", "middle value", "high value")


def _reliability_by_value(test: OriginEvaluation) -> pd.DataFrame | None:
    """The calibrated churn probability's reliability within terciles of the served clv."""
    y_churn, prob, _raw = test.churn_scored
    value = test.churn_value
    if value.size != y_churn.size or value.size < 10 * len(VALUE_SEGMENTS):
        return None
    ranks = pd.Series(value).rank(method="first")
    segments = pd.qcut(ranks, len(VALUE_SEGMENTS), labels=list(VALUE_SEGMENTS))
    return reliability_by_segment(y_churn, prob, segments)


def choices_evidence(
    served: Recipe, recipes: list[Recipe], backtests: pd.DataFrame
) -> dict[str, object]:
    """What each choice of the recipe was and the evidence that made it: the served fit's,
    and the same choices at every evaluation origin (test origin first); how the tuned model
    did against a default XGBoost at each origin."""

    def one(r: Recipe) -> dict[str, object]:
        return {
            "origin": r.split.origin.date().isoformat(),
            "objective": {
                "kind": r.choice.kind,
                "validation_rmse": {
                    "tweedie": r.choice.tweedie_rmse,
                    "hurdle": r.choice.hurdle_rmse,
                },
                "reason": r.choice.reason,
            },
            "blend": r.blend.as_evidence(),
            "churn_calibration": r.calibration.as_evidence(),
            "intervals": {
                "method": INTERVAL_METHOD,
                "one_band_scale": list(r.scale),
                "bands": r.bands.as_dict(),
                "validation": r.valid_interval.as_dict(),
                "validation_coverage_by_decile": r.valid_bands.coverage,
                "validation_rows_by_decile": r.valid_bands.n,
            },
            "tuning": {
                "trials": r.counts,
                "best_validation_rmse": _best_value(r.study),
                "params": r.final_params.as_dict(),
            },
        }

    by_origin = backtests.set_index(["origin", "predictor"])
    tuned_vs_default = [
        {
            "origin": origin,
            **{
                f"{who}_{k}": float(by_origin.loc[(origin, who), k])
                for who in ("model", "default")
                for k in ("gini", "rmse")
                if (origin, who) in by_origin.index
            },
        }
        for origin in backtests["origin"].unique()
    ]
    return {
        "served": one(served),
        "evaluation_origins": [one(r) for r in recipes],
        "tuned_vs_default": tuned_vs_default,
    }


def backtest_table(evaluations: list[OriginEvaluation]) -> pd.DataFrame:
    """One row per origin and predictor: its value metrics, and the served recipe's churn
    ECE and interval coverage on the model's rows."""
    rows = []
    for e in evaluations:
        for who, metrics in e.value.items():
            row: dict[str, object] = {
                "origin": e.origin.date().isoformat(),
                "embargoed": e.embargoed,
                "predictor": who,
                **metrics.as_dict(),
            }
            if who == "model":
                row["churn_ece"] = e.churn.ece
                row["coverage_p10_p90"] = e.interval.coverage_p10_p90
            rows.append(row)
    return pd.DataFrame(rows)


AGGREGATED = ("gini", "rmse", "bias_pct")


def backtest_aggregate(table: pd.DataFrame) -> dict[str, float]:
    """Over every origin: each predictor's mean and worst Gini, RMSE and |bias| %, and how
    often the model beat the best baseline on Gini and on RMSE."""
    out: dict[str, float] = {"origins": float(table["origin"].nunique())}
    for who, rows in table.groupby("predictor"):
        out[f"{who}_gini_mean"] = float(rows["gini"].mean())
        out[f"{who}_gini_min"] = float(rows["gini"].min())
        out[f"{who}_rmse_mean"] = float(rows["rmse"].mean())
        out[f"{who}_rmse_max"] = float(rows["rmse"].max())
        out[f"{who}_abs_bias_pct_max"] = float(rows["bias_pct"].abs().max())
    wins_gini = wins_rmse = 0
    for _origin, rows in table.groupby("origin"):
        by = rows.set_index("predictor")
        base = by.loc[[b for b in BASELINES if b in by.index]]
        wins_gini += int(by.loc["model", "gini"] > base["gini"].max())
        wins_rmse += int(by.loc["model", "rmse"] < base["rmse"].min())
    out["model_beats_baselines_gini"] = float(wins_gini)
    out["model_beats_baselines_rmse"] = float(wins_rmse)
    return out


def _parallel_params(outcomes: list[ParallelOutcome]) -> dict[str, str | int | float]:
    """What the tuning processes of every study did: exit codes (study after study),
    orphaned trials and trials taken over (summed); nothing for one-process tuning."""
    if not outcomes:
        return {}
    return {
        "tuning.worker_exit_codes": ",".join(str(c) for o in outcomes for c in o.exit_codes),
        "tuning.orphaned_trials": sum(o.orphaned for o in outcomes),
        "tuning.taken_over_trials": sum(o.taken_over for o in outcomes),
    }


def _anchored(model: ClvModel, x: np.ndarray) -> ClvModel:
    """The model with `value_scale` set on one snapshot's feature rows (clv.model.bundle.
    level_scale: no labels are used, so the test snapshot's own rows are fair game) when its
    card's level is "anchor"; else the model as it is."""
    if model.card.value_level != "anchor":
        return model
    card = replace(model.card, value_scale=level_scale(model, x))
    return ClvModel(
        card,
        value=model.value,
        churn=model.churn,
        quantiles=model.quantiles,
        purchase=model.purchase,
    )


def _value_target(frame: pd.DataFrame) -> np.ndarray:
    """The value model's target: the CLV label clipped at 0 (see clv.training.objective)."""
    return np.clip(frame["clv_label"].to_numpy(dtype=np.float64), 0.0, None)


def _encoder(card: ModelCard) -> ClvModel:
    """A ClvModel used only for `matrix` (feature order and category codes)."""
    import xgboost as xgb

    return ClvModel(replace(card, value_model="tweedie", value_offset=None), value=xgb.Booster())


def _tuning_rows(train: pd.DataFrame, sample_customers: int | None, *, seed: int) -> np.ndarray:
    """Row positions used for tuning: all, or every row of a seeded sample of customers."""
    if sample_customers is None:
        return np.arange(len(train))
    customers = train["customer_id"].unique()
    if sample_customers >= len(customers):
        return np.arange(len(train))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(customers, size=sample_customers, replace=False)
    return np.flatnonzero(train["customer_id"].isin(chosen).to_numpy())


def _fit_churn_eval(
    split: RecipeSplit, enc: ClvModel, names: list[str], *, nthread: int, seed: int
) -> xgb.Booster | None:
    """Churn booster on train, early-stopped on validation; None without two classes."""
    import xgboost as xgb

    from clv.training.churn import fit_churn

    train = split.train.loc[split.train["churn_label"].notna()]
    valid = split.validation.loc[split.validation["churn_label"].notna()]
    y = train["churn_label"].to_numpy(dtype=np.float64)
    if len(valid) == 0 or len(np.unique(y)) < 2:
        return None
    dtrain = xgb.QuantileDMatrix(enc.matrix(train), label=y, feature_names=names, nthread=nthread)
    dvalid = xgb.QuantileDMatrix(
        enc.matrix(valid),
        label=valid["churn_label"].to_numpy(dtype=np.float64),
        feature_names=names,
        ref=dtrain,
        nthread=nthread,
    )
    return fit_churn(dtrain, dvalid, nthread=nthread, seed=seed)


def fit_offsets(data: TrainingData, *, margin_rate: float, seed: int) -> SnapshotBaselines | None:
    """The baseline fitted on each snapshot of the frame, each on that snapshot's features
    only (no labels, so a fit is the same whichever origin uses it); None when the feature
    service lacks the RFM columns."""
    from clv.model.baseline import OFFSET_COLUMNS

    if any(c not in data.feature_names for c in OFFSET_COLUMNS):
        return None
    return fit_snapshot_baselines(data.frame, margin_rate=margin_rate, seed=seed)


def _offset_fn(settings: Settings, offsets: SnapshotBaselines | None) -> BaselineOffset | None:
    """Per row, the log baseline under the row's own snapshot's fit (the boosters' offset)."""
    if offsets is None:
        return None
    m = settings.model
    return BaselineOffset(
        offsets, horizon_days=m.horizon_days, annual_discount_rate=m.annual_discount_rate
    )


def _offset_card(
    offsets: SnapshotBaselines | None, t: pd.Timestamp, settings: Settings
) -> dict[str, float] | None:
    """The card's `value_offset`: snapshot t's baseline parameters and the discount rate."""
    if offsets is None:
        return None
    return {
        **offsets.for_time(t).as_dict(),
        "annual_discount_rate": settings.model.annual_discount_rate,
    }


def _take(values: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return None if values is None else values[rows]


def _churn_calibration(
    split: RecipeSplit, enc: ClvModel, churn: xgb.Booster | None, *, seed: int
) -> CalibrationChoice:
    """Raw, Platt or isotonic calibration of the churn margin, chosen on validation by
    cross-fitted ECE (clv.evaluation.calibration.choose_calibration)."""
    valid = split.validation.loc[split.validation["churn_label"].notna()]
    if churn is None or valid.empty:
        return CalibrationChoice.uncalibrated("no churn model")
    margin = churn.inplace_predict(enc.matrix(valid), predict_type="margin")
    return choose_calibration(
        np.asarray(margin, dtype=np.float64),
        valid["churn_label"].to_numpy(dtype=np.float64),
        seed=seed,
    )


def _raw_churn(model: ClvModel, x: np.ndarray) -> np.ndarray:
    """Uncalibrated churn probabilities (the booster's own sigmoid)."""
    if model.churn is None:
        return np.full(x.shape[0], np.nan)
    return np.asarray(model.churn.inplace_predict(x), dtype=np.float64)


QUANTILE_ROUNDS = 1000


def _quantile_params(alpha: float, *, nthread: int, seed: int) -> dict[str, float | int | str]:
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


def _fit_quantile(
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
        _quantile_params(alpha, nthread=nthread, seed=seed),
        dtrain,
        num_boost_round=rounds,
        evals=[(dvalid, "validation")] if dvalid is not None else None,
        early_stopping_rounds=30 if dvalid is not None else None,
        verbose_eval=False,
    )
    return booster[: booster.best_iteration + 1] if dvalid is not None else booster


def _fit_quantiles(
    split: RecipeSplit, enc: ClvModel, names: list[str], *, nthread: int, seed: int
) -> dict[str, xgb.Booster]:
    """P10, P50, P90 boosters on train, early-stopped on validation (which CQR then uses)."""
    import xgboost as xgb

    dtrain = xgb.QuantileDMatrix(
        enc.matrix(split.train),
        label=_value_target(split.train),
        feature_names=names,
        nthread=nthread,
    )
    dvalid = xgb.QuantileDMatrix(
        enc.matrix(split.validation),
        label=_value_target(split.validation),
        feature_names=names,
        ref=dtrain,
        nthread=nthread,
    )
    return {
        key: _fit_quantile(dtrain, alpha, nthread=nthread, seed=seed, dvalid=dvalid)
        for key, alpha in QUANTILES.items()
    }


VALUE_TAG_METRICS = ("rmse", "mae", "spearman", "gini", "top_decile_share", "bias_pct")
CHURN_TAG_METRICS = ("roc_auc", "pr_auc", "brier", "ece")


def gain_importance(booster: xgb.Booster) -> dict[str, float]:
    """XGBoost's mean gain per split of each feature, largest first (unused features absent)."""
    scores = {k: float(np.mean(v)) for k, v in booster.get_score(importance_type="gain").items()}
    return dict(sorted(scores.items(), key=lambda kv: -kv[1]))


def feature_names_hash(names: list[str]) -> str:
    """sha256 of the comma-joined ordered feature names, first 16 hex digits."""
    return hashlib.sha256(",".join(names).encode()).hexdigest()[:16]


def version_tags(
    table: dict[str, dict[str, float]],
    *,
    churn: ChurnMetrics,
    interval: IntervalMetrics,
    feature_service: str,
    feature_names: list[str],
    test_snapshot: pd.Timestamp,
    training_range: str,
    data_fingerprint: str,
    git_commit: str,
    embargoed: bool,
    evaluation_reason: str,
    aggregate: dict[str, float] | None = None,
) -> dict[str, str]:
    """The registered version's tags: evaluation (read by the promotion gates: every
    predictor on the test origin, the backtests' mean and worst case, the embargo status)
    and lineage."""
    tags = {
        f"eval.{who}.{metric}": repr(float(row[metric]))
        for who, row in table.items()
        for metric in VALUE_TAG_METRICS
    }
    churn_d = churn.as_dict()
    tags.update({f"eval.churn.{m}": repr(float(churn_d[m])) for m in CHURN_TAG_METRICS})
    tags["eval.interval.coverage_p10_p90"] = repr(float(interval.coverage_p10_p90))
    tags["eval.interval.mean_width"] = repr(float(interval.mean_width))
    for key, value in (aggregate or {}).items():
        tags[f"eval.backtest.{key}"] = repr(float(value))
    tags.update(
        {
            EMBARGOED_TAG: str(embargoed).lower(),
            "evaluation.reason": evaluation_reason[:4000],
            "feature_service": feature_service,
            "feature_names_hash": feature_names_hash(feature_names),
            "test_snapshot": test_snapshot.date().isoformat(),
            "training_range": training_range,
            "data_fingerprint": data_fingerprint,
            "git_commit": git_commit,
        }
    )
    return tags


def _reference_sample(
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


def _input_example(
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


def _run_params(
    settings: Settings, served: Recipe, evaluated: Recipe, data: TrainingData
) -> dict[str, str | int | float]:
    m, t, e = settings.model, settings.tuning, settings.evaluation
    params: dict[str, str | int | float] = {
        f"value.{k}": v for k, v in served.final_params.as_dict().items()
    }
    params.update(
        {
            "horizon_days": m.horizon_days,
            "churn_window_days": m.churn_window_days,
            "annual_discount_rate": m.annual_discount_rate,
            "margin_rate": m.margin_rate,
            "value_objective": "reg:tweedie (log link) with a log-baseline base_margin",
            "label_clip_min": 0.0,
            "refit_on": "every row with a label known at the end of the log",
            "evaluation.backtest_origins": e.backtest_origins,
            "evaluation.origin_spacing_days": e.origin_spacing_days,
            "tuning.seed": t.seed,
            "tuning.nthread": t.nthread,
            "tuning.sample_customers": str(t.sample_customers),
            "feature_service": data.feature_service,
            "feature_names": ",".join(data.feature_names),
            "categorical_features": ",".join(data.categorical),
            "split.embargo_days": evaluated.split.embargo_days,
            "split.train_rows": len(evaluated.split.train),
            "split.validation_rows": len(evaluated.split.validation),
            "served.train_rows": len(served.split.train),
            "served.validation_rows": len(served.split.validation),
            "served.known_rows": len(served.split.known),
            "data_end": str(data.data_end) if data.data_end is not None else "unknown",
            "optuna.study": served.study.study_name,
        }
    )
    return params


def fingerprint(frame: pd.DataFrame, names: list[str]) -> str:
    """A SHA-256 over the keys, features and labels (row-order sensitive), 16 hex digits."""
    cols = [c for c in (*KEYS, *names, "clv_label", "churn_label") if c in frame.columns]
    hashed = pd.util.hash_pandas_object(frame[cols], index=False).to_numpy()
    digest = hashlib.sha256(hashed.tobytes())
    digest.update(",".join(cols).encode())
    return digest.hexdigest()[:16]


def _redacted(uri: str) -> str:
    """A storage URI without credentials (`user:pass@` dropped)."""
    if "@" in uri and "://" in uri:
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://{rest.split('@', 1)[1]}"
    return uri
