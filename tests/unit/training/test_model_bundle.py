from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb

from clv.model.bundle import ClvModel, ModelCard


def card() -> ModelCard:
    return ModelCard(
        feature_service="clv_v1",
        feature_names=["spend", "channel", "cohort"],
        categories={"channel": ["app", "web"], "cohort": ["2023", "2024"]},
    )


def test_matrix_orders_features_and_codes_categories_as_text() -> None:
    frame = pd.DataFrame(
        {
            "cohort": pd.Series([2024, 2023, None], dtype="Int64"),  # non-text levels
            "channel": ["web", "fax", None],  # "fax" was never seen in training
            "spend": ["1.5", "x", None],
        }
    )
    x = ClvModel(card(), value=xgb.Booster()).matrix(frame)
    expected = np.array([[1.5, 1.0, 1.0], [np.nan, np.nan, 0.0], [np.nan, np.nan, np.nan]])
    np.testing.assert_array_equal(x, expected.astype(np.float32))


def test_save_load_round_trip_predicts_the_same(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "spend": rng.uniform(0, 100, 200),
            "channel": rng.choice(["app", "web"], 200),
            "cohort": rng.choice(["2023", "2024"], 200),
        }
    )
    enc = ClvModel(card(), value=xgb.Booster())
    x = enc.matrix(frame)
    value = xgb.train(
        {"objective": "reg:tweedie", "nthread": 1},
        xgb.DMatrix(x, label=frame["spend"] * 2),
        num_boost_round=10,
    )
    churn = xgb.train(
        {"objective": "binary:logistic", "nthread": 1},
        xgb.DMatrix(x, label=(frame["spend"] < 30).astype(float)),
        num_boost_round=5,
    )
    model = ClvModel(card(), value=value, churn=churn)
    loaded = ClvModel.load(model.save(tmp_path / "bundle"))
    before, after = model.predict(frame), loaded.predict(frame)
    np.testing.assert_allclose(before["clv"], after["clv"])
    np.testing.assert_allclose(before["churn_probability"], after["churn_probability"])
    assert loaded.card == model.card
    assert after["clv_p10"].isna().all()  # no quantile boosters in this bundle
