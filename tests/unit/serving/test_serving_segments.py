from __future__ import annotations

import math

import numpy as np
import pytest

from clv.serving.segments import FEW, segment, tercile_thresholds

NAN = math.nan


@pytest.mark.parametrize(
    ("clv", "churn", "label"),
    [
        (0.0, 0.1, "low value / healthy"),
        (99.99, 0.5, "low value / at risk"),  # churn threshold is inclusive
        (100.0, 0.49, "mid value / healthy"),  # t1 belongs to the mid tier
        (499.0, 0.9, "mid value / at risk"),
        (500.0, 0.0, "high value / healthy"),  # t2 belongs to the high tier
        (10_000.0, 0.7, "high value / at risk"),
        (NAN, 0.7, "unknown / at risk"),
        (250.0, NAN, "mid value / unknown"),
    ],
)
def test_segment_table(clv: float, churn: float, label: str) -> None:
    out = segment([clv], [churn], value_thresholds=(100.0, 500.0), churn_threshold=0.5)
    assert out.tolist() == [label]


def test_segment_is_vectorised_and_keeps_order() -> None:
    out = segment(
        np.array([600.0, 50.0, 200.0]),
        np.array([0.2, 0.8, 0.6]),
        value_thresholds=(100.0, 500.0),
        churn_threshold=0.5,
    )
    assert out.tolist() == ["high value / healthy", "low value / at risk", "mid value / at risk"]


def test_segment_rejects_mismatched_lengths_and_descending_thresholds() -> None:
    with pytest.raises(ValueError, match="churn_probability has 1"):
        segment([1.0, 2.0], [0.1], value_thresholds=(1.0, 2.0), churn_threshold=0.5)
    with pytest.raises(ValueError, match="ascending"):
        segment([1.0], [0.1], value_thresholds=(2.0, 1.0), churn_threshold=0.5)


def test_tercile_thresholds_split_into_thirds() -> None:
    low, high = tercile_thresholds([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, NAN])
    assert low == pytest.approx(3.0)  # numpy linear quantile of 1..7 at 1/3
    assert high == pytest.approx(5.0)
    with pytest.raises(ValueError, match="no CLV values"):
        tercile_thresholds([NAN])


def test_a_few_customers_get_the_labels_of_the_vectorised_path() -> None:
    """Up to FEW customers are labelled one by one: the same labels as the numpy path."""
    inf = math.inf
    values = [NAN, inf, -inf, -0.0, 0.0, 99.99, 100.0, 499.0, 500.0, 1e9]
    churn = [NAN, -inf, 0.0, 0.49, 0.5, 1.0, inf]
    clv = np.repeat(values, len(churn))
    risk = np.tile(churn, len(values))
    assert clv.size > FEW
    for thresholds in ((100.0, 500.0), (100.0, 100.0), (-inf, inf)):
        many = segment(clv, risk, value_thresholds=thresholds, churn_threshold=0.5).tolist()
        few = [
            segment(
                clv[i : i + 3], risk[i : i + 3], value_thresholds=thresholds, churn_threshold=0.5
            )
            for i in range(0, clv.size, 3)
        ]
        assert [label for labels in few for label in labels.tolist()] == many
        assert {labels.dtype for labels in few} == {np.dtype(object)}
