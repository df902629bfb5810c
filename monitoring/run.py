"""One monitoring run, in order: gather the champion's reference and the current window, judge
them (clv.monitoring.drift), publish the report folder, log the run to MLflow."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pandas as pd

from clv.core.settings import Settings
from clv.evaluation.psi import floats
from clv.monitoring import report
from clv.monitoring.drift import (
    HTML_FILE,
    JSON_FILE,
    PREDICTIONS,
    MonitorInputs,
    MonitorResult,
    evidently_config,
    evidently_samples,
    judge,
    plan,
    reference_window,
    report_dir,
)
from clv.monitoring.evidently_io import DriftRunner, PendingDrift, drift_runner
from clv.monitoring.gather import gather
from clv.monitoring.mlflow_io import log_monitor_run
from clv.monitoring.summary import json_default, summary


def run_monitor(
    settings: Settings,
    *,
    as_of: pd.Timestamp | None = None,
    reference: pd.DataFrame | None = None,
    current: pd.DataFrame | None = None,
    log_to_mlflow: bool = True,
) -> MonitorResult:
    """Gather the champion's reference and the current window, judge them, write the reports.

    With both frames given (tests), nothing is read from the registry or the feature store
    and nothing is logged to MLflow.
    """
    if reference is not None and current is not None:
        when = as_of if as_of is not None else _date_of(current)
        window = settings.monitoring.reference_window
        ref = reference_window(reference, window="all" if window == "all" else "latest")
        given = MonitorInputs(as_of=when, reference=ref, current=current)
        return evaluate(settings, given)
    with drift_runner() as runner:  # imports Evidently in its own process meanwhile
        drifts: list[PendingDrift] = []
        inputs = gather(
            settings,
            as_of=as_of,
            windows=lambda w: drifts.append(submit_drift(settings, w, runner)),
        )  # the report runs alongside the backtests and the judging
        result = evaluate(settings, inputs, runner=runner, drift=drifts[0] if drifts else None)
    if log_to_mlflow:
        log_monitor_run(settings, result)
    return result


def submit_drift(settings: Settings, inputs: MonitorInputs, runner: DriftRunner) -> PendingDrift:
    """The Evidently report of a run's windows, started on `runner` (into the run's folder)."""
    out_dir = report_dir(settings, inputs.as_of)
    out_dir.mkdir(parents=True, exist_ok=True)
    ref_sample, cur_sample = evidently_samples(inputs, settings.monitoring)
    return runner.submit(
        ref_sample,
        cur_sample,
        config=evidently_config(plan(settings, inputs), settings.monitoring),
        html_path=out_dir / HTML_FILE,
        json_path=out_dir / JSON_FILE,
    )


def evaluate(
    settings: Settings,
    inputs: MonitorInputs,
    *,
    runner: DriftRunner | None = None,
    drift: PendingDrift | None = None,
) -> MonitorResult:
    """Judge one window and write its report folder: the Evidently report (`drift`, already
    started, or started now on `runner`, a `drift_runner` of its own by default, alongside
    the judging), the prediction chart, summary.json, the run page, and the index of runs."""
    if drift is None and runner is None:
        with drift_runner() as own:
            return evaluate(settings, inputs, runner=own)
    started = time.perf_counter()
    compared = plan(settings, inputs)
    out_dir = report_dir(settings, inputs.as_of)
    out_dir.mkdir(parents=True, exist_ok=True)
    if drift is None:
        assert runner is not None
        drift = submit_drift(settings, inputs, runner)
    result = judge(settings, inputs, compared)
    reference, current = inputs.reference, inputs.current
    by_column = {p.column for p in result.psi}
    report.distribution_chart(
        {c: floats(reference[c]) for c in PREDICTIONS if c in by_column},
        {c: floats(current[c]) for c in PREDICTIONS if c in by_column},
        out_dir / "predictions.png",
    )
    waiting = time.perf_counter()
    done = drift.result()
    timings = {
        **result.timings,
        "evidently": done.seconds,
        "evidently_import": done.import_seconds,
        "evidently_wait": time.perf_counter() - waiting,
    }
    result = replace(
        result,
        html_path=done.html_path,
        json_path=done.json_path,
        evidently_drift=done.drift_share,
        seconds=time.perf_counter() - started,
        timings=timings,
    )
    doc = summary(
        result, settings, inputs=inputs, keys=result.keys, evidently_drift=result.evidently_drift
    )
    result.summary_path.write_text(json.dumps(doc, indent=2, default=json_default) + "\n")
    report.write_run_page(doc, out_dir)
    report.write_runs_index(settings.reports_dir)
    return result


def _date_of(frame: pd.DataFrame) -> pd.Timestamp:
    if "event_timestamp" in frame.columns and frame["event_timestamp"].notna().any():
        return pd.Timestamp(pd.to_datetime(frame["event_timestamp"], utc=True).max())
    return pd.Timestamp.now(tz="UTC").normalize()
