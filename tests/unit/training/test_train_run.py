"""`clv.training.train.run` over a workspace: entity rows + transactions -> labels -> features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clv.core.errors import NotReadyError
from clv.core.settings import Settings, load_settings
from clv.core.store import write_table
from clv.features.snapshots import FEATURES_FILE
from clv.training.dataset import load_training_data
from clv.training.train import run

pytestmark = pytest.mark.slow
SNAPSHOTS = pd.date_range("2023-01-01", periods=8, freq="MS", tz="UTC")


class FakeSource:
    """Stands in for clv.features.feast_io: one numeric and one categorical feature."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def feature_names(self, settings: Settings) -> list[str]:
        return ["weekly_spend", "tier"]

    def categorical_features(self, settings: Settings) -> list[str]:
        return ["tier"]

    def historical_features(self, settings: Settings, entities: pd.DataFrame) -> pd.DataFrame:
        self.calls.append(len(entities))
        idx = entities["customer_id"].str[1:].astype(int)
        return entities.assign(
            weekly_spend=(idx % 10 + 1) * 10.0, tier=np.where(idx % 2 == 0, "gold", "basic")
        )


def workspace(tmp_path: Path) -> Settings:
    settings = load_settings(tmp_path, environ={"CLV_MODEL__HORIZON_DAYS": "30"})
    rng = np.random.default_rng(3)
    rows = []
    for i in range(80):
        # Customer i buys every week with an amount that grows with i % 10.
        for day in range(0, 300, 7):
            if rng.random() < 0.7:
                ts = pd.Timestamp("2023-01-01", tz="UTC") + pd.Timedelta(days=day, hours=12)
                rows.append((f"c{i:03d}", ts, float((i % 10 + 1) * 10)))
    tx = pd.DataFrame(rows, columns=["customer_id", "ts", "amount"])
    tx["ts"] = tx["ts"].astype("datetime64[us, UTC]")
    write_table(settings, "transactions", tx)
    entities = pd.DataFrame(
        [(f"c{i:03d}", t) for t in SNAPSHOTS for i in range(80)],
        columns=["customer_id", "event_timestamp"],
    )
    settings.features_dir.mkdir(parents=True, exist_ok=True)
    entities.to_parquet(settings.features_dir / FEATURES_FILE)
    return settings


def test_training_data_joins_labels_and_features(tmp_path: Path) -> None:
    settings = workspace(tmp_path)
    source = FakeSource()
    data = load_training_data(settings, source=source)
    # data ends in late October 2023: every snapshot's 30-day window is complete
    assert source.calls == [8 * 80]
    assert len(data.frame) == 8 * 80
    assert data.feature_names == ("weekly_spend", "tier") and data.categorical == ("tier",)
    big = data.frame.loc[data.frame["customer_id"] == "c009", "clv_label"].mean()
    small = data.frame.loc[data.frame["customer_id"] == "c000", "clv_label"].mean()
    assert big > 5 * small > 0


def test_run_registers_a_version(tmp_path: Path) -> None:
    settings = workspace(tmp_path)
    result = run(settings, n_trials=2, source=FakeSource())
    assert result.version == "1"
    assert result.model_metrics.spearman > 0.5


def test_run_without_features_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(NotReadyError, match="clv features build"):
        run(load_settings(tmp_path, environ={}), n_trials=1, source=FakeSource())
