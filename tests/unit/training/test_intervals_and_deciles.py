from __future__ import annotations

import numpy as np
import pytest

from training.intervals import adjusted, conformal_adjustment, interval_metrics
from training.metrics import decile_table


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
