"""XGBoost's private predict path is version-gated, and its public fallback predicts the same.

`ClvModel` predicts through `InplacePredictor`: XGBoost's C entry point on the verified versions,
`Booster.inplace_predict` otherwise (or with `public_predict=True`). Both must give the same
numbers, bit for bit, for every output of a full bundle.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
import xgboost.core

from clv.model import xgboost_private
from clv.model.baseline import Baseline, BgNbdParams, GammaGammaParams
from clv.model.bundle import ClvModel, ModelCard
from clv.model.forest import FOREST_ROWS
from clv.model.xgboost_private import InplacePredictor

NAMES = ["frequency", "recency", "T", "monetary_value", "tenure_days", "spend", "channel"]
BASE = Baseline(
    BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426),
    GammaGammaParams(p=6.25, q=3.74, gamma=15.44),
    margin_ratio=0.3,
    fitted_rows=100,
)


def _frame(n: int, seed: int) -> pd.DataFrame:
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
            "channel": rng.choice(["app", "web"], n),
        }
    )
    out.loc[::11, NAMES[:-1]] = np.nan  # unknown customers: every feature missing
    return out


def _bundle(*, public_predict: bool = False) -> ClvModel:
    """A hurdle bundle with offset, blend, scale, calibrated churn and quantile boosters."""
    card = ModelCard(
        feature_service="clv_v1",
        feature_names=NAMES,
        categories={"channel": ["app", "web"]},
        value_model="hurdle",
        value_offset={**BASE.as_dict(), "annual_discount_rate": 0.1},
        value_blend=0.7,
        value_scale=1.2,
        churn_calibration={"a": 0.8, "b": 0.1},
    )
    data = _frame(200, seed=1)
    x = ClvModel(card, value=xgb.Booster(), purchase=xgb.Booster()).matrix(data)
    spend = np.nan_to_num(data["spend"].to_numpy(), nan=40.0)

    def fit(objective: str, label: np.ndarray, **extra: float) -> xgb.Booster:
        params = {"objective": objective, "nthread": 1, "max_depth": 3, "seed": 0, **extra}
        return xgb.train(params, xgb.DMatrix(x, label=label), 8)

    return ClvModel(
        card,
        value=fit("reg:tweedie", spend),
        purchase=fit("binary:logistic", (spend > 80).astype(float)),
        churn=fit("binary:logistic", (spend < 40).astype(float)),
        quantiles={
            key: fit("reg:quantileerror", spend, quantile_alpha=alpha)
            for key, alpha in (("clv_p10", 0.1), ("clv_p50", 0.5), ("clv_p90", 0.9))
        },
        public_predict=public_predict,
    )


@pytest.fixture(scope="module")
def fast() -> ClvModel:
    return _bundle()


def _same_boosters(model: ClvModel, *, public_predict: bool) -> ClvModel:
    return ClvModel(
        model.card,
        value=model.value,
        churn=model.churn,
        quantiles=model.quantiles,
        purchase=model.purchase,
        public_predict=public_predict,
    )


def _paths(model: ClvModel) -> set[bool]:
    return {predictor.native for predictor in model._fast.values()}


def _assert_same_predictions(a: ClvModel, b: ClvModel, x: np.ndarray) -> None:
    want = a.predict_matrix(x)
    got = b.predict_matrix(x)
    assert sorted(got) == sorted(want)
    for key in want:
        assert np.array_equal(got[key], want[key], equal_nan=True), key
    assert np.isfinite(want["clv"]).all() and np.isfinite(want["churn_probability"]).all()


def test_the_pinned_xgboost_is_verified_and_takes_the_private_path(fast: ClvModel) -> None:
    import importlib.metadata

    assert xgboost_private.installed_version() == importlib.metadata.version("xgboost")
    assert xgboost_private.private_unavailable() is None  # a new XGBoost: re-verify, then list it
    fast.predict_matrix(fast.matrix(_frame(FOREST_ROWS + 1, seed=2)))  # past the forest's rows
    assert _paths(fast) == {True}


def test_the_public_fallback_predicts_the_same_bit_for_bit(fast: ClvModel) -> None:
    public = _same_boosters(fast, public_predict=True)
    x = fast.matrix(_frame(150, seed=3))
    _assert_same_predictions(fast, public, x)
    _assert_same_predictions(fast, public, x[7:8])  # one row, the serving case
    _assert_same_predictions(fast, public, x[::3])  # a strided view
    assert _paths(public) == {False}
    assert {p.reason for p in public._fast.values()} == {"public path asked for"}


def test_a_few_rows_walk_every_booster_at_once_and_predict_the_same(fast: ClvModel) -> None:
    """Up to FOREST_ROWS rows, a bundle predicts through its boosters' Forest (clv.model.forest)."""
    public = _same_boosters(fast, public_predict=True)
    x = fast.matrix(_frame(60, seed=8))
    for size in (1, 2, FOREST_ROWS):
        for start in range(0, len(x), size):
            _assert_same_predictions(fast, public, x[start : start + size])
    assert fast._forest is not None and fast._forest[1] is not None
    assert fast.forest_reason is None
    assert public._forest is None  # the public path walks no forest


def test_warm_builds_the_forest_and_a_model_that_cannot_predict_still_warms(
    fast: ClvModel,
) -> None:
    fresh = _same_boosters(fast, public_predict=False)
    fresh.warm()
    assert fresh._forest is not None and fresh._forest[1] is not None
    narrow = ModelCard(feature_service="clv_v1", feature_names=NAMES[:-1])
    broken = ClvModel(narrow, value=fast.value)  # 6 columns for a 7-feature booster
    broken.warm()  # says nothing: its requests fail as they would have
    with pytest.raises(ValueError, match="Feature shape mismatch"):
        broken.predict_matrix(np.zeros((1, len(NAMES) - 1), dtype=np.float32))


def test_an_unverified_xgboost_version_falls_back_and_says_so_once(
    fast: ClvModel, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(xgboost_private, "installed_version", lambda: "9.9.9")
    caplog.set_level(logging.DEBUG, logger=xgboost_private.__name__)
    other = _same_boosters(fast, public_predict=False)
    _assert_same_predictions(fast, other, other.matrix(_frame(40, seed=4)))
    assert _paths(other) == {False}
    reasons = {p.reason for p in other._fast.values()}
    assert len(reasons) == 1 and "xgboost 9.9.9 is not one of 3.2.0" in str(reasons.pop())
    few = _same_boosters(fast, public_predict=False)
    few.predict_matrix(other.matrix(_frame(2, seed=5)))
    assert few._forest is not None and few._forest[1] is None  # nor the forest, on its rows
    assert "xgboost 9.9.9 is not one of 3.2.0" in str(few.forest_reason)
    logged = [r for r in caplog.records if "9.9.9" in r.getMessage()]
    assert len(logged) == 1 and logged[0].levelno == logging.DEBUG


def test_missing_private_names_fall_back_too(
    fast: ClvModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patched:  # gone while the predictor looks for it
        patched.delattr(xgboost.core, "make_jcargs")
        predictor = InplacePredictor(fast.value, margin=True)
    assert not predictor.native and "make_jcargs" in str(predictor.reason)
    x = fast.matrix(_frame(20, seed=6))
    want = np.asarray(fast.value.inplace_predict(x, predict_type="margin"), dtype=np.float64)
    assert np.array_equal(predictor(x), want)


@pytest.mark.parametrize("public", [False, True])
def test_both_paths_handle_empty_input_and_reject_a_wrong_width(
    fast: ClvModel, public: bool
) -> None:
    predictor = InplacePredictor(fast.churn or fast.value, margin=False, public=public)
    assert predictor.native is not public
    out = predictor(np.empty((0, len(NAMES)), dtype=np.float32))
    assert out.shape == (0,) and out.dtype == np.float64
    with pytest.raises(ValueError, match="Feature shape mismatch, expected: 7, got 6"):
        predictor(np.zeros((1, len(NAMES) - 1), dtype=np.float32))
