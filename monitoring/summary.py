"""The summary.json document of one monitoring run: metrics, thresholds, sampling, the
decision and its reasons (what the report pages and the trend read)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict

import pandas as pd

from clv.core.settings import Settings
from clv.core.tags import (
    CHURN_BRIER,
    INTERVAL_COVERAGE,
    MODEL_BIAS_PCT,
    MODEL_MAE,
    MODEL_RMSE,
    eval_tag,
)
from clv.monitoring.backtest import (
    Cohort,
    PredictorScore,
    ValueBacktest,
    compare_with_baselines,
    comparison_sentence,
)
from clv.monitoring.drift import (
    INTERVALS,
    PREDICTIONS,
    SEED,
    MonitorInputs,
    MonitorResult,
    proportion_bound,
    tag_value,
)
from clv.monitoring.report import SUMMARY_FILE


def summary(
    result: MonitorResult,
    settings: Settings,
    *,
    inputs: MonitorInputs,
    keys: Mapping[str, Mapping[str, float]],
    evidently_drift: float,
) -> dict[str, object]:
    """The summary.json document: metrics, thresholds, sampling, the decision and its reasons."""
    m = settings.monitoring
    importance = {f: max(imp.get(f, 0.0) for imp in keys.values()) for f in result.key_features}
    psi_rows = [
        {
            "column": p.column,
            "kind": p.kind,
            "psi": _finite(p.psi),
            "noise_bound": _finite(p.noise_bound),
            "bins": p.bins,
            "drifted": p.drifted(m.psi_threshold),
            "key": p.column in importance,
            "importance": importance.get(p.column),
            "prediction": p.column in (*PREDICTIONS, *INTERVALS),
        }
        for p in result.psi
    ]
    ev = result.evidence
    n_ref, n_cur = result.reference.rows_used, result.current.rows_used
    statement = (
        "PSI, data quality, the columns' statistics and the backtests use every row "
        f"({result.reference.rows_total:,} reference, {result.current.rows_total:,} current); "
        "a PSI below its noise bound "
        "(the 99th percentile of PSI between two samples of one distribution) is not counted "
        "as drift. "
        + (
            f"The Evidently report compares a seeded random sample of {n_ref:,} reference and "
            f"{n_cur:,} current rows (at most {m.sample_rows:,} per side): a share it reports is "
            f"within +/-{proportion_bound(min(n_ref, n_cur)):.2%} of the full data's at 99%."
            if result.reference.sampled or result.current.sampled
            else "The Evidently report uses every row (no sampling)."
        )
    )

    churn_doc: dict[str, object] | None = None
    if inputs.churn is not None:
        c = inputs.churn
        churn_doc = {
            **_cohort_doc(c.cohort, c.n),
            "churn_rate": _finite(c.churn_rate),
            "mean_predicted": _finite(c.mean_predicted),
            "ece": _finite(c.ece),
            "ece_test": ev.churn_ece_test,
            "brier": _finite(c.brier),
            "brier_test": tag_value(inputs.model_tags, CHURN_BRIER),
            "early_gini": _finite(c.early_gini),
            "reliability": c.reliability.to_dict(orient="records"),
        }
    value_doc: dict[str, object] | None = None
    if inputs.value is not None:
        v = inputs.value
        value_doc = {
            **_cohort_doc(v.cohort, v.n),
            "gini": _finite(v.gini),
            "gini_test": ev.value_gini_test,
            "rmse": _finite(v.rmse),
            "rmse_test": tag_value(inputs.model_tags, MODEL_RMSE),
            "bias_pct": _finite(v.bias_pct),
            "bias_test": tag_value(inputs.model_tags, MODEL_BIAS_PCT),
            "mae": _finite(v.mae),
            "mae_test": tag_value(inputs.model_tags, MODEL_MAE),
            **_baselines_doc(v, inputs.model_tags),
            "coverage": _finite(v.coverage),
            "coverage_test": tag_value(inputs.model_tags, INTERVAL_COVERAGE),
            "deciles": v.deciles.to_dict(orient="records"),
        }
    pred_psi = [v for v in ev.prediction_psi.values() if math.isfinite(v)]
    return {
        "as_of": result.as_of.isoformat(),
        "model_version": result.model_version,
        "verdict": result.verdict.value,
        "reasons": list(result.reasons),
        "findings": [asdict(f) for f in result.decision.findings],
        "reference": inputs.reference_label,
        "current": inputs.current_label,
        "notes": list(inputs.notes),
        "metrics": {
            "drift_share": {k: _finite(v) for k, v in ev.drift_share.items()},
            "drifted_key_features": list(ev.drifted_key_features),
            "key_features": list(result.key_features),
            "prediction_psi": {k: _finite(v) for k, v in ev.prediction_psi.items()},
            "evidently_drift_share": _finite(evidently_drift),
            "psi": psi_rows,
            "quality": {
                "issues": list(result.quality.issues),
                "non_finite": dict(result.quality.non_finite),
                "columns": [asdict(q) for q in result.quality.columns],
            },
            "churn_backtest": churn_doc,
            "value_backtest": value_doc,
        },
        "trend": {
            "drift_share": _finite(result.drift_share),
            "max_prediction_psi": max(pred_psi) if pred_psi else None,
            "churn_ece": _finite(inputs.churn.ece) if inputs.churn else None,
            "value_gini": _finite(inputs.value.gini) if inputs.value else None,
        },
        "thresholds": m.model_dump(mode="json"),
        "sampling": {
            "statement": statement,
            "max_rows": m.sample_rows,
            "seed": SEED,
            "reference": result.reference.as_dict(),
            "current": result.current.as_dict(),
            "share_bound_99": _finite(proportion_bound(min(n_ref, n_cur))),
        },
        "skipped_columns": [{"column": c, "reason": r} for c, r in result.skipped],
        "seconds": round(result.seconds, 2),
        "timings": {k: round(v, 2) for k, v in result.timings.items()},
        "files": {
            "evidently_html": result.html_path.name,
            "evidently_json": result.json_path.name,
            "summary": SUMMARY_FILE,
        },
    }


def _cohort_doc(cohort: Cohort, n: int) -> dict[str, object]:
    """The matured cohort a backtest scored, and whether the model was trained on it."""
    return {
        "snapshot": cohort.snapshot.isoformat(),
        "window_days": cohort.window_days,
        "in_training": cohort.in_training,
        "training_note": (
            "in the model's training data: in-sample, optimistic"
            if cohort.in_training
            else "after the model's training data: out-of-sample"
        ),
        "n": n,
    }


def _baselines_doc(value: ValueBacktest, tags: Mapping[str, str]) -> dict[str, object]:
    """The champion and every simple baseline on the matured value cohort's rows (with each
    one's test-origin Gini and RMSE at training, from the version's `eval.<predictor>.*` tags),
    and the sentence saying whether the champion beats the best baseline on Gini and on RMSE."""

    def row(score: PredictorScore) -> dict[str, object]:
        tag = "model" if score.predictor == "champion" else score.predictor
        return {
            "predictor": score.predictor,
            "n": score.n,
            "gini": _finite(score.gini),
            "rmse": _finite(score.rmse),
            "mae": _finite(score.mae),
            "bias_pct": _finite(score.bias_pct),
            "reason": score.reason,
            "gini_test": tag_value(tags, eval_tag(tag, "gini")),
            "rmse_test": tag_value(tags, eval_tag(tag, "rmse")),
        }

    comparison = {
        c.metric: {
            "champion": _finite(c.champion),
            "best_baseline": c.best.predictor if c.best is not None else None,
            "best_value": _finite(c.best_value),
            "champion_beats": c.beats,
        }
        for c in compare_with_baselines(value)
    }
    return {
        "predictors": [row(s) for s in (value.champion, *value.baselines)],
        "comparison": {**comparison, "sentence": comparison_sentence(value)},
    }


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def json_default(o: object) -> object:
    if isinstance(o, pd.Timestamp):
        return o.isoformat()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
