from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from clv.core.settings import Settings, load_settings
from clv.core.tags import EMBARGOED_TAG
from clv.model.bundle import ClvModel, ModelCard
from clv.training.mlflow_io import training_run

FEATURES = ["spend", "channel"]


def tiny_model(scale: float) -> tuple[ClvModel, pd.DataFrame]:
    """A value booster on 60 rows where CLV = scale x spend (fast to fit)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"spend": rng.uniform(1, 100, 60), "channel": rng.choice(["app", "web"], 60)}
    )
    card = ModelCard(
        feature_service="clv_v1", feature_names=FEATURES, categories={"channel": ["app", "web"]}
    )
    x = ClvModel(card, value=xgb.Booster()).matrix(frame)
    booster = xgb.train(
        {"objective": "reg:tweedie", "nthread": 1, "verbosity": 0},
        xgb.DMatrix(x, label=scale * frame["spend"].to_numpy(), feature_names=FEATURES),
        num_boost_round=20,
    )
    return ClvModel(card, value=booster), frame


def register(settings: Settings, *, scale: float) -> tuple[str, str]:
    """Log and register one version the way training does; returns (run_id, version)."""
    model, frame = tiny_model(scale)
    with training_run(settings, run_name=f"test-{scale}") as run:
        run.client.log_metric(run.run_id, "test_gini", 0.5 + scale / 100)
        logged = run.log_model(
            model,
            reference=frame.assign(clv=model.predict(frame)["clv"]),
            input_example=frame.head(3),
        )
        # Training tags every version with its embargo status; these stand for embargoed ones.
        run.tag_version(logged.version, {EMBARGOED_TAG: "true"})
    return logged.run_id, logged.version


Register = Callable[..., tuple[str, str]]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(tmp_path, environ={})


@pytest.fixture
def register_version() -> Register:
    return register
