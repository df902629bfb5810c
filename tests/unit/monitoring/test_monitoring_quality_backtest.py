from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.backtest import choose_cohort, churn_backtest, matured_snapshot, value_backtest
from monitoring.quality import check_quality

SNAPS = [pd.Timestamp(f"2024-{m:02d}-01", tz="UTC") for m in range(1, 13)]


def test_matured_snapshot_is_the_newest_whose_window_closed() -> None:
    as_of = pd.Timestamp("2024-12-01", tz="UTC")
    assert matured_snapshot(SNAPS, as_of=as_of, window_days=90) == pd.Timestamp(
        "2024-09-01", tz="UTC"
    )  # Sep 1 + 90 days = Nov 30 <= Dec 1; Oct 1 + 90 = Dec 30 is not
    assert matured_snapshot(SNAPS, as_of=as_of, window_days=400) is None


def test_cohort_says_whether_the_model_was_fitted_on_it() -> None:
    as_of = pd.Timestamp("2024-12-01", tz="UTC")
    trained = pd.Timestamp("2024-06-01", tz="UTC")
    after = choose_cohort("churn", SNAPS, as_of=as_of, window_days=90, trained_through=trained)
    assert after is not None and not after.in_training
    late = pd.Timestamp("2024-10-01", tz="UTC")
    inside = choose_cohort("churn", SNAPS, as_of=as_of, window_days=90, trained_through=late)
    assert inside is not None and inside.in_training
    unknown = choose_cohort("churn", SNAPS, as_of=as_of, window_days=90, trained_through=None)
    assert unknown is not None and unknown.in_training  # never overstate independence


def test_backtests_by_hand() -> None:
    cohort = choose_cohort("value", SNAPS, as_of=SNAPS[-1], window_days=30, trained_through=None)
    assert cohort is not None
    y = np.array([0.0, 10.0, 20.0, 30.0, np.nan])
    pred = np.array([1.0, 12.0, 18.0, 30.0, 5.0])
    v = value_backtest(cohort, clv_label=y, clv=pred, clv_p10=pred - 5, clv_p90=pred + 1)
    assert v.n == 4  # the unlabelled row is left out
    assert v.gini == pytest.approx(1.0)  # perfect ranking
    assert v.bias_pct == pytest.approx(100 * (61 - 60) / 60)
    assert v.coverage == pytest.approx(0.75)  # 30 in [25, 31], 20 not in [13, 19]...
    c = churn_backtest(
        cohort,
        churn_label=np.array([1.0, 0.0, 1.0, 0.0]),
        churn_probability=np.array([0.9, 0.1, 0.9, 0.1]),
        window_value=np.array([0.0, 5.0, 0.0, 9.0]),
        clv=np.array([1.0, 2.0, 0.5, 3.0]),
    )
    assert c.ece == pytest.approx(0.1) and c.brier == pytest.approx(0.01)
    assert c.churn_rate == 0.5 and c.early_gini == pytest.approx(1.0)


def test_quality_finds_missing_rise_new_levels_and_out_of_range() -> None:
    ref = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "plan": ["free", "basic", "free", None]})
    cur = pd.DataFrame({"x": [np.nan, np.nan, 2.0, 9.0], "plan": ["free", "gold", "gold", "free"]})
    got = check_quality(
        ref,
        cur,
        numerical=["x"],
        categorical=["plan"],
        missing_share_warn=0.1,
        out_of_range_warn=0.05,
    )
    x, plan = got.columns
    assert (x.missing_reference, x.missing_current, x.out_of_range) == (0.0, 0.5, 0.5)
    assert plan.new_categories == ("gold",) and plan.new_category_share == 0.5
    assert got.issues == (
        "50.0% of x values lie outside the reference range",
        "x is missing on 50.0% of rows (reference 0.0%)",
        "plan has 1 new category (gold) on 50.0% of rows",
    )
