"""The monitoring run in MLflow: experiment `clv-monitoring`, tagged with the judged version.

Same tracking store as training (`clv.training.mlflow_io.connect`); artifacts are the run's report
folder (index.html, the Evidently report, summary.json and plots). The matured value cohort's
metrics are logged per predictor (`backtest_<champion|baseline|last_horizon|run_rate>_<gini|rmse|
mae|bias_pct>`), with the comparison sentence as the tag `backtest_comparison`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from clv.core.settings import Settings
from clv.monitoring.backtest import comparison_sentence

if TYPE_CHECKING:
    from clv.monitoring.drift import MonitorResult

EXPERIMENT = "clv-monitoring"


def log_monitor_run(settings: Settings, result: MonitorResult) -> str:
    """Log one monitoring run (tags, metrics, the report folder); returns its run id."""
    import mlflow

    from clv.training.mlflow_io import connect

    client = connect(settings)
    found = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = (
        str(found.experiment_id)
        if found is not None
        else str(client.create_experiment(EXPERIMENT, artifact_location=_artifacts(settings)))
    )
    ev = result.evidence
    metrics: dict[str, float] = {
        f"drift_share_{k}": v for k, v in ev.drift_share.items() if math.isfinite(v)
    }
    metrics.update({f"prediction_psi_{k}": v for k, v in ev.prediction_psi.items()})
    for key, value in (
        ("churn_ece", ev.churn_ece),
        ("value_gini", ev.value_gini),
        ("coverage_p10_p90", ev.coverage),
    ):
        if value is not None:
            metrics[key] = value
    cohort = result.value_backtest
    if cohort is not None:  # the matured value cohort, champion and every baseline
        for score in (cohort.champion, *cohort.baselines):
            for name in ("gini", "rmse", "mae", "bias_pct"):
                metrics[f"backtest_{score.predictor}_{name}"] = float(getattr(score, name))
    metrics["drifted_key_features"] = float(len(ev.drifted_key_features))
    metrics["quality_issues"] = float(len(result.quality.issues))
    metrics["non_finite_values"] = float(sum(result.quality.non_finite.values()))
    metrics["seconds"] = result.seconds
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"monitor-{result.as_of.date()}"
    ) as run:
        tags = {
            "model_version": result.model_version or "none",
            "model_name": settings.mlflow.model_name,
            "verdict": result.verdict.value,
            "as_of": result.as_of.isoformat(),
        }
        if cohort is not None:
            tags["backtest_comparison"] = comparison_sentence(cohort)
        mlflow.set_tags(tags)
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if math.isfinite(v)})
        mlflow.log_artifacts(str(result.report_dir), artifact_path="report")
        return str(run.info.run_id)


def _artifacts(settings: Settings) -> str:
    root = settings.artifact_root.rstrip("/")
    return f"{root}/{EXPERIMENT}"
