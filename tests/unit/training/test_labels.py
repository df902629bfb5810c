from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from clv.core.errors import DataError
from clv.inputs.identities import resolve
from clv.training.labels import make_labels, past_margins

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def tx(
    rows: list[tuple[str, str, float]], margin: list[float | None] | None = None
) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", "ts", "amount"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    if margin is not None:
        frame["margin"] = margin
    return frame


def snaps(rows: list[tuple[str, pd.Timestamp]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["customer_id", "event_timestamp"])


def labels(
    transactions: pd.DataFrame,
    snapshots: pd.DataFrame,
    *,
    rate: float = 0.0,
    margin_rate: float = 0.5,
    horizon: int = 365,
    window: int = 90,
    data_end: str = "2026-01-01",
) -> pd.DataFrame:
    return make_labels(
        transactions,
        snapshots,
        horizon_days=horizon,
        churn_window_days=window,
        annual_discount_rate=rate,
        margin_rate=margin_rate,
        data_end=pd.Timestamp(data_end, tz="UTC"),
    )


def test_window_is_open_at_t_and_closed_at_t_plus_horizon() -> None:
    t = tx(
        [
            ("a", "2024-01-01", 100.0),  # exactly at t: the snapshot's past, excluded
            ("a", "2024-06-01", 10.0),  # inside
            ("a", "2024-12-31", 20.0),  # t + 365 days exactly: included
            ("a", "2025-01-01", 40.0),  # after the horizon: excluded
            ("a", "2023-12-01", 80.0),  # before t: excluded
        ]
    )
    out = labels(t, snaps([("a", T0)]))
    assert out.loc[0, "clv_label"] == pytest.approx(0.5 * (10.0 + 20.0))


def test_discounting_uses_annual_rate_over_elapsed_days() -> None:
    t = tx([("a", "2024-07-01", 200.0), ("a", "2024-12-31", 100.0)])
    out = labels(t, snaps([("a", T0)]), rate=0.10, margin_rate=1.0)
    d1 = (pd.Timestamp("2024-07-01", tz="UTC") - T0).days  # 182
    expected = 200.0 / 1.1 ** (d1 / 365) + 100.0 / 1.1 ** (365 / 365)
    assert out.loc[0, "clv_label"] == pytest.approx(expected, rel=1e-9)
    assert expected < 300.0  # the discount actually bites


def test_discount_is_relative_to_each_snapshot() -> None:
    t = tx([("a", "2024-03-01", 100.0)])
    s = snaps([("a", T0), ("a", pd.Timestamp("2024-02-01", tz="UTC"))])
    out = labels(t, s, rate=0.2, margin_rate=1.0)
    assert out.loc[0, "clv_label"] == pytest.approx(100.0 / 1.2 ** (60 / 365))
    assert out.loc[1, "clv_label"] == pytest.approx(100.0 / 1.2 ** (29 / 365))


def test_margin_column_wins_where_present_else_amount_times_rate() -> None:
    t = tx([("a", "2024-02-01", 100.0), ("a", "2024-03-01", 50.0)], margin=[42.0, None])
    out = labels(t, snaps([("a", T0)]), margin_rate=0.3)
    assert out.loc[0, "clv_label"] == pytest.approx(42.0 + 0.3 * 50.0)


def test_refunds_reduce_the_label_but_are_not_purchases() -> None:
    t = tx([("a", "2024-02-01", 100.0), ("a", "2024-06-01", -40.0), ("b", "2024-02-01", -30.0)])
    out = labels(t, snaps([("a", T0), ("b", T0)]), margin_rate=0.5)
    assert out.loc[0, "clv_label"] == pytest.approx(0.5 * 60.0)
    assert out.loc[1, "clv_label"] == pytest.approx(-15.0)
    assert out.loc[1, "churn_label"] == 1.0  # a refund alone is no purchase
    assert out.loc[0, "churn_label"] == 0.0


def test_churn_label_uses_its_own_window() -> None:
    t = tx([("a", "2024-03-15", 10.0), ("b", "2024-05-01", 10.0)])
    out = labels(t, snaps([("a", T0), ("b", T0), ("c", T0)]), window=90)
    # a buys on day 74 (inside 90 days), b on day 121 (outside), c never.
    assert out["churn_label"].tolist() == [0.0, 1.0, 1.0]
    assert out.loc[1, "clv_label"] > 0  # b still has value within the year
    assert out.loc[2, "clv_label"] == 0.0


def test_incomplete_windows_have_no_label_each_on_its_own_rule() -> None:
    t = tx([("a", "2024-02-01", 10.0)])
    s = snaps(
        [
            ("a", T0),  # both windows complete by data_end
            ("a", pd.Timestamp("2024-06-01", tz="UTC")),  # churn complete, CLV not
            ("a", pd.Timestamp("2024-11-01", tz="UTC")),  # neither
        ]
    )
    out = labels(t, s, data_end="2024-12-31")
    assert out["clv_label"].notna().tolist() == [True, False, False]
    assert out["churn_label"].notna().tolist() == [True, True, False]


def test_rows_keep_input_order_and_customers_do_not_mix() -> None:
    t = tx([("a", "2024-02-01", 10.0), ("b", "2024-02-01", 1000.0)])
    s = snaps([("b", T0), ("a", T0), ("zz", T0)])
    out = labels(t, s, margin_rate=1.0)
    assert out["customer_id"].tolist() == ["b", "a", "zz"]
    assert out["clv_label"].tolist() == pytest.approx([1000.0, 10.0, 0.0])


def test_same_timestamp_orders_all_count() -> None:
    t = tx([("a", "2024-02-01", 10.0), ("a", "2024-02-01", 5.0), ("a", "2024-01-01", 7.0)])
    out = labels(t, snaps([("a", T0)]), margin_rate=1.0)
    assert out.loc[0, "clv_label"] == pytest.approx(15.0)


def test_missing_columns_raise_data_error() -> None:
    bad = pd.DataFrame({"customer_id": ["a"], "amount": [1.0]})
    with pytest.raises(DataError, match="lack columns"):
        labels(bad, snaps([("a", T0)]))


def test_scale_is_seconds_not_minutes() -> None:
    rng = np.random.default_rng(0)
    n_cust, n_tx = 20_000, 400_000
    ids = np.array([f"c{i}" for i in range(n_cust)])
    start = pd.Timestamp("2022-01-01", tz="UTC")
    t = pd.DataFrame(
        {
            "customer_id": ids[rng.integers(0, n_cust, n_tx)],
            "ts": start + pd.to_timedelta(rng.integers(0, 3 * 365 * 86400, n_tx), unit="s"),
            "amount": rng.gamma(2.0, 40.0, n_tx),
        }
    )
    times = [start + pd.DateOffset(months=k) for k in range(36)]
    s = pd.DataFrame(
        {"customer_id": np.tile(ids, len(times)), "event_timestamp": np.repeat(times, n_cust)}
    )
    began = time.perf_counter()
    out = labels(t, s, rate=0.1, data_end="2025-01-01")
    elapsed = time.perf_counter() - began
    assert len(out) == 36 * n_cust
    assert (
        out["clv_label"].notna().sum() == 25 * n_cust
    )  # Jan 2022 .. Jan 2024 end their year by 2025-01-01
    assert elapsed < 20.0, f"labels took {elapsed:.1f}s"


def test_labels_use_the_identities_as_of_the_origin() -> None:
    """a becomes c's alias on Mar 1: at a Feb origin a's later orders are a's own, at an Apr
    origin they are c's; each order counts once, for the customer that exists at t."""
    t = tx(
        [
            ("c", "2024-03-10", 10.0),
            ("a", "2024-02-20", 4.0),  # before the merge: a's at Feb, in c's past at Apr
            ("a", "2024-04-10", 20.0),  # after both origins
        ]
    )
    identities = resolve(
        pd.DataFrame(
            {
                "alias_id": ["a"],
                "customer_id": ["c"],
                "valid_from": [pd.Timestamp("2024-03-01", tz="UTC")],
            }
        )
    )
    feb, apr = pd.Timestamp("2024-02-01", tz="UTC"), pd.Timestamp("2024-04-01", tz="UTC")
    entities = snaps([("c", feb), ("a", feb), ("c", apr)])
    out = make_labels(
        t,
        entities,
        horizon_days=365,
        churn_window_days=60,
        annual_discount_rate=0.0,
        margin_rate=0.5,
        data_end=pd.Timestamp("2026-01-01", tz="UTC"),
        identities=identities,
    )
    assert out["clv_label"].tolist() == pytest.approx([5.0, 12.0, 10.0])  # x 0.5 margin
    assert out["churn_label"].tolist() == [0.0, 0.0, 0.0]
    alone = labels(t, entities)
    assert alone["clv_label"].tolist() == pytest.approx([5.0, 12.0, 0.0])  # without: a apart
    past = past_margins(t, entities, horizon_days=365, margin_rate=0.5, identities=identities)
    assert past["past_margin_lifetime"].tolist() == pytest.approx([0.0, 0.0, 7.0])
    assert past["past_days"].iloc[2] == pytest.approx(41.0)  # a's Feb 20 order, to Apr 1
