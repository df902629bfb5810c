"""sBG against Fader & Hardie (2007)'s published fits, Kaplan-Meier and contractual CLV by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from clv.model.contractual import (
    SbgParams,
    cohort_lifetimes,
    contractual_clv,
    fit_sbg,
    fit_sbg_cohort,
    kaplan_meier,
    kaplan_meier_by_group,
    sbg_log_likelihood,
)

# Fader & Hardie (2007), "How to project customer retention": survivors at the start of years
# 0..7 of two cohorts of 1,000 customers, and their published sBG estimates.
REGULAR = [1000, 631, 468, 382, 326, 289, 262, 241]
HIGH_END = [1000, 869, 743, 653, 593, 551, 517, 491]
PUBLISHED = {"regular": (REGULAR, 0.704, 1.182), "high_end": (HIGH_END, 0.668, 3.806)}
ROUNDING = 5e-4  # the published 3 decimals: the MLE must round to them


def individuals(survivors: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """A cohort as one row per customer: churn period 1..7, or censored at 7."""
    durations, churned, weights = cohort_lifetimes(survivors)
    counts = weights.astype(int)
    return np.repeat(durations, counts), np.repeat(churned, counts)


@pytest.mark.parametrize("segment", sorted(PUBLISHED))
def test_cohort_fit_reproduces_the_published_estimates(segment: str) -> None:
    survivors, alpha, beta = PUBLISHED[segment]
    fit = fit_sbg_cohort(survivors)
    # measured: regular 0.70408 / 1.18204, high end 0.66809 / 3.80609
    assert fit.alpha == pytest.approx(alpha, abs=ROUNDING)
    assert fit.beta == pytest.approx(beta, abs=ROUNDING)


@pytest.mark.parametrize("segment", sorted(PUBLISHED))
def test_individual_fit_is_the_cohort_fit(segment: str) -> None:
    survivors, alpha, beta = PUBLISHED[segment]
    durations, churned = individuals(survivors)
    assert durations.size == 1000
    assert int((~churned).sum()) == survivors[-1]  # censored at 7
    fit = fit_sbg(durations, churned)
    cohort = fit_sbg_cohort(survivors)
    assert fit.alpha == pytest.approx(cohort.alpha, abs=1e-6)
    assert fit.beta == pytest.approx(cohort.beta, abs=1e-6)
    assert (fit.alpha, fit.beta) == pytest.approx((alpha, beta), abs=ROUNDING)


def test_fit_is_a_maximum_of_the_likelihood() -> None:
    durations, churned = individuals(HIGH_END)
    fit = fit_sbg(durations, churned)
    best = sbg_log_likelihood(fit, durations, churned).sum()
    for da, db in [(0.01, 0), (-0.01, 0), (0, 0.05), (0, -0.05)]:
        nearby = SbgParams(fit.alpha + da, fit.beta + db)
        assert sbg_log_likelihood(nearby, durations, churned).sum() < best


def test_log_likelihood_at_alpha_beta_one_by_hand() -> None:
    # alpha = beta = 1 (theta uniform): P(T = t) = 1 / (t (t + 1)), S(7) = 1/8
    durations, churned, weights = cohort_lifetimes(HIGH_END)
    t = np.arange(1, 8)
    lost = -np.diff(HIGH_END)
    by_hand = float(np.sum(lost * np.log(1.0 / (t * (t + 1)))) + 491 * np.log(1 / 8))
    ll = float(weights @ sbg_log_likelihood(SbgParams(1.0, 1.0), durations, churned))
    assert ll == pytest.approx(by_hand, rel=1e-12)
    assert ll == pytest.approx(-2115.546, abs=1e-3)


def test_sbg_functions_at_alpha_beta_one_by_hand() -> None:
    p = SbgParams(1.0, 1.0)
    t = np.arange(1, 6)
    np.testing.assert_allclose(p.survival(t), 1.0 / (t + 1))
    np.testing.assert_allclose(p.churn_probability(t), 1.0 / (t * (t + 1)))
    np.testing.assert_allclose(p.retention(t), t / (t + 1))
    assert p.survival(0) == pytest.approx(1.0)


def test_sbg_functions_agree_with_each_other() -> None:
    p = SbgParams(0.668, 3.806)
    t = np.arange(1, 13)
    s = p.survival(np.arange(0, 13))
    np.testing.assert_allclose(p.churn_probability(t), s[:-1] - s[1:], rtol=1e-12)
    np.testing.assert_allclose(p.retention(t), s[1:] / s[:-1], rtol=1e-12)
    assert np.all(np.diff(p.retention(t)) > 0)  # retention rises with tenure (sorting)


def test_conditional_survival_is_the_posterior_sbg() -> None:
    p = SbgParams(0.704, 1.182)
    n, t = 4, np.arange(0, 10)
    ratio = p.survival(n + t) / p.survival(n)
    np.testing.assert_allclose(p.conditional_survival(t, renewals=n), ratio, rtol=1e-12)
    assert p.after_renewals(n) == SbgParams(0.704, 1.182 + 4)


def test_derl_by_hand_at_alpha_beta_one() -> None:
    # S(k) = 1 / (k + 1), x = 1 / 1.1: DERL = sum_{k>=1} x^(k-1) / (k + 1)
    #                                       = (-ln(1 - x) - x) / x^2 = 1.21 (ln 11 - 10/11)
    assert SbgParams(1.0, 1.0).derl(0.1) == pytest.approx(1.21 * (math.log(11) - 10 / 11))


@pytest.mark.parametrize("renewals", [0, 3])
def test_derl_is_the_discounted_sum_of_conditional_survival(renewals: int) -> None:
    p = SbgParams(0.668, 3.806)
    k = np.arange(1, 3001)
    survival = p.conditional_survival(k, renewals=renewals)[None, :]
    series = contractual_clv(np.ones((1, k.size)), survival, margin=1.0, discount_rate=0.1)
    assert p.derl(0.1, renewals=renewals) == pytest.approx(float(series[0]), rel=1e-9)
    assert p.derl(0.1, renewals=renewals + 1) > p.derl(0.1, renewals=renewals)


def test_expected_remaining_lifetime() -> None:
    p = SbgParams(2.0, 3.0)
    assert p.expected_remaining_lifetime(renewals=2) == pytest.approx(5.0)  # (3 + 2) / (2 - 1)
    assert p.derl(0.0, renewals=2) == pytest.approx(5.0)
    assert p.derl(1e-9, renewals=2) == pytest.approx(5.0, rel=1e-6)  # the hypergeometric form
    assert SbgParams(0.9, 3.0).expected_remaining_lifetime() == math.inf


def test_kaplan_meier_by_hand() -> None:
    # (duration, churned): (1, y) (1, n) (2, y) (2, n) (3, y) (4, n)
    # at risk at t = durations >= t: 6, 6, 4, 2, 1 for t = 0..4 (censored at t still at risk)
    # S(1) = 1 - 1/6 = 5/6; S(2) = 5/6 x 3/4 = 0.625; S(3) = 0.625 x 1/2 = 0.3125 = S(4)
    # Greenwood: S(1)^2 / (6 x 5) = 0.0231481; S(2)^2 (1/30 + 1/12) = 0.0455729;
    #            S(3)^2 (1/30 + 1/12 + 1/2) = 0.0602214
    curve = kaplan_meier([1, 1, 2, 2, 3, 4], [True, False, True, False, True, False])
    np.testing.assert_array_equal(curve.periods, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(curve.at_risk, [6, 6, 4, 2, 1])
    np.testing.assert_array_equal(curve.churned, [0, 1, 1, 1, 0])
    np.testing.assert_array_equal(curve.censored, [0, 1, 1, 0, 1])
    np.testing.assert_allclose(curve.survival, [1.0, 5 / 6, 0.625, 0.3125, 0.3125])
    np.testing.assert_allclose(
        curve.variance, [0.0, 0.0231481, 0.0455729, 0.0602214, 0.0602214], atol=1e-7
    )


def test_kaplan_meier_of_a_cohort_is_its_survivor_share() -> None:
    durations, churned = individuals(REGULAR)
    curve = kaplan_meier(durations, churned)
    np.testing.assert_allclose(curve.survival, np.array(REGULAR) / 1000)


def test_kaplan_meier_by_group_by_hand() -> None:
    # a: churned at 1 and at 2 -> S = 1, 1/2, 0, 0 (nobody at risk at 3: carried flat)
    # b: censored at 1, churned at 3 -> S(1) = 1 (2 at risk, no churn), S(2) = 1, S(3) = 0
    curves = kaplan_meier_by_group(
        [1, 2, 1, 3], [True, True, False, True], pd.Series(["a", "a", "b", "b"])
    )
    assert list(curves.columns[:2]) == ["group", "period"]
    a = curves[curves["group"] == "a"]
    b = curves[curves["group"] == "b"]
    np.testing.assert_allclose(a["survival"], [1.0, 0.5, 0.0, 0.0])
    np.testing.assert_array_equal(a["at_risk"], [2, 2, 1, 0])
    np.testing.assert_allclose(b["survival"], [1.0, 1.0, 1.0, 0.0])
    np.testing.assert_array_equal(b["at_risk"], [2, 2, 1, 1])


def test_contractual_clv_by_hand() -> None:
    # d = 10%: customer 1: 10 x 0.8 x (1 + 0.5/1.1 + 0.25/1.21) = 13.289256
    #          customer 2: 20 x 0.8 x (1 + 1/1.1 + 0)            = 30.545455
    mrr = np.array([[10.0, 10.0, 10.0], [20.0, 20.0, 0.0]])
    survival = np.array([[1.0, 0.5, 0.25], [1.0, 1.0, 1.0]])
    clv = contractual_clv(mrr, survival, margin=0.8, discount_rate=0.1)
    np.testing.assert_allclose(clv, [13.289256, 30.545455], atol=1e-6)
    # one margin per customer: customer 2 at 50%: 20 x 0.5 x 1.909091 = 19.090909
    per_customer = contractual_clv(mrr, survival, margin=[0.8, 0.5], discount_rate=0.1)
    np.testing.assert_allclose(per_customer, [13.289256, 19.090909], atol=1e-6)


def test_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="churned subscription has a duration of at least 1"):
        fit_sbg([0, 2], [True, False])
    with pytest.raises(ValueError, match="at least one churned"):
        fit_sbg([1, 2], [False, False])
    with pytest.raises(ValueError, match="non-increasing"):
        fit_sbg_cohort([1000, 900, 950])
    with pytest.raises(ValueError, match="2-D"):
        contractual_clv(np.ones(3), np.ones(3), margin=1.0, discount_rate=0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        contractual_clv(np.ones((1, 2)), np.full((1, 2), 1.5), margin=1.0, discount_rate=0.1)
