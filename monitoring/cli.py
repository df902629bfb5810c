"""`clv monitor run` and `clv retrain`: thin commands over monitoring.drift.

Exit codes: 0 for OK or WARN, 3 for RETRAIN (a gate a scheduler can act on).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from clv.console import JsonOption, emit, progress, settings_of

if TYPE_CHECKING:
    from monitoring.drift import MonitorResult

RETRAIN_EXIT = 3

app = typer.Typer(help="Drift monitoring against the champion's training reference.")


@app.command("run")
def run(
    ctx: typer.Context,
    as_of: str | None = typer.Option(
        None, "--as-of", help="Snapshot date YYYY-MM-DD (default: the latest snapshot)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Write an Evidently data-drift report (HTML, JSON) and a verdict for one snapshot."""
    from monitoring.drift import run_monitor
    from monitoring.policy import Verdict
    from serving.batch import parse_as_of

    settings = settings_of(ctx)
    progress("comparing the latest features and predictions with the training reference")
    result = run_monitor(settings, as_of=parse_as_of(as_of) if as_of else None)
    emit(_summary(result), _payload(result), as_json=as_json)
    if result.verdict is Verdict.RETRAIN:
        raise typer.Exit(RETRAIN_EXIT)


def retrain(
    ctx: typer.Context,
    force: bool = typer.Option(False, "--force", help="Retrain whatever the verdict."),
    as_json: bool = JsonOption,
) -> None:
    """Monitor; on RETRAIN (or --force) rebuild features and train a challenger version."""
    from monitoring.drift import run_monitor
    from monitoring.policy import Verdict

    settings = settings_of(ctx)
    progress("monitoring the champion")
    result = run_monitor(settings)
    payload: dict[str, object] = {"monitor": _payload(result), "retrained": False}
    if result.verdict is not Verdict.RETRAIN and not force:
        emit(
            f"{_summary(result)}\nno retraining needed (use --force to retrain anyway)",
            payload,
            as_json=as_json,
        )
        return

    from features.build import build_features
    from features.feast_io import apply, materialize
    from training.train import run as train

    progress("rebuilding features")
    built = build_features(settings)
    progress("applying and materializing the feature store")
    apply(settings)
    materialize(settings)
    progress("training a new version")
    trained = train(settings)
    version = str(trained.version)
    payload.update(
        {
            "retrained": True,
            "forced": force and result.verdict is not Verdict.RETRAIN,
            "feature_rows": built.rows,
            "version": version,
            "run_id": trained.run_id,
            "next": f"clv registry promote {version}",
        }
    )
    emit(
        f"{_summary(result)}\ntrained version {version} (not promoted): "
        f"promote with `clv registry promote {version}`",
        payload,
        as_json=as_json,
    )


def _summary(result: MonitorResult) -> str:
    drifted = ", ".join(result.drifted) or "none"
    share = f"{result.drift_share:.0%}" if result.drift_share == result.drift_share else "n/a"
    sampled = " (sampled)" if result.reference.sampled or result.current.sampled else ""
    return (
        f"{result.verdict.value}: {result.drifted_count}/{len(result.columns)} columns drifted "
        f"({share}) as of {result.as_of.date()}{sampled}; drifted: {drifted}\n"
        f"{result.reasons[0]}\nreport: {result.html_path}"
    )


def _payload(result: MonitorResult) -> dict[str, object]:
    return {
        "verdict": result.verdict.value,
        "reasons": list(result.reasons),
        "as_of": result.as_of.isoformat(),
        "model_version": result.model_version,
        "drift_share": result.drift_share if result.drift_share == result.drift_share else None,
        "drifted_count": result.drifted_count,
        "columns_compared": len(result.columns),
        "drifted_columns": list(result.drifted),
        "html": result.html_path,
        "json": result.json_path,
        "summary": result.summary_path,
    }
