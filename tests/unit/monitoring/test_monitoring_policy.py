from __future__ import annotations

import math

import pytest

from clv.settings import MonitoringSettings
from monitoring.policy import Evidence, Verdict, decide

T = MonitoringSettings()  # warn 0.15 / retrain 0.3 drift share; PSI 0.1 / 0.25; ECE +0.03 / +0.06


@pytest.mark.parametrize(
    ("share", "verdict"),
    [
        (0.0, Verdict.OK),
        (0.149, Verdict.OK),
        (0.15, Verdict.WARN),  # bounds are inclusive
        (0.299, Verdict.WARN),
        (0.3, Verdict.RETRAIN),
        (1.0, Verdict.RETRAIN),
        (math.nan, Verdict.WARN),  # nothing measured is not "fine"
    ],
)
def test_feature_drift_bands(share: float, verdict: Verdict) -> None:
    decision = decide(Evidence(drift_share={"churn": share}), thresholds=T)
    assert decision.verdict is verdict


def test_the_larger_model_share_decides_and_is_named() -> None:
    decision = decide(
        Evidence(drift_share={"value": 0.05, "churn": 0.42}, drifted_key_features=("logins_30d",)),
        thresholds=T,
    )
    assert decision.verdict is Verdict.RETRAIN
    assert decision.reasons[0].startswith("drifted key features carry 42% of the churn model's")
    assert "logins_30d" in decision.reasons[0]


@pytest.mark.parametrize(
    ("evidence", "verdict", "check"),
    [
        (Evidence(prediction_psi={"clv": 0.12}), Verdict.WARN, "prediction_drift:clv"),
        (Evidence(prediction_psi={"clv": 0.25}), Verdict.RETRAIN, "prediction_drift:clv"),
        (Evidence(churn_ece=0.09, churn_ece_test=0.03), Verdict.RETRAIN, "calibration"),
        (Evidence(churn_ece=0.07, churn_ece_test=0.03), Verdict.WARN, "calibration"),
        (Evidence(churn_ece=0.05, churn_ece_test=0.03), Verdict.OK, "calibration"),
        (Evidence(value_gini=0.70, value_gini_test=0.81), Verdict.RETRAIN, "backtest"),
        (Evidence(value_gini=0.75, value_gini_test=0.81), Verdict.WARN, "backtest"),
        (Evidence(value_gini=0.90, value_gini_test=0.81), Verdict.OK, "backtest"),
        (Evidence(coverage=0.55), Verdict.WARN, "coverage"),
        (Evidence(quality_issues=("plan has 1 new category",)), Verdict.WARN, "data_quality"),
    ],
)
def test_each_kind_of_evidence_sets_its_verdict(
    evidence: Evidence, verdict: Verdict, check: str
) -> None:
    base = Evidence(drift_share={"value": 0.0})
    merged = Evidence(**{**base.__dict__, **{k: v for k, v in evidence.__dict__.items() if v}})
    decision = decide(merged, thresholds=T)
    finding = next(f for f in decision.findings if f.check == check)
    assert finding.verdict is verdict
    assert decision.verdict is verdict  # everything else is fine


def test_unmeasured_backtest_is_not_a_finding() -> None:
    decision = decide(Evidence(drift_share={"value": 0.0}, churn_ece=0.5), thresholds=T)
    assert decision.verdict is Verdict.OK  # no test ECE to compare with: not judged
    assert [f.check for f in decision.findings] == ["feature_drift", "data_quality"]


def test_in_sample_cohorts_are_said_not_judged() -> None:
    decision = decide(Evidence(drift_share={"value": 0.0}, in_sample=("value",)), thresholds=T)
    assert decision.verdict is Verdict.OK
    assert any("value cohort was in the model's training data" in r for r in decision.reasons)
