"""Cohorts and channels on small logs whose answers are worked out by hand (clv.decisions)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clv.decisions.channels import channel_table, ranked
from clv.decisions.cohorts import adopters, cohort_table, largest_drop, signup_months
from clv.decisions.values import MONTH_DAYS, Z90, customers_at, predicted_sum, realized_by_month

AS_OF = pd.Timestamp("2024-06-01", tz="UTC")


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


TX = pd.DataFrame(
    {
        "customer_id": ["A", "A", "B", "C", "C", "A"],
        "ts": [
            ts("2024-01-10"),
            ts("2024-02-15"),
            ts("2024-01-25"),
            ts("2024-02-05"),
            ts("2024-05-20"),
            ts("2024-07-01"),
        ],  # the last one is after as_of
        "amount": [100.0, 50.0, 80.0, 40.0, -10.0, 999.0],
        "margin": [30.0, np.nan, 20.0, 10.0, -3.0, 300.0],
    }
)
CUSTOMERS = pd.DataFrame(
    {
        "customer_id": ["A", "B", "B"],
        "signup_ts": [ts("2024-01-10"), ts("2024-01-20"), ts("2024-01-20")],
        "acquisition_channel": ["web", "app", "web"],  # B's first version says app
        "valid_from": [pd.NaT, ts("2024-01-20"), ts("2024-03-01")],
    }
)
SCORES = pd.DataFrame(
    {
        "customer_id": ["A", "B", "C"],
        "clv": [60.0, 10.0, 30.0],
        "clv_p10": [40.0, 0.0, 10.0],
        "clv_p90": [80.0, 20.0, 50.0],
    }
)


def values(rate: float = 0.0, scores: pd.DataFrame | None = SCORES):  # type: ignore[no-untyped-def]
    return customers_at(
        TX, CUSTOMERS, scores, as_of=AS_OF, margin_rate=0.2, annual_discount_rate=rate
    )


def test_customers_are_acquired_at_signup_else_first_purchase() -> None:
    v = values()
    f = v.frame.set_index("customer_id")
    assert f.loc["A", "acquired_at"] == ts("2024-01-10")
    assert f.loc["B", "acquired_at"] == ts("2024-01-20")
    assert f.loc["C", "acquired_at"] == ts("2024-02-05")  # no customers row: first purchase
    assert (f.loc["A", "channel"], f.loc["B", "channel"]) == ("web", "app")  # first versions
    assert pd.isna(f.loc["C", "channel"])
    # age in whole months of 365.25 / 12 days
    assert f.loc["A", "age_months"] == int((AS_OF - ts("2024-01-10")).days // MONTH_DAYS)
    # margins: the margin column, else amount x margin_rate; nothing after as_of
    assert sorted(v.margins["margin"]) == [-3.0, 10.0, 10.0, 20.0, 30.0]


def test_the_triangle_averages_over_the_customers_observed_each_month() -> None:
    v = values()
    t = realized_by_month(v, pd.Index(["A", "B"])).set_index("month")
    # A: month 0 margin 30, month 1 (Feb 15 is 36 days in) 10; B: month 0 margin 20
    assert t.loc[0, "cumulative_margin"] == pytest.approx((30 + 20) / 2)
    assert t.loc[1, "cumulative_margin"] == pytest.approx((40 + 20) / 2)
    assert t.loc[0, "active_share"] == 1.0 and t.loc[1, "active_share"] == 0.5
    assert t.loc[1, "arpu"] == pytest.approx(50.0 / 2)
    assert (t["observed"] == 2).all()
    # C is younger: its triangle stops at the months it has lived through
    c = realized_by_month(v, pd.Index(["C"]))
    assert len(c) == int((AS_OF - ts("2024-02-05")).days // MONTH_DAYS)
    assert c["cumulative_margin"].iloc[-1] == pytest.approx(10.0)  # the May refund: month 3
    assert v.margins.loc[v.margins["customer_id"] == "C", "age_month"].tolist() == [0, 3]


def test_discounting_runs_from_acquisition() -> None:
    v = values(rate=0.10)
    a = v.margins.loc[v.margins["customer_id"] == "A"].sort_values("ts")
    years = (ts("2024-02-15") - ts("2024-01-10")).days / 365.0
    assert a["discounted"].tolist() == pytest.approx([30.0, 10.0 / 1.1**years])


def test_a_sum_of_predictions_has_the_spread_of_independent_customers() -> None:
    got = predicted_sum(SCORES)
    sd = np.array([40.0, 20.0, 40.0]) / (2 * Z90)
    assert got.value == 100.0
    assert got.p90 - got.value == pytest.approx(Z90 * np.sqrt((sd**2).sum()))
    assert got.value - got.p10 == pytest.approx(got.p90 - got.value)


def test_signup_cohorts_and_a_fall_below_the_last_runs_p10_is_flagged() -> None:
    v = values()
    groups = signup_months(v)
    assert {k: sorted(ix) for k, ix in groups.items()} == {"2024-01": ["A", "B"], "2024-02": ["C"]}
    first = cohort_table(v, groups, kind="signup_month")
    jan = first[0]
    assert jan.customers == 2
    assert jan.realized_per_customer == pytest.approx((40.0 + 20.0) / 2)
    assert jan.predicted.value == 70.0
    assert jan.outlook_per_customer.value == pytest.approx(30.0 + 35.0)
    previous = {c.name: c.outlook_per_customer.as_dict() for c in first}
    again = cohort_table(v, groups, kind="signup_month", previous=previous)
    assert [c.flagged for c in again] == [False, False] and again[0].change == 0.0
    lower = values(
        scores=SCORES.assign(
            clv=[10.0, 0.0, 30.0], clv_p10=[5.0, 0.0, 10.0], clv_p90=[15.0, 0.0, 50.0]
        )
    )
    fell = cohort_table(lower, signup_months(lower), kind="signup_month", previous=previous)
    assert [c.flagged for c in fell] == [True, False]
    assert largest_drop(fell) is fell[0]
    assert fell[0].change == pytest.approx((30.0 + 5.0) / 65.0 - 1.0)


def test_adoption_cohorts_split_by_early_use() -> None:
    v = values()
    events = pd.DataFrame(
        {
            "customer_id": ["A", "B", "C"],
            "ts": [ts("2024-01-15"), ts("2024-03-01"), ts("2024-02-06")],
            "event_type": ["feature_use"] * 3,
        }
    )
    groups = adopters(v, events, event_type="feature_use", days=14)
    assert {k: sorted(ix) for k, ix in groups.items()} == {
        "feature_use within 14 days": ["A", "C"],  # B used it 41 days in
        "no feature_use within 14 days": ["B"],
    }


def test_cac_clv_and_payback_by_channel_and_month() -> None:
    v = values()
    costs = pd.DataFrame(
        {
            "channel": ["web", "app", "app"],
            "month": [ts("2024-01-01"), ts("2024-01-01"), ts("2024-02-01")],
            "spend": [30.0, 400.0, 100.0],
            "new_customers": [np.nan, 2.0, 1.0],
        }
    )
    months, totals = channel_table(v, costs, horizon_days=365)
    by = {(r.channel, r.month.strftime("%Y-%m")): r for r in months}  # type: ignore[union-attr]
    web = by[("web", "2024-01")]
    assert (web.new_customers, web.counted, web.cac) == (1, "signups", 30.0)  # A only
    assert web.clv is not None and web.clv.value == pytest.approx(40.0 + 60.0)
    assert web.payback == "realized" and web.payback_months == 1  # 30 realized in month 0
    app = by[("app", "2024-01")]
    assert (app.new_customers, app.counted, app.cac) == (2, "table", 200.0)
    assert app.clv is not None and app.clv.value == pytest.approx(20.0 + 10.0)  # B only
    assert app.clv_cac is not None and app.clv_cac.p90 < 1.0 and app.flagged
    assert app.payback is None  # 20 realized + 10 predicted never reach 200
    none = by[("app", "2024-02")]
    assert none.clv is None and not none.flagged  # nobody acquired by app in February
    assert [t.channel for t in ranked(totals)] == ["web", "app"]
    app_total = next(t for t in totals if t.channel == "app")
    assert (app_total.spend, app_total.new_customers, app_total.cac) == (500.0, 3, 500.0 / 3)


def test_a_projected_payback_spreads_the_prediction_over_the_horizon() -> None:
    v = values()
    costs = pd.DataFrame({"channel": ["web"], "month": [ts("2024-01-05")], "spend": [60.0]})
    months, _ = channel_table(v, costs, horizon_days=365)
    row = months[0]
    # A: 40 realized to date, 60 predicted over 12 months: 5 a month, 20 more needed -> 4 months
    assert (row.cac, row.payback) == (60.0, "projected")
    age = int(v.frame.set_index("customer_id").loc["A", "age_months"])
    assert row.payback_months == age + 4
