"""The blend weight and level are chosen on validation from the evidence (clv.training.blend)."""

from __future__ import annotations

import numpy as np
import pytest

from clv.training.blend import BLEND_GRID, LEVELS, anchor_scale, blended_margin, choose_blend


def world(seed: int, *, truth: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels y and two predictors' log values: a noisy baseline, and trees that are right
    (`truth` "trees"), or noise around the baseline (`truth` "baseline")."""
    rng = np.random.default_rng(seed)
    n = 4_000
    value = rng.gamma(0.8, 60.0, n)
    y = rng.poisson(value / 10.0) * 10.0
    base = np.log(np.clip(value * rng.lognormal(0.0, 0.6, n), 1e-3, None))
    if truth == "trees":
        trees = np.log(np.clip(value * rng.lognormal(0.0, 0.1, n), 1e-3, None))
    else:
        trees = base + rng.normal(0.0, 0.8, n)
        y = rng.poisson(np.exp(base) / 10.0) * 10.0
    return y.astype(np.float64), base, trees


def test_trees_that_know_the_value_are_trusted_alone() -> None:
    y, base, trees = world(1, truth="trees")
    choice = choose_blend(y, base, trees)
    assert choice.weight == 1.0
    assert len(choice.candidates) == len(BLEND_GRID) * len(LEVELS)


def test_trees_that_add_only_noise_give_way_to_the_baseline() -> None:
    y, base, trees = world(2, truth="baseline")
    choice = choose_blend(y, base, trees)
    assert choice.weight <= 0.3
    best = min(choice.candidates, key=lambda r: float(r["rmse"]))
    served = next(
        r for r in choice.candidates if r["weight"] == choice.weight and r["level"] == choice.level
    )
    assert float(served["rmse"]) <= float(best["rmse"]) * 1.001
    assert f"w {choice.weight:.1f}" in choice.reason


def test_a_level_that_is_off_is_anchored_back_to_the_baseline_total() -> None:
    y, base, trees = world(3, truth="trees")
    # the trees rank well but run three times too high: anchoring fixes the total
    choice = choose_blend(y, base, trees + np.log(3.0))
    assert choice.level == "anchor"
    served = next(
        r for r in choice.candidates if r["weight"] == choice.weight and r["level"] == choice.level
    )
    assert abs(float(served["bias_pct"])) < 30.0


def test_anchor_scale_equates_the_totals() -> None:
    rng = np.random.default_rng(4)
    offset, margin = rng.normal(3, 1, 500), rng.normal(4, 1, 500)
    c = anchor_scale(offset, margin)
    assert c * np.exp(margin).sum() == pytest.approx(np.exp(offset).sum())
    np.testing.assert_allclose(blended_margin(offset, margin, 1.0), margin)
    np.testing.assert_allclose(blended_margin(offset, margin, 0.0), offset, atol=1e-12)


def test_no_rows_keep_the_trees_alone() -> None:
    empty = np.array([], dtype=np.float64)
    choice = choose_blend(empty, empty, empty)
    assert (choice.weight, choice.level) == (1.0, "none")
