"""Survival metrics on hand-computed cases: Harrell's C, the IPCW Brier score, the retention gap."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clv.evaluation.survival import (
    brier_score,
    censoring_survival,
    concordance_index,
    integrated_brier_score,
    retention_gap,
)


def brute_force_c(durations: np.ndarray, churned: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C pair by pair: i churned and T_j > T_i known (d_j > d_i, or equal and j
    censored); concordant if risk_i > risk_j, 1/2 on ties in risk."""
    num = den = 0.0
    for i in range(durations.size):
        for j in range(durations.size):
            later = durations[j] > durations[i] or (durations[j] == durations[i] and not churned[j])
            if churned[i] and later:
                den += 1
                num += 1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0
    return num / den


def test_c_index_perfect_reversed_and_tied() -> None:
    durations, churned = [1, 2, 3], [True, True, True]
    assert concordance_index(durations, churned, [3.0, 2.0, 1.0]).c_index == 1.0
    assert concordance_index(durations, churned, [1.0, 2.0, 3.0]).c_index == 0.0
    assert concordance_index(durations, churned, [5.0, 5.0, 5.0]).c_index == 0.5
    tied = concordance_index(durations, churned, [2.0, 2.0, 1.0])  # (1,2) tie, others right
    assert tied.c_index == pytest.approx(2.5 / 3)
    assert (tied.comparable, tied.concordant, tied.tied_risk) == (3, 2, 1)


def test_c_index_excludes_pairs_whose_earlier_member_is_censored() -> None:
    # pairs: (1, 2) and (1, 3) concordant; (2, 3) has a censored earlier member: excluded
    # (counted, its risks 1 < 2 would make it discordant and C = 2/3)
    c = concordance_index([1, 2, 3], [True, False, True], [3.0, 1.0, 2.0])
    assert (c.c_index, c.comparable) == (1.0, 2)


def test_c_index_ties_in_time() -> None:
    # a churn and a censoring in the same period: the censored one renewed, so she outlived
    # the churner (comparable); two churns in the same period are not comparable
    assert concordance_index([2, 2], [True, False], [2.0, 1.0]).c_index == 1.0
    both = concordance_index([2, 2], [True, True], [2.0, 1.0])
    assert both.comparable == 0
    assert math.isnan(both.c_index)


def test_c_index_matches_the_pairwise_definition() -> None:
    rng = np.random.default_rng(3)
    durations = rng.integers(1, 6, 60)
    churned = rng.random(60) < 0.6
    risk = rng.integers(0, 4, 60).astype(float)  # many ties in risk
    c = concordance_index(durations, churned, risk).c_index
    assert c == pytest.approx(brute_force_c(durations, churned, risk), rel=1e-12)


def test_ipcw_brier_without_censoring_is_the_plain_brier() -> None:
    # all churned at 1, 2, 3; at period 2 the outcomes 1(T > 2) are 0, 0, 1:
    # (0.2^2 + 0.6^2 + 0.1^2) / 3 = 0.41 / 3
    bs = brier_score([1, 2, 3], [True, True, True], [0.2, 0.6, 0.9], period=2)
    assert bs == pytest.approx(0.41 / 3)


def test_ipcw_brier_with_censoring_by_hand() -> None:
    # A (1, churned) B (1, censored) C (2, churned) D (3, censored) E (2, censored).
    # Censoring survival G(u) = prod (1 - c_v / (n_v - d_v)):
    #   G(0) = 1; G(1) = 1 - 1/(5 - 1) = 3/4; G(2) = 3/4 (1 - 1/(3 - 1)) = 3/8; G(3) = 0.
    # BS(2) with S_i(2) = .3 .5 .4 .8 .7:
    #   A churned by 2, weight 1/G(0):       1   x 0.3^2 = 0.09
    #   B censored at 1, status unknown:     0
    #   C churned at 2, weight 1/G(1):      4/3 x 0.4^2 = 0.213333
    #   D alive after 2, weight 1/G(1):     4/3 x 0.2^2 = 0.053333
    #   E censored at 2 (renewed after 2):  4/3 x 0.3^2 = 0.12
    #   sum 0.476667 / 5 = 0.0953333 (the weights sum to 5 = n)
    durations, churned = [1, 1, 2, 3, 2], [True, False, True, False, False]
    np.testing.assert_allclose(
        censoring_survival(durations, churned, horizon=3), [1.0, 0.75, 0.375, 0.0]
    )
    bs = brier_score(durations, churned, [0.3, 0.5, 0.4, 0.8, 0.7], period=2)
    assert bs == pytest.approx(0.476667 / 5, abs=1e-6)


def test_ipcw_brier_is_unbiased_under_independent_censoring() -> None:
    # a constant churn rate 0.3 and a geometric censoring, 200,000 subscribers: predicting the
    # true S(t) = 0.7^t scores S(t) (1 - S(t)) in expectation; standard error about 0.001
    rng = np.random.default_rng(11)
    n = 200_000
    lifetime = rng.geometric(0.3, n)
    censor = rng.geometric(0.25, n) - 1
    durations, churned = np.minimum(lifetime, censor), lifetime <= censor
    for period in (1, 3):
        s = 0.7**period
        bs = brier_score(durations, churned, np.full(n, s), period=period)
        assert bs == pytest.approx(s * (1 - s), abs=0.004)


def test_integrated_brier_of_a_perfect_predictor_is_zero() -> None:
    rng = np.random.default_rng(5)
    lifetime = rng.integers(1, 8, 200)
    censor = rng.integers(0, 10, 200)
    durations, churned = np.minimum(lifetime, censor), lifetime <= censor
    horizon = 6
    perfect = (lifetime[:, None] > np.arange(1, horizon + 1)[None, :]).astype(float)
    assert integrated_brier_score(durations, churned, perfect) == pytest.approx(0.0, abs=1e-15)
    # and it is the mean of the per-period scores, positive for a blurred predictor
    blurred = 0.8 * perfect + 0.1
    per_period = [
        brier_score(durations, churned, blurred[:, k - 1], period=k) for k in range(1, horizon + 1)
    ]
    ibs = integrated_brier_score(durations, churned, blurred)
    assert ibs == pytest.approx(float(np.mean(per_period)), rel=1e-12)
    assert ibs == pytest.approx(0.01, rel=1e-9)  # every weighted error is 0.1^2, weights sum to n


def test_retention_gap_by_hand() -> None:
    # Kaplan-Meier of (1,y) (1,n) (2,y) (2,n) (3,y) (4,n): 5/6, 0.625, 0.3125, 0.3125
    # (tests/unit/model/test_contractual.py); predicted rows average to .8 .6 .4 .3:
    # gaps -0.0333, -0.025, +0.0875, -0.0125 -> the worst is period 3
    durations, churned = [1, 1, 2, 2, 3, 4], [True, False, True, False, True, False]
    rows = np.array([[0.9, 0.7, 0.5, 0.4], [0.7, 0.5, 0.3, 0.2]] * 3)
    gap = retention_gap(durations, churned, rows)
    np.testing.assert_array_equal(gap.periods, [1, 2, 3, 4])
    np.testing.assert_allclose(gap.predicted, [0.8, 0.6, 0.4, 0.3])
    np.testing.assert_allclose(gap.realized, [5 / 6, 0.625, 0.3125, 0.3125])
    assert gap.max_abs_gap == pytest.approx(0.0875)
    assert gap.worst_period == 3


def test_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        concordance_index([1, 2], [True, True], [1.0])
    with pytest.raises(ValueError, match="periods >= 1"):
        brier_score([1, 2], [True, True], [0.5, 0.5], period=0)
    with pytest.raises(ValueError, match=r"\(subscribers, periods >= 1\)"):
        integrated_brier_score([1, 2], [True, True], np.ones(2))
