"""A `Forest` walks boosters' trees in numpy and predicts what XGBoost predicts, bit for bit.

Checked on values at, just below and just above the splits, missing values and infinities, for
the objectives a bundle uses (margins of tweedie and logistic boosters, predictions of quantile
and squared-error ones), one row at a time and a few together; what it cannot walk exactly it
refuses, saying why.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from clv.model.forest import FOREST_ROWS, Forest, Unsupported


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.gamma(2.0, 10.0, (n, 5)).round(1).astype(np.float32)  # ties: values at the splits
    x[rng.random(x.shape) < 0.2] = np.nan
    y = np.nan_to_num(x[:, 0], nan=5.0) * 0.3 + np.nan_to_num(x[:, 1], nan=1.0)
    return x, y.astype(np.float64)


def _booster(objective: str, *, depth: int, rounds: int = 12, **extra: float) -> xgb.Booster:
    x, y = _data(300, seed=1)
    if objective == "binary:logistic":
        label = (y > np.median(y)).astype(float)
    elif objective == "multi:softprob":
        label = np.digitize(y, np.quantile(y, [1 / 3, 2 / 3])).astype(float)
    else:
        label = y
    params = {"objective": objective, "max_depth": depth, "nthread": 1, "seed": 0, **extra}
    return xgb.train(params, xgb.DMatrix(x, label=label), rounds)


def _probe(forest: Forest, booster: xgb.Booster) -> np.ndarray:
    """Rows of the training range, values at and beside the splits, NaN and infinities."""
    x, _ = _data(200, seed=2)
    splits = forest.split[~np.isnan(forest.split)]
    at = np.resize(splits, x.shape).astype(np.float32)
    beside = np.nextafter(at, np.float32(np.inf))
    edges = np.array([[np.inf, -np.inf, np.nan, 0.0, -0.0]] * 3, dtype=np.float32)
    return np.vstack([x, at, beside, edges])


def _xgboost(booster: xgb.Booster, x: np.ndarray, *, margin: bool) -> np.ndarray:
    kind = "margin" if margin else "value"
    return np.asarray(booster.inplace_predict(x, predict_type=kind), dtype=np.float64)


@pytest.mark.parametrize(
    ("objective", "margin", "extra"),
    [
        ("reg:tweedie", True, {}),
        ("binary:logistic", True, {}),
        ("reg:quantileerror", False, {"quantile_alpha": 0.9}),
        ("reg:squarederror", False, {}),
    ],
)
@pytest.mark.parametrize("depth", [1, 4, 6])
def test_a_forest_predicts_what_xgboost_predicts_bit_for_bit(
    objective: str, margin: bool, extra: dict[str, float], depth: int
) -> None:
    booster = _booster(objective, depth=depth, **extra)
    forest = Forest.build([(booster, margin)])
    x = _probe(forest, booster)
    want = _xgboost(booster, x, margin=margin)
    one_by_one = np.concatenate([forest(x[i : i + 1])[0] for i in range(len(x))])
    assert one_by_one.tobytes() == want.tobytes()
    for size in (3, FOREST_ROWS):
        got = np.concatenate([forest(x[i : i + size])[0] for i in range(0, len(x), size)])
        assert got.tobytes() == want.tobytes(), size


def test_the_boosters_of_one_forest_keep_their_own_sums() -> None:
    boosters = [
        (_booster("reg:tweedie", depth=3, rounds=20), True),
        (_booster("reg:quantileerror", depth=2, rounds=5, quantile_alpha=0.1), False),
        (_booster("binary:logistic", depth=5, rounds=9), True),
    ]
    forest = Forest.build(boosters)
    x = _probe(forest, boosters[0][0])
    for i in range(0, len(x), 7):
        rows = x[i : i + 7]
        for (booster, margin), got in zip(boosters, forest(rows), strict=True):
            assert got.tobytes() == _xgboost(booster, rows, margin=margin).tobytes()
            assert got.dtype == np.float64 and got.flags.c_contiguous


def test_a_forest_refuses_what_it_cannot_walk_exactly() -> None:
    with pytest.raises(Unsupported, match="binary:logistic is not its margin"):
        Forest.build([(_booster("binary:logistic", depth=2), False)])
    with pytest.raises(Unsupported, match="only gbtree"):
        Forest.build([(_booster("reg:squarederror", depth=2, booster="dart"), True)])
    with pytest.raises(Unsupported, match="more than one output"):
        Forest.build([(_booster("multi:softprob", depth=2, num_class=3), True)])
    x, y = _data(300, seed=3)
    frame = pd.DataFrame({"size": x[:, 0], "kind": pd.Categorical(np.where(y > 9, "a", "b"))})
    categorical = xgb.train(
        {"max_depth": 2, "nthread": 1, "tree_method": "hist"},
        xgb.DMatrix(frame, label=y, enable_categorical=True),
        4,
    )
    with pytest.raises(Unsupported, match="categorical splits"):
        Forest.build([(categorical, True)])
    narrow = xgb.train({"max_depth": 2, "nthread": 1}, xgb.DMatrix(x[:, :3], label=y), 3)
    with pytest.raises(Unsupported, match="boosters of 5 and 3 features"):
        Forest.build([(_booster("reg:squarederror", depth=2), True), (narrow, True)])
