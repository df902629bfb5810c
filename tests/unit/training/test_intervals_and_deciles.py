from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from clv.evaluation.metrics import decile_table
from clv.model.bundle import CARD_FILE, ClvModel, ModelCard
from clv.model.intervals import (
    BandCoverage,
    BandedScale,
    adjusted,
    band_coverage,
    band_edges,
    banded_interval,
    banded_interval_scale,
    conformal_adjustment,
    interval_metrics,
    interval_scale,
    scaled_interval,
)

Quantiles = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def test_interval_coverage_and_width_by_hand() -> None:
    m = interval_metrics([1.0, 5.0, 10.0, 0.0], [0.0, 0.0, 0.0, 1.0], [2.0, 4.0, 10.0, 3.0])
    assert m.coverage_p10_p90 == pytest.approx(0.5)  # rows 0 and 2 inside (bounds inclusive)
    assert m.mean_width == pytest.approx((2 + 4 + 10 + 2) / 4)


def test_conformal_adjustment_is_the_finite_sample_quantile() -> None:
    y = np.arange(1.0, 11.0)  # 1..10, raw interval [0, 0]: scores are y
    q = conformal_adjustment(y, np.zeros(10), np.zeros(10), coverage=0.8)
    assert q == 9.0  # ceil(11 x 0.8) = 9th smallest score
    lo, hi = adjusted(np.zeros(10), np.zeros(10), q)
    assert interval_metrics(y, lo, hi).coverage_p10_p90 == pytest.approx(0.9)


def test_negative_adjustment_narrows_a_too_wide_interval() -> None:
    y = np.zeros(10)
    q = conformal_adjustment(y, np.full(10, -5.0), np.full(10, 5.0))
    assert q == -5.0


def test_decile_table_ranks_by_prediction() -> None:
    pred = np.arange(20.0)
    y = pred * 2
    table = decile_table(y, pred)
    assert table["decile"].tolist() == list(range(1, 11))
    assert table["n"].tolist() == [2] * 10
    assert table.loc[0, "mean_predicted"] == 18.5 and table.loc[0, "mean_actual"] == 37.0
    assert table.loc[9, "mean_actual"] == 1.0


def heteroscedastic(n: int, *, seed: int) -> Quantiles:
    """(y, P10, P50, P90, point): point c log-uniform on [10, 1000], y = c exp(sigma z) with
    sigma rising from 0.2 to 1.2 with log c, while P10/P90 assume sigma = 0.6 for every row."""
    rng = np.random.default_rng(seed)
    share = rng.random(n)
    c = np.exp(np.log(10.0) + share * np.log(100.0))
    y = c * np.exp((0.2 + share) * rng.standard_normal(n))
    z90 = 1.2816
    return y, c * np.exp(-0.6 * z90), c, c * np.exp(0.6 * z90), c


def test_banded_scales_cover_every_value_band_where_one_scale_does_not() -> None:
    valid, fresh = heteroscedastic(20_000, seed=1), heteroscedastic(20_000, seed=2)
    y, lo, mid, hi, point = fresh
    one = interval_scale(*valid)
    one_band = band_coverage(y, *scaled_interval(lo, mid, hi, point, one), point)
    assert one_band.coverage[-1] < 0.7  # the most valuable decile: too narrow
    assert one_band.coverage[0] > 0.9  # the least valuable: too wide
    bands = banded_interval_scale(*valid)
    assert len(bands.scales) == 10
    assert [s[1] for s in bands.scales] == sorted(s[1] for s in bands.scales)  # wider up top
    interval = banded_interval(lo, mid, hi, point, bands)
    served = band_coverage(y, *interval, point)
    assert served.n == [2_000] * 10
    np.testing.assert_allclose(served.coverage, 0.8, atol=0.05)
    assert interval_metrics(y, *interval).coverage_p10_p90 == pytest.approx(0.8, abs=0.02)


def test_few_rows_fall_back_to_fewer_bands_and_to_one() -> None:
    y, lo, mid, hi, point = heteroscedastic(450, seed=3)
    assert len(band_edges(point, min_rows=200)) == 1  # 450 // 200 = 2 bands
    few = banded_interval_scale(y[:150], lo[:150], mid[:150], hi[:150], point[:150])
    assert few.edges == []
    assert few.scales == [interval_scale(y[:150], lo[:150], mid[:150], hi[:150], point[:150])]


def test_a_band_left_short_by_ties_is_merged() -> None:
    point = np.concatenate([np.zeros(300), np.arange(1.0, 301.0)])
    # 6 bands of 600 rows: the sixth quantiles 0, 0, 0.5, 100.33, 200.17; the band below 0 is
    # empty, so its edge goes, leaving bands of 300 zeros, 1-100, 101-200 and 201-300.
    edges = band_edges(point, bands=10, min_rows=100)
    np.testing.assert_allclose(edges, [0.5, 100 + 1 / 3, 200 + 1 / 6])
    rows = np.bincount(BandedScale(edges, [(1.0, 1.0)] * 4).band_of(point))
    assert rows.tolist() == [300, 100, 100, 100]


def test_each_row_takes_its_bands_scales() -> None:
    bands = BandedScale(edges=[10.0], scales=[(1.0, 1.0), (2.0, 0.5)])
    lo, hi = banded_interval([1.0, 10.0], [5.0, 20.0], [20.0, 60.0], [5.0, 20.0], bands)
    # Row 0 (point 5 < 10): scales of 1 keep the raw [1, 20]. Row 1 (point 20): in log1p space
    # lo = 2 log1p(10) - log1p(20), hi = (log1p(20) + log1p(60)) / 2.
    np.testing.assert_allclose(lo, [1.0, 11.0**2 / 21.0 - 1.0])
    np.testing.assert_allclose(hi, [20.0, np.sqrt(21.0 * 61.0) - 1.0])


def test_banded_scale_checks_its_shape() -> None:
    with pytest.raises(ValueError, match="1 band edge"):
        BandedScale(edges=[1.0], scales=[(1.0, 1.0)])
    with pytest.raises(ValueError, match="strictly ascending"):
        BandedScale(edges=[2.0, 2.0], scales=[(1.0, 1.0)] * 3)


def test_band_coverage_by_hand() -> None:
    point = np.arange(4.0)
    y = np.array([0.0, 5.0, 5.0, 5.0])
    cov = band_coverage(y, np.zeros(4), [1.0, 1.0, 9.0, 9.0], point, bands=2)
    assert cov == BandCoverage(coverage=[0.5, 1.0], n=[2, 2], target=0.8)
    assert cov.worst == 0  # |0.5 - 0.8| > |1.0 - 0.8|


def interval_bundle(card: ModelCard, x: np.ndarray, spend: np.ndarray) -> ClvModel:
    """A value booster and three quantile boosters on one feature."""

    def fit(objective: str, label: np.ndarray) -> xgb.Booster:
        params = {"objective": objective, "nthread": 1, "max_depth": 2}
        return xgb.train(params, xgb.DMatrix(x, label=label), num_boost_round=10)

    quantiles = {
        key: fit("reg:squarederror", spend * factor)
        for key, factor in (("clv_p10", 0.5), ("clv_p50", 1.0), ("clv_p90", 2.0))
    }
    return ClvModel(card, value=fit("reg:tweedie", spend), quantiles=quantiles)


def test_bundle_with_bands_round_trips_and_older_bundles_predict_as_before(
    tmp_path: Path,
) -> None:
    frame = pd.DataFrame({"spend": np.linspace(1.0, 200.0, 300)})
    scale = [1.3, 0.9]
    card = ModelCard(feature_service="clv_v1", feature_names=["spend"], interval_scale=scale)
    x = ClvModel(card, value=xgb.Booster()).matrix(frame)
    older = interval_bundle(card, x, frame["spend"].to_numpy())
    before = older.predict(frame)
    raw = {k: b.inplace_predict(x) for k, b in older.quantiles.items()}
    want = scaled_interval(
        raw["clv_p10"], raw["clv_p50"], raw["clv_p90"], before["clv"], (1.3, 0.9)
    )
    np.testing.assert_allclose(before[["clv_p10", "clv_p90"]].to_numpy().T, want, rtol=1e-6)

    path = older.save(tmp_path / "older")
    stored = json.loads((path / CARD_FILE).read_text())
    del stored["interval_bands"]  # as written before the field existed
    (path / CARD_FILE).write_text(json.dumps(stored))
    loaded = ClvModel.load(path)
    assert loaded.card.interval_bands is None
    pd.testing.assert_frame_equal(loaded.predict(frame), before)

    one_band = BandedScale(edges=[], scales=[(1.3, 0.9)])
    same = ClvModel(
        ModelCard(**{**stored, "interval_bands": one_band.as_dict()}),
        value=older.value,
        quantiles=older.quantiles,
    )
    pd.testing.assert_frame_equal(same.predict(frame), before)  # one band = one scale

    bands = BandedScale(edges=[50.0, 120.0], scales=[(1.0, 1.0), (1.3, 0.9), (2.0, 3.0)])
    banded = ClvModel(
        ModelCard(**{**stored, "interval_bands": bands.as_dict()}),
        value=older.value,
        quantiles=older.quantiles,
    )
    reloaded = ClvModel.load(banded.save(tmp_path / "banded"))
    assert reloaded.card == banded.card
    assert reloaded.card.interval_bands is not None
    assert BandedScale.from_dict(reloaded.card.interval_bands) == bands
    after = reloaded.predict(frame)
    pd.testing.assert_frame_equal(after, banded.predict(frame))
    top = before["clv"] >= 120.0
    assert top.any() and (after.loc[top, "clv_p90"] > before.loc[top, "clv_p90"]).all()
