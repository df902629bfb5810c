"""End to end on a synthetic frame: Optuna study, MLflow run, registered version, champion."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import pytest
import typer
from mlflow import MlflowClient
from scipy.stats import spearmanr
from typer.testing import CliRunner

from clv.core.console import CliState
from clv.core.settings import Settings
from clv.registry.aliases import ensure_champion
from clv.registry.mlflow_io import list_versions, load_alias, reference_frame
from clv.training import train as train_module
from clv.training.dataset import TrainingData
from clv.training.train import TrainResult, fit_and_log

SyntheticData = Callable[..., TrainingData]

pytestmark = pytest.mark.slow


def test_run_logs_parent_and_nested_trial_runs(trained: tuple[Settings, TrainResult]) -> None:
    settings, result = trained
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["clv.feature_service"] == "clv_v1"
    assert len(run.data.tags["clv.data_fingerprint"]) == 16
    assert run.data.params["feature_names"] == "spend_90d,frequency,acquisition_channel"
    assert run.data.params["split.embargo_days"] == "59"
    assert run.data.params["evaluation.embargoed"] == "true"
    assert run.data.tags["clv.evaluation.embargoed"] == "true"
    assert "test_gini" in run.data.metrics and "test_default_gini" in run.data.metrics
    assert "test_last_horizon_gini" in run.data.metrics
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'"
    )
    # One study per fit of the recipe: the test origin (no backtest origin is embargoed in six
    # monthly snapshots) and the end of the log.
    assert len(children) == 2 * 4
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "bundle")}
    assert {"bundle/model.json", "bundle/value.ubj", "bundle/churn.ubj"} <= artifacts
    assert (settings.state_dir / "mlflow.db").exists()


def test_run_logs_the_evidence_of_every_choice(trained: tuple[Settings, TrainResult]) -> None:
    import json

    import mlflow

    settings, result = trained
    mlflow.set_tracking_uri(settings.tracking_uri)
    path = mlflow.artifacts.download_artifacts(run_id=result.run_id, artifact_path="choices.json")
    choices = json.loads(Path(path).read_text())
    served = choices["served"]
    objective = served["objective"]
    rmse = objective["validation_rmse"]
    # the kind served is the one with the lower validation RMSE (ties to Tweedie)
    assert objective["kind"] == ("hurdle" if rmse["hurdle"] < rmse["tweedie"] else "tweedie")
    calibration = served["churn_calibration"]
    scores = {m: calibration[f"{m}.ece"] for m in ("raw", "platt", "isotonic")}
    assert calibration["method"] in scores
    assert scores[calibration["method"]] <= min(scores.values()) + calibration["tolerance"]
    # no RFM columns here: no baseline offset, so nothing to blend with
    assert (served["blend"]["weight"], served["blend"]["level"]) == (1.0, "none")
    intervals = served["intervals"]
    assert len(intervals["bands"]["scales"]) == len(intervals["bands"]["edges"]) + 1
    assert [o["origin"] for o in choices["evaluation_origins"]] == [
        row["origin"] for row in choices["tuned_vs_default"]
    ]
    assert {"model_gini", "default_gini"} <= set(choices["tuned_vs_default"][0])


def test_study_persisted_in_workspace_storage(trained: tuple[Settings, TrainResult]) -> None:
    settings, result = trained
    study = optuna.load_study(study_name=result.study_name, storage=settings.optuna_storage)
    assert len(study.trials) == 4
    assert study.best_trial.number == result.best_trial


def test_version_registered_and_first_becomes_champion(
    trained: tuple[Settings, TrainResult],
) -> None:
    settings, result = trained
    assert result.version == "1"
    assert ensure_champion(settings, result.version) is True
    assert ensure_champion(settings, result.version) is False  # already champion
    versions = list_versions(settings)
    assert [v.version for v in versions] == ["1"]
    assert versions[0].aliases == ("champion",)


def test_champion_predicts_finite_values_that_track_the_label(
    trained: tuple[Settings, TrainResult], synthetic: SyntheticData
) -> None:
    settings, result = trained
    ensure_champion(settings, result.version)
    loaded = load_alias(settings)
    assert (loaded.version, loaded.alias, loaded.run_id) == ("1", "champion", result.run_id)
    assert (settings.state_dir / "models" / "1" / "model.json").exists()
    fresh = synthetic(seed=99).frame  # unseen customers' draws
    preds = loaded.model.predict(fresh)
    assert np.isfinite(preds["clv"]).all() and (preds["clv"] >= 0).all()
    assert spearmanr(preds["clv"], fresh["clv_label"]).statistic > 0.3
    assert loaded.model.card.categories == {"acquisition_channel": ["app", "store", "web"]}


def test_tuned_model_metrics_on_test_are_sane(trained: tuple[Settings, TrainResult]) -> None:
    _, result = trained
    assert result.model_metrics.n == 300
    assert result.model_metrics.gini > 0.3
    assert np.isfinite(result.default_metrics.rmse)
    assert set(result.best_params) >= {"max_depth", "tweedie_variance_power", "num_boost_round"}
    assert result.metrics["model"]["gini"] == result.model_metrics.gini
    assert set(result.metrics) == {
        *("model", "baseline", "last_horizon", "run_rate", "default", "churn", "interval")
    }
    assert np.isnan(result.metrics["baseline"]["rmse"])  # the synthetic frame has no RFM columns
    # The recipe was fitted on the rows known at the test origin only: labels closing by it.
    assert result.embargoed and result.split["validation_time"] < result.split["origin"]


def test_reference_sample_has_features_and_predictions(
    trained: tuple[Settings, TrainResult],
) -> None:
    settings, result = trained
    ref = reference_frame(settings, result.run_id)
    assert len(ref) == 6 * 300  # the served fit: every complete row, under the 20k cap
    assert {"spend_90d", "acquisition_channel", "clv", "churn_probability"} <= set(ref.columns)
    assert ref["clv"].notna().all()


def test_pyfunc_model_serves_the_same_predictions(
    trained: tuple[Settings, TrainResult], synthetic: SyntheticData
) -> None:
    import mlflow

    settings, result = trained
    ensure_champion(settings, result.version)
    mlflow.set_tracking_uri(settings.tracking_uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{settings.mlflow.model_name}/1")
    frame = synthetic(seed=5).frame.head(20).copy()
    frame.loc[0, "spend_90d"] = np.nan  # missing values must pass the signature
    frame.loc[1, "acquisition_channel"] = None
    names = ["spend_90d", "frequency", "acquisition_channel"]
    got = pyfunc.predict(frame[names])
    want = load_alias(settings).model.predict(frame)
    np.testing.assert_allclose(got["clv"].to_numpy(), want["clv"].to_numpy(), rtol=1e-6)


def test_cli_json_reports_version_alias_and_both_metric_sets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, synthetic: SyntheticData
) -> None:
    from clv.cli.training import train

    def fake_run(settings: Settings, *, n_trials: int | None = None, **_: object) -> TrainResult:
        frame = synthetic(customers=120, snapshots=5)
        return fit_and_log(settings, frame, n_trials=n_trials)

    monkeypatch.setattr(train_module, "run", fake_run)
    app = typer.Typer()
    app.command()(train)
    app.callback()(lambda: None)
    (tmp_path / "clv.yaml").write_text("model:\n  horizon_days: 30\n")
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--trials", "2", "--json"], obj=CliState(workspace=tmp_path))
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["version"] == "1" and doc["alias"] == "champion"
    assert set(doc["metrics"]) >= {"model", "default", "baseline", "last_horizon", "run_rate"}
    assert {"gini", "rmse", "spearman"} <= set(doc["metrics"]["model"])
    assert doc["evaluation"]["embargoed"] is True
    assert doc["evaluation"]["test"]["origin"] == "2023-05-01"
    assert isinstance(doc["run_id"], str) and len(doc["run_id"]) == 32


def test_cli_runs_the_readiness_check_and_reports_it_in_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, synthetic: SyntheticData
) -> None:
    """`clv train` hands training the readiness check (run calls it after the fail-fast
    service checks); with `readiness.enforce: false` a refusal is said and training goes on."""
    from dataclasses import replace

    import pandas as pd

    from clv.cli.training import train
    from clv.core.settings import load_settings
    from clv.core.store import write_table

    def fake_run(
        settings: Settings,
        *,
        n_trials: int | None = None,
        readiness: Callable[[Settings], object] | None = None,
        **_: object,
    ) -> TrainResult:
        assert readiness is not None
        checked = readiness(settings)
        result = fit_and_log(settings, synthetic(customers=120, snapshots=5), n_trials=n_trials)
        return replace(result, readiness=checked)  # type: ignore[arg-type]

    monkeypatch.setattr(train_module, "run", fake_run)
    (tmp_path / "clv.yaml").write_text("model:\n  horizon_days: 30\nreadiness:\n  enforce: false\n")
    ts = pd.to_datetime(["2023-01-05", "2023-03-01", "2023-06-01"], utc=True)
    tx = pd.DataFrame({"customer_id": ["c0001"] * 3, "ts": ts, "amount": [10.0, 20.0, 5.0]})
    write_table(load_settings(tmp_path, environ={}), "transactions", tx)
    app = typer.Typer()
    app.command()(train)
    app.callback()(lambda: None)
    res = CliRunner().invoke(app, ["train", "--trials", "1", "--json"], obj=CliState(tmp_path))
    assert res.exit_code == 0, res.output
    ready = json.loads(res.stdout)["readiness"]
    assert ready["status"] == "refused" and ready["enforced"] is False
    assert [f["check"] for f in ready["findings"] if f["level"] == "refuse"] == ["repeat_buyers"]
    assert "readiness: not enforced (readiness.enforce: false)" in res.stderr
    assert (tmp_path / "reports" / "readiness.html").exists()


def test_frame_missing_a_feature_is_a_data_error(tmp_path: Path, synthetic: SyntheticData) -> None:
    from clv.core.errors import DataError
    from clv.core.settings import load_settings

    data = synthetic(customers=20, snapshots=4)
    broken = train_module.TrainingData(
        frame=data.frame.drop(columns=["frequency"]), feature_names=data.feature_names
    )
    with pytest.raises(DataError, match="lacks columns"):
        fit_and_log(load_settings(tmp_path), broken, n_trials=1)
    assert not (tmp_path / ".clv" / "mlflow.db").exists()  # failed before any run was opened


def test_a_short_history_is_trained_but_marked_not_embargoed(
    tmp_path: Path, synthetic: SyntheticData
) -> None:
    from clv.core.settings import load_settings
    from clv.registry.mlflow_io import version_tags

    # Six monthly snapshots cannot hold three disjoint 365-day label windows.
    settings = load_settings(tmp_path, environ={"CLV_MODEL__HORIZON_DAYS": "365"})
    result = fit_and_log(settings, synthetic(customers=60, snapshots=6), n_trials=1)
    assert not result.embargoed and "history too short" in result.evaluation_reason
    assert result.evaluation_summary()["embargoed"] is False
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    run = client.get_run(result.run_id)
    assert run.data.params["evaluation.embargoed"] == "false"
    assert run.data.tags["clv.evaluation.embargoed"] == "false"
    assert version_tags(settings, result.version)["evaluation.embargoed"] == "false"
    assert ensure_champion(settings, result.version) is False  # no unembargoed first champion
    assert list_versions(settings)[0].aliases == ("challenger",)
