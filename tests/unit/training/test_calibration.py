from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.isotonic import IsotonicRegression

from clv.evaluation.calibration import (
    ECE_TOLERANCE,
    CalibrationChoice,
    choose_calibration,
    expected_calibration_error,
    fit_isotonic,
    fit_platt,
    reliability_by_segment,
    reliability_table,
)
from clv.model.bundle import CARD_FILE, ClvModel, ModelCard


def sigmoid(s: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-s))


def draw(rng: np.random.Generator, truth: np.ndarray) -> np.ndarray:
    return (rng.random(truth.size) < truth).astype(float)


def step(s: np.ndarray) -> np.ndarray:
    """True churn probability a staircase in the margin: no sigmoid(a s + b) follows it."""
    return np.select([s < -1.0, s < 1.0], [0.05, 0.45], 0.55)


def test_ece_and_reliability_table_by_hand() -> None:
    y = [0, 1, 1, 1]
    p = [0.05, 0.15, 0.85, 0.95]
    table = reliability_table(y, p, n_bins=2)
    # bin 0: p 0.05, 0.15 (mean 0.1) vs rate 0.5; bin 1: p 0.85, 0.95 (mean 0.9) vs rate 1.0
    assert table["n"].tolist() == [2, 2]
    assert table["gap"].tolist() == pytest.approx([0.4, 0.1])
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.25)


def test_probability_one_falls_in_the_last_bin() -> None:
    table = reliability_table([1, 1], [1.0, 0.95], n_bins=10)
    assert table["bin"].tolist() == [9]


def test_platt_recovers_a_known_miscalibration() -> None:
    rng = np.random.default_rng(0)
    s = rng.normal(0, 2, 50_000)
    y = draw(rng, sigmoid(0.5 * s - 1.0))
    platt = fit_platt(s, y)
    assert platt.a == pytest.approx(0.5, abs=0.03) and platt.b == pytest.approx(-1.0, abs=0.05)


def test_isotonic_breakpoints_predict_as_scikit_learn_does() -> None:
    rng = np.random.default_rng(2)
    s = rng.normal(0, 2, 2_000)
    y = draw(rng, step(s))
    fresh = np.concatenate([rng.normal(0, 3, 500), [-50.0, 50.0]])  # beyond the fitted range
    reference = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(s, y)
    np.testing.assert_allclose(fit_isotonic(s, y).apply(fresh), reference.predict(fresh))


def test_isotonic_chosen_for_a_staircase_and_lowers_ece_on_a_fresh_sample() -> None:
    rng = np.random.default_rng(3)
    s = rng.normal(0, 2, 20_000)
    y = draw(rng, step(s))
    choice = choose_calibration(s, y, seed=0)
    assert choice.method == "isotonic" and choice.isotonic is not None and choice.platt is None
    ece = {m: score.ece for m, score in choice.candidates.items()}
    assert ece["isotonic"] < ece["platt"] - ECE_TOLERANCE
    assert ece["isotonic"] < ece["raw"] - ECE_TOLERANCE

    s_new = rng.normal(0, 2, 20_000)
    y_new = draw(rng, step(s_new))
    served = expected_calibration_error(y_new, choice.apply(s_new))
    platt = expected_calibration_error(y_new, fit_platt(s, y).apply(s_new))
    assert served < 0.02
    assert served < platt - ECE_TOLERANCE
    assert served < expected_calibration_error(y_new, sigmoid(s_new)) - ECE_TOLERANCE


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_raw_kept_when_already_calibrated(seed: int) -> None:
    rng = np.random.default_rng(10 + seed)
    s = rng.normal(0, 2, 20_000)
    choice = choose_calibration(s, draw(rng, sigmoid(s)), seed=seed)
    assert choice.method == "raw" and choice.calibrator is None
    assert choice.candidates["raw"].ece < 0.02
    np.testing.assert_allclose(choice.apply(s), sigmoid(s))


def test_platt_chosen_for_a_sigmoid_miscalibration() -> None:
    rng = np.random.default_rng(1)
    s = rng.normal(0, 2, 20_000)
    choice = choose_calibration(s, draw(rng, sigmoid(0.5 * s - 1.0)), seed=0)
    assert choice.method == "platt" and choice.platt is not None
    assert choice.platt.a == pytest.approx(0.5, abs=0.05)
    assert choice.candidates["platt"].ece < choice.candidates["raw"].ece - ECE_TOLERANCE
    assert "platt calibration chosen" in choice.reason


def test_the_simplest_candidate_within_the_tolerance_wins() -> None:
    rng = np.random.default_rng(3)
    s = rng.normal(0, 2, 5_000)
    y = draw(rng, step(s))
    assert choose_calibration(s, y, seed=0).method == "isotonic"
    # every candidate within a tolerance of 1 of the best: the simplest, raw, is kept
    assert choose_calibration(s, y, seed=0, tolerance=1.0).method == "raw"


def test_evidence_holds_every_candidate_and_the_method() -> None:
    rng = np.random.default_rng(4)
    s = rng.normal(0, 2, 4_000)
    choice = choose_calibration(s, draw(rng, step(s)), seed=0)
    evidence = choice.as_evidence()
    assert evidence["method"] == choice.method and evidence["reason"] == choice.reason
    for m in ("raw", "platt", "isotonic"):
        assert evidence[f"{m}.ece"] == choice.candidates[m].ece
        assert 0.0 <= float(evidence[f"{m}.brier"]) <= 1.0
    assert choice.isotonic is not None
    assert evidence["isotonic.breakpoints"] == len(choice.isotonic.x)


def test_too_few_rows_keep_raw_probabilities_without_evidence() -> None:
    choice = choose_calibration(np.zeros(10), np.r_[np.zeros(5), np.ones(5)], seed=0)
    assert choice == CalibrationChoice.uncalibrated("too few validation rows")
    assert choice.method == "raw" and choice.candidates == {}
    assert set(choice.as_evidence()) == {"method", "reason", "tolerance"}


def test_reliability_by_segment_by_hand() -> None:
    y = [0, 1, 1, 1, 0]
    p = [0.05, 0.15, 0.85, 0.95, 0.5]
    table = reliability_by_segment(y, p, ["a", "a", "b", "b", None])
    # a: bins 0 and 1, gaps 0.05 and 0.85; b: bins 8 and 9, gaps 0.15 and 0.05; missing: 0.5
    assert table["segment"].iloc[:2].tolist() == ["a", "b"] and pd.isna(table["segment"].iloc[2])
    assert table["rows"].tolist() == [2, 2, 1]
    assert table["mean_predicted"].tolist() == pytest.approx([0.1, 0.9, 0.5])
    assert table["observed_rate"].tolist() == pytest.approx([0.5, 1.0, 0.0])
    assert table["ece"].tolist() == pytest.approx([0.45, 0.1, 0.5])


def test_reliability_by_segment_keeps_tercile_order() -> None:
    value = np.array([30.0, 10.0, 20.0, 60.0, 50.0, 40.0])
    terciles = pd.qcut(value, 3, labels=["low", "mid", "high"])
    table = reliability_by_segment([0, 1, 0, 1, 1, 0], np.full(6, 0.5), terciles)
    assert table["segment"].tolist() == ["low", "mid", "high"]  # category order, not a-z
    assert table["observed_rate"].tolist() == pytest.approx([0.5, 0.0, 1.0])


def test_reliability_by_segment_refuses_unequal_lengths() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        reliability_by_segment([0, 1], [0.5, 0.5], ["a"])


def _bundle(card: ModelCard) -> tuple[ClvModel, pd.DataFrame, np.ndarray]:
    """A one-feature bundle, the frame it scores and its churn booster's margins there."""
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"spend": rng.uniform(0, 100, 300)})
    x = frame.to_numpy(np.float32)
    value = xgb.train({"objective": "reg:tweedie", "nthread": 1}, xgb.DMatrix(x, frame["spend"]), 5)
    label = draw(rng, np.where(frame["spend"] < 30, 0.8, 0.2))
    churn = xgb.train({"objective": "binary:logistic", "nthread": 1}, xgb.DMatrix(x, label), 8)
    margin = np.asarray(churn.inplace_predict(x, predict_type="margin"), dtype=np.float64)
    return ClvModel(card, value=value, churn=churn), frame, margin


def test_card_round_trip_with_isotonic_breakpoints(tmp_path: Path) -> None:
    plain = ModelCard(feature_service="clv_v1", feature_names=["spend"])
    model, frame, margin = _bundle(plain)
    iso = fit_isotonic(margin, (frame["spend"] < 30).astype(float))
    card = ModelCard(
        feature_service="clv_v1", feature_names=["spend"], churn_isotonic=iso.as_dict()
    )
    calibrated = ClvModel(card, value=model.value, churn=model.churn)
    loaded = ClvModel.load(calibrated.save(tmp_path / "bundle"))
    assert loaded.card == card
    got = loaded.predict(frame)["churn_probability"].to_numpy()
    np.testing.assert_allclose(got, iso.apply(margin))
    np.testing.assert_allclose(got, calibrated.predict(frame)["churn_probability"])


def test_a_bundle_written_before_isotonic_loads_and_predicts_as_before(tmp_path: Path) -> None:
    card = ModelCard(
        feature_service="clv_v1", feature_names=["spend"], churn_calibration={"a": 0.8, "b": 0.3}
    )
    model, frame, margin = _bundle(card)
    directory = model.save(tmp_path / "old")
    written = json.loads((directory / CARD_FILE).read_text())
    del written["churn_isotonic"]  # as the card was written before the field existed
    (directory / CARD_FILE).write_text(json.dumps(written))
    loaded = ClvModel.load(directory)
    expected = 1.0 / (1.0 + np.exp(-(0.8 * margin + 0.3)))
    assert loaded.card.churn_isotonic is None
    np.testing.assert_array_equal(loaded.predict(frame)["churn_probability"], expected)


def test_a_card_with_both_calibrations_is_refused() -> None:
    card = ModelCard(
        feature_service="clv_v1",
        feature_names=["spend"],
        churn_calibration={"a": 1.0, "b": 0.0},
        churn_isotonic={"x": [0.0, 1.0], "y": [0.2, 0.8]},
    )
    with pytest.raises(ValueError, match="both Platt and isotonic"):
        ClvModel(card, value=xgb.Booster())
