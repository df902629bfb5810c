"""BG/NBD and Gamma-Gamma against the values published by Fader, Hardie & Lee (2005)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clv.model.baseline import (
    BgNbdParams,
    GammaGammaParams,
    baseline_clv,
    conditional_expected_purchases,
    conditional_expected_value,
    fit_baseline,
    fit_bgnbd,
    fit_gamma_gamma,
    probability_alive,
)

# CDNOW estimates: BG/NBD (FHL 2005a, Table/Section 5), Gamma-Gamma (FHL 2005b; lifetimes docs).
CDNOW = BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
CDNOW_GG = GammaGammaParams(p=6.25, q=3.74, gamma=15.44)


def simulate_bgnbd(
    params: BgNbdParams, n: int, *, T: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, t_x, T of n customers observed for T weeks after their first purchase (BG/NBD)."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(params.r, 1.0 / params.alpha, n)
    p = rng.beta(params.a, params.b, n)
    x, t_x = np.zeros(n), np.zeros(n)
    now, alive = np.zeros(n), np.ones(n, dtype=bool)
    while alive.any():
        now = now + rng.exponential(1.0, n) / lam
        buys = alive & (now <= T)
        x[buys] += 1
        t_x[buys] = now[buys]
        alive = buys & (rng.random(n) >= p)  # drop out after a purchase with probability p
    return x, t_x, np.full(n, T)


def test_conditional_expectation_reproduces_the_papers_worked_example() -> None:
    # FHL 2005a, section 5: x = 2, t_x = 30.43, T = 38.86 weeks -> E[Y(39) | ...] = 1.226
    got = conditional_expected_purchases(CDNOW, 39.0, 2, 30.43, 38.86)
    assert float(got) == pytest.approx(1.226, abs=5e-4)


def test_probability_alive_is_one_without_repeat_purchases_and_falls_with_lapse() -> None:
    assert float(probability_alive(CDNOW, 0, 0.0, 38.0)) == 1.0
    recent = float(probability_alive(CDNOW, 3, 37.0, 38.0))
    lapsed = float(probability_alive(CDNOW, 3, 5.0, 38.0))
    assert 0 < lapsed < recent < 1


def test_bgnbd_mle_recovers_the_published_parameters_from_simulated_data() -> None:
    x, t_x, T = simulate_bgnbd(CDNOW, 20_000, T=39.0, seed=11)
    fit = fit_bgnbd(x, t_x, T)
    assert fit.r == pytest.approx(CDNOW.r, rel=0.1)
    assert fit.alpha == pytest.approx(CDNOW.alpha, rel=0.15)
    assert fit.a == pytest.approx(CDNOW.a, rel=0.25)
    assert fit.b == pytest.approx(CDNOW.b, rel=0.3)


def test_gamma_gamma_conditional_mean_by_hand() -> None:
    # x = 0: the population mean p gamma / (q - 1) = 6.25 x 15.44 / 2.74 = 35.219
    assert float(conditional_expected_value(CDNOW_GG, 0, np.nan)) == pytest.approx(35.2190, 1e-4)
    # x = 2, m = 20: (15.44 + 40) x 6.25 / (12.5 + 2.74) = 346.5 / 15.24 = 22.7362
    assert float(conditional_expected_value(CDNOW_GG, 2, 20.0)) == pytest.approx(22.7362, 1e-4)


def test_gamma_gamma_mle_recovers_the_published_parameters() -> None:
    rng = np.random.default_rng(5)
    n = 20_000
    nu = rng.gamma(CDNOW_GG.q, 1.0 / CDNOW_GG.gamma, n)
    x = rng.integers(1, 8, n).astype(float)
    m = rng.gamma(CDNOW_GG.p * x, 1.0) / nu / x  # mean of x Gamma(p, nu) purchases
    fit = fit_gamma_gamma(x, m)
    assert fit.p == pytest.approx(CDNOW_GG.p, rel=0.1)
    assert fit.q == pytest.approx(CDNOW_GG.q, rel=0.1)
    assert fit.gamma == pytest.approx(CDNOW_GG.gamma, rel=0.15)


def test_baseline_clv_discounts_and_scales_by_margin() -> None:
    x, t_x, T = simulate_bgnbd(CDNOW, 3_000, T=39.0, seed=2)
    frame = pd.DataFrame(
        {
            "frequency": x,
            "recency": t_x * 7,
            "T": T * 7,
            "monetary_value": np.where(x > 0, 30.0, 0.0),
            "tenure_days": T * 7,
        }
    )
    fitted = fit_baseline(frame, margin_rate=0.3)
    assert fitted.margin_ratio == 0.3  # no margin columns: the configured rate
    flat = baseline_clv(fitted, frame, horizon_days=364, annual_discount_rate=0.0)
    discounted = baseline_clv(fitted, frame, horizon_days=364, annual_discount_rate=0.1)
    rfm_x, rfm_tx, rfm_T = x, t_x, T
    expected = (
        conditional_expected_purchases(fitted.bgnbd, 52.0, rfm_x, rfm_tx, rfm_T)
        * conditional_expected_value(fitted.gamma_gamma, x, frame["monetary_value"])
        * 0.3
    )
    np.testing.assert_allclose(flat, expected, rtol=1e-9)
    assert np.all(discounted < flat) and np.all(discounted > flat / 1.1)
