"""Experiments judged on realized value (clv.decisions.experiments): the estimators against
scipy and against planted effects, the outcome window, CUPED, the sample-ratio check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from clv.decisions.experiments import (
    bootstrap,
    compare,
    cuped,
    outcomes,
    relative_uplift,
    sample_ratio,
    welch,
)


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_welch_matches_scipys_interval() -> None:
    rng = np.random.default_rng(1)
    t, c = rng.normal(12, 5, 300), rng.normal(10, 8, 500)
    got = welch(t, c)
    ref = stats.ttest_ind(t, c, equal_var=False).confidence_interval(0.95)
    assert got.value == pytest.approx(t.mean() - c.mean())
    assert (got.low, got.high) == pytest.approx((ref.low, ref.high))


def test_the_interval_covers_a_planted_uplift_in_most_seeds() -> None:
    covered = boot_covered = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        t, c = rng.gamma(2.0, 6.0, 400) + 1.5, rng.gamma(2.0, 6.0, 400)  # true uplift 1.5
        w, b = welch(t, c), bootstrap(t, c, samples=1000, seed=seed)
        covered += w.low <= 1.5 <= w.high
        boot_covered += b.low <= 1.5 <= b.high
    assert covered >= 34 and boot_covered >= 34  # 95% intervals: 38 of 40 expected


def test_cuped_narrows_the_interval_without_moving_the_estimate() -> None:
    rng = np.random.default_rng(3)
    x = rng.gamma(2.0, 10.0, 2000)  # pre-assignment predicted value
    treated = rng.random(2000) < 0.5
    y = 0.8 * x + rng.normal(0, 4, 2000) + np.where(treated, 2.0, 0.0)
    plain = welch(y[treated], y[~treated])
    adjusted, reduction = cuped(y, x, treated)
    assert reduction > 0.8
    assert adjusted.high - adjusted.low < 0.5 * (plain.high - plain.low)
    assert adjusted.low <= 2.0 <= adjusted.high
    assert abs(adjusted.value - 2.0) < abs(plain.value - 2.0) + 0.5


def test_sample_ratio_mismatch() -> None:
    assert sample_ratio({"control": 5000, "treatment": 5050})[1] is False
    p, flagged = sample_ratio({"control": 5000, "treatment": 5400})
    assert flagged and p < 0.001


def test_only_margin_after_the_assignment_counts() -> None:
    assignments = pd.DataFrame(
        {
            "experiment": ["e", "e"],
            "customer_id": ["A", "B"],
            "arm": ["treatment", "control"],
            "assigned_at": [ts("2024-03-01"), ts("2024-03-01")],
        }
    )
    tx = pd.DataFrame(
        {
            "customer_id": ["A", "A", "A", "B", "A"],
            "ts": [
                ts("2024-02-01"),
                ts("2024-03-01"),
                ts("2024-04-01"),
                ts("2024-05-01"),
                ts("2024-09-01"),
            ],
            "amount": [100.0, 100.0, 100.0, 50.0, 100.0],
            "margin": [10.0, 10.0, 10.0, 5.0, 10.0],
        }
    )
    got = outcomes(
        assignments, tx, as_of=ts("2024-06-01"), margin_rate=0.3, annual_discount_rate=0.0
    )
    # A: only April (February is before, March 1 is the assignment itself, September after as_of)
    assert got.set_index("customer_id")["outcome"].to_dict() == {"A": 10.0, "B": 5.0}


def test_compare_reports_every_part_of_the_judgement() -> None:
    rng = np.random.default_rng(7)
    n = 600
    arm = np.where(np.arange(n) % 2 == 0, "treatment", "control")
    x = rng.gamma(2.0, 10.0, n)
    y = 0.5 * x + rng.gamma(1.0, 4.0, n) + np.where(arm == "treatment", 3.0, 0.0)
    ids = [f"C{i}" for i in range(n)]
    results = pd.DataFrame(
        {
            "experiment": "retention-1",
            "customer_id": ids,
            "arm": arm,
            "assigned_at": ts("2024-01-15"),
            "outcome": y,
        }
    )
    before = pd.Series(x, index=ids)
    after = pd.Series(x * 0.9 + np.where(arm == "treatment", 2.0, 0.0), index=ids)
    (c,) = compare(
        results,
        before=before,
        after=after,
        control="control",
        horizon_days=365,
        as_of=ts("2024-06-01"),
        samples=500,
    )
    assert c.name == "retention-1" and c.arms == {"control": 300, "treatment": 300}
    assert c.uplift.low <= 3.0 <= c.uplift.high
    assert c.bootstrap.low < c.uplift.value < c.bootstrap.high
    assert c.variance_reduction > 0.3 and (c.cuped.high - c.cuped.low) < (
        c.uplift.high - c.uplift.low
    )
    z = after.to_numpy()
    assert c.surrogate.value == pytest.approx(
        z[arm == "treatment"].mean() - z[arm == "control"].mean()
    )
    assert (c.srm, c.matured, c.matures_at) == (False, False, ts("2025-01-14"))
    doc = c.as_dict()
    assert doc["surrogate"]["label"].startswith("surrogate")  # type: ignore[index]
    rel = relative_uplift(c)
    assert rel.value == pytest.approx(c.uplift.value / y[arm == "control"].mean())
