"""The evaluation protocol: what a recipe sees at an origin, embargoes, origins, no fallback."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clv.core.errors import DataError
from clv.evaluation.protocol import evaluation_origins, known_at, split_at
from clv.model.naive import mean_discount, naive_predictions


def monthly(n: int, *, customers: int = 3) -> pd.DataFrame:
    """n monthly snapshots from 2023-01-01, every label present (as if the log ran long)."""
    times = pd.date_range("2023-01-01", periods=n, freq="MS", tz="UTC")
    rows = [
        {"customer_id": f"c{c}", "event_timestamp": t, "clv_label": 1.0, "churn_label": 0.0}
        for t in times
        for c in range(customers)
    ]
    return pd.DataFrame(rows)


def ts(day: str) -> pd.Timestamp:
    return pd.Timestamp(day, tz="UTC")


def test_known_at_masks_labels_whose_window_closes_after_the_origin() -> None:
    known = known_at(monthly(6), ts("2023-05-01"), horizon_days=60, churn_window_days=30)
    by_time = known.groupby("event_timestamp")[["clv_label", "churn_label"]].count()
    # 60-day windows close by May 1 for Jan, Feb (Feb 1 + 60 d = Apr 2) and Mar 1 (Apr 30);
    # 30-day churn windows for Jan..Apr 1 (May 1); May and June rows are not known at all.
    assert list(by_time.index) == [
        ts(d) for d in ("2023-01-01", "2023-02-01", "2023-03-01", "2023-04-01")
    ]
    assert by_time["clv_label"].tolist() == [3, 3, 3, 0]
    assert by_time["churn_label"].tolist() == [3, 3, 3, 3]


def test_split_at_embargoes_train_from_validation_and_validation_from_origin() -> None:
    s = split_at(monthly(12), ts("2023-12-01"), horizon_days=90, churn_window_days=30)
    assert s.embargoed and s.embargo_days == 90
    horizon = pd.Timedelta(days=90)
    assert s.validation_time + horizon <= s.origin  # validation labels close by the origin
    assert all(t + horizon <= s.validation_time for t in s.train_times)  # train by validation
    assert s.validation_time == ts("2023-09-01")
    assert s.train_times[-1] == ts("2023-06-01")
    assert set(s.validation["event_timestamp"]) == {s.validation_time}
    # The final boosters fit on every row known at the origin, the embargo gap included.
    assert s.known["clv_label"].notna().sum() == 9 * 3
    assert s.anchor_time == ts("2023-11-01")  # the latest churn-known snapshot


def test_too_short_for_a_train_validation_embargo_says_so() -> None:
    s = split_at(monthly(6), ts("2023-06-01"), horizon_days=90, churn_window_days=30)
    assert not s.embargoed and s.embargo_days == 0
    assert "train label windows overlap validation" in s.reason
    assert s.validation_time == ts("2023-03-01")
    assert s.train_times == (ts("2023-01-01"), ts("2023-02-01"))


def test_shorter_than_two_horizons_fits_on_overlapping_labels_and_says_so() -> None:
    s = split_at(monthly(6), ts("2023-06-01"), horizon_days=365, churn_window_days=90)
    assert not s.embargoed
    assert "overlap the window after 2023-06-01" in s.reason
    assert s.validation_time == ts("2023-05-01")


def test_no_usable_history_is_a_data_error() -> None:
    with pytest.raises(DataError, match="training needs at least 2"):
        split_at(monthly(2), ts("2023-02-01"), horizon_days=30, churn_window_days=30)


def test_origins_keep_only_embargoed_backtests() -> None:
    frame = monthly(24)
    horizon = pd.Timedelta(days=90)
    end = ts("2025-01-01")
    frame.loc[frame["event_timestamp"] + horizon > end, "clv_label"] = np.nan
    origins = evaluation_origins(frame, horizon_days=90, backtests=3, spacing_days=90)
    assert origins.test == ts("2024-10-01") and origins.embargoed
    assert origins.backtests == (ts("2024-07-01"), ts("2024-04-01"), ts("2024-01-01"))
    short = evaluation_origins(monthly(9), horizon_days=90, backtests=3, spacing_days=90)
    # Sept 2023: validation June, train March or earlier. June 2023 would need validation in
    # March and train by December 2022, before the data: no backtest origin is embargoed.
    assert short.test == ts("2023-09-01") and short.backtests == ()
    assert "0 of 3" in short.describe()
    unembargoed = evaluation_origins(monthly(5), horizon_days=90, backtests=3, spacing_days=90)
    assert not unembargoed.embargoed and "NOT EMBARGOED" in unembargoed.describe()


def test_naive_rules_by_hand() -> None:
    frame = pd.DataFrame(
        {
            "past_margin_horizon": [30.0, 0.0, 0.0],
            "past_margin_lifetime": [120.0, 10.0, 0.0],
            "past_days": [360.0, 3.0, np.nan],
        }
    )
    got = naive_predictions(frame, horizon_days=90, annual_discount_rate=0.0)
    assert got["last_horizon"].tolist() == [30.0, 0.0, 0.0]
    # 120 over 360 days x 90; 10 over the 30-day floor x 90; nothing bought yet: 0.
    np.testing.assert_allclose(got["run_rate"], [30.0, 30.0, 0.0])
    d = mean_discount(365, 0.1)
    assert 0.95 < d < 0.96  # (1 - 1.1^-1) / ln 1.1 = 0.9538
    assert mean_discount(365, 0.1) == pytest.approx((1 - 1 / 1.1) / np.log(1.1))


def test_the_baselines_training_scores_are_the_ones_the_gate_reads() -> None:
    from clv.core.contracts import BASELINE_PREDICTORS
    from clv.model.naive import NAIVE_RULES
    from clv.training.backtest import BASELINES

    assert BASELINES == BASELINE_PREDICTORS == ("baseline", *NAIVE_RULES)
