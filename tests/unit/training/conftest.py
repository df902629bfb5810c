from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from clv.core.settings import Settings, load_settings
from clv.training.dataset import TrainingData
from clv.training.train import TrainResult, fit_and_log

SyntheticData = Callable[..., TrainingData]


def synthetic_training_data(
    *, customers: int = 300, snapshots: int = 6, seed: int = 7
) -> TrainingData:
    """Monthly snapshots where CLV grows with `spend_90d` and `app` customers are worth more."""
    rng = np.random.default_rng(seed)
    ids = [f"c{i:04d}" for i in range(customers)]
    base = rng.gamma(2.0, 50.0, size=customers)
    channel = rng.choice(["app", "web", "store"], size=customers)
    rows = []
    for k in range(snapshots):
        t = pd.Timestamp("2023-01-01", tz="UTC") + pd.DateOffset(months=k)
        spend = base * rng.lognormal(0.0, 0.2, size=customers)
        frequency = rng.poisson(3, size=customers).astype(float)
        lift = np.where(channel == "app", 1.5, 1.0)
        clv = spend * lift * rng.lognormal(0.0, 0.3, size=customers)
        clv[rng.random(customers) < 0.2] = 0.0
        rows.append(
            pd.DataFrame(
                {
                    "customer_id": ids,
                    "event_timestamp": t,
                    "spend_90d": spend,
                    "frequency": frequency,
                    "acquisition_channel": channel,
                    "clv_label": clv,
                    "churn_label": (clv == 0).astype(float),
                }
            )
        )
    frame = pd.concat(rows, ignore_index=True)
    frame["event_timestamp"] = frame["event_timestamp"].astype("datetime64[us, UTC]")
    return TrainingData(
        frame=frame,
        feature_names=("spend_90d", "frequency", "acquisition_channel"),
        categorical=("acquisition_channel",),
        feature_service="clv_v1",
        data_end=pd.Timestamp("2024-12-31", tz="UTC"),
    )


@pytest.fixture
def synthetic() -> SyntheticData:
    return synthetic_training_data


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, TrainResult]:
    """One 4-trial training run in a fresh workspace, shared by a module's tests."""
    # A 59-day horizon (30-day churn window) lets the six monthly snapshots keep the label
    # embargo between train, validation and the test origin.
    settings = load_settings(
        tmp_path_factory.mktemp("ws"),
        environ={"CLV_MODEL__HORIZON_DAYS": "59", "CLV_MODEL__CHURN_WINDOW_DAYS": "30"},
    )
    return settings, fit_and_log(settings, synthetic_training_data(), n_trials=4)
