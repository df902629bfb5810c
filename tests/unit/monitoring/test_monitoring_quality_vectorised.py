"""The vectorised data-quality checks give what the definition gives (quality_reference), and
each column's description is pandas' own on the finite values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from quality_reference import reference_quality

from clv.evaluation.psi import level_counts
from clv.monitoring.quality import categorical_stats, check_quality, numeric_stats


def _frame(rng: np.random.Generator, n: int, *, later: bool) -> pd.DataFrame:
    x = rng.gamma(2.0, 1.5 if later else 1.0, n)
    x[rng.random(n) < (0.2 if later else 0.05)] = np.nan
    spiky = rng.normal(0.0, 1.0, n)
    spiky[rng.random(n) < 0.02] = np.inf
    spiky[rng.random(n) < 0.02] = -np.inf
    plan = rng.choice(np.array(["free", "basic", None, np.nan], dtype=object), n)
    if later:
        plan[rng.random(n) < 0.07] = "gold"
        plan[rng.random(n) < 0.01] = "platinum"
    return pd.DataFrame(
        {
            "x": x,
            "spiky": spiky,
            "all_inf": np.full(n, np.inf),
            "counts": pd.array(rng.integers(0, 5 if later else 4, n), dtype="Int64"),
            "plan": plan,
            "mixed": rng.choice(np.array([1, "1", True, None], dtype=object), n),
            "cat": pd.Categorical(rng.choice(["a", "b"], n), categories=["a", "b", "c"]),
        }
    )


@pytest.mark.parametrize("seed", range(4))
def test_check_quality_is_the_per_column_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    reference, current = _frame(rng, 1500, later=False), _frame(rng, 1800, later=True)
    numerical, categorical = ["x", "spiky", "all_inf", "counts"], ["plan", "mixed", "cat"]
    got = check_quality(
        reference,
        current,
        numerical=numerical,
        categorical=categorical,
        missing_share_warn=0.1,
        out_of_range_warn=0.05,
    )
    want = reference_quality(reference, current, numerical=numerical, categorical=categorical)
    assert [q.column for q in got.columns] == [*numerical, *categorical]
    for q in got.columns:
        seen = {k: getattr(q, k) for k in want[q.column]}
        assert seen == want[q.column], q.column
    by = {q.column: q for q in got.columns}
    assert by["counts"].out_of_range > 0.0  # 4 is above the reference's range
    assert by["plan"].new_categories == ("gold", "platinum")
    assert by["all_inf"].out_of_range == 0.0  # no finite reference: no range to leave


def test_numeric_stats_describe_the_finite_values_as_pandas_does() -> None:
    values = np.array([1.0, 2.0, np.nan, 4.0, np.inf, -np.inf, 8.0])
    got = numeric_stats(values)
    finite = pd.Series([1.0, 2.0, 4.0, 8.0])
    assert (got.rows, got.missing) == (7, 1)  # inf is not missing: quality counts it apart
    assert (got.min, got.max) == (1.0, 8.0)
    assert got.mean == pytest.approx(finite.mean()) and got.std == pytest.approx(finite.std())
    assert numeric_stats(np.array([np.nan, np.inf])).mean is None
    assert numeric_stats(np.array([5.0])).std is None


def test_categorical_stats_name_the_most_common_level_and_its_share() -> None:
    got = categorical_stats(level_counts(pd.Series(["b", "a", "b", None, "a", "c"])))
    assert (got.rows, got.missing, got.levels) == (6, 1, 3)
    assert got.most_common == "a"  # a tie with "b": the first in sorted order
    assert got.most_common_share == pytest.approx(2 / 6)
    empty = categorical_stats(level_counts(pd.Series([None, None], dtype=object)))
    assert (empty.levels, empty.most_common) == (0, None)
