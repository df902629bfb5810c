from __future__ import annotations

import numpy as np
import pytest

from clv.evaluation.metrics import (
    _resampled_gini,
    bias_pct,
    churn_metrics,
    gini,
    mae,
    normalized_gini,
    paired_bootstrap,
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


def _labels_and_two_models(n: int = 3_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zero-heavy, skewed labels; `good` is the label plus a little noise, `poor` plus a lot."""
    rng = np.random.default_rng(11)
    y = rng.gamma(0.5, 200.0, size=n) * (rng.random(n) < 0.6)
    return y, y + rng.normal(0.0, 20.0, n), y + rng.normal(0.0, 200.0, n)


def test_identical_predictions_differ_by_exactly_nothing() -> None:
    y, good, _ = _labels_and_two_models()
    boot = paired_bootstrap(y, good, good.copy(), samples=200, seed=1)
    for d in (boot.gini, boot.rmse):
        assert (d.diff, d.low, d.high) == (0.0, 0.0, 0.0)


def test_a_clearly_better_model_has_an_interval_above_zero() -> None:
    y, good, poor = _labels_and_two_models()
    boot = paired_bootstrap(y, good, poor, samples=300, level=0.95, seed=0)
    assert boot.gini.diff == pytest.approx(normalized_gini(y, good) - normalized_gini(y, poor))
    assert boot.rmse.diff == pytest.approx(rmse(y, good) - rmse(y, poor))
    assert 0 < boot.gini.low <= boot.gini.diff <= boot.gini.high
    assert boot.rmse.low <= boot.rmse.diff <= boot.rmse.high < 0  # lower error
    swapped = paired_bootstrap(y, poor, good, samples=300, level=0.95, seed=0)
    assert swapped.gini.high == pytest.approx(-boot.gini.low)  # the same resamples, negated


def test_a_model_no_better_than_another_has_an_interval_around_zero() -> None:
    y, good, _ = _labels_and_two_models()
    rng = np.random.default_rng(5)
    a, b = good + rng.normal(0, 30.0, y.size), good + rng.normal(0, 30.0, y.size)
    boot = paired_bootstrap(y, a, b, samples=400, seed=2)
    assert boot.gini.low < 0 < boot.gini.high and boot.rmse.low < 0 < boot.rmse.high


def test_the_bootstrap_is_deterministic_per_seed() -> None:
    y, good, poor = _labels_and_two_models()
    first = paired_bootstrap(y, good, poor, samples=150, seed=3)
    assert paired_bootstrap(y, good, poor, samples=150, seed=3) == first
    other = paired_bootstrap(y, good, poor, samples=150, seed=4)
    assert (other.gini.low, other.rmse.low) != (first.gini.low, first.rmse.low)
    assert other.gini.diff == first.gini.diff  # the observed difference needs no resampling


def test_a_narrower_level_gives_a_narrower_interval() -> None:
    y, good, poor = _labels_and_two_models()
    wide = paired_bootstrap(y, good, poor, samples=300, level=0.99, seed=0)
    narrow = paired_bootstrap(y, good, poor, samples=300, level=0.8, seed=0)
    assert wide.gini.low < narrow.gini.low < narrow.gini.high < wide.gini.high
    assert (
        narrow.as_dict()["bootstrap_level"] == 0.8 and narrow.as_dict()["bootstrap_samples"] == 300
    )


def test_a_resample_is_scored_as_the_rows_it_repeats() -> None:
    # Ties in the prediction are kept in row order, as `gini` does on the expanded rows.
    y = np.array([5.0, 0.0, 3.0, 0.0, 8.0, 1.0])
    pred = np.array([2.0, 2.0, 1.0, 4.0, 2.0, 0.5])
    counts = np.array([[2, 0, 1, 1, 0, 2], [0, 3, 1, 0, 2, 0], [1, 1, 1, 1, 1, 1]])
    weights = counts.astype(np.float64)
    order = np.argsort(-pred, kind="stable")
    got = _resampled_gini(
        counts[:, order], y[order], total=weights @ y, repeated=(weights * weights) @ y
    )
    expected = [gini(np.repeat(y, w), np.repeat(pred, w)) for w in counts]
    assert got == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("level", "samples", "match"),
    [(1.0, 10, "level must lie in"), (0.0, 10, "level must lie in"), (0.95, 0, "samples must")],
)
def test_bootstrap_options_are_checked(level: float, samples: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        paired_bootstrap([1.0, 2.0], [1.0, 2.0], [2.0, 1.0], samples=samples, level=level)
    with pytest.raises(ValueError, match="no rows"):
        paired_bootstrap([], [], [])


def test_the_resamples_do_not_depend_on_how_many_are_scored_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from clv.evaluation import metrics

    y, good, poor = _labels_and_two_models(n=500)
    whole = paired_bootstrap(y, good, poor, samples=100, seed=6)  # one block
    monkeypatch.setattr(metrics, "BOOTSTRAP_CELLS", 7 * y.size)  # blocks of 7, the last of 2
    assert paired_bootstrap(y, good, poor, samples=100, seed=6) == whole
