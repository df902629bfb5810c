"""Features with identities: an alias's rows count for its customer from the snapshot after its
valid_from, never twice, and a bucketed build keeps a customer's ids together."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from clv.core.settings import load_settings
from clv.core.store import write_table
from clv.features.build import build_features
from clv.features.query import compute_features, known_entities
from clv.inputs.identities import IdentityMap, resolve

FEB = pd.Timestamp("2024-02-01", tz="UTC")
MAR = pd.Timestamp("2024-03-01", tz="UTC")
KEYS = ["customer_id", "event_timestamp"]


def _ts(values: list[str | None]) -> pd.Series:
    return pd.Series(pd.to_datetime(values, utc=True, format="ISO8601")).astype(
        "datetime64[us, UTC]"
    )


def _tx() -> pd.DataFrame:
    # c: Jan 5 (10), Jan 20 (20); alias a (merged from Feb 1): Jan 10 (5), Feb 10 (7);
    # alias b (always): Jan 25 (4); z, no alias: Jan 8 (100)
    return pd.DataFrame(
        {
            "customer_id": ["c", "c", "a", "a", "b", "z"],
            "ts": _ts(
                [
                    "2024-01-05T10:00",
                    "2024-01-20T10:00",
                    "2024-01-10T10:00",
                    "2024-02-10T10:00",
                    "2024-01-25T10:00",
                    "2024-01-08T10:00",
                ]
            ),
            "amount": [10.0, 20.0, 5.0, 7.0, 4.0, 100.0],
            "order_id": ["o1", "o2", "o1", "o2", "o1", "o1"],  # per customer: not the same orders
        }
    )


def _customers() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["c", "a"],
            "signup_ts": _ts(["2023-12-01", "2023-11-01"]),
            "acquisition_channel": ["ads", "seo"],
        }
    )


def _events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["a", "c", "b"],
            "ts": _ts(["2024-01-15", "2024-02-20", "2024-02-21"]),
            "event_type": ["login", "login", "login"],
        }
    )


def _identities() -> IdentityMap:
    return resolve(
        pd.DataFrame(
            {
                "alias_id": ["a", "b"],
                "customer_id": ["c", "c"],
                "valid_from": _ts(["2024-02-01", None]),
            }
        )
    )


def _features(identities: IdentityMap | None) -> pd.DataFrame:
    frame = compute_features(
        _tx(), _customers(), _events(), [FEB, MAR], margin_rate=0.3, identities=identities
    )
    return frame.set_index(KEYS)


@pytest.fixture(scope="module")
def merged() -> pd.DataFrame:
    return _features(_identities())


def test_a_merge_never_double_counts_revenue(merged: pd.DataFrame) -> None:
    alone = _features(None)
    for t in (FEB, MAR):
        for column in ("spend_365d", "margin_365d", "orders_365d"):
            assert merged.xs(t, level="event_timestamp")[column].sum() == pytest.approx(
                alone.xs(t, level="event_timestamp")[column].sum()
            ), (column, t)
    # c's own, b's (always merged) and, from March, a's
    assert merged.loc[("c", FEB), "spend_365d"] == 10.0 + 20.0 + 4.0
    assert merged.loc[("c", MAR), "spend_365d"] == 10.0 + 20.0 + 4.0 + 5.0 + 7.0
    assert merged.loc[("c", MAR), "orders_365d"] == 5  # o1 of c, a and b are three orders
    assert merged.loc[("c", MAR), "margin_365d"] == pytest.approx(46.0 * 0.3)


def test_an_alias_is_its_own_customer_until_the_snapshot_after_valid_from(
    merged: pd.DataFrame,
) -> None:
    at_feb = set(merged.xs(FEB, level="event_timestamp").index)
    at_mar = set(merged.xs(MAR, level="event_timestamp").index)
    assert at_feb == {"a", "c", "z"}  # Feb 1 is valid_from: not strictly after it; b always merged
    assert at_mar == {"c", "z"}
    assert merged.loc[("a", FEB), "spend_365d"] == 5.0
    assert merged.loc[("a", FEB), "logins_30d"] == 1
    assert merged.loc[("c", FEB), "logins_30d"] == 0


def test_features_recompute_for_the_merged_customer(merged: pd.DataFrame) -> None:
    c = merged.loc[("c", MAR)]
    # purchase days Jan 5, Jan 10 (a), Jan 20, Jan 25 (b), Feb 10 (a)
    assert (c["frequency"], c["recency"]) == (4, 36.0)
    assert c["first_purchase_value"] == 10.0
    assert c["T"] == 56.0  # Jan 5 -> Mar 1
    assert c["spend_30d"] == 7.0  # a's Feb 10 order
    assert (c["logins_30d"], c["logins_90d"]) == (2, 3)  # c's, b's and a's January login
    # attributes: c's own version; signup and tenure: the earliest of the merged ids (a's)
    assert c["acquisition_channel"] == "ads"
    assert c["signup_cohort"] == "2023-11"
    assert merged.loc[("c", FEB), "signup_cohort"] == "2023-12"
    assert merged.loc[("a", FEB), "acquisition_channel"] == "seo"


def test_without_identities_every_id_is_its_own_customer() -> None:
    alone = _features(None)
    assert set(alone.xs(MAR, level="event_timestamp").index) == {"a", "b", "c", "z"}
    empty = resolve(_identities().edges.iloc[:0])
    pd.testing.assert_frame_equal(
        _features(empty).drop(columns="created_timestamp"),
        alone.drop(columns="created_timestamp"),
    )


def test_known_entities_list_canonical_customers_only() -> None:
    before = known_entities(_tx(), _customers(), FEB, identities=_identities())
    after = known_entities(_tx(), _customers(), MAR, identities=_identities())
    assert sorted(before["customer_id"]) == ["a", "c", "z"]
    assert sorted(after["customer_id"]) == ["c", "z"]


def _bucket(ids: list[str], buckets: int) -> list[int]:
    con = duckdb.connect()
    try:
        rows = con.execute(
            f"SELECT hash(CAST(i AS VARCHAR)) % {buckets} FROM unnest(?) t(i)", [ids]
        ).fetchall()
    finally:
        con.close()
    return [int(r[0]) for r in rows]


def test_buckets_keep_a_customers_ids_together(tmp_path: Path) -> None:
    # 40 customers, each with two aliases; m00 was first merged into k00, then remapped to
    # its customer: a bucket by the final customer would split k00 from m00 in February
    n = 40
    customers = [f"k{i:02d}" for i in range(n)]
    tx = pd.DataFrame(
        {
            "customer_id": [p + c[1:] for c in customers for p in ("k", "m", "n")],
            "ts": _ts(["2024-01-10T08:00", "2024-01-12T08:00", "2024-02-14T08:00"] * n),
            "amount": [10.0, 3.0, 5.0] * n,
        }
    )
    rows = [(f"m{c[1:]}", c, "2024-01-20") for c in customers]
    rows += [(f"n{c[1:]}", c, None) for c in customers]
    rows += [("m00", "k01", "2024-01-05"), ("k00", "k01", "2024-01-15")]
    rows += [("k00", "k00x", "2024-02-05")]  # k00 itself becomes an alias later
    identities = pd.DataFrame(
        {
            "alias_id": [r[0] for r in rows],
            "customer_id": [r[1] for r in rows],
            "valid_from": _ts([r[2] for r in rows]),
        }
    )
    assert len(set(_bucket(["k05", "m05", "n05"], 4))) > 1  # without groups: split
    settings = load_settings(tmp_path, environ={})
    write_table(settings, "transactions", tx)
    write_table(settings, "identities", identities)
    one = pd.read_parquet(build_features(settings, buckets=1).path)
    many = pd.read_parquet(build_features(settings, buckets=4).path)
    assert build_features(settings, buckets=4).chunks == 4

    def tidy(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.drop(columns="created_timestamp").sort_values(KEYS, ignore_index=True)

    pd.testing.assert_frame_equal(tidy(many), tidy(one))
    mar = one.loc[one["event_timestamp"] == MAR].set_index("customer_id")
    assert mar.loc["k05", "spend_365d"] == 18.0  # k05 + m05 + n05
    assert "k00" not in mar.index and mar.loc["k00x", "spend_365d"] == 18.0
    assert mar["spend_365d"].sum() == pytest.approx(18.0 * n)
