"""The one-customer predict path's shortcuts give what the code they replace gave, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from clv.model.baseline import (
    Baseline,
    BgNbdParams,
    GammaGammaParams,
    _nan_to_zero,
    log_offset,
    one_log_offset,
    rfm_arrays,
)
from clv.model.intervals import BandedScale


def test_nan_to_zero_is_nan_to_num_with_zero_for_nan() -> None:
    big = np.finfo(np.float64).max
    values = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1.5, -2.0, big, -big, 5e-324])
    for part in (values, values[:1], values[3:4], values[::3]):  # views and one customer
        want = np.nan_to_num(part, nan=0.0)
        got = _nan_to_zero(part)
        assert got.tobytes() == want.tobytes() and got.dtype == want.dtype  # signed zeros too


def test_banded_scales_are_read_from_arrays_built_once() -> None:
    bands = BandedScale(edges=[1.0, 5.0], scales=[(0.5, 1.0), (1.0, 2.0), (2.0, 3.0)])
    point = np.array([0.0, 1.0, 3.0, 5.0, 9.0, np.nan])
    expected = np.asarray(bands.scales, dtype=np.float64)[bands.band_of(point)]
    assert np.array_equal(bands.scales_of(point), expected)
    assert bands.scales_of(point)[:, 0].tolist() == [0.5, 1.0, 1.0, 2.0, 2.0, 2.0]
    assert bands == BandedScale.from_dict(bands.as_dict())  # the arrays are not fields


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the edges overflow
def test_one_customers_offset_is_the_vectorised_one_bit_for_bit() -> None:
    """`one_log_offset` against `log_offset` on one-row arrays (what serving computed before),
    on drawn customers and on the edges: missing, infinite, zero, negative, a first purchase
    only (x = 0), recency past T."""
    base = Baseline(
        BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426),
        GammaGammaParams(p=6.25, q=3.74, gamma=15.44),
        margin_ratio=0.3,
        fitted_rows=100,
    )
    rng = np.random.default_rng(0)
    n = 3000
    tenure = rng.uniform(0, 900, n)
    drawn = np.column_stack(
        [
            rng.poisson(2.0, n).astype(float),
            tenure * rng.uniform(-0.1, 1.2, n),
            tenure,
            rng.gamma(2.0, 30.0, n),
            tenure + rng.uniform(0, 30, n),
        ]
    )
    edges = [np.nan, np.inf, -np.inf, 0.0, -0.0, -3.0, 1.0, 1e300]
    corners = np.array(
        [
            [e if j == k else drawn[i, j] for j in range(5)]
            for i, e in enumerate(edges)
            for k in range(5)
        ]
    )
    rows = np.vstack([drawn, corners, np.full((1, 5), np.nan)]).astype(np.float32)
    for horizon, rate in ((365, 0.1), (90, 0.0)):
        for row in rows.astype(np.float64):
            rfm = rfm_arrays(*(row[j : j + 1] for j in range(5)))
            want = log_offset(base, rfm, horizon_days=horizon, annual_discount_rate=rate)
            got = one_log_offset(
                base, tuple(row.tolist()), horizon_days=horizon, annual_discount_rate=rate
            )
            assert got.tobytes() == want.tobytes() and got.shape == want.shape, row
