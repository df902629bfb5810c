"""The subscription tables through ingest (issue 18): subscriptions (one row per subscription,
its latest state: a re-sent row with ended_at filled in replaces the stored one) and
subscription_changes (a subscription's state from ts on, within its span), quarantined like the
others; and the point-in-time reader."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from quarantine_files import reasons, write

from clv.cli.main import main
from clv.core.contracts import CONTRACTS, TS_DTYPE, RejectReason
from clv.core.settings import Settings, load_settings
from clv.core.store import has_table, read_table
from clv.inputs.ingest import INGEST_ORDER, infer_table, ingest, ingest_all, status, validate
from clv.inputs.subscriptions import read_subscriptions, subscriptions_at

NOW = pd.Timestamp("2024-06-15", tz="UTC")
SUBS = "customer_id,subscription_id,plan,seats,mrr,started_at,ended_at,billing_period,trial\n"
CHANGES = "subscription_id,ts,plan,seats,mrr\n"


def ts(day: str) -> pd.Timestamp:
    return pd.Timestamp(day, tz="UTC")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(tmp_path, environ={})


def test_contracts_keys_file_names_and_order() -> None:
    assert CONTRACTS["subscriptions"].key == ("subscription_id",)
    assert CONTRACTS["subscription_changes"].key == ("subscription_id", "ts")
    assert infer_table(Path("subscriptions_2024-06-01.csv")) == "subscriptions"
    assert infer_table(Path("subscription_changes-2024.parquet")) == "subscription_changes"
    assert INGEST_ORDER.index("subscriptions") < INGEST_ORDER.index("subscription_changes")


def test_subscriptions_stored_with_their_dtypes_and_defaults(
    settings: Settings, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "subscriptions.csv",
        SUBS
        + "C2,S2,team,5,120,2024-02-01,2024-05-01T12:00:00Z,month,no\n"
        + "C1,S1,pro,,19.5,2024-01-10,,Year,YES\n"  # seats missing: 1; Year: year
        + "C1,S3,basic,2,10,2024-02-01,2024-02-01,MONTH,\n"  # ended at once; trial missing
        + "C3,S4,pro,1,0,2024-03-01,,month,1\n",  # mrr 0 (a free month); trial 1
    )
    r = ingest(settings, path, now=NOW)
    assert (r.read, r.inserted, r.quarantined) == (4, 4, {})
    stored = read_table(settings, "subscriptions")
    assert list(stored.columns) == list(CONTRACTS["subscriptions"].names)
    # by started_at, then subscription_id
    assert stored["subscription_id"].tolist() == ["S1", "S2", "S3", "S4"]
    assert stored["seats"].tolist() == [1.0, 5.0, 2.0, 1.0]
    assert stored["mrr"].tolist() == [19.5, 120.0, 10.0, 0.0]
    assert stored["billing_period"].tolist() == ["year", "month", "month", "month"]
    assert stored["trial"].tolist() == [True, False, False, True]
    assert stored["ended_at"].tolist()[1:3] == [ts("2024-05-01 12:00"), ts("2024-02-01")]
    assert pd.isna(stored["ended_at"].iloc[0])
    dtypes = stored.dtypes.astype(str).to_dict()
    assert dtypes == {
        "customer_id": "object",
        "subscription_id": "object",
        "plan": "object",
        "seats": "float64",
        "mrr": "float64",
        "started_at": TS_DTYPE,
        "ended_at": TS_DTYPE,
        "billing_period": "object",
        "trial": "bool",
    }
    spans = {s.table: (s.rows, s.start, s.end) for s in status(settings)}
    assert spans["subscriptions"] == (4, ts("2024-01-10"), ts("2024-03-01"))


def test_subscriptions_quarantine_each_reason(settings: Settings, tmp_path: Path) -> None:
    path = write(
        tmp_path / "subscriptions.csv",
        SUBS
        + "C1,S1,pro,3,90,2024-01-01,,month,false\n"  # 1 good
        + ",S2,pro,3,90,2024-01-01,,month,false\n"  # 2 no customer
        + "C2,,pro,3,90,2024-01-01,,month,false\n"  # 3 no subscription id
        + "C2,S3,,3,90,2024-01-01,,month,false\n"  # 4 no plan
        + "C2,S4,pro,3,,2024-01-01,,month,false\n"  # 5 no mrr
        + "C2,S5,pro,3,-90,2024-01-01,,month,false\n"  # 6 negative mrr
        + "C2,S6,pro,-1,90,2024-01-01,,month,false\n"  # 7 negative seats
        + "C2,S7,pro,three,90,2024-01-01,,month,false\n"  # 8 non-numeric seats
        + "C2,S8,pro,3,90,2024-01-01,,weekly,false\n"  # 9 not month or year
        + "C2,S9,pro,3,90,2024-01-01,,,false\n"  # 10 no billing period
        + "C2,S10,pro,3,90,2024-01-01,,month,maybe\n"  # 11 not a boolean
        + "C2,S11,pro,3,90,2024-03-01,2024-02-28,month,false\n"  # 12 ended before it started
        + "C2,S12,pro,3,90,,,month,false\n"  # 13 no start
        + "C2,S13,pro,3,90,2024-01-01,soon,month,false\n"  # 14 unparseable end
        + "C2,S14,pro,3,90,2024-01-01,2024-07-01,month,false\n"  # 15 end in the future
        + "C2,S15,pro,-1,90,2024-01-01,,weekly,maybe\n"  # 16 the first reason: not a boolean
        + "C3,S16,pro,3,90,2024-01-01,,year,0\n",  # 17 good
    )
    r = ingest(settings, path, now=NOW)
    assert (r.read, r.inserted) == (17, 2)
    assert reasons(r.quarantine_path) == {
        2: RejectReason.MISSING_ID.value,
        3: RejectReason.MISSING_VALUE.value,
        4: RejectReason.MISSING_VALUE.value,
        5: RejectReason.MISSING_VALUE.value,
        6: RejectReason.NEGATIVE_VALUE.value,
        7: RejectReason.NEGATIVE_VALUE.value,
        8: RejectReason.BAD_VALUE.value,
        9: RejectReason.INVALID_CHOICE.value,
        10: RejectReason.MISSING_VALUE.value,
        11: RejectReason.BAD_BOOLEAN.value,
        12: RejectReason.END_BEFORE_START.value,
        13: RejectReason.MISSING_VALUE.value,
        14: RejectReason.BAD_TIMESTAMP.value,
        15: RejectReason.FUTURE_TIMESTAMP.value,
        16: RejectReason.BAD_BOOLEAN.value,
    }
    assert sum(r.quarantined.values()) == 15
    assert r.quarantined[RejectReason.MISSING_VALUE.value] == 5
    assert read_table(settings, "subscriptions")["subscription_id"].tolist() == ["S1", "S16"]


def test_a_resent_export_with_ended_at_filled_in_updates_the_stored_row(tmp_path: Path) -> None:
    first = SUBS + "C1,S1,pro,3,90,2024-01-01,,month,no\nC2,S2,basic,1,10,2024-02-01,,month,no\n"
    ended = SUBS + "C1,S1,pro,3,90,2024-01-01,2024-06-01,month,no\n"
    ended += "C2,S2,basic,1,10,2024-02-01,,month,no\n"
    for env in ({}, {"CLV_INGEST__ON_KEY_CONFLICT": "quarantine"}):  # either policy: an update
        ws = tmp_path / ("strict" if env else "default")
        settings = load_settings(ws, environ=env)
        ingest(settings, write(ws / "subscriptions.csv", first), now=NOW)
        again = ingest(settings, ws / "subscriptions.csv", now=NOW)
        assert (again.inserted, again.replaced, again.unchanged) == (0, 0, 2)
        r = ingest(settings, write(ws / "subscriptions-2024-06-02.csv", ended), now=NOW)
        assert (r.inserted, r.replaced, r.unchanged, r.quarantined) == (0, 1, 1, {})
        stored = read_table(settings, "subscriptions").set_index("subscription_id")
        assert len(stored) == 2
        assert stored.loc["S1", "ended_at"] == ts("2024-06-01")
        assert pd.isna(stored.loc["S2", "ended_at"])


def test_a_key_conflict_still_quarantines_a_changed_change(tmp_path: Path) -> None:
    """Only subscriptions are latest states: a corrected change is a correction."""
    strict = load_settings(tmp_path, environ={"CLV_INGEST__ON_KEY_CONFLICT": "quarantine"})
    ingest(
        strict,
        write(tmp_path / "subscriptions.csv", SUBS + "C1,S1,pro,3,90,2024-01-01,,month,no\n"),
    )
    ingest(strict, write(tmp_path / "subscription_changes.csv", CHANGES + "S1,2024-03-01,,4,120\n"))
    r = ingest(
        strict, write(tmp_path / "subscription_changes-2.csv", CHANGES + "S1,2024-03-01,,4,125\n")
    )
    assert (r.inserted, r.replaced, r.quarantined) == (0, 0, {"key_conflict": 1})
    assert read_table(strict, "subscription_changes")["mrr"].tolist() == [120.0]


def test_daily_parts_keep_each_subscriptions_last_row(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "subscriptions"
    day1 = SUBS + "C1,S1,pro,3,90,2024-01-01,,month,no\nC2,S2,basic,1,10,2024-02-01,,month,no\n"
    day2 = (
        SUBS
        + "C1,S1,pro,3,90,2024-01-01,,month,no\nC2,S2,basic,1,10,2024-02-01,2024-06-01,month,no\n"
    )
    day3 = (
        SUBS
        + "C1,S1,pro,3,90,2024-01-01,,month,no\nC2,S2,basic,1,10,2024-02-01,2024-06-01,month,no\n"
    )
    for name, text in (
        ("2024-06-01.csv", day1),
        ("2024-06-02.csv", day2),
        ("2024-06-03.csv", day3),
    ):
        write(folder / name, text)
    r = ingest(settings, folder, now=NOW)
    # 6 rows: 2 stored, 4 superseded (repeats of an unchanged row too), none quarantined
    assert (r.read, r.inserted, r.superseded, r.quarantined) == (6, 2, 4, {})
    stored = read_table(settings, "subscriptions").set_index("subscription_id")
    assert stored.loc["S2", "ended_at"] == ts("2024-06-01")
    assert pd.isna(stored.loc["S1", "ended_at"])
    v = validate(pd.read_csv(folder / "2024-06-02.csv", dtype=str), "subscriptions", now=NOW)
    assert (len(v.accepted), v.superseded, v.read) == (2, 0, 2)


SUBSCRIBED = SUBS + (
    "C1,S1,pro,3,90,2024-01-01,2024-05-01,month,no\n"  # ended
    "C2,S2,basic,1,10,2024-02-01,,month,no\n"  # active
)


def test_changes_quarantine_each_reason(settings: Settings, tmp_path: Path) -> None:
    ingest(settings, write(tmp_path / "subscriptions.csv", SUBSCRIBED), now=NOW)
    path = write(
        tmp_path / "subscription_changes.csv",
        CHANGES
        + "S1,2024-03-01,team,5,150\n"  # 1 good
        + "S1,2024-01-01,,4,120\n"  # 2 good: at the start
        + "S1,2024-05-01,,,0\n"  # 3 good: at the end
        + "S1,2023-12-31,,,80\n"  # 4 before its start
        + "S1,2024-05-02,,,0\n"  # 5 after its end
        + "S2,2024-03-01,,,\n"  # 6 no mrr
        + "S2,2024-03-01,,-2,10\n"  # 7 negative seats
        + "S2,2024-03-01,,,-10\n"  # 8 negative mrr
        + ",2024-03-01,,,10\n"  # 9 no subscription id
        + "S2,,,,10\n"  # 10 no time
        + "S2,2024-07-01,,,10\n"  # 11 in the future
        + "S1,2024-03-01,team,5,150\n"  # 12 the same row as 1
        + "S1,2024-03-01,team,6,180\n"  # 13 row 1's key, other values
        + "S9,2024-04-01,,,30\n"  # 14 a subscription not ingested yet: kept
        + "S2,2024-04-01,,2,20\n",  # 15 good: plan unchanged (missing)
    )
    r = ingest(settings, path, now=NOW)
    assert (r.read, r.inserted, r.unmatched) == (15, 5, 1)
    assert reasons(r.quarantine_path) == {
        4: RejectReason.OUTSIDE_SUBSCRIPTION.value,
        5: RejectReason.OUTSIDE_SUBSCRIPTION.value,
        6: RejectReason.MISSING_VALUE.value,
        7: RejectReason.NEGATIVE_VALUE.value,
        8: RejectReason.NEGATIVE_VALUE.value,
        9: RejectReason.MISSING_VALUE.value,
        10: RejectReason.MISSING_VALUE.value,
        11: RejectReason.FUTURE_TIMESTAMP.value,
        12: RejectReason.DUPLICATE.value,
        13: RejectReason.DUPLICATE_LINE.value,
    }
    stored = read_table(settings, "subscription_changes")
    assert list(stored.columns) == ["subscription_id", "ts", "plan", "seats", "mrr"]
    assert str(stored["ts"].dtype) == TS_DTYPE
    assert list(zip(stored["subscription_id"], stored["ts"], strict=True)) == [
        ("S1", ts("2024-01-01")),
        ("S1", ts("2024-03-01")),
        ("S2", ts("2024-04-01")),
        ("S9", ts("2024-04-01")),
        ("S1", ts("2024-05-01")),
    ]
    assert stored["plan"].tolist() == [None, "team", None, None, None]
    assert stored["mrr"].tolist() == [120.0, 150.0, 20.0, 30.0, 0.0]


def test_a_folder_judges_changes_against_its_own_subscriptions(
    settings: Settings, tmp_path: Path
) -> None:
    raw = tmp_path / "raw"
    write(
        raw / "subscription_changes.csv",
        CHANGES + "S1,2023-12-01,,,5\nS1,2024-03-01,,,95\nS3,2024-03-01,,,1\n",
    )
    write(
        raw / "subscriptions.csv",
        SUBSCRIBED + "C3,S3,pro,1,-5,2024-01-01,,month,no\n",  # S3 quarantined: its change kept
    )
    write(raw / "transactions.csv", "customer_id,ts,amount\nC1,2024-01-03,90\n")
    run = ingest_all(settings, raw, now=NOW)
    assert [r.table for r in run] == ["transactions", "subscriptions", "subscription_changes"]
    subs, changes = run[1], run[2]
    assert (subs.inserted, subs.quarantined) == (2, {RejectReason.NEGATIVE_VALUE.value: 1})
    assert (changes.inserted, changes.unmatched) == (2, 1)
    assert changes.quarantined == {RejectReason.OUTSIDE_SUBSCRIPTION.value: 1}


def test_a_change_file_before_its_subscriptions_is_kept(settings: Settings, tmp_path: Path) -> None:
    early = CHANGES + "S1,2023-12-01,,,5\nS1,2024-03-01,,,95\n"
    r = ingest(settings, write(tmp_path / "subscription_changes.csv", early), now=NOW)
    assert (r.inserted, r.unmatched, r.quarantined) == (2, 2, {})
    ingest(settings, write(tmp_path / "subscriptions.csv", SUBSCRIBED), now=NOW)
    again = ingest(settings, tmp_path / "subscription_changes.csv", now=NOW)
    # judged now: the change before S1 began is quarantined (its stored row stays, unread)
    outside = {RejectReason.OUTSIDE_SUBSCRIPTION.value: 1}
    assert (again.unchanged, again.unmatched, again.quarantined) == (1, 0, outside)
    tables = read_subscriptions(settings)
    assert tables is not None
    at = tables.at(ts("2024-04-01")).set_index("subscription_id")
    assert at.loc["S1", "mrr"] == 95.0  # the change of 2023-12-01, before S1 began, says nothing
    assert tables.at(ts("2024-02-01")).set_index("subscription_id").loc["S1", "mrr"] == 90.0


def test_parquet_subscriptions_with_typed_columns(settings: Settings, tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C3"],
            "subscription_id": ["S1", "S2", "S3"],
            "plan": "pro",
            "seats": [2, 1, np.nan],
            "mrr": [20.0, 10.0, 10.0],
            "started_at": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]),  # naive: UTC
            "ended_at": pd.to_datetime([None, "2024-03-01", None]),
            "billing_period": ["month", "year", "month"],
            "trial": pd.array([True, False, None], dtype="boolean"),
        }
    )
    frame.to_parquet(tmp_path / "subscriptions.parquet", index=False)
    r = ingest(settings, tmp_path / "subscriptions.parquet", now=NOW)
    assert (r.inserted, r.quarantined) == (3, {})
    numbers = frame.iloc[:2].assign(subscription_id=["S4", "S5"], trial=[1, 2])  # 2: no boolean
    numbers.to_parquet(tmp_path / "subscriptions-2.parquet", index=False)
    r = ingest(settings, tmp_path / "subscriptions-2.parquet", now=NOW)
    assert (r.inserted, r.quarantined) == (1, {RejectReason.BAD_BOOLEAN.value: 1})
    stored = read_table(settings, "subscriptions")
    assert stored["trial"].tolist() == [True, True, False, False]  # S1, S4, S2, S3
    assert stored["seats"].tolist() == [2.0, 2.0, 1.0, 1.0]
    assert stored["started_at"].tolist()[:2] == [ts("2024-01-01")] * 2


def test_subscriptions_at_a_time_see_only_what_happened_before_it() -> None:
    subs = pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C3"],
            "subscription_id": ["S1", "S2", "S3"],
            "plan": ["basic", "pro", "pro"],
            "seats": [1.0, 5.0, 1.0],
            "mrr": [10.0, 250.0, 30.0],
            "started_at": [ts("2024-01-01"), ts("2024-02-01"), ts("2024-03-01")],
            "ended_at": [pd.NaT, ts("2024-03-01"), pd.NaT],
            "billing_period": ["month", "year", "month"],
            "trial": [False, False, True],
        }
    ).astype({"started_at": TS_DTYPE, "ended_at": TS_DTYPE})
    changes = pd.DataFrame(
        {
            "subscription_id": ["S1", "S1", "S1", "S2", "S9"],
            "ts": [
                ts("2024-01-15"),
                ts("2024-02-01"),
                ts("2024-03-01"),
                ts("2024-03-05"),
                ts("2024-01-20"),
            ],
            "plan": ["pro", None, None, None, "pro"],
            "seats": [np.nan, 3.0, np.nan, np.nan, 1.0],
            "mrr": [40.0, 120.0, 0.0, 1.0, 9.0],
        }
    ).astype({"ts": TS_DTYPE})
    at = subscriptions_at(subs, changes, ts("2024-03-01")).set_index("subscription_id")
    assert at.index.tolist() == ["S1", "S2"]  # S3 starts at t: not seen; S9 unknown
    # S1: the plan of 01-15, the seats and mrr of 02-01; the change at t not seen yet
    assert at.loc["S1", ["plan", "seats", "mrr"]].tolist() == ["pro", 3.0, 120.0]
    # S2 ends at t: not known at t, so active, its end missing
    assert bool(at.loc["S2", "active"]) and pd.isna(at.loc["S2", "ended_at"])
    later = subscriptions_at(subs, changes, ts("2024-03-10")).set_index("subscription_id")
    assert later.index.tolist() == ["S1", "S2", "S3"]
    assert later["active"].tolist() == [True, False, True]
    assert later.loc["S2", "ended_at"] == ts("2024-03-01")
    assert later.loc["S2", "mrr"] == 250.0  # its change of 03-05 is after its end
    assert later.loc["S1", "mrr"] == 0.0
    assert later.loc["S3", ["plan", "seats", "mrr", "trial"]].tolist() == ["pro", 1.0, 30.0, True]
    assert str(later["started_at"].dtype) == str(later["ended_at"].dtype) == TS_DTYPE


def test_a_workspace_without_subscriptions_ingests_as_before(
    settings: Settings, tmp_path: Path
) -> None:
    raw = tmp_path / "raw"
    write(raw / "customers.csv", "customer_id,signup_ts\nC1,2024-01-03\n")
    write(raw / "transactions.csv", "customer_id,ts,amount\nC1,2024-01-03,20\n")
    run = ingest_all(settings, raw, now=NOW)
    assert [r.table for r in run] == ["customers", "transactions"]
    assert all(r.superseded == 0 and r.unmatched == 0 for r in run)
    assert not has_table(settings, "subscriptions")
    assert read_subscriptions(settings) is None
    stored = {s.table: s.stored for s in status(settings)}
    assert not stored["subscriptions"] and not stored["subscription_changes"]


def test_the_summary_says_what_became_of_the_rows(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write(raw / "subscriptions.csv", SUBSCRIBED + "C3,S3,pro,1,10,2024-01-01,,weekly,no\n")
    write(raw / "subscription_changes.csv", CHANGES + "S1,2024-06-01,,,0\nS9,2024-04-01,,,30\n")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--workspace", str(tmp_path), "data", "ingest", str(raw)])
    assert code == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(
        "subscriptions: read 3, inserted 2, replaced 0, unchanged 0, quarantined 1 "
        "(invalid_choice 1) -> "
    )
    assert lines[1].startswith(
        "subscription_changes: read 2, inserted 1, replaced 0, unchanged 0, quarantined 1 "
        "(outside_subscription 1) -> "
    )
    assert lines[1].endswith(
        "; stored 1 rows; 1 of subscriptions not ingested yet (kept, span unchecked)"
    )
