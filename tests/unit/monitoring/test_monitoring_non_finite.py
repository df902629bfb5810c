"""Issue 15: a feature that becomes non-finite is a data-quality failure, never a silent verdict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clv.core.settings import MonitoringSettings, Settings, load_settings
from clv.monitoring.drift import MonitorResult
from clv.monitoring.policy import Evidence, Verdict, decide
from clv.monitoring.quality import non_finite_counts

T = MonitoringSettings()
SNAPSHOT = pd.Timestamp("2024-06-01", tz="UTC")


def _frame(n: int = 300, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "event_timestamp": SNAPSHOT,
            "frequency": rng.poisson(3.0, n).astype(float),
            "spend_30d": rng.gamma(2.0, 40.0, n),
            "recency": rng.uniform(0, 300, n),
            "clv": rng.gamma(2.0, 100.0, n),
        }
    )


def _later(reference: pd.DataFrame, *, shift: float = 0.0) -> pd.DataFrame:
    """The same values reshuffled (no drift by construction); spend and recency moved by `shift`."""
    current = reference.sample(frac=1.0, random_state=3).reset_index(drop=True)
    current["customer_id"] = reference["customer_id"].to_numpy()
    current["spend_30d"] += shift
    current["recency"] += shift
    return current


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(tmp_path, environ={})


def test_non_finite_counts_count_inf_as_the_model_reads_it() -> None:
    frame = pd.DataFrame(
        {
            "spend_30d": [1.0, np.inf, -np.inf, np.nan],  # NaN is missing, not non-finite
            "margin_30d": [1e39, 2.0, 3.0, 4.0],  # finite in float64, inf in the model's float32
            "frequency": [1, 2, 3, 4],
            "cold_start": [True, False, True, False],
            "plan": ["a", "b", "a", "b"],
        }
    )
    assert non_finite_counts(frame, list(frame.columns)) == {"spend_30d": 2, "margin_30d": 1}
    assert non_finite_counts(frame, ["frequency", "absent"]) == {}
    assert non_finite_counts(frame.assign(spend_30d=1.0, margin_30d=1.0), frame.columns) == {}


def test_non_finite_values_outrank_retrain_and_name_the_columns() -> None:
    drifted = Evidence(drift_share={"value": 0.5}, drifted_key_features=("spend_30d",))
    assert decide(drifted, thresholds=T).verdict is Verdict.RETRAIN
    corrupt = Evidence(
        drift_share={"value": 0.5},
        drifted_key_features=("spend_30d",),
        non_finite={"monetary_value": 1, "spend_30d": 2},
    )
    decision = decide(corrupt, thresholds=T)
    assert decision.verdict is Verdict.DATA_QUALITY  # not RETRAIN: no challenger on these data
    assert decision.reasons[0].startswith(
        "3 non-finite values (inf or -inf) in the current window: spend_30d 2, monetary_value 1"
    )
    checks = {f.check: f.verdict for f in decision.findings}
    assert checks["feature_drift"] is Verdict.RETRAIN  # still shown
    assert checks["data_quality:non_finite"] is Verdict.DATA_QUALITY
    assert "no data-quality issue found" not in decision.reasons


@pytest.mark.parametrize("corrupt", [True, False])
def test_monitor_run_reports_non_finite_features_in_summary_report_and_cli(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, corrupt: bool
) -> None:
    import typer
    from typer.testing import CliRunner

    import clv.monitoring.run
    from clv.cli.monitoring import app
    from clv.core.console import CliState

    reference = _frame()
    current = _later(reference)
    if corrupt:
        current.loc[[4, 9], "spend_30d"] = np.inf
    real = clv.monitoring.run.run_monitor

    def with_frames(s: Settings, *, as_of: pd.Timestamp | None = None) -> object:
        return real(s, as_of=as_of, reference=reference, current=current)

    monkeypatch.setattr(clv.monitoring.run, "run_monitor", with_frames)
    root = typer.Typer()
    root.add_typer(app, name="monitor")
    result = CliRunner().invoke(
        root,
        ["monitor", "run", "--as-of", "2024-06-01"],
        obj=CliState(workspace=settings.workspace),
    )
    out = settings.reports_dir / "2024-06-01"
    doc = json.loads((out / "summary.json").read_text())
    page = (out / "index.html").read_text()
    if corrupt:
        assert result.exit_code == 5, result.output
        assert result.stdout.startswith("DATA_QUALITY as of 2024-06-01"), result.output
        first_reason = result.stdout.splitlines()[1]
        assert (
            "2 non-finite values (inf or -inf) in the current window: spend_30d 2" in first_reason
        )
        assert doc["verdict"] == "DATA_QUALITY"
        assert doc["metrics"]["quality"]["non_finite"] == {"spend_30d": 2}
        assert '<td class="l">spend_30d</td><td class="">2</td>' in page
        assert page.index("DATA_QUALITY") < page.index("<h2>Drift</h2>")
    else:
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("OK as of 2024-06-01"), result.output
        assert "non-finite" not in result.stdout
        assert doc["metrics"]["quality"]["non_finite"] == {}
        assert "No non-finite value (inf or -inf) in the current window." in page


def test_retrain_job_does_not_retrain_on_non_finite_data(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import clv.monitoring.run
    from clv.jobs.retrain import run_retrain

    reference = _frame()
    current = _later(reference, shift=200.0)  # broad drift: RETRAIN on its own
    current.loc[0, "spend_30d"] = -np.inf
    real = clv.monitoring.run.run_monitor
    seen: list[MonitorResult] = []

    def with_frames(s: Settings, **_: object) -> MonitorResult:
        seen.append(real(s, reference=reference, current=current))
        return seen[-1]

    monkeypatch.setattr(clv.monitoring.run, "run_monitor", with_frames)
    result = run_retrain(settings, force=True)  # not even when forced
    assert any(f.verdict is Verdict.RETRAIN for f in seen[0].decision.findings)
    assert seen[0].verdict is Verdict.DATA_QUALITY
    assert (result.outcome, result.verdict, result.exit_code) == ("data_quality", "DATA_QUALITY", 5)
    record = json.loads(result.record_path.read_text())
    assert [s["step"] for s in record["steps"]] == ["monitor"]  # no features rebuilt, no training
    assert "spend_30d 1" in record["steps"][0]["detail"]["reasons"][0]
