"""`clv train`: tune, fit, evaluate and register a model version (wiring only)."""

from __future__ import annotations

import typer

from clv.console import JsonOption, emit, progress, settings_of


def train(
    ctx: typer.Context,
    trials: int | None = typer.Option(
        None, "--trials", min=1, help="Optuna trials (default: settings)."
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=1,
        help="Processes tuning the one Optuna study (default: tuning.workers); "
        "more than 1 makes the trial sequence non-reproducible.",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Train the value and churn models on the feature snapshots and register a version."""
    from registry.aliases import ensure_champion
    from training.train import run

    settings = settings_of(ctx)
    result = run(settings, n_trials=trials, workers=workers, progress=progress)
    became_champion = ensure_champion(settings, result.version)
    alias = "champion" if became_champion else None
    m, d, c = result.model_metrics, result.default_metrics, result.churn_metrics
    b = result.baseline_metrics or d
    iv = result.interval_metrics
    summary = "\n".join(
        [
            f"registered {result.model_name} version {result.version}"
            + (" (champion)" if became_champion else " (not promoted: champion exists)")
            + f"  run {result.run_id}",
            f"best trial {result.best_trial} of {sum(result.trials.values())} "
            f"({result.trials.get('pruned', 0)} pruned), {result.seconds:.0f}s",
            f"test ({m.n:,} rows)      tuned  baseline   default",
            f"  normalized gini   {m.gini:8.3f}  {b.gini:8.3f}  {d.gini:8.3f}",
            f"  spearman          {m.spearman:8.3f}  {b.spearman:8.3f}  {d.spearman:8.3f}",
            f"  top-decile share  {m.top_decile_share:8.3f}  {b.top_decile_share:8.3f}"
            f"  {d.top_decile_share:8.3f}",
            f"  rmse              {m.rmse:8.1f}  {b.rmse:8.1f}  {d.rmse:8.1f}",
            f"  mae               {m.mae:8.1f}  {b.mae:8.1f}  {d.mae:8.1f}",
            f"  bias %            {m.bias_pct:8.1f}  {b.bias_pct:8.1f}  {d.bias_pct:8.1f}",
            f"churn: roc auc {c.roc_auc:.3f}  pr auc {c.pr_auc:.3f}  brier {c.brier:.3f}"
            f"  ece {c.ece:.3f}",
            f"interval P10-P90: coverage {iv.coverage_p10_p90:.3f}  mean width {iv.mean_width:.1f}"
            if iv is not None
            else "interval: none",
        ]
    )
    emit(
        summary,
        {
            "run_id": result.run_id,
            "version": result.version,
            "alias": alias,
            "metrics": result.metrics,
        },
        as_json=as_json,
    )
