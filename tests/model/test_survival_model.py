"""The discrete-time hazard model against the sBG and Kaplan-Meier per plan, out of time, on a
small judgement world no modelling choice was made on (judge-saas-mixed-s215: 3,000 accounts,
24 months, a 3-month horizon; outcomes from the generator's hidden truth)."""

from __future__ import annotations

import pytest

from benchmarks.contractual import TRAIN_ORIGIN_MONTHS, evaluate_world
from benchmarks.worlds import saas_world

pytestmark = pytest.mark.slow
WORLD = "judge-saas-mixed-s215"


@pytest.fixture(scope="module")
def figures() -> dict[str, dict[str, float]]:
    out = evaluate_world(saas_world(WORLD), origins=TRAIN_ORIGIN_MONTHS)
    scores = {who: out[who] for who in ("model", "sbg", "kaplan_meier")}
    assert all(isinstance(s, dict) for s in scores.values())
    return scores  # type: ignore[return-value]


def test_model_ranks_churn_better_than_both_baselines(
    figures: dict[str, dict[str, float]],
) -> None:
    c = {who: s["c_index"] for who, s in figures.items()}
    assert c["model"] > max(c["sbg"], c["kaplan_meier"]), c


def test_model_has_a_lower_integrated_brier_score_than_both_baselines(
    figures: dict[str, dict[str, float]],
) -> None:
    ibs = {who: s["ibs"] for who, s in figures.items()}
    assert ibs["model"] < min(ibs["sbg"], ibs["kaplan_meier"]), ibs


def test_model_clv_and_retention_curve_are_close_to_what_happened(
    figures: dict[str, dict[str, float]],
) -> None:
    m = figures["model"]
    assert abs(m["clv_bias_pct"]) <= 10.0, m
    assert m["retention_max_gap"] <= 0.05, m


def test_model_renewal_probability_is_calibrated(figures: dict[str, dict[str, float]]) -> None:
    assert figures["model"]["renewal_ece"] <= 0.03, figures["model"]
