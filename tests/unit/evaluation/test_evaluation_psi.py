"""The fast PSI (one comparison pass per edge, categories counted before they are made strings)
gives what the definition gives, column by column (psi_reference)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from psi_reference import reference_psi

from clv.evaluation.psi import ColumnPsi, column_psi, level_counts, numeric_counts

NUMERICAL = ["gamma", "spiky", "constant", "counts", "ties", "nullable", "ref_missing", "cur_nan"]
CATEGORICAL = ["plan", "cat_dtype", "flag", "string_dtype", "mixed", "sparse"]


def _frame(rng: np.random.Generator, n: int, *, shifted: bool) -> pd.DataFrame:
    """Every awkward kind of column at once: NaN, +/-inf, constant, few values, values on the
    edges, nullable integers, an all-missing side; None/NaN/NA categories, unused categories,
    booleans, mixed types that print differently but compare equal (1, 1.0, True)."""
    gamma = rng.gamma(2.0, 1.3 if shifted else 1.0, n)
    gamma[rng.random(n) < 0.03] = np.nan
    spiky = rng.normal(0.5 if shifted else 0.0, 1.0, n)
    spiky[rng.random(n) < 0.01] = np.inf
    spiky[rng.random(n) < 0.01] = -np.inf
    spiky[rng.random(n) < 0.02] = np.nan
    constant = np.full(n, 3.0)
    constant[rng.random(n) < 0.1] = np.nan
    nullable = pd.array(rng.integers(0, 4, n), dtype="Int64")
    nullable[rng.random(n) < 0.05] = pd.NA
    plan = rng.choice(np.array(["free", "basic", "pro", None, np.nan], dtype=object), n)
    if shifted:
        plan[rng.random(n) < 0.05] = "enterprise"  # a level the reference never had
    mixed = rng.choice(np.array([1, "1", True, 1.0, "a", None], dtype=object), n)
    sparse = np.full(n, None, dtype=object)
    sparse[rng.random(n) < 0.01] = "rare"
    return pd.DataFrame(
        {
            "gamma": gamma,
            "spiky": spiky,
            "constant": constant,
            "counts": rng.poisson(0.3 if shifted else 0.2, n).astype(float),
            "ties": rng.integers(0, 3, n).astype(float) * 0.1,
            "nullable": nullable,
            "ref_missing": np.full(n, np.nan) if not shifted else rng.normal(0, 1, n),
            "cur_nan": np.full(n, np.nan) if shifted else rng.normal(0, 1, n),
            "plan": plan,
            "cat_dtype": pd.Categorical(
                rng.choice(["x", "y"], n), categories=["x", "y", "never_used"]
            ),
            "flag": rng.random(n) < (0.6 if shifted else 0.5),
            "string_dtype": pd.array(rng.choice(["u", "v", None], n), dtype="string"),
            "mixed": mixed,
            "sparse": sparse,
        }
    )


def _same(got: ColumnPsi, want: ColumnPsi) -> None:
    assert (got.column, got.kind, got.bins, got.labels) == (
        want.column,
        want.kind,
        want.bins,
        want.labels,
    )
    assert (got.n_reference, got.n_current) == (want.n_reference, want.n_current)
    assert got.reference_shares == want.reference_shares
    assert got.current_shares == want.current_shares
    assert got.noise_bound == want.noise_bound
    if math.isnan(want.psi):
        assert math.isnan(got.psi)
    else:
        assert got.psi == pytest.approx(want.psi, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_column_psi_is_the_per_column_definition_on_awkward_random_frames(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_ref, n_cur = int(rng.integers(500, 3000)), int(rng.integers(500, 3000))
    reference, current = _frame(rng, n_ref, shifted=False), _frame(rng, n_cur, shifted=True)
    got = column_psi(reference, current, numerical=NUMERICAL, categorical=CATEGORICAL)
    want = reference_psi(reference, current, numerical=NUMERICAL, categorical=CATEGORICAL)
    assert len(got) == len(want) == len(NUMERICAL) + len(CATEGORICAL)
    for g, w in zip(got, want, strict=True):
        _same(g, w)
    # the frames do exercise what they claim to
    by = {p.column: p for p in got}
    assert by["constant"].bins == 2  # the one value, and missing
    assert "enterprise" in by["plan"].labels
    assert "never_used" not in by["cat_dtype"].labels
    assert {"1", "1.0", "True"} <= set(by["mixed"].labels)
    assert math.isnan(by["cur_nan"].psi) is False and by["gamma"].psi > 0.0


def test_numeric_counts_match_a_binary_search_on_the_edges_themselves() -> None:
    edges = np.array([-1.0, 0.0, 0.5, 2.0])
    values = np.array(
        [-np.inf, -2.0, -1.0, -0.5, -0.0, 0.0, 0.25, 0.5, 0.5, 1.0, 2.0, 7.0, np.inf, np.nan]
    )
    finite = values[np.isfinite(values)]
    binary = np.bincount(np.searchsorted(edges, finite, side="right"), minlength=edges.size + 1)
    got = numeric_counts(values, edges)
    assert got.tolist() == [*binary.tolist(), 3]  # -inf, inf and NaN: the missing bin
    assert got.tolist() == [1, 2, 3, 3, 2, 3]
    assert numeric_counts(values, np.empty(0)).tolist() == [finite.size, 3]


def test_level_counts_count_each_printed_level_and_the_missing_rows() -> None:
    got = level_counts(pd.Series([1, "1", True, 1.0, None, np.nan, "b"], dtype=object))
    assert dict(got.levels) == {"1": 2, "True": 1, "1.0": 1, "b": 1}
    assert got.missing == 2 and got.rows == 7
    cat = level_counts(pd.Series(pd.Categorical(["x", None], categories=["x", "unused"])))
    assert dict(cat.levels) == {"x": 1} and cat.missing == 1
