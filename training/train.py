"""Training: labels -> temporal split -> Optuna study -> refit -> evaluate -> MLflow version.

`run` gathers the data (entity rows from the feature build, features from Feast, labels from the
transaction log); `fit_and_log` does the rest on an in-memory frame, so that tests and other
callers can feed it synthetic data.

Evaluation is an honest backtest: the test snapshot is the latest with a complete label; when the
history allows, train and validation keep only snapshots whose label window closes by the test
snapshot (an embargo of one horizon; see training.split), else the embargo is 0 and logged so.
The best trial's parameters and early-stopped rounds are refitted on train + validation and
scored once on test, beside a default-parameter XGBoost fitted on the same rows.

Refit choice: the registered model is then refitted with those parameters on EVERY row with a
complete label (value) and every row with a complete churn window (churn), so that the champion
has seen the most recent customers and category levels; the test metrics estimate its quality.
`fit_and_log(..., refit_on="train+validation")` registers the evaluated model instead.
"""

from __future__ import annotations

import hashlib
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import pandas as pd

from clv.errors import DataError, NotReadyError
from clv.settings import Settings
from training.labels import KEYS, as_utc, make_labels
from training.metrics import ChurnMetrics, ValueMetrics, churn_metrics, value_metrics
from training.model import ClvModel, ModelCard
from training.split import TemporalSplit, max_feasible_embargo, temporal_split

if TYPE_CHECKING:
    import xgboost as xgb

REFERENCE_ROWS = 20_000
FEATURES_FILE = "customer_features.parquet"
Progress = Callable[[str], None]


class FeatureSource(Protocol):
    """Where training gets features; `features.feast_io` (the module) satisfies it."""

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
    model_metrics: ValueMetrics
    default_metrics: ValueMetrics
    churn_metrics: ChurnMetrics
    split: dict[str, object]
    trials: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        """Test metrics: the tuned model, the default-parameter model and the churn model."""
        return {
            "model": self.model_metrics.as_dict(),
            "default": self.default_metrics.as_dict(),
            "churn": self.churn_metrics.as_dict(),
        }


def run(
    settings: Settings,
    *,
    n_trials: int | None = None,
    source: FeatureSource | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train on the workspace's features and transactions; log and register one version."""
    say = progress or (lambda _msg: None)
    if source is None:
        from features import feast_io

        source = feast_io
    say("labels: reading entity rows and transactions")
    data = load_training_data(settings, source=source)
    return fit_and_log(settings, data, n_trials=n_trials, progress=say)


def load_training_data(settings: Settings, *, source: FeatureSource) -> TrainingData:
    """Entity rows of the feature build, labels from the log, features through `source`."""
    from clv.store import read_table

    path = settings.features_dir / FEATURES_FILE
    if not path.exists():
        raise NotReadyError(f"no feature snapshots in {path}: run `clv features build`")
    entities = pd.read_parquet(path, columns=list(KEYS)).drop_duplicates(ignore_index=True)
    entities["customer_id"] = entities["customer_id"].astype(str)
    entities["event_timestamp"] = as_utc(entities["event_timestamp"])
    transactions = read_table(settings, "transactions")
    if transactions.empty:
        raise DataError("no transactions ingested: run `clv data ingest`")
    data_end = pd.Timestamp(as_utc(transactions["ts"]).max())
    m = settings.model
    labels = make_labels(
        transactions,
        entities,
        horizon_days=m.horizon_days,
        churn_window_days=m.churn_window_days,
        annual_discount_rate=m.annual_discount_rate,
        margin_rate=m.margin_rate,
        data_end=data_end,
    )
    labelled = labels.loc[labels["clv_label"].notna() | labels["churn_label"].notna()]
    if labelled.empty:
        raise DataError(
            f"no snapshot has a complete {m.horizon_days}-day label window before {data_end}: "
            "build features with earlier snapshots or generate a longer history"
        )
    feats = source.historical_features(settings, labelled[list(KEYS)].reset_index(drop=True))
    feats["event_timestamp"] = as_utc(feats["event_timestamp"])
    feats["customer_id"] = feats["customer_id"].astype(str)
    frame = feats.merge(labelled, on=list(KEYS), how="inner", validate="many_to_one")
    return TrainingData(
        frame=frame,
        feature_names=tuple(source.feature_names(settings)),
        categorical=tuple(source.categorical_features(settings)),
        feature_service=settings.features.service,
        data_end=data_end,
    )


RefitOn = Literal["all", "train+validation"]


def split_for(settings: Settings, data: TrainingData) -> TemporalSplit:
    """The evaluation split of the CLV-complete rows, embargoed by the horizon when feasible."""
    missing = [c for c in (*data.feature_names, *KEYS, "clv_label") if c not in data.frame]
    if missing:
        raise DataError(f"training frame lacks columns {missing}")
    complete = data.frame.loc[data.frame["clv_label"].notna()]
    embargo = max_feasible_embargo(complete, wanted_days=settings.model.horizon_days)
    return temporal_split(complete, embargo_days=embargo)


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
    )


def fit_and_log(
    settings: Settings,
    data: TrainingData,
    *,
    n_trials: int | None = None,
    timeout_seconds: float | None = None,
    refit_on: RefitOn = "all",
    progress: Progress | None = None,
) -> TrainResult:
    """Tune, evaluate on the test snapshot, refit, log one MLflow parent run, register it.

    Evaluation: the best parameters are refitted on train + validation and scored once on test
    (the tuned model and a default-parameter model, on the same rows). With `refit_on="all"`
    the registered model is then refitted with the same parameters and rounds on every row with
    a complete label (test included), so that it has seen the most recent customers; the test
    metrics are the backtest estimate of its quality. `"train+validation"` registers the
    evaluated model itself.
    """
    import optuna
    import xgboost as xgb

    from training import mlflow_io
    from training.churn import fit_churn
    from training.objective import (
        DEFAULT_VALUE_PARAMS,
        TuningData,
        ValueObjective,
        fit_value,
        params_from_trial,
    )

    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    tuning, nthread, seed = settings.tuning, settings.tuning.nthread, settings.tuning.seed
    trials = n_trials if n_trials is not None else tuning.n_trials
    if trials < 1:
        raise ValueError("n_trials must be at least 1")
    split = split_for(settings, data)
    names = list(data.feature_names)
    fit_frame = pd.concat([split.train, split.validation], ignore_index=True)
    eval_card = card_for(settings, data, split.train)
    enc = _encoder(eval_card)

    def value_matrix(frame: pd.DataFrame, encoder: ClvModel = enc) -> xgb.QuantileDMatrix:
        return xgb.QuantileDMatrix(
            encoder.matrix(frame), label=_value_target(frame), feature_names=names, nthread=nthread
        )

    tune_rows = _tuning_rows(split.train, tuning.sample_customers, seed=seed)
    tuning_data = TuningData.from_arrays(
        enc.matrix(split.train)[tune_rows],
        _value_target(split.train)[tune_rows],
        enc.matrix(split.validation),
        _value_target(split.validation),
        feature_names=names,
        nthread=nthread,
    )
    settings.ensure_dirs()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    study_name = f"{settings.mlflow.experiment}-{stamp}-{uuid.uuid4().hex[:6]}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=settings.optuna_storage,
        study_name=study_name,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=20),
    )
    say(
        f"tuning: {trials} trial(s) on {len(tune_rows):,} train / {len(split.validation):,} "
        f"validation rows, embargo {split.embargo_days} days (study {study_name})"
    )

    with mlflow_io.training_run(settings, run_name=mlflow_io.run_name()) as mrun:
        study.optimize(
            ValueObjective(tuning_data, nthread=nthread, seed=seed),
            n_trials=trials,
            timeout=timeout_seconds if timeout_seconds is not None else tuning.timeout_seconds,
            callbacks=[mrun.log_trial],
            show_progress_bar=sys.stderr.isatty(),
        )
        counts = {
            state.name.lower(): sum(1 for t in study.trials if t.state == state)
            for state in optuna.trial.TrialState
        }
        if not counts.get("complete"):
            raise DataError("no Optuna trial completed: raise --trials or the timeout")
        best = study.best_trial
        best_params = params_from_trial(dict(best.params))
        rounds = int(best.user_attrs.get("best_iteration", best_params.num_boost_round - 1)) + 1
        final_params = replace(best_params, num_boost_round=max(1, rounds))

        say(f"evaluate: best trial {best.number} ({rounds} rounds) refitted on train + validation")
        d_fit = value_matrix(fit_frame)
        value = fit_value(final_params, d_fit, nthread=nthread, seed=seed).booster
        default = fit_value(DEFAULT_VALUE_PARAMS, d_fit, nthread=nthread, seed=seed).booster
        churn = _fit_churn_eval(split, enc, names, nthread=nthread, seed=seed)
        evaluated = ClvModel(eval_card, value=value, churn=churn)
        x_te, y_te = enc.matrix(split.test), _value_target(split.test)
        pred_te = evaluated.predict_matrix(x_te)
        model_m = value_metrics(y_te, pred_te["clv"])
        default_m = value_metrics(y_te, np.asarray(default.inplace_predict(x_te)))
        has_churn = split.test["churn_label"].notna().to_numpy()
        churn_m = churn_metrics(
            split.test["churn_label"].to_numpy(dtype=np.float64)[has_churn],
            pred_te["churn_probability"][has_churn],
        )

        if refit_on == "all":
            value_rows = data.frame.loc[data.frame["clv_label"].notna()].reset_index(drop=True)
            churn_rows = data.frame.loc[data.frame["churn_label"].notna()].reset_index(drop=True)
            say(f"refit: {len(value_rows):,} value rows and {len(churn_rows):,} churn rows")
            card = card_for(settings, data, value_rows)
            full = _encoder(card)
            value_all = fit_value(
                final_params, value_matrix(value_rows, full), nthread=nthread, seed=seed
            ).booster
            churn_all = None
            if churn is not None and churn_rows["churn_label"].nunique() == 2:
                d_churn = xgb.QuantileDMatrix(
                    full.matrix(churn_rows),
                    label=churn_rows["churn_label"].to_numpy(dtype=np.float64),
                    feature_names=names,
                    nthread=nthread,
                )
                churn_all = fit_churn(
                    d_churn, nthread=nthread, seed=seed, rounds=churn.num_boosted_rounds()
                )
            model, reference_rows = ClvModel(card, value=value_all, churn=churn_all), value_rows
        else:
            model, reference_rows = evaluated, fit_frame

        reference = _reference_sample(reference_rows, model, names, seed=seed)
        example = _input_example(split.test, names, data.categorical)
        record = mlflow_io.RunRecord(
            params=_run_params(settings, split, final_params.as_dict(), data, study_name, refit_on),
            metrics={
                **{f"test_{k}": v for k, v in model_m.as_dict().items()},
                **{f"test_default_{k}": v for k, v in default_m.as_dict().items()},
                **{f"test_churn_{k}": v for k, v in churn_m.as_dict().items()},
                "best_validation_score": float(best.value if best.value is not None else np.nan),
                "best_trial": float(best.number),
                "trials_complete": float(counts.get("complete", 0)),
                "trials_pruned": float(counts.get("pruned", 0)),
            },
            tags={
                "clv.feature_service": data.feature_service,
                "clv.data_fingerprint": fingerprint(data.frame, names),
                "clv.git_commit": mlflow_io.git_commit() or "unknown",
                "clv.training_start": split.train_times[0].isoformat(),
                "clv.training_end": (
                    split.test_times[-1] if refit_on == "all" else split.validation_times[-1]
                ).isoformat(),
                "clv.test_snapshot": split.test_times[-1].isoformat(),
                "optuna.study": study_name,
                "optuna.storage": _redacted(settings.optuna_storage),
            },
            documents={
                "features.json": {
                    "feature_service": data.feature_service,
                    "feature_names": names,
                    "categories": model.card.categories,
                },
                "split.json": split.summary(),
                "evaluation.json": {
                    "model": model_m.as_dict(),
                    "default": default_m.as_dict(),
                    "churn": churn_m.as_dict(),
                },
            },
        )
        say("mlflow: logging the run and registering the model")
        mrun.log_record(record)
        logged = mrun.log_model(model, reference=reference, input_example=example)

    return TrainResult(
        run_id=logged.run_id,
        version=logged.version,
        model_name=settings.mlflow.model_name,
        study_name=study_name,
        best_trial=best.number,
        best_params=final_params.as_dict(),
        validation_score=float(best.value if best.value is not None else np.nan),
        model_metrics=model_m,
        default_metrics=default_m,
        churn_metrics=churn_m,
        split=split.summary(),
        trials=counts,
        seconds=time.perf_counter() - started,
    )


def _value_target(frame: pd.DataFrame) -> np.ndarray:
    """The value model's target: the CLV label clipped at 0 (see training.objective)."""
    return np.clip(frame["clv_label"].to_numpy(dtype=np.float64), 0.0, None)


def _encoder(card: ModelCard) -> ClvModel:
    """A ClvModel used only for `matrix` (feature order and category codes)."""
    import xgboost as xgb

    return ClvModel(card, value=xgb.Booster())


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
    split: TemporalSplit, enc: ClvModel, names: list[str], *, nthread: int, seed: int
) -> xgb.Booster | None:
    """Churn booster on train, early-stopped on validation; None without two classes."""
    import xgboost as xgb

    from training.churn import fit_churn

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
    settings: Settings,
    split: TemporalSplit,
    value_params: dict[str, float | int],
    data: TrainingData,
    study_name: str,
    refit_on: RefitOn,
) -> dict[str, str | int | float]:
    m, t = settings.model, settings.tuning
    params: dict[str, str | int | float] = {f"value.{k}": v for k, v in value_params.items()}
    params.update(
        {
            "horizon_days": m.horizon_days,
            "churn_window_days": m.churn_window_days,
            "annual_discount_rate": m.annual_discount_rate,
            "margin_rate": m.margin_rate,
            "value_objective": "reg:tweedie",
            "label_clip_min": 0.0,
            "refit_on": refit_on,
            "tuning.seed": t.seed,
            "tuning.nthread": t.nthread,
            "tuning.sample_customers": str(t.sample_customers),
            "feature_service": data.feature_service,
            "feature_names": ",".join(data.feature_names),
            "categorical_features": ",".join(data.categorical),
            "split.embargo_days": split.embargo_days,
            "split.train_rows": len(split.train),
            "split.validation_rows": len(split.validation),
            "split.test_rows": len(split.test),
            "data_end": str(data.data_end) if data.data_end is not None else "unknown",
            "optuna.study": study_name,
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
