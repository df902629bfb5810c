from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from clv.evaluation.psi import categorical_psi, noise_bound, numeric_psi, psi_from_shares


def test_psi_from_shares_by_hand() -> None:
    # (0.6 - 0.5) ln(0.6 / 0.5) + (0.4 - 0.5) ln(0.4 / 0.5)
    expected = 0.1 * math.log(1.2) - 0.1 * math.log(0.8)
    assert psi_from_shares([0.5, 0.5], [0.6, 0.4]) == pytest.approx(expected)
    assert psi_from_shares([0.5, 0.5], [0.5, 0.5]) == 0.0


def test_categorical_psi_counts_levels_and_missing() -> None:
    ref = pd.Series(["a", "a", "b", "b"])
    cur = pd.Series(["a", "b", "b", None])
    got = categorical_psi("x", ref, cur)
    assert got.labels == ("a", "b", "missing")
    assert got.reference_shares == (0.5, 0.5, 0.0)
    assert got.current_shares == (0.25, 0.5, 0.25)
    expected = psi_from_shares([0.5, 0.5, 0.0], [0.25, 0.5, 0.25])
    assert got.psi == pytest.approx(expected)


def test_numeric_psi_uses_reference_deciles_and_sees_a_shift() -> None:
    rng = np.random.default_rng(0)
    ref = pd.Series(rng.normal(0, 1, 20_000))
    same = numeric_psi("x", ref, pd.Series(rng.normal(0, 1, 20_000)))
    moved = numeric_psi("x", ref, pd.Series(rng.normal(0.5, 1, 20_000)))
    assert same.bins == 10
    assert same.reference_shares == pytest.approx((0.1,) * 10, abs=1e-3)
    assert same.psi < same.noise_bound  # sampling noise only
    assert not same.drifted(0.1)
    assert moved.psi > 0.2 and moved.drifted(0.1)


def test_discrete_columns_get_one_bin_per_value() -> None:
    ref = pd.Series([0, 0, 0, 0, 0, 0, 1, 1, 2, 3])
    got = numeric_psi("orders", ref, ref)
    assert got.bins == 4 and got.psi == 0.0


def test_noise_bound_is_the_chi_square_quantile_scaled_by_sizes() -> None:
    # chi2(9).ppf(0.99) = 21.666
    assert noise_bound(10, 1000, 1000) == pytest.approx(21.666 * 0.002, rel=1e-3)
    assert noise_bound(1, 10, 10) == math.inf
