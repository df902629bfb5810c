"""Promotion gates: may a version become canary or champion? A pure decision, typed result.

Evidence comes from the version's evaluation tags (written by training: `eval.model.gini`,
`eval.model.rmse`, `eval.churn.ece`, `eval.interval.coverage_p10_p90`, `feature_service`,
`feature_names_hash`, `test_snapshot`), from the online store (the contract it serves) and
from a smoke test (the version loads and scores a batch). `clv.registry.evidence` gathers it.

Gates, in order:
- `registration` (only for a version marked `clv.status=incomplete`, clv.registry.completion):
  its training stopped after registering it and before tagging it; it always fails.
- `embargo`: the candidate's evaluation was embargoed out of time (`evaluation.embargoed`,
  clv.evaluation.protocol); evidence whose label windows overlap is no ground for a promotion
  (`--force` overrides).
- Same rows: when the candidate carries the champion's scores on its own test rows
  (`eval.champion.*`, written by training while that version was champion), the comparisons
  use those (`champion_on_candidate_rows`), and `test_snapshot` passes.
- `test_snapshot`: both versions were evaluated on the same test snapshot. When they differ
  the comparison is between different test sets, so the gate FAILS and says so (re-train or
  re-evaluate the champion on the candidate's snapshot; `--force` overrides). Re-evaluating
  the champion here would need the training pipeline's labels; it belongs to training.
- `primary`: normalized Gini gain over the champion >= `registry.min_gini_gain`, and above
  zero: a tie is no improvement (an identical retrain is not promoted). With the noise margin
  (below), the gain's CI must also lie above 0: the candidate beats the champion by more
  than the noise.
- `baselines`: the candidate's normalized Gini is above every simple baseline's on its own
  test rows (`eval.baseline.gini`, `eval.last_horizon.gini`, `eval.run_rate.gini`): a version
  that a rule a user writes in an afternoon beats is never promoted without `--force`.
- `rmse`, `churn_ece`: guardrails, no worse than the champion by more than the tolerance.
  With the noise margin, an RMSE beyond the tolerance fails only when the CI of the
  difference lies above 0 too (worse, and not by chance).
- `coverage`: the P10-P90 coverage lies in `registry.coverage_band` (absolute, no champion).
- `feature_contract`: the model's FeatureService and ordered feature names equal what the
  online store serves (name and `feature_names_hash`).
- `smoke`: the version loaded and scored a smoke batch to finite numbers.

The noise margin: when training scored this champion on the candidate's rows, it also wrote
the paired bootstrap CI of candidate minus champion there (`eval.champion.gini_diff_low`, ...,
`eval.champion.bootstrap_level`; clv.evaluation.metrics.paired_bootstrap). `registry.noise_level` 0
switches it off; without those tags (older versions) the gates are the point rules above.
Why and the defaults: docs/decisions/noise-margin.md.

A metric missing on the candidate fails its gate ("no eval.churn.ece tag"); missing on the
champion, the comparison is skipped and the check says so. No champion: comparisons pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from clv.core.contracts import BASELINE_PREDICTORS
from clv.core.settings import RegistrySettings
from clv.core.tags import (
    BOOTSTRAP_LEVEL,
    CHAMPION_VERSION_TAG,
    CHURN_ECE,
    EMBARGOED_TAG,
    EVALUATION_REASON,
    FEATURE_NAMES_HASH,
    INTERVAL_COVERAGE,
    MODEL_GINI,
    MODEL_RMSE,
    STATUS_INCOMPLETE,
    STATUS_REASON_TAG,
    STATUS_TAG,
    TEST_SNAPSHOT,
    champion_tag,
    eval_tag,
    feature_names_hash,
)

Outcome = Literal["pass", "fail", "skip"]
GATE_TAG_PREFIX = "gate."

GINI, RMSE, ECE, COVERAGE = MODEL_GINI, MODEL_RMSE, CHURN_ECE, INTERVAL_COVERAGE


@dataclass(frozen=True)
class VersionEvidence:
    """What the gates know about one version: its tags (and, for a candidate, its contract)."""

    version: str
    tags: Mapping[str, str] = field(default_factory=dict)

    def metric(self, key: str) -> float | None:
        raw = self.tags.get(key)
        if raw is None:
            return None
        try:
            value = float(raw)
        except ValueError:
            return None
        return value if math.isfinite(value) else None


@dataclass(frozen=True)
class _Contract:
    """A FeatureService name and its ordered feature names."""

    service: str
    feature_names: tuple[str, ...]

    @property
    def names_hash(self) -> str:
        return feature_names_hash(self.feature_names)


@dataclass(frozen=True)
class ServedContract(_Contract):
    """The FeatureService the online store serves: its name and ordered feature names."""


@dataclass(frozen=True)
class ModelContract(_Contract):
    """The contract a loaded model consumes (from its bundle's card)."""


@dataclass(frozen=True)
class SmokeResult:
    """Did the version load and score a smoke batch to finite numbers?"""

    ok: bool
    reason: str
    contract: ModelContract | None = None

    def check(self) -> GateCheck:
        """The `smoke` gate: it fails unless the version loaded and scored."""
        return GateCheck("smoke", "pass" if self.ok else "fail", self.reason)


@dataclass(frozen=True)
class GateCheck:
    name: str
    outcome: Outcome
    reason: str

    @property
    def passed(self) -> bool:
        return self.outcome != "fail"


@dataclass(frozen=True)
class GateResult:
    """Every gate's outcome for `candidate` against `champion`; `forced` overrides a failure."""

    candidate: str
    champion: str | None
    checks: tuple[GateCheck, ...]
    forced: bool = False

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def allowed(self) -> bool:
        return self.passed or self.forced

    @property
    def failures(self) -> tuple[GateCheck, ...]:
        return tuple(c for c in self.checks if not c.passed)

    def summary(self) -> str:
        if self.passed:
            return "all gates passed"
        failed = "; ".join(f"{c.name}: {c.reason}" for c in self.failures)
        return f"{'FORCED past ' if self.forced else ''}failed gates: {failed}"

    def as_dict(self) -> dict[str, object]:
        return {
            "candidate": self.candidate,
            "champion": self.champion,
            "passed": self.passed,
            "forced": self.forced,
            "checks": [
                {"name": c.name, "outcome": c.outcome, "reason": c.reason} for c in self.checks
            ],
        }

    def tags(self) -> dict[str, str]:
        """Version tags recording this result (`gate.passed`, `gate.<name>`, ...)."""
        out = {
            f"{GATE_TAG_PREFIX}passed": str(self.passed).lower(),
            f"{GATE_TAG_PREFIX}forced": str(self.forced).lower(),
            f"{GATE_TAG_PREFIX}against": self.champion or "none",
        }
        for c in self.checks:
            out[f"{GATE_TAG_PREFIX}{c.name}"] = f"{c.outcome}: {c.reason}"[:4000]
        return out


def evaluate_gates(
    candidate: VersionEvidence,
    champion: VersionEvidence | None,
    *,
    settings: RegistrySettings,
    served: ServedContract | None,
    smoke: SmokeResult,
    forced: bool = False,
) -> GateResult:
    """Run every gate; `served` None means the online store could not be read."""
    champion = champion_on_candidate_rows(candidate, champion)
    level = settings.noise_level
    checks = (
        *_registration(candidate),
        _embargo(candidate),
        _snapshot(candidate, champion),
        _primary(
            candidate,
            champion,
            min_gain=settings.min_gini_gain,
            noise=_noise_margin(candidate, champion, "gini", level=level),
        ),
        _baselines(candidate),
        _rmse(
            candidate,
            champion,
            tolerance_pct=settings.rmse_tolerance_pct,
            noise=_noise_margin(candidate, champion, "rmse", level=level),
        ),
        _ece(candidate, champion, tolerance=settings.ece_tolerance),
        _coverage(candidate, band=settings.coverage_band),
        _contract(candidate, served, smoke.contract),
        smoke.check(),
    )
    return GateResult(
        candidate=candidate.version,
        champion=champion.version if champion is not None else None,
        checks=checks,
        forced=forced,
    )


SAME_ROWS = "same_rows"
"""A tag the same-rows evidence carries, so that `test_snapshot` knows it compares one set."""
CHAMPION_ON_ROWS = {
    GINI: champion_tag("gini"),
    RMSE: champion_tag("rmse"),
    ECE: champion_tag("churn_ece"),
    COVERAGE: champion_tag("coverage_p10_p90"),
}


def champion_on_candidate_rows(
    candidate: VersionEvidence, champion: VersionEvidence | None
) -> VersionEvidence | None:
    """The champion's evidence on the candidate's own test rows when training scored this
    champion there (`eval.champion.version` names it); else the champion's own tags."""
    if champion is None or candidate.tags.get(CHAMPION_VERSION_TAG) != champion.version:
        return champion
    scored = {
        key: candidate.tags[src] for key, src in CHAMPION_ON_ROWS.items() if src in candidate.tags
    }
    if len(scored) < len(CHAMPION_ON_ROWS):
        return champion
    snapshot = candidate.tags.get(TEST_SNAPSHOT, "")
    return VersionEvidence(
        champion.version, {**champion.tags, **scored, TEST_SNAPSHOT: snapshot, SAME_ROWS: "true"}
    )


@dataclass(frozen=True)
class Noise:
    """Candidate minus champion in one metric on the candidate's rows, with its bootstrap CI."""

    diff: float
    low: float
    high: float
    level: float

    def interval(self, spec: str) -> str:
        """`95% CI [+0.0041, +0.0190] above 0` (the ends formatted with `spec`)."""
        where = "above 0" if self.low > 0 else "below 0" if self.high < 0 else "includes 0"
        return f"{self.level * 100:g}% CI [{self.low:{spec}}, {self.high:{spec}}] {where}"


def _noise_margin(
    candidate: VersionEvidence,
    champion: VersionEvidence | None,
    metric: Literal["gini", "rmse"],
    *,
    level: float,
) -> Noise | None:
    """The bootstrap CI of candidate minus `champion` in `metric` when training computed it
    for this champion on the candidate's rows (`champion_on_candidate_rows` matched it) and
    the margin is on (`level` > 0); else None. The CI is at the level training recorded."""
    if level <= 0 or champion is None or champion.tags.get(SAME_ROWS) != "true":
        return None
    diff, low, high = (
        candidate.metric(champion_tag(f"{metric}_diff{end}")) for end in ("", "_low", "_high")
    )
    recorded = candidate.metric(BOOTSTRAP_LEVEL)
    if diff is None or low is None or high is None or recorded is None:
        return None
    return Noise(diff, low, high, recorded)


def _no_tag(key: str) -> str:
    return f"no {key} tag on the candidate"


def _against_champion(
    name: str,
    key: str,
    candidate: VersionEvidence,
    champion: VersionEvidence | None,
    *,
    label: str,
    spec: str,
    judge: Callable[[float, float], tuple[Outcome, str]],
) -> GateCheck:
    """`judge(mine, theirs)` on the candidate's and the champion's `key`, unless the check
    decides without them: fail when the candidate lacks it, pass with no champion (the
    candidate's value shown as `label` formatted with `spec`), skip when the champion lacks it."""
    mine = candidate.metric(key)
    if mine is None:
        return GateCheck(name, "fail", _no_tag(key))
    if champion is None:
        return GateCheck(name, "pass", f"{label} {mine:{spec}}; no champion yet")
    theirs = champion.metric(key)
    if theirs is None:
        return GateCheck(name, "skip", f"champion v{champion.version} has no {key} tag")
    return GateCheck(name, *judge(mine, theirs))


def _registration(candidate: VersionEvidence) -> tuple[GateCheck, ...]:
    """A failing `registration` check for a version marked incomplete (its training stopped
    before tagging it: clv.registry.completion); nothing otherwise."""
    if candidate.tags.get(STATUS_TAG) != STATUS_INCOMPLETE:
        return ()
    why = candidate.tags.get(STATUS_REASON_TAG, "its training stopped before tagging it")
    return (GateCheck("registration", "fail", f"registration incomplete: {why}"),)


def _embargo(candidate: VersionEvidence) -> GateCheck:
    name = "embargo"
    flag = candidate.tags.get(EMBARGOED_TAG)
    if flag is None:
        return GateCheck(name, "fail", _no_tag(EMBARGOED_TAG))
    if flag != "true":
        why = candidate.tags.get(EVALUATION_REASON, "label windows overlap")
        return GateCheck(name, "fail", f"evaluation not embargoed: {why}")
    return GateCheck(name, "pass", "train, validation and test label windows are disjoint")


def _snapshot(candidate: VersionEvidence, champion: VersionEvidence | None) -> GateCheck:
    name = "test_snapshot"
    if champion is None:
        return GateCheck(name, "pass", "no champion to compare with")
    mine, theirs = candidate.tags.get(TEST_SNAPSHOT), champion.tags.get(TEST_SNAPSHOT)
    if mine is None:
        return GateCheck(name, "fail", _no_tag(TEST_SNAPSHOT))
    if theirs is None:
        return GateCheck(name, "skip", f"champion v{champion.version} has no {TEST_SNAPSHOT} tag")
    if champion.tags.get(SAME_ROWS) == "true":
        return GateCheck(
            name, "pass", f"champion v{champion.version} scored on the candidate's rows ({mine})"
        )
    if mine != theirs:
        return GateCheck(
            name,
            "fail",
            f"test snapshots differ (candidate {mine}, champion v{champion.version} {theirs}): "
            "metrics are not comparable; re-evaluate on one snapshot or --force",
        )
    return GateCheck(name, "pass", f"both evaluated on {mine}")


def _primary(
    candidate: VersionEvidence,
    champion: VersionEvidence | None,
    *,
    min_gain: float,
    noise: Noise | None = None,
) -> GateCheck:
    """Gain >= `min_gain` and above 0; with `noise`, also its CI above 0."""

    def judge(mine: float, theirs: float) -> tuple[Outcome, str]:
        gain = mine - theirs
        scores = f"gini {mine:.4f} vs {theirs:.4f}: gain {gain:+.4f}"
        if noise is None:
            outcome: Outcome = "pass" if gain >= min_gain and gain > 0 else "fail"
            needs = f"needs {min_gain:+.4f}" + (" and above 0" if min_gain <= 0 else "")
            return outcome, f"{scores} ({needs})"
        outcome = "pass" if gain >= min_gain and gain > 0 and noise.low > 0 else "fail"
        within = ": within the noise" if noise.low <= 0 <= noise.high else ""
        needs = f"needs {min_gain:+.4f} and a CI above 0"
        return outcome, f"{scores}, {noise.interval('+.4f')}{within} ({needs})"

    return _against_champion(
        "primary", GINI, candidate, champion, label="gini", spec=".4f", judge=judge
    )


def _baselines(candidate: VersionEvidence) -> GateCheck:
    name = "baselines"
    mine = candidate.metric(GINI)
    if mine is None:
        return GateCheck(name, "fail", _no_tag(GINI))
    scores = {
        who: value
        for who in BASELINE_PREDICTORS
        if (value := candidate.metric(eval_tag(who, "gini"))) is not None
    }
    if not scores:
        return GateCheck(name, "skip", "no baseline scores on the candidate (eval.<baseline>.gini)")
    best = max(scores, key=lambda who: scores[who])
    outcome: Outcome = "pass" if mine > scores[best] else "fail"
    return GateCheck(
        name,
        outcome,
        f"gini {mine:.4f} vs the best simple baseline, {best}, {scores[best]:.4f}"
        + ("" if outcome == "pass" else ": a simple rule ranks customers as well; --force"),
    )


def _rmse(
    candidate: VersionEvidence,
    champion: VersionEvidence | None,
    *,
    tolerance_pct: float,
    noise: Noise | None = None,
) -> GateCheck:
    """At most the champion's + `tolerance_pct`, as a point rule: the noise never excuses an
    RMSE beyond the tolerance (a guardrail is not loosened). With `noise`, the reason also
    gives the bootstrap CI of the difference, so a reviewer sees whether a loss is real."""

    def judge(mine: float, theirs: float) -> tuple[Outcome, str]:
        limit = theirs * (1.0 + tolerance_pct / 100.0)
        outcome: Outcome = "pass" if mine <= limit else "fail"
        scores = f"rmse {mine:.4g} vs {theirs:.4g} (at most {limit:.4g}, +{tolerance_pct}%)"
        if noise is None:
            return outcome, scores
        difference = f"difference {noise.diff:+.4g}, {noise.interval('+.4g')}"
        return outcome, f"{scores}, {difference}"

    return _against_champion(
        "rmse", RMSE, candidate, champion, label="rmse", spec=".4g", judge=judge
    )


def _ece(
    candidate: VersionEvidence, champion: VersionEvidence | None, *, tolerance: float
) -> GateCheck:
    def judge(mine: float, theirs: float) -> tuple[Outcome, str]:
        limit = theirs + tolerance
        outcome: Outcome = "pass" if mine <= limit else "fail"
        return outcome, f"ece {mine:.4f} vs {theirs:.4f} (at most {limit:.4f})"

    return _against_champion(
        "churn_ece", ECE, candidate, champion, label="ece", spec=".4f", judge=judge
    )


def _coverage(candidate: VersionEvidence, *, band: tuple[float, float]) -> GateCheck:
    name = "coverage"
    mine = candidate.metric(COVERAGE)
    if mine is None:
        return GateCheck(name, "fail", _no_tag(COVERAGE))
    lo, hi = band
    outcome: Outcome = "pass" if lo <= mine <= hi else "fail"
    return GateCheck(name, outcome, f"P10-P90 coverage {mine:.3f} (band {lo:.2f}-{hi:.2f})")


def _contract(
    candidate: VersionEvidence, served: ServedContract | None, model: ModelContract | None
) -> GateCheck:
    name = "feature_contract"
    if served is None:
        return GateCheck(name, "fail", "the online store's FeatureService could not be read")
    if model is None:
        return GateCheck(name, "fail", "the model did not load: its contract is unknown")
    if model.service != served.service:
        return GateCheck(
            name,
            "fail",
            f"model uses FeatureService {model.service!r}, online store serves {served.service!r}",
        )
    mine = model.names_hash
    if mine != served.names_hash:
        missing = sorted(set(model.feature_names) - set(served.feature_names))
        detail = f"; not served: {', '.join(missing[:5])}" if missing else " (order differs)"
        return GateCheck(
            name,
            "fail",
            f"feature names hash {mine} != served {served.names_hash}{detail}",
        )
    tagged = candidate.tags.get(FEATURE_NAMES_HASH)
    if tagged is not None and tagged != mine:
        return GateCheck(name, "fail", f"{FEATURE_NAMES_HASH} tag {tagged} != bundle's {mine}")
    return GateCheck(
        name, "pass", f"{served.service} ({len(served.feature_names)} features, hash {mine})"
    )
