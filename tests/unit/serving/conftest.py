"""Fixtures for serving tests; the model and frames are built in serving_fixtures."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from serving_fixtures import synthetic_features, train_model

from clv.core.settings import Settings, load_settings
from clv.model.bundle import ClvModel


@pytest.fixture(scope="session")
def features() -> pd.DataFrame:
    return synthetic_features()


@pytest.fixture(scope="session")
def model(features: pd.DataFrame) -> ClvModel:
    return train_model(features)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    base = load_settings(tmp_path, environ={})
    serving = base.serving.model_copy(update={"max_batch": 5})
    return base.model_copy(update={"serving": serving})
