"""The online hot path: one row scores exactly as it does inside a batch.

`ClvModel` predicts through `_InplacePredictor` (XGBoost's C entry point with its setup done
once) and the offset through a cached time grid; both must reproduce XGBoost's own
`inplace_predict` and the batch formula bit for bit.
"""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from clv.model.baseline import (
    WEEK_DAYS,
    Baseline,
    BgNbdParams,
    GammaGammaParams,
    conditional_expected_purchases,
    conditional_expected_value,
    expected_clv,
    rfm_of,
)
from clv.model.bundle import ClvModel, ModelCard
from clv.model.xgboost_private import InplacePredictor as _InplacePredictor

BASE = Baseline(
    BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426),
    GammaGammaParams(p=6.25, q=3.74, gamma=15.44),
    margin_ratio=0.3,
    fitted_rows=100,
)
NAMES = ["frequency", "recency", "T", "monetary_value", "tenure_days", "spend", "channel"]


def frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    T = rng.uniform(30, 700, n)
    out = pd.DataFrame(
        {
            "frequency": rng.poisson(3, n).astype(float),
            "recency": T * rng.uniform(0, 1, n),
            "T": T,
            "monetary_value": rng.gamma(2, 20, n),
            "tenure_days": T + 5,
            "spend": rng.gamma(2, 50, n),
            "channel": rng.choice(["app", "web", "store"], n),
        }
    )
    out.loc[rng.random(n) < 0.1, ["frequency", "recency", "T", "monetary_value"]] = np.nan
    out.loc[::37, NAMES[:-1]] = np.nan  # a few unknown customers: every feature missing
    out.loc[::37, "channel"] = None
    return out


@pytest.fixture(scope="module")
def model() -> ClvModel:
    """A full hurdle bundle: offset, blend, scale, calibrated churn, conformal intervals."""
    data = frame(seed=1)
    card = ModelCard(
        feature_service="clv_v1",
        feature_names=NAMES,
        categories={"channel": ["app", "store", "web"]},
        value_model="hurdle",
        value_offset={**BASE.as_dict(), "annual_discount_rate": 0.1},
        value_blend=0.6,
        value_scale=1.3,
        churn_calibration={"a": 0.9, "b": -0.1},
        interval_scale=[1.1, 1.2],
    )
    x = ClvModel(card, value=xgb.Booster(), purchase=xgb.Booster()).matrix(data)
    spend = np.nan_to_num(data["spend"].to_numpy(), nan=50.0)

    def fit(objective: str, label: np.ndarray, rounds: int, **extra: float) -> xgb.Booster:
        params = {"objective": objective, "nthread": 1, "max_depth": 4, **extra}
        return xgb.train(params, xgb.DMatrix(x, label=label), rounds)

    quantiles = {
        key: fit("reg:quantileerror", spend, 15, quantile_alpha=alpha)
        for key, alpha in (("clv_p10", 0.1), ("clv_p50", 0.5), ("clv_p90", 0.9))
    }
    return ClvModel(
        card,
        value=fit("reg:tweedie", spend, 20),
        purchase=fit("binary:logistic", (spend > 80).astype(float), 12),
        churn=fit("binary:logistic", (spend < 40).astype(float), 12),
        quantiles=quantiles,
    )


def test_one_row_at_a_time_equals_the_batch(model: ClvModel) -> None:
    """Equal to 1e-12 relative: NumPy's vectorised exp/log may differ from its scalar loop in
    the last bit (measured: 1 ulp of the offset); XGBoost's part is bit for bit (below)."""
    x = model.matrix(frame(n=120, seed=2))
    batch = model.predict_matrix(x)
    assert not np.isnan(batch["clv"]).any()
    for i in range(x.shape[0]):
        row = model.predict_matrix(x[i : i + 1])
        for key, values in batch.items():
            np.testing.assert_allclose(row[key], values[i : i + 1], rtol=1e-12, atol=0.0)
    small = model.predict_matrix(x[:16])
    for key, values in batch.items():
        np.testing.assert_allclose(small[key], values[:16], rtol=1e-12, atol=0.0)


def test_repeated_single_rows_are_deterministic(model: ClvModel) -> None:
    x = model.matrix(frame(n=30, seed=7))
    first = [model.predict_matrix(x[i : i + 1]) for i in range(30)]
    for i in range(30):
        again = model.predict_matrix(x[i : i + 1])
        for key, values in first[i].items():
            assert np.array_equal(again[key], values, equal_nan=True), (key, i)


@pytest.mark.parametrize("margin", [True, False])
def test_fast_predictor_equals_xgboost_inplace_predict(model: ClvModel, margin: bool) -> None:
    x = model.matrix(frame(n=80, seed=3))
    kind = "margin" if margin else "value"
    for name, booster in model._boosters().items():
        fast = _InplacePredictor(booster, margin=margin)
        assert fast.native  # the pinned XGBoost has the C entry point
        want = np.asarray(booster.inplace_predict(x, predict_type=kind), dtype=np.float64)
        assert np.array_equal(fast(x), want, equal_nan=True), name
        assert np.array_equal(fast(x[5:6]), want[5:6], equal_nan=True), name
        # a strided view (every other row) is made contiguous, not misread
        assert np.array_equal(model._predict(booster, x[::2], margin=margin), want[::2]), name


def test_fast_predictor_handles_empty_input_and_rejects_a_wrong_width(model: ClvModel) -> None:
    fast = _InplacePredictor(model.value, margin=True)
    assert fast(np.empty((0, len(NAMES)), dtype=np.float32)).shape == (0,)
    with pytest.raises(ValueError, match="Feature shape mismatch"):
        fast(np.zeros((1, len(NAMES) - 1), dtype=np.float32))


def test_fast_predictor_is_safe_across_threads(model: ClvModel) -> None:
    x = model.matrix(frame(n=64, seed=4))
    want = np.concatenate([model.predict_matrix(x[j : j + 1])["clv"] for j in range(64)])
    bad: list[int] = []

    def work() -> None:
        for i in range(200):
            j = i % x.shape[0]
            if not np.array_equal(model.predict_matrix(x[j : j + 1])["clv"], want[j : j + 1]):
                bad.append(j)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bad == []


def test_a_replaced_booster_is_used_not_a_stale_predictor(model: ClvModel) -> None:
    x = model.matrix(frame(n=10, seed=5))
    before = model.predict_matrix(x)["churn_probability"]
    other = ClvModel(model.card, value=model.value, purchase=model.purchase, churn=model.value)
    other.predict_matrix(x)
    other.churn = model.churn
    assert np.array_equal(other.predict_matrix(x)["churn_probability"], before)


def test_expected_clv_with_the_cached_grid_equals_the_paper_formula() -> None:
    """The pre-cache formula (linspace grid per call) as the reference, bit for bit."""
    rfm = rfm_of(frame(n=50, seed=6))
    horizon, rate, steps = 365.0, 0.1, 12
    edges = np.linspace(0.0, horizon, steps + 1)
    ends = conditional_expected_purchases(
        BASE.bgnbd, edges[1:, None] / WEEK_DAYS, rfm.frequency, rfm.recency, rfm.T
    )
    cumulative = np.concatenate([np.zeros((1, rfm.frequency.size)), ends])
    mids = (edges[1:] + edges[:-1]) / 2.0
    discount = (1.0 + rate) ** (-mids / 365.0)
    purchases = (np.diff(cumulative, axis=0) * discount[:, None]).sum(axis=0)
    value = conditional_expected_value(BASE.gamma_gamma, rfm.frequency, rfm.monetary_value)
    want = purchases * value * BASE.margin_ratio
    got = expected_clv(BASE, rfm, horizon_days=horizon, annual_discount_rate=rate)
    assert np.array_equal(got, want, equal_nan=True)
    again = expected_clv(BASE, rfm, horizon_days=horizon, annual_discount_rate=rate)
    assert np.array_equal(again, want, equal_nan=True)  # the cached grid was not modified
