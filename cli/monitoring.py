"""`clv monitor run` and `clv retrain`: thin commands over clv.monitoring.drift and .retrain.

Exit codes: `monitor run` 0 for OK or WARN, 3 for RETRAIN (a gate a scheduler can act on), 5
for DATA_QUALITY (non-finite features: fix the data first); `retrain` 0 when it finished
(nothing to do, canary started, awaiting approval), 1 when the challenger failed its gates, 4
when another retrain holds the lock, 5 when it refused corrupt data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from clv.cli.training import skip_readiness_option
from clv.core.console import JsonOption, as_of_option, emit, progress, settings_of

if TYPE_CHECKING:
    from clv.monitoring.drift import MonitorResult

RETRAIN_EXIT = 3
DATA_QUALITY_EXIT = 5

app = typer.Typer(help="Drift, calibration and backtest reports on the champion, and a verdict.")


@app.command("run")
def run(
    ctx: typer.Context,
    as_of: str | None = as_of_option(),
    as_json: bool = JsonOption,
) -> None:
    """Judge the champion on one snapshot; write reports/<as-of>/ and a verdict."""
    from clv.core.time import parse_as_of
    from clv.monitoring.policy import Verdict
    from clv.monitoring.run import run_monitor

    settings = settings_of(ctx)
    progress("monitoring the champion: drift, data quality, calibration, matured cohorts")
    result = run_monitor(settings, as_of=parse_as_of(as_of) if as_of else None)
    emit(_summary(result), _payload(result), as_json=as_json)
    if result.verdict is Verdict.RETRAIN:
        raise typer.Exit(RETRAIN_EXIT)
    if result.verdict is Verdict.DATA_QUALITY:
        raise typer.Exit(DATA_QUALITY_EXIT)


def retrain(
    ctx: typer.Context,
    force: bool = typer.Option(
        False, "--force", help="Retrain whatever the verdict (except DATA_QUALITY)."
    ),
    trials: int | None = typer.Option(None, "--trials", min=1, help="Optuna trials."),
    skip_readiness: bool = skip_readiness_option("Retrain"),
    as_json: bool = JsonOption,
) -> None:
    """The scheduled job: monitor; on RETRAIN (or --force) train a challenger, gate, canary."""
    from clv.jobs.retrain import run_retrain

    result = run_retrain(
        settings_of(ctx),
        force=force,
        n_trials=trials,
        progress=progress,
        skip_readiness=skip_readiness,
    )
    payload: dict[str, object] = {
        "outcome": result.outcome,
        "verdict": result.verdict,
        "version": result.version,
        "message": result.message,
        "record": result.record_path,
        "gates": result.gates,
    }
    emit(
        f"{result.outcome}: {result.message}\nrun record: {result.record_path}",
        payload,
        as_json=as_json,
    )
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _summary(result: MonitorResult) -> str:
    lines = [f"{result.verdict.value} as of {result.as_of.date()} (model {result.model_version})"]
    lines += [f"  - {r}" for r in result.reasons[:4]]
    lines.append(f"report: {result.index_path}")
    return "\n".join(lines)


def _payload(result: MonitorResult) -> dict[str, object]:
    from clv.monitoring.backtest import comparison_sentence

    share = result.drift_share
    return {
        "verdict": result.verdict.value,
        "reasons": list(result.reasons),
        "as_of": result.as_of.isoformat(),
        "model_version": result.model_version,
        "drift_share": share if share == share else None,
        "drifted_key_features": list(result.drifted),
        "prediction_psi": dict(result.evidence.prediction_psi),
        "churn_ece": result.evidence.churn_ece,
        "value_gini": result.evidence.value_gini,
        "backtest_comparison": comparison_sentence(result.value_backtest)
        if result.value_backtest is not None
        else None,
        "report": result.index_path,
        "evidently_html": result.html_path,
        "summary": result.summary_path,
        "seconds": round(result.seconds, 2),
    }
