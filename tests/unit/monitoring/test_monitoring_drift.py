from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clv.core.errors import DataError
from clv.core.settings import Settings, load_settings
from clv.monitoring.backtest import Cohort, ValueBacktest, value_backtest
from clv.monitoring.baselines import BaselinePredictions
from clv.monitoring.drift import (
    MonitorInputs,
    comparable_columns,
    drift_shares,
    key_features,
    reference_window,
    subsample,
)
from clv.monitoring.evidently_io import DriftConfig, parse_drift, run_drift
from clv.monitoring.policy import Verdict
from clv.monitoring.run import evaluate, run_monitor


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "event_timestamp": pd.Timestamp("2024-06-01", tz="UTC"),
            "frequency": rng.poisson(3.0, n).astype(float),
            "monetary_value": rng.gamma(2.0, 40.0, n),
            "recency": rng.uniform(0, 300, n),
            "acquisition_channel": rng.choice(["organic", "paid", "referral"], n),
            "clv": rng.gamma(2.0, 100.0, n),
        }
    )


def _later(reference: pd.DataFrame, **shifts: float) -> pd.DataFrame:
    """The same customers' values reshuffled (no drift by construction), some columns shifted."""
    current = reference.sample(frac=1.0, random_state=3).reset_index(drop=True)
    current["customer_id"] = reference["customer_id"].to_numpy()
    for column, shift in shifts.items():
        current[column] = current[column] + shift
    return current


_SHIFTS = {"monetary_value": 200.0, "clv": 500.0, "recency": 150.0}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(tmp_path, environ={})


def test_strongly_shifted_column_is_flagged_and_others_are_not(tmp_path: Path) -> None:
    reference = _frame(600, 1)
    current = _later(reference, monetary_value=200.0)
    config = DriftConfig(
        numerical=("frequency", "monetary_value", "recency", "clv"),
        categorical=("acquisition_channel",),
    )
    result = run_drift(
        reference,
        current,
        config=config,
        html_path=tmp_path / "r" / "d.html",
        json_path=tmp_path / "r" / "d.json",
    )
    by_name = {c.column: c for c in result.columns}
    assert set(by_name) == set(config.columns)
    assert by_name["monetary_value"].drifted
    assert not by_name["recency"].drifted
    assert not by_name["acquisition_channel"].drifted
    assert by_name["acquisition_channel"].kind == "categorical"
    assert result.drifted == ("monetary_value",)
    assert result.drifted_count == 1
    assert result.drift_share == pytest.approx(1 / 5)
    assert "<html" in result.html_path.read_text()[:2000].lower()
    document = json.loads(result.json_path.read_text())
    assert parse_drift(document, config=config) == (result.columns, 1, pytest.approx(0.2))


def test_parse_drift_falls_back_to_method_direction_without_tests() -> None:
    config = DriftConfig(numerical=("a", "b"))
    document = {
        "metrics": [
            {
                "id": "m1",
                "config": {
                    "type": "evidently:metric_v2:ValueDrift",
                    "column": "a",
                    "method": "K-S p_value",
                    "threshold": 0.05,
                },
                "value": 0.01,
            },
            {
                "id": "m2",
                "config": {
                    "type": "evidently:metric_v2:ValueDrift",
                    "column": "b",
                    "method": "Wasserstein distance (normed)",
                    "threshold": 0.1,
                },
                "value": 0.05,
            },
        ]
    }
    columns, count, share = parse_drift(document, config=config)
    assert [(c.column, c.drifted) for c in columns] == [("a", True), ("b", False)]
    assert (count, share) == (1, 0.5)


def test_comparable_columns_skip_ids_and_all_missing() -> None:
    reference = _frame(10, 1)
    current = _frame(10, 2).assign(recency=np.nan, extra=1.0)
    got = comparable_columns(reference, current)
    assert got.numerical == ("frequency", "monetary_value", "clv")
    assert got.categorical == ("acquisition_channel",)
    assert dict(got.skipped) == {
        "recency": "entirely missing on one side",
        "extra": "not in both reference and current",
    }
    # the month of the snapshot always differs between a reference and a later snapshot
    months = comparable_columns(
        reference.assign(snapshot_month=1), current.assign(snapshot_month=4)
    )
    assert "snapshot_month" not in months.numerical
    assert dict(months.skipped)["snapshot_month"].startswith("calendar")


def test_subsample_is_seeded_and_bounded() -> None:
    frame = _frame(100, 1)
    a, b = subsample(frame, max_rows=30, seed=5), subsample(frame, max_rows=30, seed=5)
    assert len(a) == 30 and a.index.equals(b.index)
    assert a.index.is_monotonic_increasing
    assert subsample(frame, max_rows=100) is frame


def test_run_monitor_writes_reports_and_retrains_on_broad_drift(settings: Settings) -> None:
    reference = _frame(500, 1)
    current = _later(reference, monetary_value=200.0, clv=500.0, recency=150.0)
    result = run_monitor(
        settings, as_of=pd.Timestamp("2024-06-01", tz="UTC"), reference=reference, current=current
    )
    out = settings.reports_dir / "2024-06-01"
    assert result.report_dir == out
    for name in ("index.html", "data_drift.html", "data_drift.json", "summary.json", "psi.png"):
        assert (out / name).stat().st_size > 0, name
    assert (settings.reports_dir / "index.html").exists()
    # without a model every feature is key with equal weight: 2 of 4 features drifted
    assert set(result.drifted) == {"monetary_value", "recency"}
    assert result.drift_share == pytest.approx(2 / 4)
    assert result.evidence.prediction_psi["clv"] > 1.0
    assert result.verdict is Verdict.RETRAIN
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "RETRAIN"
    assert summary["metrics"]["drift_share"] == {"features": pytest.approx(0.5)}
    assert summary["thresholds"]["drift_share_retrain"] == 0.3
    assert summary["sampling"]["current"] == {"rows_total": 500, "rows_used": 500, "sampled": False}
    page = (out / "index.html").read_text()
    assert page.index("RETRAIN") < page.index("<h2>Drift</h2>")
    assert "http://" not in page and "https://" not in page  # renders offline


def test_run_monitor_ok_without_drift_and_says_when_it_sampled(settings: Settings) -> None:
    small = settings.model_copy(
        update={"monitoring": settings.monitoring.model_copy(update={"sample_rows": 300})}
    )
    reference = _frame(400, 1)
    result = run_monitor(small, reference=reference, current=_later(reference))
    assert result.verdict is Verdict.OK
    assert result.drifted == ()
    assert result.as_of == pd.Timestamp("2024-06-01", tz="UTC")  # from the frame
    summary = json.loads(result.summary_path.read_text())
    assert summary["sampling"]["reference"] == {
        "rows_total": 400,
        "rows_used": 300,
        "sampled": True,
    }
    assert summary["sampling"]["max_rows"] == 300
    assert "300 reference and 300 current rows" in summary["sampling"]["statement"]
    assert summary["sampling"]["share_bound_99"] == pytest.approx(2.576 * 0.5 / 300**0.5)


def test_run_monitor_warn_band(settings: Settings) -> None:
    reference = _frame(500, 1)
    current = _later(reference, monetary_value=200.0)
    result = run_monitor(settings, reference=reference, current=current)
    assert result.drift_share == pytest.approx(1 / 4)
    assert result.verdict is Verdict.WARN


def test_run_monitor_without_shared_columns_is_a_data_error(settings: Settings) -> None:
    reference = pd.DataFrame({"customer_id": ["a"], "x": [1.0]})
    current = pd.DataFrame({"customer_id": ["a"], "y": [1.0]})
    with pytest.raises(DataError, match="no comparable columns"):
        run_monitor(settings, reference=reference, current=current)


@pytest.mark.parametrize(("shifts", "code", "verdict"), [({}, 0, "OK"), (_SHIFTS, 3, "RETRAIN")])
def test_cli_exit_code_follows_the_verdict(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    shifts: dict[str, float],
    code: int,
    verdict: str,
) -> None:
    import typer
    from typer.testing import CliRunner

    import clv.monitoring.run
    from clv.cli.monitoring import app
    from clv.core.console import CliState

    reference = _frame(300, 1)
    current = _later(reference, **shifts)
    real = clv.monitoring.run.run_monitor

    def with_frames(s: Settings, *, as_of: pd.Timestamp | None = None) -> object:
        return real(s, as_of=as_of, reference=reference, current=current)

    monkeypatch.setattr(clv.monitoring.run, "run_monitor", with_frames)
    root = typer.Typer()
    root.add_typer(app, name="monitor")
    result = CliRunner().invoke(
        root,
        ["monitor", "run", "--as-of", "2024-07-01", "--json"],
        obj=CliState(workspace=settings.workspace),
    )
    assert result.exit_code == code, result.output
    payload = json.loads(result.stdout)
    assert payload["verdict"] == verdict
    assert payload["as_of"].startswith("2024-07-01")
    assert (settings.workspace / "reports" / "2024-07-01" / "summary.json").exists()


def test_reference_window_keeps_the_latest_training_snapshot() -> None:
    reference = pd.DataFrame(
        {
            "customer_id": ["a", "b", "a", "c"],
            "event_timestamp": pd.to_datetime(
                ["2023-01-01", "2023-01-01", "2023-02-01", "2023-02-01"], utc=True
            ),
            "x": [1.0, 2.0, 3.0, 4.0],
        }
    )
    assert reference_window(reference, window="latest")["x"].tolist() == [3.0, 4.0]
    assert reference_window(reference, window="all") is reference
    no_time = reference.drop(columns="event_timestamp")
    assert reference_window(no_time, window="latest") is no_time


def test_run_monitor_compares_one_snapshot_with_one_snapshot(settings: Settings) -> None:
    old = _frame(300, 5).assign(
        event_timestamp=pd.Timestamp("2023-01-01", tz="UTC"), monetary_value=1e6
    )
    latest = _frame(300, 1)
    reference = pd.concat([old, latest], ignore_index=True)
    result = run_monitor(settings, reference=reference, current=_later(latest))
    assert result.reference.rows_total == 300
    assert result.drifted == ()
    pooled = settings.model_copy(
        update={"monitoring": settings.monitoring.model_copy(update={"reference_window": "all"})}
    )
    again = run_monitor(pooled, reference=reference, current=_later(latest))
    assert "monetary_value" in again.drifted


def test_key_features_and_importance_weighted_shares() -> None:
    importance = {"value": {"a": 0.6, "b": 0.3, "c": 0.1, "d": 0.0}, "churn": {"c": 1.0}}
    keys = key_features(importance, top=2)
    assert keys == {"value": {"a": 0.6, "b": 0.3}, "churn": {"c": 1.0}}  # d: never key
    shares = drift_shares(keys, {"b", "c"})
    assert shares["value"] == pytest.approx(0.3 / 0.9)
    assert shares["churn"] == pytest.approx(1.0)


def _value_backtest(*, in_training: bool) -> ValueBacktest:
    """A matured value cohort of 4 customers: run_rate ranks perfectly (the champion does
    not), the champion has the lowest RMSE, and the BG/NBD fit failed."""
    y = np.array([0.0, 10.0, 20.0, 30.0])
    champion = np.array([1.0, 12.0, 30.0, 18.0])  # Gini 0.8: the top two swapped
    given = BaselinePredictions(
        predictions={"run_rate": y * 3.0, "last_horizon": np.zeros(4)},
        unavailable={"baseline": "not scored: the BG/NBD + Gamma-Gamma fit failed (too few)"},
    )
    cohort = Cohort("value", pd.Timestamp("2024-01-01", tz="UTC"), 90, in_training=in_training)
    p90 = np.array([5.0, 15.0, 35.0, 25.0])  # covers 3 of 4: inside the coverage band
    return value_backtest(
        cohort, clv_label=y, clv=champion, clv_p10=np.zeros(4), clv_p90=p90, baselines=given
    )


def test_report_shows_the_champion_beside_every_baseline(settings: Settings) -> None:
    few = settings.model_copy(
        update={"monitoring": settings.monitoring.model_copy(update={"min_backtest_rows": 4})}
    )
    reference = _frame(300, 1)
    inputs = MonitorInputs(
        as_of=pd.Timestamp("2024-06-01", tz="UTC"),
        reference=reference,
        current=_later(reference),
        model_tags={"eval.model.gini": "0.8", "eval.run_rate.gini": "0.5"},
        value=_value_backtest(in_training=False),
    )
    result = evaluate(few, inputs)
    assert "champion loses to run_rate on the matured cohort (normalized Gini 0.800 vs 1.000)" in (
        result.reasons
    )
    assert result.verdict is Verdict.WARN  # the baseline loss is the only warning
    doc = json.loads(result.summary_path.read_text())["metrics"]["value_backtest"]
    rows = {r["predictor"]: r for r in doc["predictors"]}
    assert list(rows) == ["champion", "baseline", "last_horizon", "run_rate"]
    assert rows["champion"]["gini"] == pytest.approx(0.8)
    assert rows["run_rate"]["gini"] == pytest.approx(1.0) and rows["run_rate"]["gini_test"] == 0.5
    assert rows["baseline"]["gini"] is None and "fit failed" in rows["baseline"]["reason"]
    assert doc["comparison"]["gini"]["best_baseline"] == "run_rate"
    assert doc["comparison"]["gini"]["champion_beats"] is False
    # RMSE: champion sqrt(249) / 2, last_horizon sqrt(1400) / 2, run_rate sqrt(5600) / 2
    assert doc["comparison"]["rmse"]["best_baseline"] == "last_horizon"
    assert doc["comparison"]["rmse"]["champion_beats"] is True
    sentence = doc["comparison"]["sentence"]
    assert sentence.startswith("On the matured cohort the champion does not beat the best")
    page = result.index_path.read_text()
    assert "Gini at training" in page and html.escape(sentence) in page
    assert '<td class="l">run_rate</td>' in page
    assert "fit failed (too few)" in page


def test_an_in_sample_cohort_shows_the_baselines_but_does_not_judge_them(
    settings: Settings,
) -> None:
    few = settings.model_copy(
        update={"monitoring": settings.monitoring.model_copy(update={"min_backtest_rows": 4})}
    )
    reference = _frame(300, 1)
    inputs = MonitorInputs(
        as_of=pd.Timestamp("2024-06-01", tz="UTC"),
        reference=reference,
        current=_later(reference),
        value=_value_backtest(in_training=True),
    )
    result = evaluate(few, inputs)
    assert not any(f.check.startswith("baselines") for f in result.decision.findings)
    assert result.verdict is Verdict.OK
    doc = json.loads(result.summary_path.read_text())["metrics"]["value_backtest"]
    assert len(doc["predictors"]) == 4


def test_the_run_page_describes_every_column_on_every_row(settings: Settings) -> None:
    reference = _frame(500, 1)
    current = _later(reference, monetary_value=200.0)
    result = run_monitor(settings, reference=reference, current=current)
    summary = json.loads(result.summary_path.read_text())
    columns = {c["column"]: c for c in summary["metrics"]["quality"]["columns"]}
    money = columns["monetary_value"]
    assert money["reference"]["mean"] == pytest.approx(reference["monetary_value"].mean())
    assert money["current"]["mean"] == pytest.approx(reference["monetary_value"].mean() + 200.0)
    assert money["current"]["std"] == pytest.approx(reference["monetary_value"].std())
    channel = columns["acquisition_channel"]["reference"]
    assert channel["levels"] == 3 and channel["rows"] == 500
    page = html.unescape(result.index_path.read_text())
    assert "Every compared column on every row" in page
    mean = reference["monetary_value"].mean()
    assert f"{mean:.4g} / {mean + 200.0:.4g}" in page
    assert set(summary["timings"]) == {
        "psi",
        "quality",
        "evidently",
        "evidently_import",
        "evidently_wait",
    }
