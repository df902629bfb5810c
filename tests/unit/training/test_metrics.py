from __future__ import annotations

import numpy as np
import pytest

from training.metrics import (
    bias_pct,
    churn_metrics,
    mae,
    normalized_gini,
    rmse,
    top_decile_share,
    value_metrics,
)


def test_rmse_and_mae_by_hand() -> None:
    y = [0.0, 10.0, 20.0]
    p = [1.0, 8.0, 26.0]  # errors 1, -2, 6
    assert rmse(y, p) == pytest.approx(np.sqrt((1 + 4 + 36) / 3))
    assert mae(y, p) == pytest.approx(3.0)


def test_normalized_gini_perfect_reversed_and_random() -> None:
    rng = np.random.default_rng(0)
    y = rng.gamma(1.0, 100.0, size=20_000)
    assert normalized_gini(y, y) == pytest.approx(1.0)
    assert normalized_gini(y, 2 * y + 5) == pytest.approx(1.0)  # only the order matters
    assert normalized_gini(y, -y) == pytest.approx(-1.0)
    assert abs(normalized_gini(y, rng.random(y.size))) < 0.03


def test_top_decile_share_by_hand() -> None:
    y = np.array([100.0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    assert top_decile_share(y, y) == pytest.approx(1.0)
    assert top_decile_share(y, -y) == pytest.approx(0.0)


def test_bias_pct_by_hand() -> None:
    assert bias_pct([10.0, 30.0], [20.0, 30.0]) == pytest.approx(25.0)


def test_value_metrics_bundle() -> None:
    m = value_metrics([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0])
    assert m.rmse == 0.0 and m.spearman == pytest.approx(1.0) and m.n == 4
    assert m.as_dict()["gini"] == pytest.approx(1.0)


def test_churn_metrics_auc_and_brier() -> None:
    m = churn_metrics([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert m.roc_auc == pytest.approx(1.0)
    assert m.brier == pytest.approx((0.01 + 0.04 + 0.04 + 0.01) / 4)
    assert m.churn_rate == 0.5
    assert np.isnan(churn_metrics([1, 1], [0.5, 0.6]).roc_auc)


def test_length_mismatch_is_rejected() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        rmse([1.0], [1.0, 2.0])
