from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clv.evaluation.metrics import value_metrics
from clv.model.baseline import OFFSET_FIT_ROWS, baseline_clv, fit_baseline
from clv.model.naive import mean_discount, naive_predictions
from clv.monitoring.backtest import (
    Cohort,
    choose_cohort,
    churn_backtest,
    compare_with_baselines,
    comparison_sentence,
    matured_snapshot,
    value_backtest,
)
from clv.monitoring.baselines import BASELINES, BaselinePredictions, cohort_baselines
from clv.monitoring.quality import check_quality
from clv.training.labels import make_labels, past_margins

SNAPS = [pd.Timestamp(f"2024-{m:02d}-01", tz="UTC") for m in range(1, 13)]


def test_matured_snapshot_is_the_newest_whose_window_closed() -> None:
    as_of = pd.Timestamp("2024-12-01", tz="UTC")
    assert matured_snapshot(SNAPS, as_of=as_of, window_days=90) == pd.Timestamp(
        "2024-09-01", tz="UTC"
    )  # Sep 1 + 90 days = Nov 30 <= Dec 1; Oct 1 + 90 = Dec 30 is not
    assert matured_snapshot(SNAPS, as_of=as_of, window_days=400) is None


def test_cohort_says_whether_the_model_was_fitted_on_it() -> None:
    as_of = pd.Timestamp("2024-12-01", tz="UTC")
    trained = pd.Timestamp("2024-06-01", tz="UTC")
    after = choose_cohort("churn", SNAPS, as_of=as_of, window_days=90, trained_through=trained)
    assert after is not None and not after.in_training
    late = pd.Timestamp("2024-10-01", tz="UTC")
    inside = choose_cohort("churn", SNAPS, as_of=as_of, window_days=90, trained_through=late)
    assert inside is not None and inside.in_training
    unknown = choose_cohort("churn", SNAPS, as_of=as_of, window_days=90, trained_through=None)
    assert unknown is not None and unknown.in_training  # never overstate independence


def test_backtests_by_hand() -> None:
    cohort = choose_cohort("value", SNAPS, as_of=SNAPS[-1], window_days=30, trained_through=None)
    assert cohort is not None
    y = np.array([0.0, 10.0, 20.0, 30.0, np.nan])
    pred = np.array([1.0, 12.0, 18.0, 30.0, 5.0])
    v = value_backtest(cohort, clv_label=y, clv=pred, clv_p10=pred - 5, clv_p90=pred + 1)
    assert v.n == 4  # the unlabelled row is left out
    assert v.gini == pytest.approx(1.0)  # perfect ranking
    assert v.bias_pct == pytest.approx(100 * (61 - 60) / 60)
    assert v.coverage == pytest.approx(0.75)  # 30 in [25, 31], 20 not in [13, 19]...
    c = churn_backtest(
        cohort,
        churn_label=np.array([1.0, 0.0, 1.0, 0.0]),
        churn_probability=np.array([0.9, 0.1, 0.9, 0.1]),
        window_value=np.array([0.0, 5.0, 0.0, 9.0]),
        clv=np.array([1.0, 2.0, 0.5, 3.0]),
    )
    assert c.ece == pytest.approx(0.1) and c.brier == pytest.approx(0.01)
    assert c.churn_rate == 0.5 and c.early_gini == pytest.approx(1.0)


def test_quality_finds_missing_rise_new_levels_and_out_of_range() -> None:
    ref = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "plan": ["free", "basic", "free", None]})
    cur = pd.DataFrame({"x": [np.nan, np.nan, 2.0, 9.0], "plan": ["free", "gold", "gold", "free"]})
    got = check_quality(
        ref,
        cur,
        numerical=["x"],
        categorical=["plan"],
        missing_share_warn=0.1,
        out_of_range_warn=0.05,
    )
    x, plan = got.columns
    assert (x.missing_reference, x.missing_current, x.out_of_range) == (0.0, 0.5, 0.5)
    assert plan.new_categories == ("gold",) and plan.new_category_share == 0.5
    assert got.issues == (
        "50.0% of x values lie outside the reference range",
        "x is missing on 50.0% of rows (reference 0.0%)",
        "plan has 1 new category (gold) on 50.0% of rows",
    )


# --------------------------------------------------------------- baselines on the value cohort

T0 = pd.Timestamp("2024-07-01", tz="UTC")
H, RATE, MARGIN = 90, 0.1, 0.3


def _tx(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    ids, days, amounts = zip(*rows, strict=True)
    return pd.DataFrame(
        {"customer_id": ids, "ts": pd.to_datetime(days, utc=True), "amount": amounts}
    )


TX = _tx(
    [
        ("c1", "2024-01-10", 50.0),
        ("c1", "2024-03-01", 40.0),
        ("c1", "2024-06-21", 100.0),  # 10 days before t: inside [t - H, t)
        ("c1", "2024-07-15", 60.0),  # after t: the label's
        ("c2", "2023-12-01", 20.0),
        ("c2", "2024-05-01", 30.0),
        ("c2", "2024-08-20", 30.0),
        ("c3", "2024-02-01", 80.0),
        ("c3", "2024-02-15", 60.0),
        ("c3", "2024-04-01", 90.0),
        ("c3", "2024-06-01", 30.0),
        ("c3", "2024-08-01", 50.0),
        ("c3", "2024-09-01", 40.0),
        ("c4", "2024-06-15", 25.0),
        ("c4", "2024-07-20", 10.0),
        ("c5", "2024-07-05", 15.0),  # nothing before t: both naive rules say 0
        ("c6", "2023-08-01", 200.0),
        ("c6", "2023-09-01", 100.0),
    ]
)
# The snapshot's clv_v1 RFM features of those histories (days; c5 signed up, never bought).
FRAME = pd.DataFrame(
    {
        "customer_id": ["c1", "c2", "c3", "c4", "c5", "c6"],
        "event_timestamp": T0,
        "frequency": [2.0, 1.0, 3.0, 0.0, np.nan, 1.0],
        "recency": [163.0, 152.0, 121.0, 0.0, np.nan, 31.0],
        "T": [173.0, 213.0, 151.0, 16.0, np.nan, 335.0],
        "monetary_value": [70.0, 30.0, 60.0, np.nan, np.nan, 100.0],
        "tenure_days": [180.0, 220.0, 160.0, 16.0, 30.0, 340.0],
    }
)


def _value_cohort() -> Cohort:
    return Cohort("value", T0, H, in_training=False)


def test_every_baseline_is_scored_on_the_champions_rows_as_training_computes_it() -> None:
    got = cohort_baselines(
        FRAME, TX, horizon_days=H, annual_discount_rate=RATE, margin_rate=MARGIN, seed=7
    )
    # Independently, with the training functions on the same rows.
    fit = fit_baseline(FRAME, margin_rate=MARGIN, max_rows=OFFSET_FIT_ROWS, seed=7)
    past = past_margins(
        TX, FRAME[["customer_id", "event_timestamp"]], horizon_days=H, margin_rate=MARGIN
    )
    want = {
        "baseline": baseline_clv(fit, FRAME, horizon_days=H, annual_discount_rate=RATE),
        **naive_predictions(past, horizon_days=H, annual_discount_rate=RATE),
    }
    assert got.unavailable == {}
    for name in BASELINES:
        np.testing.assert_allclose(got.predictions[name], want[name], rtol=1e-12)
    # By hand: c1's 100 ten days before t is the last horizon's margin, 30, spread over H.
    assert got.predictions["last_horizon"][0] == pytest.approx(30.0 * mean_discount(H, RATE))
    assert got.predictions["last_horizon"][4] == 0.0 and got.predictions["run_rate"][4] == 0.0

    labels = make_labels(
        TX,
        FRAME,
        horizon_days=H,
        churn_window_days=H,
        annual_discount_rate=RATE,
        margin_rate=MARGIN,
        data_end=pd.Timestamp("2024-12-31", tz="UTC"),
    )
    y = labels["clv_label"].to_numpy(np.float64)
    y[1] = np.nan  # an unlabelled row is left out for every predictor alike
    champion = np.array([20.0, 5.0, 30.0, 2.0, 1.0, 0.5])
    v = value_backtest(
        _value_cohort(),
        clv_label=y,
        clv=champion,
        clv_p10=champion * 0.5,
        clv_p90=champion * 2.0,
        baselines=got,
    )
    ok = np.isfinite(y)
    assert [b.predictor for b in v.baselines] == list(BASELINES)
    for b in v.baselines:
        m = value_metrics(y[ok], want[b.predictor][ok])
        assert b.reason is None and b.n == 5
        assert (b.gini, b.rmse, b.mae, b.bias_pct) == pytest.approx(
            (m.gini, m.rmse, m.mae, m.bias_pct)
        )
    mine = value_metrics(y[ok], champion[ok])
    assert (v.champion.gini, v.champion.rmse, v.mae) == pytest.approx(
        (mine.gini, mine.rmse, mine.mae)
    )


def test_a_failed_btyd_fit_is_a_row_with_its_reason_and_the_rules_go_on() -> None:
    few = FRAME[FRAME["customer_id"].isin(["c1", "c2", "c4", "c5"])].reset_index(drop=True)
    with pytest.raises(ValueError, match="at least 3 customers with repeat purchases"):
        fit_baseline(few, margin_rate=MARGIN)  # only c1 and c2 bought twice
    got = cohort_baselines(
        few, TX, horizon_days=H, annual_discount_rate=RATE, margin_rate=MARGIN, seed=0
    )
    assert "baseline" not in got.predictions
    assert "fit failed" in got.unavailable["baseline"]
    y = np.array([60.0, 30.0, 10.0, 15.0]) * MARGIN
    pred = np.array([20.0, 9.0, 3.0, 4.0])
    v = value_backtest(
        _value_cohort(), clv_label=y, clv=pred, clv_p10=pred, clv_p90=pred, baselines=got
    )
    by = {b.predictor: b for b in v.baselines}
    assert by["baseline"].reason is not None and "repeat purchases" in by["baseline"].reason
    assert np.isnan(by["baseline"].gini) and np.isnan(by["baseline"].rmse)
    assert by["run_rate"].reason is None and np.isfinite(by["run_rate"].rmse)
    # The comparison goes on without it: last_horizon is the best remaining baseline.
    gini, err = compare_with_baselines(v)
    assert gini.best is by["last_horizon"] and err.best is by["last_horizon"]
    # y by last_horizon's order 18, 9, 3, 4.5 of 34.5: (109.5 - 86.25) / (111 - 86.25)
    assert gini.best_value == pytest.approx(23.25 / 24.75)
    assert gini.beats is True and err.beats is True  # the champion ranks perfectly here


def test_missing_rfm_features_say_so_for_the_btyd_row() -> None:
    got = cohort_baselines(
        FRAME.drop(columns=["T"]),
        TX,
        horizon_days=H,
        annual_discount_rate=RATE,
        margin_rate=MARGIN,
        seed=0,
    )
    assert got.unavailable == {"baseline": "not scored: the features lack T"}
    assert set(got.predictions) == {"last_horizon", "run_rate"}


def test_comparison_picks_the_best_baseline_per_metric_by_hand() -> None:
    y = np.array([0.0, 10.0, 20.0, 30.0])
    champion = np.array([0.0, 1.0, 2.0, 3.0])  # perfect ranking, errors 0, 9, 18, 27
    given = BaselinePredictions(
        predictions={
            "run_rate": np.array([10.0, 0.0, 20.0, 30.0]),  # Gini 0.8, RMSE sqrt(50)
            "last_horizon": np.zeros(4),  # Gini -1 (ties in input order), RMSE sqrt(350)
        },
        unavailable={"baseline": "not scored: the BG/NBD + Gamma-Gamma fit failed (x)"},
    )
    v = value_backtest(
        _value_cohort(),
        clv_label=y,
        clv=champion,
        clv_p10=champion,
        clv_p90=champion,
        baselines=given,
    )
    assert v.champion.gini == pytest.approx(1.0)
    assert v.champion.rmse == pytest.approx((1134 / 4) ** 0.5)
    by = {b.predictor: b for b in v.baselines}
    assert by["run_rate"].gini == pytest.approx(0.8)
    assert by["run_rate"].rmse == pytest.approx(50**0.5)
    assert by["last_horizon"].gini == pytest.approx(-1.0)
    gini, err = compare_with_baselines(v)
    assert gini.best is by["run_rate"] and gini.beats is True
    assert err.best is by["run_rate"] and err.beats is False
    assert comparison_sentence(v) == (
        "On the matured cohort the champion beats the best baseline on normalized Gini "
        "(1.000 vs 0.800 for run_rate) and does not beat the best baseline on RMSE "
        "(16.84 vs 7.07 for run_rate)."
    )


def test_a_baseline_with_non_finite_predictions_is_not_scored_and_says_why() -> None:
    y = np.array([0.0, 10.0, 20.0, 30.0])
    given = BaselinePredictions(predictions={"run_rate": np.array([1.0, np.nan, 2.0, 3.0])})
    v = value_backtest(_value_cohort(), clv_label=y, clv=y, clv_p10=y, clv_p90=y, baselines=given)
    by = {b.predictor: b for b in v.baselines}
    assert by["run_rate"].reason == "not scored: 1 of 4 predictions are not finite"
    assert by["last_horizon"].reason == "not scored"  # not given at all
    assert compare_with_baselines(v)[0].best is None
    assert "cannot be compared on normalized Gini (no baseline scored)" in comparison_sentence(v)
