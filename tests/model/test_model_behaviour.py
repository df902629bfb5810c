"""Behavioural tests of a model trained on the seeded generator (Made-With-ML style):
invariance to the customer id, direction of recency, minimum function."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clv.core.settings import Settings, load_settings
from clv.training.dataset import TrainingData, load_training_data
from clv.training.train import TrainResult, fit_and_log
from tests.model.world_data import ParquetSource

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, TrainingData]:
    from clv.features.build import build_features
    from clv.inputs.generator import generate, write_raw
    from clv.inputs.ingest import ingest_all

    ws = tmp_path_factory.mktemp("ws")
    settings = load_settings(ws, environ={"CLV_MODEL__HORIZON_DAYS": "180"})
    settings.ensure_dirs()
    data = generate(customers=1500, months=24, seed=7, world="btyd")
    write_raw(data, settings.raw_dir, fmt="parquet")
    ingest_all(settings, settings.raw_dir)
    built = build_features(settings)
    return settings, load_training_data(settings, source=ParquetSource(built.path))


@pytest.fixture(scope="module")
def trained(generated: tuple[Settings, TrainingData]) -> TrainResult:
    settings, data = generated
    return fit_and_log(settings, data, n_trials=3)


def test_minimum_function_beats_a_constant_and_is_calibrated_enough(
    trained: TrainResult,
) -> None:
    assert trained.model_metrics.gini > 0.5
    assert trained.model_metrics.spearman > 0.4
    assert abs(trained.model_metrics.bias_pct) < 40
    assert trained.churn_metrics.roc_auc > 0.75
    assert trained.interval_metrics is not None
    assert 0.5 < trained.interval_metrics.coverage_p10_p90 <= 1.0


def test_scores_do_not_depend_on_the_customer_id(
    generated: tuple[Settings, TrainingData], trained: TrainResult
) -> None:
    from clv.registry.mlflow_io import load_version

    settings, data = generated
    model = load_version(settings, trained.version).model
    frame = data.frame.tail(500).reset_index(drop=True)
    renamed = frame.assign(customer_id=[f"X{i:05d}" for i in range(len(frame))])[::-1]
    before = model.predict(frame)
    after = model.predict(renamed).iloc[::-1].reset_index(drop=True)
    pd.testing.assert_frame_equal(before, after)


def test_a_recent_frequent_buyer_scores_no_lower_than_a_lapsed_twin(
    generated: tuple[Settings, TrainingData], trained: TrainResult
) -> None:
    from clv.registry.mlflow_io import load_version

    settings, data = generated
    model = load_version(settings, trained.version).model
    frame = data.frame
    recent = frame.loc[
        (frame["frequency"] >= 3) & (frame["days_since_last_purchase"] <= 14) & (frame["T"] > 250)
    ].reset_index(drop=True)
    assert len(recent) >= 20
    lapsed = recent.copy()
    gap = 200.0
    lapsed["days_since_last_purchase"] += gap
    lapsed["recency"] = np.maximum(lapsed["recency"] - gap, 0.0)
    for col in [c for c in frame.columns if c.endswith(("_30d", "_90d", "_180d"))]:
        lapsed[col] = 0
    for col in [c for c in frame.columns if c.endswith("_trend")]:
        lapsed[col] = np.nan
    got_recent = model.predict(recent)["clv"].to_numpy()
    got_lapsed = model.predict(lapsed)["clv"].to_numpy()
    assert np.mean(got_recent >= got_lapsed) >= 0.95
    assert got_recent.mean() > 1.5 * got_lapsed.mean()
