"""What a training run records, through the MLflow adapter (clv.training.mlflow_io): the run's
params, metrics, tags and documents (choices.json: every choice's evidence), the evaluation
files, the model with its reference sample, and the registered version's tags (`eval.*`, read
by the promotion gates, and the lineage: feature contract, data fingerprint, git commit)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from clv.core.services import redact
from clv.core.settings import Settings
from clv.core.tags import (
    CHURN_METRICS,
    EMBARGOED_TAG,
    EVALUATION_REASON,
    FEATURE_NAMES_HASH,
    FEATURE_SERVICE,
    INTERVAL_COVERAGE,
    INTERVAL_WIDTH,
    TEST_SNAPSHOT,
    VALUE_METRICS,
    eval_tag,
    feature_names_hash,
)
from clv.evaluation.metrics import ChurnMetrics
from clv.model.baseline import SnapshotBaselines
from clv.model.intervals import IntervalMetrics
from clv.training.artifacts import input_example, log_evaluation_files, reference_sample
from clv.training.backtest import OriginEvaluation, backtest_aggregate, backtest_table
from clv.training.champion import ChampionModel, champion_tags
from clv.training.dataset import TrainingData
from clv.training.labels import KEYS
from clv.training.recipe import Recipe
from clv.training.study import best_value

if TYPE_CHECKING:
    import xgboost as xgb

    from clv.training.mlflow_io import LoggedVersion, TrainingRun
    from clv.training.tuning import ParallelOutcome

INTERVAL_METHOD = (
    "xgboost quantile, conformal log1p scales around P50 per predicted-value band (validation)"
)


@dataclass(frozen=True)
class RunFacts:
    """What a run's record is made of: the served fit, the evaluation fits and their scores
    (the test origin's first), the offsets, and what is derived from them once."""

    settings: Settings
    data: TrainingData
    served: Recipe
    recipes: list[Recipe]
    evaluations: list[OriginEvaluation]
    offsets: SnapshotBaselines | None
    n_workers: int
    fingerprint: str
    commit: str
    backtests: pd.DataFrame
    aggregate: dict[str, float]

    @property
    def test(self) -> OriginEvaluation:
        return self.evaluations[0]

    @property
    def evaluated(self) -> Recipe:
        return self.recipes[0]

    @property
    def table(self) -> dict[str, dict[str, float]]:
        """The test origin's value metrics by predictor."""
        return {k: v.as_dict() for k, v in self.test.value.items()}

    @property
    def base_params(self) -> dict[str, float]:
        """The baseline's parameters fitted at the test origin (none without offsets)."""
        offsets = self.offsets
        base_fit = offsets.fits.get(self.test.origin) if offsets is not None else None
        return base_fit.as_dict() if base_fit is not None else {}


def log_version(
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

    names = list(data.feature_names)
    fp = fingerprint(data.frame, names)
    commit = mlflow_io.git_commit() or "unknown"
    backtests = backtest_table(evaluations)
    facts = RunFacts(
        settings,
        data,
        served,
        recipes,
        evaluations,
        offsets,
        n_workers,
        fingerprint=fp,
        commit=commit,
        backtests=backtests,
        aggregate=backtest_aggregate(backtests),
    )
    record = mlflow_io.RunRecord(
        params=record_params(facts),
        metrics=record_metrics(facts),
        tags=record_tags(facts),
        documents=record_documents(facts),
    )
    mrun.log_record(record)
    test, evaluated = facts.test, facts.evaluated
    log_evaluation_files(mrun, test, backtests, evaluated.model, served.tuned.study)
    known = served.split.known
    reference = reference_sample(
        known.loc[known["clv_label"].notna()], served.model, names, seed=settings.tuning.seed
    )
    example = input_example(test.rows, names, data.categorical)
    logged = mrun.log_model(
        served.model, reference=reference, input_example=example, evaluated=evaluated.model
    )
    mrun.tag_version(logged.version, registered_tags(facts, champion))
    return logged


def record_params(facts: RunFacts) -> dict[str, str | int | float]:
    """The run's params: the settings and splits, the test origin's baseline, the evaluation
    and every choice of the served fit, how tuning ran and how the final fits were made."""
    served, test, offsets, n_workers = facts.served, facts.test, facts.offsets, facts.n_workers
    split = facts.evaluated.split
    card = served.model.card
    tuned, chosen = served.tuned, served.chosen
    return {
        **setup_params(facts.settings, served, facts.evaluated, facts.data),
        **{f"baseline.{k}": v for k, v in facts.base_params.items()},
        "evaluation.embargoed": str(split.embargoed).lower(),
        "evaluation.reason": split.reason[:500],
        "split.test_rows": len(test.rows),
        "evaluation.origins": ",".join(e.origin.date().isoformat() for e in facts.evaluations),
        "tuning.rows": tuned.tune_rows,
        "tuning.customers": tuned.tune_customers,
        "churn.calibration": chosen.calibration.method,
        "interval.method": INTERVAL_METHOD,
        "interval.bands": len(chosen.bands.scales),
        "interval.scale_lower": chosen.scale[0],
        "interval.scale_upper": chosen.scale[1],
        "value_model": tuned.choice.kind,
        "value_model.reason": tuned.choice.reason,
        "value_blend": card.value_blend,
        "value_level": card.value_level,
        "value_blend.reason": chosen.blend.reason[:500],
        "value_scale": card.value_scale,
        "value_offset": "log BG/NBD+GG CLV, per-snapshot fits; served: frozen at "
        f"{served.split.anchor_time.date()}"
        if offsets is not None
        else "none",
        "offset.failed_snapshots": len(offsets.failed) if offsets is not None else 0,
        "excluded_features": ",".join(card.excluded_features),
        "tuning.workers": n_workers,
        "tuning.reproducible": "yes (one process, seeded TPE)"
        if n_workers == 1
        else f"no: {n_workers} processes share each study; the TPE sequence depends on timing",
        **parallel_params(
            [r.tuned.parallel for r in (*facts.recipes, served) if r.tuned.parallel is not None]
        ),
        **served.refit_report,
    }


def record_metrics(facts: RunFacts) -> dict[str, float]:
    """The run's metrics: every predictor on the test origin, the served recipe's churn and
    interval metrics (calibrated and raw), the backtests' aggregate, the served fit's
    validation evidence and its study."""
    served, test, table = facts.served, facts.test, facts.table
    tuned, chosen = served.tuned, served.chosen
    return {
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
        **{f"backtest_{k}": v for k, v in facts.aggregate.items()},
        "evaluation_embargoed": float(facts.evaluated.split.embargoed),
        "evaluation_origins": float(len(facts.evaluations)),
        "validation_rmse_tweedie": tuned.choice.tweedie_rmse,
        "validation_rmse_hurdle": tuned.choice.hurdle_rmse,
        "validation_interval_coverage": chosen.valid_interval.coverage_p10_p90,
        "validation_interval_mean_width": chosen.valid_interval.mean_width,
        **{
            f"validation_churn_{stat}_{method}": value
            for method, score in chosen.calibration.candidates.items()
            for stat, value in score.as_dict().items()
        },
        "best_validation_score": best_value(tuned.study),
        "best_trial": float(tuned.study.best_trial.number),
        "trials_complete": float(tuned.counts.get("complete", 0)),
        "trials_pruned": float(tuned.counts.get("pruned", 0)),
        "trials_failed": float(tuned.counts.get("fail", 0)),
    }


def record_tags(facts: RunFacts) -> dict[str, str]:
    """The run's lineage tags: feature contract, data, code, time ranges and the study."""
    served_split = facts.served.split
    return {
        "clv.feature_service": facts.data.feature_service,
        "clv.data_fingerprint": facts.fingerprint,
        "clv.git_commit": facts.commit,
        "clv.training_start": served_split.train_times[0].isoformat(),
        "clv.training_end": served_split.validation_time.isoformat(),
        "clv.test_snapshot": facts.test.origin.isoformat(),
        "clv.evaluation.embargoed": str(facts.evaluated.split.embargoed).lower(),
        "clv.churn_calibration": facts.served.chosen.calibration.reason,
        "optuna.study": facts.served.tuned.study.study_name,
        "optuna.storage": redact(facts.settings.optuna_storage),
    }


def record_documents(facts: RunFacts) -> dict[str, object]:
    """The run's JSON documents: features, splits, the evaluation, the baseline, the served
    value booster's gain importance and every choice's evidence."""
    served, test, data = facts.served, facts.test, facts.data
    split = facts.evaluated.split
    return {
        "features.json": {
            "feature_service": data.feature_service,
            "feature_names": list(data.feature_names),
            "excluded_features": served.model.card.excluded_features,
            "categories": served.model.card.categories,
        },
        "split.json": {"test": split.summary(), "served": served.split.summary()},
        "evaluation.json": {
            "embargoed": split.embargoed,
            "reason": split.reason,
            "test": test.summary(),
            "backtests": [e.summary() for e in facts.evaluations[1:]],
            "aggregate": facts.aggregate,
            "churn_raw": test.churn_raw.as_dict(),
            "interval_raw": test.interval_raw.as_dict(),
            "churn_calibration": served.chosen.calibration.reason,
            "value_model": served.tuned.choice.as_evidence(),
            "interval_validation": served.chosen.valid_interval.as_dict(),
        },
        "baseline.json": facts.base_params,
        "importance_gain.json": gain_importance(served.model.value),
        "choices.json": choices_evidence(served, facts.recipes, facts.backtests),
    }


def registered_tags(facts: RunFacts, champion: ChampionModel | None) -> dict[str, str]:
    """The registered version's tags (`version_tags`), with `eval.champion.*` when a live
    champion was scored on the same test rows."""
    test, split, served_split = facts.test, facts.evaluated.split, facts.served.split
    training_range = (
        f"{served_split.train_times[0].isoformat()}/{served_split.validation_time.isoformat()}"
    )
    tags = version_tags(
        facts.table,
        churn=test.churn,
        interval=test.interval,
        feature_service=facts.data.feature_service,
        feature_names=list(facts.data.feature_names),
        test_snapshot=test.origin,
        training_range=training_range,
        data_fingerprint=facts.fingerprint,
        git_commit=facts.commit,
        embargoed=split.embargoed,
        evaluation_reason=split.reason,
        aggregate=facts.aggregate,
    )
    if champion is None:
        return tags
    registry = facts.settings.registry
    return tags | champion_tags(
        champion,
        test,
        samples=registry.bootstrap_samples,
        level=registry.noise_level,
        seed=facts.settings.tuning.seed,
    )


def choices_evidence(
    served: Recipe, recipes: list[Recipe], backtests: pd.DataFrame
) -> dict[str, object]:
    """What each choice of the recipe was and the evidence that made it: the served fit's,
    and the same choices at every evaluation origin (test origin first); how the tuned model
    did against a default XGBoost at each origin."""

    def one(r: Recipe) -> dict[str, object]:
        tuned, chosen = r.tuned, r.chosen
        return {
            "origin": r.split.origin.date().isoformat(),
            "objective": tuned.choice.as_evidence(),
            "blend": chosen.blend.as_evidence(),
            "churn_calibration": chosen.calibration.as_evidence(),
            "intervals": {
                "method": INTERVAL_METHOD,
                "one_band_scale": list(chosen.scale),
                "bands": chosen.bands.as_dict(),
                "validation": chosen.valid_interval.as_dict(),
                "validation_coverage_by_decile": chosen.valid_bands.coverage,
                "validation_rows_by_decile": chosen.valid_bands.n,
            },
            "tuning": {
                "trials": tuned.counts,
                "best_validation_rmse": best_value(tuned.study),
                "params": tuned.final_params.as_dict(),
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
        eval_tag(who, metric): repr(float(row[metric]))
        for who, row in table.items()
        for metric in VALUE_METRICS
    }
    churn_d = churn.as_dict()
    tags.update({eval_tag("churn", m): repr(float(churn_d[m])) for m in CHURN_METRICS})
    tags[INTERVAL_COVERAGE] = repr(float(interval.coverage_p10_p90))
    tags[INTERVAL_WIDTH] = repr(float(interval.mean_width))
    for key, value in (aggregate or {}).items():
        tags[eval_tag("backtest", key)] = repr(float(value))
    tags.update(
        {
            EMBARGOED_TAG: str(embargoed).lower(),
            EVALUATION_REASON: evaluation_reason[:4000],
            FEATURE_SERVICE: feature_service,
            FEATURE_NAMES_HASH: feature_names_hash(feature_names),
            TEST_SNAPSHOT: test_snapshot.date().isoformat(),
            "training_range": training_range,
            "data_fingerprint": data_fingerprint,
            "git_commit": git_commit,
        }
    )
    return tags


def setup_params(
    settings: Settings, served: Recipe, evaluated: Recipe, data: TrainingData
) -> dict[str, str | int | float]:
    """The served fit's tuned parameters, the settings and the feature contract, and the
    sizes of the test origin's and the served fit's splits."""
    m, t, e = settings.model, settings.tuning, settings.evaluation
    params: dict[str, str | int | float] = {
        f"value.{k}": v for k, v in served.tuned.final_params.as_dict().items()
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
            "optuna.study": served.tuned.study.study_name,
        }
    )
    return params


def parallel_params(outcomes: list[ParallelOutcome]) -> dict[str, str | int | float]:
    """What the tuning processes of every study did: exit codes (study after study),
    orphaned trials and trials taken over (summed); nothing for one-process tuning."""
    if not outcomes:
        return {}
    return {
        "tuning.worker_exit_codes": ",".join(str(c) for o in outcomes for c in o.exit_codes),
        "tuning.orphaned_trials": sum(o.orphaned for o in outcomes),
        "tuning.taken_over_trials": sum(o.taken_over for o in outcomes),
    }


def gain_importance(booster: xgb.Booster) -> dict[str, float]:
    """XGBoost's mean gain per split of each feature, largest first (unused features absent)."""
    scores = {k: float(np.mean(v)) for k, v in booster.get_score(importance_type="gain").items()}
    return dict(sorted(scores.items(), key=lambda kv: -kv[1]))


def fingerprint(frame: pd.DataFrame, names: list[str]) -> str:
    """A SHA-256 over the keys, features and labels (row-order sensitive), 16 hex digits."""
    cols = [c for c in (*KEYS, *names, "clv_label", "churn_label") if c in frame.columns]
    hashed = pd.util.hash_pandas_object(frame[cols], index=False).to_numpy()
    digest = hashlib.sha256(hashed.tobytes())
    digest.update(",".join(cols).encode())
    return digest.hexdigest()[:16]
