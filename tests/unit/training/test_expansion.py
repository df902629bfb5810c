"""The expansion model's labels (and their embargo), the MRR path, and one behavioural check on
a seeded SaaS world."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clv.features.subscription_features import subscription_features
from clv.inputs.saas import generate_saas
from clv.model.subscription import RetentionForecast, mrr_path, value_frame
from clv.training.expansion import expansion_gini, expansion_labels, expansion_rows, fit_expansion


def _ts(*values: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), utc=True, format="ISO8601"))


def _world() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """S1 (C1): monthly, 2 seats at 24.0 from 2024-01-15, seats to 4 (48.0) on 2024-03-15 and
    to 8 (96.0) on 2024-06-01; S2 (C2): monthly at 12.0 from 2024-01-15, ended 2024-04-10."""
    subs = pd.DataFrame(
        {
            "customer_id": ["C1", "C2"],
            "subscription_id": ["S1", "S2"],
            "plan": ["starter", "starter"],
            "seats": [2, 1],
            "mrr": [24.0, 12.0],
            "started_at": _ts("2024-01-15", "2024-01-15"),
            "ended_at": _ts("NaT", "2024-04-10"),
            "billing_period": ["month", "month"],
            "trial": [False, False],
        }
    )
    changes = pd.DataFrame(
        {
            "subscription_id": ["S1", "S1"],
            "ts": _ts("2024-03-15", "2024-06-01"),
            "plan": ["starter", "starter"],
            "seats": [4, 8],
            "mrr": [48.0, 96.0],
        }
    )
    s1 = [f"2024-0{m}-15" for m in range(1, 7)]
    s2 = [f"2024-0{m}-15" for m in range(1, 4)]
    inv = pd.DataFrame(
        {
            "customer_id": ["C1"] * 6 + ["C2"] * 3,
            "ts": _ts(*s1, *s2),
            "amount": [24.0, 24.0, 48.0, 48.0, 48.0, 48.0, 12.0, 12.0, 12.0],
            "margin": [20.0] * 9,
            "order_id": [f"S1-00{i}" for i in range(1, 7)] + [f"S2-00{i}" for i in range(1, 4)],
            "channel": ["subscription"] * 9,
        }
    )
    events = pd.DataFrame({"customer_id": ["C1"], "ts": _ts("2024-02-20"), "event_type": ["login"]})
    return subs, changes, events, inv


def test_labels_keep_survivors_with_a_positive_mrr() -> None:
    start = pd.DataFrame({"mrr": [10.0, 20.0, 30.0, 0.0]}, index=["A", "B", "C", "D"])
    later = pd.DataFrame({"mrr": [15.0, 20.0, 5.0]}, index=["A", "B", "D"])  # C churned
    labels = expansion_labels(start, later)
    assert list(labels.index) == ["A", "B"]  # C gone, D had no MRR to grow from
    assert labels.loc["A", "mrr_ratio"] == pytest.approx(1.5)
    assert labels.loc["A", "expanded"] == 1
    assert labels.loc["B", "mrr_ratio"] == pytest.approx(1.0)
    assert labels.loc["B", "expanded"] == 0


def test_rows_read_the_label_from_rows_before_origin_plus_three_months() -> None:
    subs, changes, events, inv = _world()
    rows = expansion_rows(
        subs,
        changes,
        events,
        inv,
        origins=[pd.Timestamp("2024-03-01", tz="UTC")],
        known_until=pd.Timestamp("2024-06-01", tz="UTC"),
    )
    # S2 ended before 2024-06-01: no row; S1 went 24 -> 48 by then, the 96 at 06-01 not seen
    assert list(rows["mrr"]) == [24.0]
    assert rows["mrr_ratio"].iloc[0] == pytest.approx(2.0)
    assert rows["expanded"].iloc[0] == 1


def test_rows_refuse_a_label_window_past_known_until() -> None:
    subs, changes, events, inv = _world()
    with pytest.raises(ValueError, match="at or before known_until"):
        expansion_rows(
            subs,
            changes,
            events,
            inv,
            origins=[pd.Timestamp("2024-03-01", tz="UTC")],
            known_until=pd.Timestamp("2024-05-31", tz="UTC"),
        )


def test_mrr_path_compounds_then_holds() -> None:
    held = mrr_path([100.0, 50.0], [1.1, 1.0], horizon_months=5, hold_after=3)
    np.testing.assert_allclose(held[0], [100.0, 110.0, 121.0, 133.1, 133.1])
    np.testing.assert_allclose(held[1], [50.0] * 5)
    free = mrr_path([100.0], [1.1], horizon_months=5, hold_after=None)
    assert free[0, 4] == pytest.approx(146.41)


def test_value_frame_takes_an_mrr_path() -> None:
    survival = np.array([[1.0, 0.5, 0.5, 0.0]])  # H = 3
    fc = RetentionForecast(pd.Index(["S1"]), survival, np.array([0.5]))
    path = mrr_path([100.0], [1.1], horizon_months=3, hold_after=None)
    value = value_frame(fc, path, margin=1.0, monthly_discount=0.0)
    assert value["clv"].iloc[0] == pytest.approx(100.0 + 0.5 * 110.0 + 0.5 * 121.0)
    assert value["clv_p90"].iloc[0] == pytest.approx(331.0)  # L = 3: every month paid


@pytest.mark.slow
def test_expansion_ranks_next_quarter_upgrades_on_a_development_world() -> None:
    """dev seed 111 (SAAS_DEVELOPMENT's s111 at 1,500 accounts): P(expansion) at end - 3
    months ranks the expansions seen by the end with a Gini > 0.2 (random: about 0)."""
    data = generate_saas(customers=1_500, months=24, seed=111)
    tables = (data.subscriptions, data.changes, data.events, data.transactions)
    at = data.end - pd.DateOffset(months=3)
    origins = [at - pd.DateOffset(months=m) for m in range(3, 16)]
    model = fit_expansion(expansion_rows(*tables, origins=origins, known_until=at))
    feats = subscription_features(*tables[:3], as_of=at, transactions=data.transactions)
    later = subscription_features(*tables[:3], as_of=data.end, transactions=data.transactions)
    labels = expansion_labels(feats, later)
    fc = model.predict(feats.loc[labels.index])
    assert labels["expanded"].sum() >= 30
    assert expansion_gini(labels["expanded"], fc.p_expansion) > 0.2
    realized = float((feats.loc[labels.index, "mrr"] * labels["mrr_ratio"]).sum())
    predicted = float((feats.loc[labels.index, "mrr"] * fc.quarter_growth).sum())
    assert abs(predicted / realized - 1.0) < 0.04  # here: -1.3%; held MRR: -6.7%
