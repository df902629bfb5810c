"""The value blend: clv = (1 - w) x baseline + w x model, and its contributions."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from offset_world import BASE, card, frame

from clv.model.baseline import baseline_clv
from clv.model.bundle import ClvModel, ModelCard, blend_log, level_scale


def fitted(kind: str, data: pd.DataFrame) -> tuple[xgb.Booster, xgb.Booster | None]:
    x = ClvModel(card(), value=xgb.Booster()).matrix(data)
    spend = data["spend"].to_numpy()
    value = xgb.train(
        {"objective": "reg:tweedie", "nthread": 1, "max_depth": 3},
        xgb.DMatrix(x, label=spend),
        10,
    )
    if kind == "tweedie":
        return value, None
    buy = (spend > 80).astype(float)
    purchase = xgb.train(
        {"objective": "binary:logistic", "nthread": 1}, xgb.DMatrix(x, label=buy), 5
    )
    return value, purchase


def blended(kind: str, w: float, data: pd.DataFrame) -> ClvModel:
    value, purchase = fitted(kind, data)
    return ClvModel(replace(card(kind), value_blend=w), value=value, purchase=purchase)


def test_blend_log_is_the_log_of_the_linear_mix() -> None:
    t = np.array([-3.0, -0.5, 0.0, 0.7, 2.0])
    np.testing.assert_allclose(blend_log(t, 0.5), np.log(0.5 + 0.5 * np.exp(t)))
    np.testing.assert_allclose(blend_log(t, 1.0), t, atol=1e-12)
    np.testing.assert_allclose(blend_log(t, 0.0), 0.0, atol=1e-12)


@pytest.mark.parametrize("kind", ["tweedie", "hurdle"])
def test_blend_mixes_baseline_and_model_by_hand(kind: str) -> None:
    data = frame(seed=4)
    w = 0.3
    model = blended(kind, w, data)
    alone = ClvModel(
        replace(model.card, value_blend=1.0), value=model.value, purchase=model.purchase
    )
    base = np.maximum(baseline_clv(BASE, data, horizon_days=365, annual_discount_rate=0.1), 0.01)
    # by hand: the unblended model's prediction is baseline x exp(t)
    unblended = alone.predict(data)["clv"].to_numpy()
    want = (1 - w) * base + w * unblended
    got = model.predict(data)["clv"].to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert not np.allclose(got, unblended, rtol=1e-3)  # the blend changed something
    np.testing.assert_allclose(np.exp(model.value_margin(model.matrix(data))), got, rtol=1e-9)


@pytest.mark.parametrize("kind", ["tweedie", "hurdle"])
@pytest.mark.parametrize("w", [0.0, 0.5, 0.9])
def test_blended_contributions_sum_to_the_value_margin(kind: str, w: float) -> None:
    data = frame(seed=5)
    model = blended(kind, w, data)
    contrib = model.contributions(data)
    margin = model.value_margin(model.matrix(data))
    np.testing.assert_allclose(contrib.sum(axis=1), margin, rtol=1e-6, atol=1e-6)
    features = contrib.drop(columns="bias").to_numpy()
    if w == 0.0:  # the baseline alone: every feature contributes nothing, bias = offset
        assert np.abs(features).max() == 0.0
        offset = model.value_offset(model.matrix(data))
        np.testing.assert_allclose(contrib["bias"], offset, rtol=1e-9)
    else:
        alone = ClvModel(
            replace(model.card, value_blend=1.0), value=model.value, purchase=model.purchase
        ).contributions(data)
        # the rescale keeps each feature's sign (blend_log is increasing)
        same = np.sign(features) == np.sign(alone.drop(columns="bias").to_numpy())
        assert same.all()


def test_blend_survives_save_and_load_and_old_cards_mean_no_blend(tmp_path: Path) -> None:
    data = frame(seed=6)
    model = blended("tweedie", 0.5, data)
    loaded = ClvModel.load(model.save(tmp_path / "bundle"))
    assert loaded.card.value_blend == 0.5
    np.testing.assert_allclose(loaded.predict(data)["clv"], model.predict(data)["clv"], rtol=1e-9)
    assert ModelCard(feature_service="clv_v1", feature_names=["a"]).value_blend == 1.0


def test_blend_is_ignored_without_an_offset() -> None:
    data = frame(seed=7)
    value, _ = fitted("tweedie", data)
    plain = replace(card(), value_offset=None)
    one = ClvModel(plain, value=value).predict(data)["clv"]
    half = ClvModel(replace(plain, value_blend=0.5), value=value).predict(data)["clv"]
    np.testing.assert_allclose(half, one, rtol=1e-12)


@pytest.mark.parametrize("kind", ["tweedie", "hurdle"])
def test_level_scale_matches_the_baseline_total_and_keeps_contributions_additive(
    kind: str,
) -> None:
    data = frame(seed=8)
    model = blended(kind, 0.5, data)
    x = model.matrix(data)
    c = level_scale(model, x)
    scaled = ClvModel(
        replace(model.card, value_scale=c), value=model.value, purchase=model.purchase
    )
    base = np.maximum(baseline_clv(BASE, data, horizon_days=365, annual_discount_rate=0.1), 0.01)
    got = scaled.predict(data)["clv"].to_numpy()
    np.testing.assert_allclose(got.sum(), base.sum(), rtol=1e-6)
    np.testing.assert_allclose(got, c * model.predict(data)["clv"].to_numpy(), rtol=1e-9)
    assert abs(c - 1.0) > 1e-3  # the fixture's trees move the level
    contrib = scaled.contributions(data)
    np.testing.assert_allclose(contrib.sum(axis=1), np.log(got), rtol=1e-6, atol=1e-6)


def test_level_scale_is_one_without_an_offset() -> None:
    data = frame(seed=9)
    value, _ = fitted("tweedie", data)
    model = ClvModel(replace(card(), value_offset=None), value=value)
    assert level_scale(model, model.matrix(data)) == 1.0
