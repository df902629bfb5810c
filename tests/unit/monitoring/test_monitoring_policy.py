from __future__ import annotations

import math

import pytest

from monitoring.policy import Verdict, decide


@pytest.mark.parametrize(
    ("share", "verdict"),
    [
        (0.0, Verdict.OK),
        (0.29, Verdict.OK),
        (0.3, Verdict.WARN),  # bounds are inclusive
        (0.49, Verdict.WARN),
        (0.5, Verdict.RETRAIN),
        (1.0, Verdict.RETRAIN),
        (math.nan, Verdict.WARN),  # nothing measured is not "fine"
    ],
)
def test_decide_table(share: float, verdict: Verdict) -> None:
    decision = decide(share, warn=0.3, retrain=0.5)
    assert decision.verdict is verdict
    assert len(decision.reasons) == 1


def test_reasons_name_the_share_and_the_threshold() -> None:
    assert decide(0.6, warn=0.3, retrain=0.5).reasons == (
        "drifted column share 0.600 >= retrain threshold 0.500",
    )
    assert decide(0.1, warn=0.3, retrain=0.5).reasons == (
        "drifted column share 0.100 < warn threshold 0.300",
    )


def test_equal_thresholds_skip_warn() -> None:
    assert decide(0.4, warn=0.4, retrain=0.4).verdict is Verdict.RETRAIN
    assert decide(0.39, warn=0.4, retrain=0.4).verdict is Verdict.OK


def test_inverted_thresholds_are_rejected() -> None:
    with pytest.raises(ValueError, match="exceeds retrain threshold"):
        decide(0.2, warn=0.6, retrain=0.5)
