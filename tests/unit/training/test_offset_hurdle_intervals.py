"""The value offset, the hurdle model, the conformal interval scales and the kind choice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from offset_world import BASE, card, frame

from clv.model.baseline import (
    baseline_clv,
    rfm_of,
)
from clv.model.bundle import ClvModel
from clv.model.intervals import interval_metrics, interval_scale, scaled_interval
from clv.training.objective import choose_value_model


def test_offset_prediction_is_exp_of_base_margin_plus_trees() -> None:
    data = frame()
    x = ClvModel(card(), value=xgb.Booster()).matrix(data)
    y = data["spend"].to_numpy()
    value = xgb.train({"objective": "reg:tweedie", "nthread": 1}, xgb.DMatrix(x, label=y), 5)
    model = ClvModel(card(), value=value)
    # by hand: the baseline's CLV from the frame, its log, plus the trees' margin alone
    base = baseline_clv(BASE, data, horizon_days=365, annual_discount_rate=0.1)
    trees = value.predict(xgb.DMatrix(x, base_margin=np.zeros(len(x))), output_margin=True)
    want = np.exp(np.log(np.maximum(base, 0.01)) + trees)
    np.testing.assert_allclose(model.predict(data)["clv"], want, rtol=1e-4)
    contrib = model.contributions(data)
    np.testing.assert_allclose(contrib.sum(axis=1), np.log(want), rtol=1e-4, atol=1e-4)


def test_hurdle_predicts_probability_times_value_and_survives_save(tmp_path: Path) -> None:
    data = frame(seed=1)
    x = ClvModel(card(), value=xgb.Booster()).matrix(data)
    buy = (data["spend"] > 80).to_numpy(dtype=float)
    value = xgb.train(
        {"objective": "reg:tweedie", "nthread": 1},
        xgb.DMatrix(x, label=data["spend"].to_numpy()),
        5,
    )
    purchase = xgb.train(
        {"objective": "binary:logistic", "nthread": 1}, xgb.DMatrix(x, label=buy), 5
    )
    model = ClvModel(card("hurdle"), value=value, purchase=purchase)
    offset = model.value_offset(x)
    assert offset is not None
    p = purchase.predict(xgb.DMatrix(x))
    v = value.predict(xgb.DMatrix(x, base_margin=offset))
    got = model.predict(data)["clv"].to_numpy()
    np.testing.assert_allclose(got, p * v, rtol=1e-4)
    contrib = model.contributions(data)
    np.testing.assert_allclose(contrib.sum(axis=1), np.log(got), rtol=1e-4, atol=1e-4)
    loaded = ClvModel.load(model.save(tmp_path / "bundle"))
    np.testing.assert_allclose(loaded.predict(data)["clv"], got, rtol=1e-6)
    with pytest.raises(ValueError, match="purchase booster"):
        ClvModel(card("hurdle"), value=value)


def test_one_row_baseline_matches_the_frame_formula() -> None:
    data = frame(n=1, seed=3)
    model = ClvModel(card(), value=xgb.Booster())
    got = model.value_offset(model.matrix(data))
    assert got is not None
    rfm = rfm_of(data)
    want = np.log(baseline_clv(BASE, data, horizon_days=365, annual_discount_rate=0.1))
    assert rfm.frequency.size == 1
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_interval_scales_hit_the_target_coverage_on_validation() -> None:
    rng = np.random.default_rng(4)
    n = 5000
    mu = rng.uniform(1, 5, n)
    y = np.where(rng.random(n) < 0.4, 0.0, np.exp(mu + rng.normal(0, 1.0, n)))
    # deliberately too wide quantiles: raw coverage well above 0.8
    lo, mid, hi = np.zeros(n), np.exp(mu), np.exp(mu + 2.5)
    point = 0.6 * np.exp(mu + 0.5)
    raw = interval_metrics(y, np.minimum(lo, point), np.maximum(hi, point)).coverage_p10_p90
    assert raw > 0.9
    scale = interval_scale(y, lo, mid, hi, point)
    got = interval_metrics(y, *scaled_interval(lo, mid, hi, point, scale)).coverage_p10_p90
    assert abs(got - 0.8) <= 0.02
    assert scale[1] < 1.0  # it narrowed the upper side


def test_a_widened_lower_side_stops_at_zero() -> None:
    # P10 = 0, P50 = 10: a lower scale of 2 reaches expm1(log1p(10) - 2 log1p(10)) < 0 unfloored.
    lo, hi = scaled_interval([0.0, 4.0], [10.0, 10.0], [30.0, 30.0], [8.0, 8.0], (2.0, 1.0))
    assert lo[0] == 0.0
    assert lo[1] == pytest.approx(np.expm1(2 * np.log1p(4.0) - np.log1p(10.0)))  # 0.64
    np.testing.assert_allclose(hi, [30.0, 30.0])


@pytest.mark.parametrize(
    ("tweedie", "hurdle", "gain", "kind"),
    [
        (170.0, 166.0, 0.0, "hurdle"),
        (166.0, 170.0, 0.0, "tweedie"),
        (170.0, 170.0, 0.0, "tweedie"),  # a tie goes to the simpler model
        (170.0, 168.0, 2.0, "tweedie"),  # 1.2% gain < the 2% required
        (170.0, float("nan"), 0.0, "tweedie"),
        (float("nan"), 170.0, 0.0, "hurdle"),
    ],
)
def test_value_model_choice_table(tweedie: float, hurdle: float, gain: float, kind: str) -> None:
    choice = choose_value_model(tweedie_rmse=tweedie, hurdle_rmse=hurdle, min_gain_pct=gain)
    assert choice.kind == kind
    assert choice.reason
