"""Point-in-time subscription features on tiny hand-computed frames, and their lack of leakage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clv.core.time import add_months
from clv.features.subscription_features import subscription_features
from clv.model.subscription import FEATURES
from clv.training.survival import lifetimes, person_periods

AS_OF = pd.Timestamp("2024-07-01", tz="UTC")


def _ts(*values: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), utc=True, format="ISO8601"))


def _world() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """S1: monthly team sub of C1 (trial 2024-01-01..15, invoices from 2024-01-15), one
    upgrade and one seat change; S0: C1's earlier sub, ended 2023-12-01; S2: annual starter of
    C2 since 2023-03-10 (renewed once); S3: C3 ended 2024-05-01 (not active); S4: C4 in trial."""
    subs = pd.DataFrame(
        {
            "customer_id": ["C1", "C1", "C2", "C3", "C4"],
            "subscription_id": ["S0", "S1", "S2", "S3", "S4"],
            "plan": ["starter", "starter", "starter", "team", "team"],
            "seats": [1, 2, 3, 1, 2],
            "mrr": [12.0, 24.0, 30.6, 25.0, 50.0],
            "started_at": _ts("2023-06-01", "2024-01-01", "2023-03-10", "2024-01-01", "2024-06-25"),
            "ended_at": _ts("2023-12-01", "NaT", "NaT", "2024-05-01", "NaT"),
            "billing_period": ["month", "month", "year", "month", "month"],
            "trial": [False, True, False, False, True],
        }
    )
    changes = pd.DataFrame(
        {
            "subscription_id": ["S1", "S1"],
            "ts": _ts("2024-03-15", "2024-05-15"),
            "plan": ["team", "team"],
            "seats": [2, 4],
            "mrr": [50.0, 100.0],
        }
    )
    inv_s1 = [f"2024-0{m}-15" for m in range(1, 7)]  # Jan..Jun 2024: 6 invoices
    inv = pd.DataFrame(
        {
            "customer_id": ["C1"] * 6 + ["C2", "C2"] + ["C3"] * 4,
            "ts": _ts(*inv_s1, "2023-03-10", "2024-03-10", *[f"2024-0{m}-01" for m in range(1, 5)]),
            "amount": [24.0] * 6 + [367.2, 367.2] + [25.0] * 4,
            "margin": [19.2] * 6 + [293.76, 293.76] + [20.0] * 4,
            "order_id": [f"S1-00{i}" for i in range(1, 7)]
            + ["S2-001", "S2-002"]
            + [f"S3-00{i}" for i in range(1, 5)],
            "channel": ["subscription"] * 12,
        }
    )
    events = pd.DataFrame(
        {
            "customer_id": ["C1"] * 6 + ["C2"],
            "ts": _ts(
                "2024-06-20",  # 11 days before: 30d and 90d
                "2024-06-25",
                "2024-05-10",  # 52 days: 90d only
                "2024-06-10",  # support ticket in 30d
                "2024-02-01",  # 151 days: outside 90d, inside 365d
                "2024-07-01",  # at as_of: not seen
                "2024-06-30",
            ),
            "event_type": [
                "login",
                "feature_use",
                "login",
                "support_ticket",
                "login",
                "login",
                "advanced_use",
            ],
        }
    )
    return subs, changes, events, inv


def test_population_is_paying_subscriptions_active_at_as_of() -> None:
    subs, changes, events, inv = _world()
    f = subscription_features(subs, changes, events, as_of=AS_OF, transactions=inv)
    assert sorted(f.index) == ["S1", "S2"]  # S0, S3 ended before; S4 still in its trial


def test_tenure_renewals_state_and_renewal_date() -> None:
    subs, changes, events, inv = _world()
    f = subscription_features(subs, changes, events, as_of=AS_OF, transactions=inv)
    s1, s2 = f.loc["S1"], f.loc["S2"]
    assert s1["tenure_months"] == pytest.approx(182 / 30.4375)  # 2024-01-01 -> 07-01
    assert s1["tenure_periods"] == 6 and s1["renewals"] == 5
    assert s2["tenure_periods"] == 2 and s2["renewals"] == 1
    assert (s1["plan"], s1["seats"], s1["mrr"]) == ("team", 4, 100.0)
    assert s1["mrr_per_seat"] == 25.0
    assert s1["next_renewal"] == pd.Timestamp("2024-07-15", tz="UTC")
    assert s1["months_to_renewal"] == pytest.approx(14 / 30.4375)
    assert s2["next_renewal"] == pd.Timestamp("2025-03-10", tz="UTC")
    assert (s1["annual"], s2["annual"], s1["trial"], s2["trial"]) == (0, 1, 1, 0)
    assert s1["paid_from"] == pd.Timestamp("2024-01-15", tz="UTC")


def test_moves_usage_tickets_and_history() -> None:
    subs, changes, events, inv = _world()
    f = subscription_features(subs, changes, events, as_of=AS_OF, transactions=inv)
    s1, s2 = f.loc["S1"], f.loc["S2"]
    assert (s1["upgrades"], s1["downgrades"], s1["seat_changes"]) == (1, 0, 1)
    assert (s2["upgrades"], s2["seat_changes"]) == (0, 0)
    assert (s1["usage_30d"], s1["usage_90d"], s1["tickets_90d"]) == (2, 3, 1)
    assert s1["usage_trend"] == pytest.approx(np.log(3.0 / 2.0))
    assert s1["usage_vs_year"] == pytest.approx(np.log(3.0 / (4.0 / 12.0 + 1.0)))
    assert (s2["usage_30d"], s2["tickets_90d"]) == (1, 0)
    assert s1["earlier_ended"] == 1 and s2["earlier_ended"] == 0


def test_a_change_at_as_of_is_not_seen_and_a_downgrade_counts() -> None:
    subs, changes, events, inv = _world()
    later = pd.DataFrame(
        {
            "subscription_id": ["S1", "S1"],
            "ts": _ts("2024-06-15", "2024-07-01"),
            "plan": ["starter", "business"],
            "seats": [4, 9],
            "mrr": [48.0, 405.0],
        }
    )
    both = pd.concat([changes, later], ignore_index=True)
    f = subscription_features(subs, both, events, as_of=AS_OF, transactions=inv)
    assert (f.loc["S1", "plan"], f.loc["S1", "mrr"]) == ("starter", 48.0)
    assert (f.loc["S1", "upgrades"], f.loc["S1", "downgrades"]) == (1, 1)


def _scramble(
    subs: pd.DataFrame, changes: pd.DataFrame, events: pd.DataFrame, inv: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Every row at or after AS_OF altered or deleted: ends filled in, later rows dropped,
    new rows added after it."""
    subs = subs.copy()
    subs.loc[subs["subscription_id"] == "S1", "ended_at"] = AS_OF  # ends at as_of
    subs.loc[subs["subscription_id"] == "S2", "ended_at"] = AS_OF + pd.Timedelta(days=40)
    new_sub = subs.iloc[[0]].assign(subscription_id="S9", started_at=AS_OF, ended_at=pd.NaT)
    subs = pd.concat([subs, new_sub], ignore_index=True)
    changes = pd.concat(
        [
            changes,
            pd.DataFrame(
                {
                    "subscription_id": ["S1"],
                    "ts": [AS_OF + pd.Timedelta(hours=1)],
                    "plan": ["business"],
                    "seats": [50],
                    "mrr": [2250.0],
                }
            ),
        ],
        ignore_index=True,
    )
    events = events.loc[events["ts"] < AS_OF]
    extra = pd.DataFrame(
        {"customer_id": ["C1"] * 3, "ts": [AS_OF] * 3, "event_type": ["support_ticket"] * 3}
    )
    events = pd.concat([events, extra], ignore_index=True)
    late = inv.iloc[[0]].assign(ts=AS_OF + pd.Timedelta(days=14), order_id="S1-007")
    inv = pd.concat([inv, late], ignore_index=True)
    return subs, changes, events, inv


def test_features_at_t_ignore_every_row_at_or_after_t() -> None:
    subs, changes, events, inv = _world()
    before = subscription_features(subs, changes, events, as_of=AS_OF, transactions=inv)
    s_subs, s_changes, s_events, s_inv = _scramble(subs, changes, events, inv)
    after = subscription_features(s_subs, s_changes, s_events, as_of=AS_OF, transactions=s_inv)
    pd.testing.assert_frame_equal(before, after)
    cut_inv = inv.loc[inv["ts"] < AS_OF]
    cut_changes = changes.loc[changes["ts"] < AS_OF]
    cut_events = events.loc[events["ts"] < AS_OF]
    cut_subs = subs.loc[subs["started_at"] < AS_OF]
    cut = subscription_features(
        cut_subs, cut_changes, cut_events, as_of=AS_OF, transactions=cut_inv
    )
    pd.testing.assert_frame_equal(before, cut)
    assert set(FEATURES) - {"plan_code"} <= set(before.columns)


def test_person_periods_label_the_churn_and_stop_at_known_until() -> None:
    """At 2024-02-10, labels known until 07-01. S1 (1 invoice): renews 02-15 .. 06-15, the 07-15
    renewal unseen: 5 rows, no churn. S3 (2 invoices): renews 03-01, 04-01, then ends 05-01:
    rows k = 1, 2, 3, the last one churned."""
    subs, changes, events, inv = _world()
    origin = pd.Timestamp("2024-02-10", tz="UTC")
    feats = subscription_features(subs, changes, events, as_of=origin, transactions=inv)
    known = lifetimes(subs, inv, known_until=AS_OF)
    rows = person_periods(feats, known, horizon_months=12)
    s3 = rows.loc[rows["tenure_periods"] == 2].sort_values("k")  # S3 has 2 invoices then
    assert s3["k"].tolist() == [1, 2, 3]
    assert s3["churned"].tolist() == [0, 0, 1]
    s1 = rows.loc[rows["trial"] == 1]  # S1: 1 invoice at 02-10, renews 03-15 .. 06-15
    assert s1["k"].tolist() == [1, 2, 3, 4, 5] and s1["churned"].sum() == 0
    capped = person_periods(feats, known, horizon_months=2)
    assert capped.groupby("tenure_periods")["k"].max().max() == 2


def test_add_months_clamps_to_the_month_end() -> None:
    out = add_months(_ts("2024-01-31 10:00", "2024-03-15"), np.array([1, 12]))
    assert out.tolist() == [
        pd.Timestamp("2024-02-29 10:00", tz="UTC"),
        pd.Timestamp("2025-03-15", tz="UTC"),
    ]
