"""Promotion gates: each gate passes and fails on hand-made evidence; force is recorded."""

from __future__ import annotations

import pytest

from clv.core.settings import RegistrySettings
from clv.core.tags import feature_names_hash
from clv.registry.gates import (
    GateResult,
    ModelContract,
    ServedContract,
    SmokeResult,
    VersionEvidence,
    evaluate_gates,
)

NAMES = ("frequency", "recency", "channel")
SERVED = ServedContract("clv_v1", NAMES)
SMOKE = SmokeResult(True, "loaded and scored 200 rows", ModelContract("clv_v1", NAMES))
SETTINGS = RegistrySettings(
    min_gini_gain=0.01, rmse_tolerance_pct=5.0, ece_tolerance=0.02, coverage_band=(0.7, 0.9)
)


def tags(**overrides: str | None) -> dict[str, str]:
    base: dict[str, str | None] = {
        "eval.model.gini": "0.60",
        "eval.model.rmse": "100.0",
        "eval.churn.ece": "0.03",
        "eval.interval.coverage_p10_p90": "0.80",
        "feature_service": "clv_v1",
        "feature_names_hash": feature_names_hash(NAMES),
        "test_snapshot": "2024-06-01T00:00:00+00:00",
        "evaluation.embargoed": "true",
        "eval.baseline.gini": "0.55",
        "eval.last_horizon.gini": "0.50",
        "eval.run_rate.gini": "0.52",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def gate(
    cand: dict[str, str],
    champ: dict[str, str] | None,
    *,
    served: ServedContract | None = SERVED,
    smoke: SmokeResult = SMOKE,
    forced: bool = False,
) -> GateResult:
    return evaluate_gates(
        VersionEvidence("2", cand),
        VersionEvidence("1", champ) if champ is not None else None,
        settings=SETTINGS,
        served=served,
        smoke=smoke,
        forced=forced,
    )


def outcome(result: GateResult, name: str) -> str:
    return next(c.outcome for c in result.checks if c.name == name)


def on_rows(gini: str, rmse: str = "100.0") -> dict[str, str]:
    """Training scored champion v1 on the candidate's test rows (eval.champion.*)."""
    return {
        "eval.champion.version": "1",
        "eval.champion.gini": gini,
        "eval.champion.rmse": rmse,
        "eval.champion.churn_ece": "0.03",
        "eval.champion.coverage_p10_p90": "0.80",
    }


def bootstrap(
    gini: tuple[float, float, float], rmse: tuple[float, float, float] = (0.0, -2.0, 2.0)
) -> dict[str, str]:
    """Training's paired bootstrap of candidate minus champion: (diff, low, high) per metric."""
    out = {"eval.champion.bootstrap_samples": "1000", "eval.champion.bootstrap_level": "0.95"}
    for metric, ends in (("gini", gini), ("rmse", rmse)):
        for suffix, value in zip(("", "_low", "_high"), ends, strict=True):
            out[f"eval.champion.{metric}_diff{suffix}"] = repr(value)
    return out


def check(result: GateResult, name: str) -> tuple[str, str]:
    found = next(c for c in result.checks if c.name == name)
    return found.outcome, found.reason


def test_a_better_candidate_passes_every_gate() -> None:
    result = gate(tags(**{"eval.model.gini": "0.62"}), tags())
    assert result.passed and result.allowed and not result.failures
    assert [c.name for c in result.checks] == [
        "embargo",
        "test_snapshot",
        "primary",
        "baselines",
        "rmse",
        "churn_ece",
        "coverage",
        "feature_contract",
        "smoke",
    ]


def test_no_champion_means_comparisons_pass() -> None:
    result = gate(tags(), None)
    assert result.passed and result.champion is None
    assert "no champion" in next(c.reason for c in result.checks if c.name == "primary")


@pytest.mark.parametrize(
    ("cand", "champ", "name", "expected"),
    [
        ({"eval.model.gini": "0.615"}, {}, "primary", "pass"),  # gain 0.015 >= 0.01
        ({"eval.model.gini": "0.605"}, {}, "primary", "fail"),  # gain 0.005 < 0.01
        ({"eval.model.rmse": "105.0"}, {}, "rmse", "pass"),  # exactly +5%
        ({"eval.model.rmse": "105.2"}, {}, "rmse", "fail"),
        ({"eval.churn.ece": "0.05"}, {}, "churn_ece", "pass"),  # 0.03 + 0.02
        ({"eval.churn.ece": "0.051"}, {}, "churn_ece", "fail"),
        ({"eval.interval.coverage_p10_p90": "0.70"}, {}, "coverage", "pass"),
        ({"eval.interval.coverage_p10_p90": "0.65"}, {}, "coverage", "fail"),
        ({"eval.interval.coverage_p10_p90": "0.95"}, {}, "coverage", "fail"),
        ({"test_snapshot": "2024-07-01T00:00:00+00:00"}, {}, "test_snapshot", "fail"),
        ({}, {"test_snapshot": None}, "test_snapshot", "skip"),
        ({}, {"eval.churn.ece": None}, "churn_ece", "skip"),
        ({}, {"eval.model.gini": None}, "primary", "skip"),
    ],
)
def test_gate_table(
    cand: dict[str, str | None], champ: dict[str, str | None], name: str, expected: str
) -> None:
    base = {"eval.model.gini": "0.62"}
    result = gate(tags(**{**base, **cand}), tags(**champ))
    assert outcome(result, name) == expected
    assert result.passed == all(c.outcome != "fail" for c in result.checks)


@pytest.mark.parametrize(
    "key",
    ["eval.model.gini", "eval.model.rmse", "eval.churn.ece", "eval.interval.coverage_p10_p90"],
)
def test_a_metric_missing_on_the_candidate_fails_with_its_tag_named(key: str) -> None:
    result = gate(tags(**{"eval.model.gini": "0.62", key: None}), tags())
    assert not result.passed
    assert any(f"no {key} tag" in c.reason for c in result.failures)


def test_different_test_snapshots_fail_and_say_so() -> None:
    result = gate(tags(test_snapshot="2024-07-01"), tags(test_snapshot="2024-06-01"))
    reason = next(c.reason for c in result.failures if c.name == "test_snapshot")
    assert "test snapshots differ" in reason and "2024-07-01" in reason


def test_feature_contract_gate() -> None:
    ok = gate(tags(**{"eval.model.gini": "0.62"}), tags())
    assert outcome(ok, "feature_contract") == "pass"
    other_service = ServedContract("clv_v2", NAMES)
    assert outcome(gate(tags(), None, served=other_service), "feature_contract") == "fail"
    reordered = ServedContract("clv_v1", ("recency", "frequency", "channel"))
    bad = gate(tags(), None, served=reordered)
    assert "order differs" in next(c.reason for c in bad.failures)
    missing = ServedContract("clv_v1", ("frequency", "recency"))
    assert "not served: channel" in next(
        c.reason for c in gate(tags(), None, served=missing).failures
    )
    assert outcome(gate(tags(), None, served=None), "feature_contract") == "fail"
    wrong_tag = gate(tags(feature_names_hash="0" * 16), None)
    assert outcome(wrong_tag, "feature_contract") == "fail"


def test_smoke_failure_fails() -> None:
    broken = SmokeResult(False, "does not load: FileNotFoundError", None)
    result = gate(tags(), None, smoke=broken)
    assert outcome(result, "smoke") == "fail" and outcome(result, "feature_contract") == "fail"


def test_force_allows_and_is_recorded() -> None:
    result = gate(tags(**{"eval.model.gini": "0.50"}), tags(), forced=True)
    assert not result.passed and result.allowed and result.forced
    recorded = result.tags()
    assert recorded["gate.passed"] == "false" and recorded["gate.forced"] == "true"
    assert recorded["gate.primary"].startswith("fail: gini 0.5000 vs 0.6000")
    assert result.as_dict()["forced"] is True
    assert result.summary().startswith("FORCED past failed gates: primary")
    unforced = gate(tags(**{"eval.model.gini": "0.50"}), tags())
    assert not unforced.allowed


def test_feature_names_hash_matches_trainings_definition() -> None:
    import hashlib

    assert feature_names_hash(["a", "b"]) == hashlib.sha256(b"a,b").hexdigest()[:16]


def test_unembargoed_evidence_fails_the_embargo_gate_unless_forced() -> None:
    cand = tags(
        **{
            "eval.model.gini": "0.70",
            "evaluation.embargoed": "false",
            "evaluation.reason": "history too short for a 365-day embargo",
        }
    )
    result = gate(cand, tags())
    assert not result.passed and [c.name for c in result.failures] == ["embargo"]
    assert "history too short" in result.failures[0].reason
    assert gate(cand, None).failures[0].name == "embargo"  # a first version too
    assert gate(cand, tags(), forced=True).allowed
    assert outcome(gate(tags(**{"evaluation.embargoed": None}), None), "embargo") == "fail"


def test_a_tie_with_the_champion_is_no_gain() -> None:
    lenient = RegistrySettings(min_gini_gain=0.0)
    result = evaluate_gates(
        VersionEvidence("2", tags()),
        VersionEvidence("1", tags()),
        settings=lenient,
        served=SERVED,
        smoke=SMOKE,
    )
    assert outcome(result, "primary") == "fail"
    assert "above 0" in next(c.reason for c in result.checks if c.name == "primary")


def test_the_champion_scored_on_the_candidates_rows_is_the_comparison() -> None:
    # The champion's own tags are from another snapshot; training scored it on the
    # candidate's test rows (eval.champion.*), where it is worse: the candidate passes.
    same_rows = on_rows("0.55", rmse="104.0")
    cand = tags(test_snapshot="2024-09-01", **same_rows)
    result = gate(cand, tags(**{"eval.model.gini": "0.70"}))
    assert result.passed, result.summary()
    assert "scored on the candidate's rows" in next(
        c.reason for c in result.checks if c.name == "test_snapshot"
    )
    assert "0.6000 vs 0.5500" in next(c.reason for c in result.checks if c.name == "primary")
    # Scores of another champion are not evidence against this one.
    other = gate(
        tags(test_snapshot="2024-09-01", **{**same_rows, "eval.champion.version": "7"}), tags()
    )
    assert outcome(other, "test_snapshot") == "fail"


def test_a_candidate_a_simple_baseline_beats_is_refused_unless_forced() -> None:
    # The run-rate ranks customers better than the model on the candidate's own rows.
    losing = tags(**{"eval.model.gini": "0.62", "eval.run_rate.gini": "0.63"})
    result = gate(losing, tags())
    assert outcome(result, "primary") == "pass"  # better than the champion ...
    assert outcome(result, "baselines") == "fail"  # ... but not than a rule
    assert not result.allowed
    check = next(c for c in result.checks if c.name == "baselines")
    assert "run_rate" in check.reason and "0.6300" in check.reason
    tie = gate(tags(**{"eval.model.gini": "0.62", "eval.baseline.gini": "0.62"}), tags())
    assert outcome(tie, "baselines") == "fail"  # a tie is no reason to run a model
    assert gate(losing, tags(), forced=True).allowed
    old = tags(
        **{k: None for k in ("eval.baseline.gini", "eval.last_horizon.gini", "eval.run_rate.gini")}
    )
    assert outcome(gate(old, None), "baselines") == "skip"  # versions from before the tags


def test_a_gain_within_the_noise_is_no_gain() -> None:
    # gain 0.015 >= min_gini_gain 0.01, but the bootstrap CI of the difference includes 0
    cand = tags(
        **on_rows("0.600"), **bootstrap((0.015, -0.004, 0.034)), **{"eval.model.gini": "0.615"}
    )
    outcome_, reason = check(gate(cand, tags()), "primary")
    assert outcome_ == "fail"
    assert reason == (
        "gini 0.6150 vs 0.6000: gain +0.0150, 95% CI [-0.0040, +0.0340] includes 0: "
        "within the noise (needs +0.0100 and a CI above 0)"
    )


def test_a_gain_beyond_the_noise_passes_and_states_its_interval() -> None:
    cand = tags(
        **on_rows("0.600"), **bootstrap((0.06, 0.031, 0.089)), **{"eval.model.gini": "0.66"}
    )
    result = gate(cand, tags())
    assert result.passed, result.summary()
    assert "gain +0.0600, 95% CI [+0.0310, +0.0890] above 0" in check(result, "primary")[1]


def test_a_gain_beyond_the_noise_still_needs_the_minimum_gain() -> None:
    cand = tags(
        **on_rows("0.600"), **bootstrap((0.005, 0.001, 0.009)), **{"eval.model.gini": "0.605"}
    )
    assert check(gate(cand, tags()), "primary")[0] == "fail"  # significant, but < 0.01


def test_an_identical_retrain_has_a_zero_width_interval_and_fails() -> None:
    cand = tags(**on_rows("0.600"), **bootstrap((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)))
    outcome_, reason = check(gate(cand, tags()), "primary")
    assert outcome_ == "fail" and "gain +0.0000, 95% CI [+0.0000, +0.0000] includes 0" in reason


def test_without_bootstrap_tags_the_gates_are_the_point_rules() -> None:
    # The same gain as test_a_gain_within_the_noise_is_no_gain, from a version trained before
    # the bootstrap: today's rule and reason.
    cand = tags(**on_rows("0.600"), **{"eval.model.gini": "0.615"})
    assert check(gate(cand, tags()), "primary") == (
        "pass",
        "gini 0.6150 vs 0.6000: gain +0.0150 (needs +0.0100)",
    )
    # A bootstrap against another champion (v7) is no evidence about v1: the champion's own
    # tags are compared, point rule.
    other = tags(
        **{**on_rows("0.600"), "eval.champion.version": "7"},
        **bootstrap((0.015, -0.004, 0.034)),
        **{"eval.model.gini": "0.615"},
    )
    assert check(gate(other, tags()), "primary") == (
        "pass",
        "gini 0.6150 vs 0.6000: gain +0.0150 (needs +0.0100)",
    )


def test_noise_level_zero_switches_the_margin_off() -> None:
    cand = tags(
        **on_rows("0.600"), **bootstrap((0.015, -0.004, 0.034)), **{"eval.model.gini": "0.615"}
    )
    off = RegistrySettings(min_gini_gain=0.01, noise_level=0.0)
    result = evaluate_gates(
        VersionEvidence("2", cand),
        VersionEvidence("1", tags()),
        settings=off,
        served=SERVED,
        smoke=SMOKE,
    )
    assert check(result, "primary") == (
        "pass",
        "gini 0.6150 vs 0.6000: gain +0.0150 (needs +0.0100)",
    )
    assert "CI" not in check(result, "rmse")[1]


@pytest.mark.parametrize(
    ("rmse", "ends", "expected", "says"),
    [
        ("104.0", (4.0, 1.0, 7.0), "pass", "difference +4, 95% CI [+1, +7] above 0"),
        ("108.0", (8.0, -1.5, 17.0), "fail", "difference +8, 95% CI [-1.5, +17] includes 0"),
        ("108.0", (8.0, 2.0, 14.0), "fail", "difference +8, 95% CI [+2, +14] above 0"),
    ],
)
def test_an_rmse_over_the_tolerance_fails_even_within_the_noise(
    rmse: str, ends: tuple[float, float, float], expected: str, says: str
) -> None:
    cand = tags(
        **on_rows("0.600", rmse="100.0"),
        **bootstrap((0.06, 0.031, 0.089), ends),
        **{"eval.model.gini": "0.66", "eval.model.rmse": rmse},
    )
    outcome_, reason = check(gate(cand, tags()), "rmse")
    assert outcome_ == expected and says in reason, reason
    assert reason.startswith(f"rmse {float(rmse):g} vs 100 (at most 105, +5.0%)")
    # Without the bootstrap, the point rule: 108 > 105 fails.
    point = tags(
        **on_rows("0.600", rmse="100.0"), **{"eval.model.gini": "0.66", "eval.model.rmse": rmse}
    )
    assert check(gate(point, tags()), "rmse")[0] == ("pass" if rmse == "104.0" else "fail")


def test_noise_level_is_off_or_a_confidence_level() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="noise_level must be 0"):
        RegistrySettings(noise_level=0.2)
    with pytest.raises(ValidationError, match="bootstrap_samples"):
        RegistrySettings(bootstrap_samples=10)
    assert RegistrySettings(noise_level=0.0).noise_level == 0.0
