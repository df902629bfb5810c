from __future__ import annotations

import math

import pytest

from clv.core.settings import MonitoringSettings
from clv.monitoring.policy import Decision, Evidence, Finding, Verdict, decide

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


def _baseline_finding(decision: Decision, metric: str) -> Finding:
    return next(f for f in decision.findings if f.check == f"baselines:{metric}")


def test_champion_losing_to_a_baseline_on_the_matured_cohort_is_a_warn() -> None:
    evidence = Evidence(
        drift_share={"value": 0.0},
        value_gini=0.50,
        value_rmse=10.0,
        baseline_gini={"baseline": 0.45, "run_rate": 0.55, "last_horizon": math.nan},
        baseline_rmse={"baseline": 12.0, "run_rate": 11.0, "last_horizon": math.nan},
    )
    decision = decide(evidence, thresholds=T)
    gini, rmse = _baseline_finding(decision, "gini"), _baseline_finding(decision, "rmse")
    assert gini.verdict is Verdict.WARN
    assert gini.reason == (
        "champion loses to run_rate on the matured cohort (normalized Gini 0.500 vs 0.550)"
    )
    assert rmse.verdict is Verdict.OK  # 10 is below every baseline's RMSE
    assert rmse.reason == (
        "champion beats the best baseline, run_rate, on the matured cohort (RMSE 10.00 vs 11.00)"
    )
    assert decision.verdict is Verdict.WARN  # a loss never asks for more than WARN
    assert decide(evidence, thresholds=T, baseline_loss_warns=False).verdict is Verdict.OK


def test_champion_losing_on_rmse_alone_warns_and_names_that_baseline() -> None:
    evidence = Evidence(
        drift_share={"value": 0.0},
        value_gini=0.60,
        value_rmse=10.0,
        baseline_gini={"baseline": 0.45},
        baseline_rmse={"baseline": 9.5},
    )
    decision = decide(evidence, thresholds=T)
    assert _baseline_finding(decision, "gini").verdict is Verdict.OK
    rmse = _baseline_finding(decision, "rmse")
    assert rmse.verdict is Verdict.WARN
    assert rmse.reason.startswith("champion loses to baseline on the matured cohort (RMSE")


def test_baselines_without_a_judged_champion_backtest_are_not_a_finding() -> None:
    decision = decide(
        Evidence(drift_share={"value": 0.0}, baseline_gini={"run_rate": 0.9}), thresholds=T
    )
    assert not any(f.check.startswith("baselines") for f in decision.findings)
    assert decision.verdict is Verdict.OK
