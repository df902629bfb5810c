"""The monitoring verdict: a pure decision over the evidence a reviewer would accept.

Evidence, each judged against `MonitoringSettings` thresholds:
- key-feature drift: the share of a model's importance carried by key features whose PSI is
  at or above `psi_threshold` (and beyond sampling noise); the larger of the value and churn
  models' shares. Importance-weighted, so that a drifted feature the model barely uses (an
  age-driven one such as `T`, or an excluded calendar feature) does not decide alone.
- prediction drift: PSI of the CLV and churn-probability predictions.
- calibration: the matured churn cohort's ECE minus the model's own test ECE.
- backtest: the model's test normalized Gini minus the matured value cohort's.
  A matured cohort the model was fitted on is in-sample and optimistic: shown, not judged.
- baselines (WARN only, `monitoring.baseline_loss_warns`): the champion loses to the best
  simple baseline on the matured value cohort, by normalized Gini or by RMSE (same rows, same
  gating as the backtest).
- data quality (WARN): missing values, new categories, out-of-range values.
- non-finite values (DATA_QUALITY): any +inf or -inf in the current window. XGBoost scores
  them as an extreme value without a word, and drift measured on them is drift of corrupt
  data: DATA_QUALITY outranks RETRAIN, so that the retrain job (which acts on RETRAIN only)
  never trains a challenger on them; the data are fixed first.

The verdict is the worst of the findings; each finding is one plain sentence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from clv.core.settings import MonitoringSettings


class Verdict(StrEnum):
    """What the monitor recommends."""

    OK = "OK"
    WARN = "WARN"
    RETRAIN = "RETRAIN"
    DATA_QUALITY = "DATA_QUALITY"
    """The current data are corrupt: fix them before trusting scores or retraining on them."""


_RANK = {Verdict.OK: 0, Verdict.WARN: 1, Verdict.RETRAIN: 2, Verdict.DATA_QUALITY: 3}
SHOWN = 5
"""Columns named in a non-finite finding; the report's table has them all."""


@dataclass(frozen=True)
class Finding:
    """One piece of evidence judged: its verdict and the sentence a reviewer reads."""

    check: str
    verdict: Verdict
    reason: str


@dataclass(frozen=True)
class Evidence:
    """Everything the policy looks at; None = not measured (said so, never read as fine)."""

    drift_share: Mapping[str, float] = field(default_factory=dict)
    """Per model ("value", "churn"): importance share of its drifted key features."""
    drifted_key_features: tuple[str, ...] = ()
    prediction_psi: Mapping[str, float] = field(default_factory=dict)
    """Per prediction column ("clv", "churn_probability")."""
    churn_ece: float | None = None
    churn_ece_test: float | None = None
    value_gini: float | None = None
    value_gini_test: float | None = None
    value_rmse: float | None = None
    baseline_gini: Mapping[str, float] = field(default_factory=dict)
    """Per simple baseline scored on the judged matured value cohort: its normalized Gini."""
    baseline_rmse: Mapping[str, float] = field(default_factory=dict)
    """Per simple baseline scored on the judged matured value cohort: its RMSE."""
    coverage: float | None = None
    quality_issues: tuple[str, ...] = ()
    non_finite: Mapping[str, int] = field(default_factory=dict)
    """Per column of the current window with any: its count of +inf / -inf values."""
    in_sample: tuple[str, ...] = ()
    """Matured cohorts ("churn", "value") the model was fitted on: shown, not judged."""


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    findings: tuple[Finding, ...]

    @property
    def reasons(self) -> tuple[str, ...]:
        """The findings that set the verdict first, then the rest."""
        ordered = sorted(self.findings, key=lambda f: -_RANK[f.verdict])
        return tuple(f.reason for f in ordered)


def _band(value: float, *, warn: float, retrain: float) -> Verdict:
    if value >= retrain:
        return Verdict.RETRAIN
    if value >= warn:
        return Verdict.WARN
    return Verdict.OK


def decide(
    evidence: Evidence, *, thresholds: MonitoringSettings, baseline_loss_warns: bool = True
) -> Decision:
    """The worst verdict over every finding (bounds inclusive); see the module docstring.

    `baseline_loss_warns=False` keeps the baseline comparison as information (OK findings)."""
    t = thresholds
    findings: list[Finding] = []

    finite = {k: v for k, v in evidence.drift_share.items() if math.isfinite(v)}
    if finite:
        model, share = max(finite.items(), key=lambda kv: kv[1])
        drifted = ", ".join(evidence.drifted_key_features) or "none"
        verdict = _band(share, warn=t.drift_share_warn, retrain=t.drift_share_retrain)
        findings.append(
            Finding(
                "feature_drift",
                verdict,
                f"drifted key features carry {share:.0%} of the {model} model's importance "
                f"(WARN at {t.drift_share_warn:.0%}, RETRAIN at {t.drift_share_retrain:.0%}; "
                f"PSI >= {t.psi_threshold:g}: {drifted})",
            )
        )
    else:
        findings.append(
            Finding("feature_drift", Verdict.WARN, "feature drift could not be measured")
        )

    for column, value in evidence.prediction_psi.items():
        if not math.isfinite(value):
            continue
        verdict = _band(value, warn=t.prediction_psi_warn, retrain=t.prediction_psi_retrain)
        findings.append(
            Finding(
                f"prediction_drift:{column}",
                verdict,
                f"{column} predictions moved by PSI {value:.3f} (WARN at "
                f"{t.prediction_psi_warn:g}, RETRAIN at {t.prediction_psi_retrain:g})",
            )
        )

    ev = evidence
    for check, now, test, warn, retrain in (
        ("calibration", ev.churn_ece, ev.churn_ece_test, t.ece_warn, t.ece_retrain),
        ("backtest", ev.value_gini, ev.value_gini_test, t.gini_drop_warn, t.gini_drop_retrain),
    ):
        if now is not None and test is not None:
            findings.append(_against_training(check, now, test, warn=warn, retrain=retrain))

    findings += _baseline_findings(evidence, warns=baseline_loss_warns)

    if evidence.coverage is not None:
        lo, hi = t.coverage_band
        inside = lo <= evidence.coverage <= hi
        findings.append(
            Finding(
                "coverage",
                Verdict.OK if inside else Verdict.WARN,
                f"P10-P90 interval covered {evidence.coverage:.0%} of matured outcomes "
                f"(expected {lo:.0%}-{hi:.0%})",
            )
        )

    for kind in evidence.in_sample:
        findings.append(
            Finding(
                f"in_sample:{kind}",
                Verdict.OK,
                f"the matured {kind} cohort was in the model's training data: its backtest is "
                "in-sample (optimistic), shown below but not judged",
            )
        )

    if evidence.non_finite:
        findings.append(_non_finite_finding(evidence.non_finite))
    for issue in evidence.quality_issues:
        findings.append(Finding("data_quality", Verdict.WARN, issue))
    if not evidence.quality_issues and not evidence.non_finite:
        findings.append(Finding("data_quality", Verdict.OK, "no data-quality issue found"))

    worst = max((f.verdict for f in findings), key=lambda v: _RANK[v], default=Verdict.OK)
    return Decision(worst, tuple(findings))


_AGAINST_TRAINING = {
    # check: (what the matured cohort measured, higher is worse, the change's word, bounds' sign)
    "calibration": ("churn calibration error on the matured cohort", True, "", "+"),
    "backtest": ("the matured cohort's normalized Gini", False, "drop ", ""),
}


def _against_training(
    check: str, now: float, test: float, *, warn: float, retrain: float
) -> Finding:
    """The matured cohort's figure `now` against the model's own `test` one, banded by how
    much worse it is (calibration error above, normalized Gini below)."""
    subject, higher_is_worse, word, sign = _AGAINST_TRAINING[check]
    worse = now - test if higher_is_worse else test - now
    return Finding(
        check,
        _band(worse, warn=warn, retrain=retrain),
        f"{subject} is {now:.3f} vs {test:.3f} at training ({word}{worse:+.3f}; WARN at "
        f"{sign}{warn:g}, RETRAIN at {sign}{retrain:g})",
    )


def _baseline_findings(evidence: Evidence, *, warns: bool) -> list[Finding]:
    """Per metric (Gini higher, RMSE lower is better): the champion against the best baseline."""
    out: list[Finding] = []
    for metric, label, champion, scores, higher, fmt in (
        ("gini", "normalized Gini", evidence.value_gini, evidence.baseline_gini, True, ".3f"),
        ("rmse", "RMSE", evidence.value_rmse, evidence.baseline_rmse, False, ".2f"),
    ):
        finite = {k: v for k, v in scores.items() if math.isfinite(v)}
        if champion is None or not math.isfinite(champion) or not finite:
            continue
        pick = max if higher else min
        name, best = pick(finite.items(), key=lambda kv: kv[1])
        loses = best > champion if higher else best < champion
        numbers = f"{label} {champion:{fmt}} vs {best:{fmt}}"
        if loses:
            verdict = Verdict.WARN if warns else Verdict.OK
            reason = f"champion loses to {name} on the matured cohort ({numbers})"
        else:
            verdict = Verdict.OK
            reason = f"champion beats the best baseline, {name}, on the matured cohort ({numbers})"
        out.append(Finding(f"baselines:{metric}", verdict, reason))
    return out


def _non_finite_finding(counts: Mapping[str, int]) -> Finding:
    """DATA_QUALITY: which columns hold +inf / -inf values and how many, most first."""
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    shown = ", ".join(f"{c} {n:,}" for c, n in ranked[:SHOWN])
    more = f" and {len(ranked) - SHOWN} more" if len(ranked) > SHOWN else ""
    total = sum(counts.values())
    return Finding(
        "data_quality:non_finite",
        Verdict.DATA_QUALITY,
        f"{total:,} non-finite value{'s' if total != 1 else ''} (inf or -inf) in the current "
        f"window: {shown}{more}; a data-quality failure: fix the data before trusting its "
        "scores or retraining on it",
    )
