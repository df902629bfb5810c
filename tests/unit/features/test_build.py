"""Feature snapshots on tiny logs whose answers are computed by hand."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from clv.core.errors import ConfigError, NotReadyError
from clv.core.settings import Settings, load_settings
from clv.core.store import write_table
from clv.features.build import build_features
from clv.features.calendar import snapshot_dates
from clv.features.query import compute_features
from clv.features.snapshots import features_path
from clv.inputs.identities import resolve
from clv.inputs.ingest import ingest

JAN15 = pd.Timestamp("2024-01-15", tz="UTC")
FEB = pd.Timestamp("2024-02-01", tz="UTC")
MAR = pd.Timestamp("2024-03-01", tz="UTC")


def _ts(values: list[str | None]) -> pd.Series:
    return pd.Series(pd.to_datetime(values, utc=True, format="ISO8601")).astype(
        "datetime64[us, UTC]"
    )


def _tx() -> pd.DataFrame:
    # a: two orders on Jan 5 (one purchase day), Jan 20, a refund on Feb 3, Feb 10
    # b: one order on Jan 10; c: nothing
    return pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b", "a", "a"],
            "ts": _ts(
                [
                    "2024-01-05T10:00",
                    "2024-01-05T12:00",
                    "2024-01-20T08:00",
                    "2024-01-10T09:00",
                    "2024-02-03T00:00",
                    "2024-02-10T18:00",
                ]
            ),
            "amount": [10.0, 5.0, 30.0, 7.0, -4.0, 20.0],
            "margin": [3.0, None, 10.0, None, -1.0, 5.0],
        }
    )


def _customers() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "signup_ts": _ts(["2023-12-20", "2024-01-09", "2024-01-25", "2024-02-15"]),
            "acquisition_channel": ["ads", "seo", "ads", "ads"],
            "country": ["DE", "FR", None, "DE"],
            "plan": ["pro", "free", "free", "free"],
        }
    )


def _events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b", "b", "a"],
            "ts": _ts(
                [
                    "2023-12-01",  # login, 62 days before Feb 1: in 90d, not in 30d
                    "2024-01-30",  # login, in both windows at Feb 1
                    "2024-01-31T23:59:59",  # feature_use, last second before Feb 1
                    "2024-01-15",  # support ticket
                    "2024-02-01",  # exactly at t = Feb 1: belongs to the next snapshot
                    "2024-01-02",  # unknown event type: ignored
                ]
            ),
            "event_type": [
                "login",
                "login",
                "feature_use",
                "support_ticket",
                "support_ticket",
                "page_view",
            ],
        }
    )


def _features(
    *, snapshots: tuple[pd.Timestamp, ...] = (FEB, MAR), **kwargs: object
) -> pd.DataFrame:
    aliases = kwargs.get("identities")
    frame = compute_features(
        kwargs.get("tx", _tx()),
        kwargs.get("customers", _customers()),
        kwargs.get("events", _events()),
        list(snapshots),
        margin_rate=0.3,
        identities=None if aliases is None else resolve(aliases),
    )
    return frame.set_index(["customer_id", "event_timestamp"])


@pytest.fixture(scope="module")
def feats() -> pd.DataFrame:
    return _features()


def test_known_customers_only_appear_after_signup_or_first_transaction(
    feats: pd.DataFrame,
) -> None:
    at_feb = set(feats.xs(FEB, level="event_timestamp").index)
    at_mar = set(feats.xs(MAR, level="event_timestamp").index)
    assert at_feb == {"a", "b", "c"}  # d signs up on Feb 15
    assert at_mar == {"a", "b", "c", "d"}


def test_rfm_follows_lifetimes_conventions(feats: pd.DataFrame) -> None:
    a = feats.loc[("a", FEB)]
    assert a["frequency"] == 1  # purchase days Jan 5 and Jan 20
    assert a["recency"] == 15.0  # Jan 5 -> Jan 20
    assert a["T"] == 27.0  # Jan 5 -> Feb 1
    assert a["monetary_value"] == 30.0  # the repeat day only
    assert a["first_purchase_value"] == 15.0  # both Jan 5 orders
    a_mar = feats.loc[("a", MAR)]
    assert a_mar["frequency"] == 2  # the Feb 3 refund is not a purchase day
    assert a_mar["monetary_value"] == 25.0  # (30 + 20) / 2
    assert a_mar["T"] == 56.0


def test_single_purchase_and_no_purchase_customers(feats: pd.DataFrame) -> None:
    b = feats.loc[("b", FEB)]
    assert (b["frequency"], b["recency"], b["T"], b["monetary_value"]) == (0, 0.0, 22.0, 0.0)
    c = feats.loc[("c", FEB)]
    assert c["frequency"] == 0 and c["monetary_value"] == 0.0
    assert pd.isna(c["recency"]) and pd.isna(c["T"]) and pd.isna(c["first_purchase_value"])
    assert pd.isna(c["days_since_last_purchase"])
    assert c["spend_365d"] == 0.0 and c["orders_365d"] == 0


def test_spend_windows_and_refunds(feats: pd.DataFrame) -> None:
    a = feats.loc[("a", FEB)]
    assert (a["spend_30d"], a["orders_30d"], a["active_days_30d"]) == (45.0, 3, 2)
    assert a["margin_30d"] == pytest.approx(3.0 + 5.0 * 0.3 + 10.0)  # missing margin -> rate
    assert a["days_since_last_purchase"] == pytest.approx(12 - 8 / 24)  # Jan 20 08:00
    a_mar = feats.loc[("a", MAR)]
    # window [Jan 31, Mar 1): the refund and the Feb 10 order; Jan orders fall out
    assert a_mar["spend_30d"] == 16.0
    assert a_mar["refunds_30d"] == 4.0
    assert (a_mar["orders_30d"], a_mar["active_days_30d"]) == (1, 1)
    assert a_mar["spend_90d"] == 61.0 and a_mar["refunds_90d"] == 4.0
    assert a_mar["margin_90d"] == pytest.approx(3.0 + 1.5 + 10.0 - 1.0 + 5.0)


def test_gaps_and_trend(feats: pd.DataFrame) -> None:
    a_mar = feats.loc[("a", MAR)]
    assert a_mar["gap_mean_days"] == 18.0  # gaps 15 (Jan 5->20) and 21 (Jan 20->Feb 10)
    assert a_mar["gap_std_days"] == pytest.approx(4.242640687)  # sample std of (15, 21)
    assert pd.isna(feats.loc[("a", FEB), "gap_std_days"])  # one gap only
    assert pd.isna(feats.loc[("b", FEB), "gap_mean_days"])
    # all spend within 90 days: (61/90) / (61/365)
    assert a_mar["spend_trend_90_365"] == pytest.approx(365 / 90)
    assert pd.isna(feats.loc[("c", MAR), "spend_trend_90_365"])


def test_profile(feats: pd.DataFrame) -> None:
    a = feats.loc[("a", FEB)]
    assert a["tenure_days"] == 43  # Dec 20 -> Feb 1
    assert (a["signup_cohort"], a["acquisition_channel"], a["country"], a["plan"]) == (
        "2023-12",
        "ads",
        "DE",
        "pro",
    )
    assert feats.loc[("c", FEB), "tenure_days"] == 7
    assert feats.loc[("d", MAR), "signup_cohort"] == "2024-02"


def test_profile_without_customers_table_uses_first_transaction() -> None:
    feats = _features(customers=None)
    a = feats.loc[("a", FEB)]
    assert a["tenure_days"] == 27 and a["signup_cohort"] == "2024-01"
    assert a["plan"] is None
    assert "c" not in feats.index.get_level_values("customer_id")


def test_calendar_and_the_same_window_a_year_earlier() -> None:
    # At t = 2025-02-01 the window a year earlier is [2024-02-02, 2024-05-02): a's Feb 3 refund
    # (margin -1) and Feb 10 order (5) are in it; the January rows are before it.
    t = pd.Timestamp("2025-02-01", tz="UTC")
    feats = _features(snapshots=(FEB, t))
    assert feats.loc[("a", t), "margin_ly_90d"] == pytest.approx(-1.0 + 5.0)
    assert feats.loc[("b", t), "margin_ly_90d"] == 0.0  # b's only order, Jan 10 2024, is before it
    assert feats.loc[("a", FEB), "margin_ly_90d"] == 0.0  # nothing a year before Feb 2024
    assert feats.xs(t, level="event_timestamp")["snapshot_month"].eq(2).all()
    assert feats.xs(FEB, level="event_timestamp")["snapshot_month"].eq(2).all()


def test_behaviour_counts_and_trend(feats: pd.DataFrame) -> None:
    a = feats.loc[("a", FEB)]
    assert (a["logins_30d"], a["logins_90d"]) == (1, 2)
    assert a["logins_trend"] == pytest.approx((1 / 30) / (2 / 90))
    assert (a["feature_use_30d"], a["feature_use_90d"]) == (1, 1)
    b = feats.loc[("b", FEB)]
    assert (b["support_tickets_30d"], b["support_tickets_90d"]) == (1, 1)  # Feb 1 not yet
    assert feats.loc[("b", MAR), "support_tickets_30d"] == 1  # the Feb 1 ticket
    assert pd.isna(feats.loc[("c", FEB), "logins_trend"])


def test_attributes_are_the_version_in_force_strictly_before_t() -> None:
    def ts(value: str | None) -> pd.Timestamp:
        return pd.NaT if value is None else pd.Timestamp(value, tz="UTC")

    rows = [
        # id, signup, country, plan, valid_from, ingested_at
        ("a", "2023-12-20", "DE", "pro", None, "2024-01-15"),  # first, undated: from the start
        ("a", "2023-06-01", "DE", "premium", "2024-02-01", "2024-03-05"),  # from Feb 1 on
        ("b", "2024-01-09", "FR", "free", "2024-01-20", "2024-03-05"),  # first, dated
        ("b", "2024-01-09", "BE", "free", None, "2024-02-10"),  # undated: from its ingest
        ("c", "2024-01-25", "NL", "free", "2024-02-15", "2024-03-05"),  # only from Feb 15
        ("d", "2024-02-15", "DE", "free", None, None),  # no times at all: from the start
    ]
    customers = pd.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "signup_ts": [ts(r[1]) for r in rows],
            "country": [r[2] for r in rows],
            "plan": [r[3] for r in rows],
            "valid_from": [ts(r[4]) for r in rows],
            "ingested_at": [ts(r[5]) for r in rows],
        }
    )
    feats = _features(customers=customers)
    assert feats.loc[("a", FEB), "plan"] == "pro"  # Feb 1 is not strictly before Feb 1
    assert feats.loc[("a", MAR), "plan"] == "premium"
    # signup from the first version: the later row's 2023-06-01 is not used
    assert feats.loc[("a", MAR), "signup_cohort"] == "2023-12"
    assert feats.loc[("a", FEB), "tenure_days"] == 43
    assert tuple(feats.loc[("b", FEB), ["country", "plan"]]) == ("FR", "free")
    assert tuple(feats.loc[("b", MAR), ["country", "plan"]]) == ("BE", "free")
    assert feats.loc[("c", FEB), "plan"] is None  # known (signed up Jan 25), no version yet
    assert feats.loc[("c", MAR), "plan"] == "free"
    assert feats.loc[("d", MAR), "country"] == "DE"


def _aliases(rows: list[tuple[str, str, str | None]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "alias_id": [r[0] for r in rows],
            "customer_id": [r[1] for r in rows],
            "valid_from": _ts([r[2] for r in rows]),
        }
    )


def test_no_leakage_from_rows_at_or_after_t() -> None:
    """Rows at or after c = Feb 1 (transactions, events, customer versions dated c or ingested
    after it, identity rows valid from c on) leave every snapshot t <= c as built from the log
    truncated before c."""
    # e is a's alias from Jan 10 (so a's snapshots hold e's Jan 3 order); from Feb 1 on, e is
    # remapped to c and d becomes c's alias: neither may change a snapshot at or before Feb 1
    alias_tx = pd.DataFrame({"customer_id": ["e"], "ts": _ts(["2024-01-03"]), "amount": [8.0]})
    tx = pd.concat([_tx(), alias_tx], ignore_index=True)
    ev, cust = _events(), _customers()
    known = _aliases([("e", "a", "2024-01-10")])
    later = _aliases([("e", "c", "2024-02-01"), ("d", "c", "2024-02-10")])
    future_tx = tx["ts"] >= FEB
    changed_tx = tx[~future_tx | (tx["amount"] > 0)].copy()  # delete the refund
    changed_tx.loc[changed_tx["ts"] >= FEB, "amount"] *= 10  # change the rest
    extra = pd.DataFrame({"customer_id": ["c"], "ts": _ts(["2024-02-01"]), "amount": [99.0]})
    changed_tx = pd.concat([changed_tx, extra], ignore_index=True)
    upgrade = cust[cust["customer_id"] == "a"].assign(plan="enterprise", valid_from=FEB)
    moved = cust[cust["customer_id"] == "b"].assign(
        country="BE", ingested_at=FEB + pd.Timedelta(hours=1)
    )
    changed_cust = pd.concat([cust, upgrade, moved], ignore_index=True)
    snapshots = (JAN15, FEB, MAR)
    truncated = _features(
        tx=tx[tx["ts"] < FEB],
        events=ev[ev["ts"] < FEB],
        customers=cust,
        identities=known,
        snapshots=snapshots,
    ).drop(columns="created_timestamp")
    changed = _features(
        tx=changed_tx,
        events=ev,
        customers=changed_cust,
        identities=pd.concat([known, later], ignore_index=True),
        snapshots=snapshots,
    ).drop(columns="created_timestamp")
    for t in (JAN15, FEB):
        pd.testing.assert_frame_equal(
            truncated.xs(t, level="event_timestamp"), changed.xs(t, level="event_timestamp")
        )
    after = changed.xs(MAR, level="event_timestamp")
    assert not truncated.xs(MAR, level="event_timestamp").equals(after)
    assert (after.loc["a", "plan"], after.loc["b", "country"]) == ("enterprise", "BE")
    assert truncated.loc[("a", MAR), "plan"] == "pro"
    assert truncated.loc[("a", FEB), "spend_365d"] == 10.0 + 5.0 + 30.0 + 8.0  # e's order
    assert "d" not in after.index  # merged into c after Feb 10
    # e's order went with e to c: a keeps its own (the Feb 10 order x 10, the refund deleted)
    assert after.loc["a", "spend_365d"] == 10.0 + 5.0 + 30.0 + 200.0
    assert after.loc["c", "spend_365d"] == 99.0 + 8.0


def _lines() -> pd.DataFrame:
    # a, Jan 5: order O1 of two identical lines and order O2; Jan 20 a row without order_id;
    # Jan 25 a refund line of O1
    return pd.DataFrame(
        {
            "customer_id": ["a"] * 5,
            "ts": _ts(
                [
                    "2024-01-05T10:00",
                    "2024-01-05T10:00",
                    "2024-01-05T15:00",
                    "2024-01-20T08:00",
                    "2024-01-25T09:00",
                ]
            ),
            "order_id": ["O1", "O1", "O2", None, "O1"],
            "line_id": ["1", "2", "1", None, "3"],
            "amount": [10.0, 10.0, 5.0, 7.0, -3.0],
        }
    )


def test_orders_are_distinct_orders_and_spend_sums_lines() -> None:
    feats = _features(tx=_lines(), customers=None, events=None)
    a = feats.loc[("a", FEB)]
    assert a["orders_30d"] == 3  # O1 and O2 on Jan 5, the row without order_id on Jan 20
    assert a["spend_30d"] == 29.0  # 10 + 10 + 5 + 7 - 3
    assert a["refunds_30d"] == 3.0
    assert (a["active_days_30d"], a["frequency"]) == (2, 1)  # purchase days Jan 5 and Jan 20
    assert a["first_purchase_value"] == 25.0  # every positive line of Jan 5
    assert a["margin_30d"] == pytest.approx(29.0 * 0.3)


def test_snapshot_dates_monthly_default_covers_the_whole_log() -> None:
    dates = snapshot_dates("2024-01-05", "2024-03-31T23:00")
    assert dates == [pd.Timestamp(d, tz="UTC") for d in ("2024-02-01", "2024-03-01", "2024-04-01")]


def test_snapshot_dates_spacing_and_bounds() -> None:
    weekly = snapshot_dates("2024-01-05", "2024-02-20", every="2w", start="2024-01-01")
    assert [d.strftime("%m-%d") for d in weekly] == ["01-01", "01-15", "01-29", "02-12", "02-26"]
    quarterly = snapshot_dates("2023-01-01", "2024-12-31", every="3M", start="2023-02-10")
    assert quarterly[0] == pd.Timestamp("2023-03-01", tz="UTC")
    assert quarterly[1] == pd.Timestamp("2023-06-01", tz="UTC")
    bounded = snapshot_dates("2023-01-01", "2024-12-31", every="10d", end="2023-02-20")
    assert bounded[0] == pd.Timestamp("2023-02-01", tz="UTC") and len(bounded) == 2
    with pytest.raises(ConfigError, match="Nd, Nw or NM"):
        snapshot_dates("2023-01-01", "2023-02-01", every="1y")


def _settings(tmp_path: Path) -> Settings:
    return load_settings(tmp_path, environ={})


def test_build_writes_microsecond_utc_parquet_in_the_workspace(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    write_table(settings, "transactions", _tx())
    result = build_features(settings)
    assert (
        result.path
        == features_path(settings)
        == (tmp_path / ".clv" / "offline" / "features" / "customer_features.parquet")
    )
    assert result.snapshots == [FEB, MAR]  # no customers table: a and b only
    assert (result.rows, result.customers) == (4, 2)
    schema = pq.read_schema(result.path)
    for col in ("event_timestamp", "created_timestamp"):
        assert str(schema.field(col).type) == "timestamp[us, tz=UTC]"


def test_build_without_transactions_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(NotReadyError, match="clv data ingest"):
        build_features(_settings(tmp_path))


def test_identical_order_lines_are_kept_at_ingest_and_make_one_order(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    path = tmp_path / "transactions.csv"
    pd.DataFrame(
        {
            "customer_id": ["C1", "C1"],
            "ts": ["2024-01-05T10:00", "2024-01-05T10:00"],
            "order_id": ["O1", "O1"],
            "line_id": ["1", "2"],
            "sku": ["SKU-A", "SKU-A"],
            "quantity": ["1", "1"],
            "unit_price": ["5", "5"],
        }
    ).to_csv(path, index=False)
    result = ingest(settings, path, now=MAR)
    assert (result.inserted, result.quarantined, result.stored_rows) == (2, {}, 2)
    build_features(settings)
    feats = pd.read_parquet(features_path(settings)).set_index("event_timestamp")
    c1 = feats.loc[FEB]
    assert (c1["orders_30d"], c1["spend_30d"], c1["frequency"]) == (1, 10.0, 0)
