"""The decisions' tables through ingest: acquisition_costs (one row per channel and month,
spend >= 0) and assignments (one arm per customer and experiment), quarantined, keyed and
stored like the others; the feature tables do not notice them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from quarantine_files import reasons, write

from clv.core.contracts import CONTRACTS, TABLES, TS_DTYPE, RejectReason
from clv.core.settings import Settings, load_settings
from clv.core.store import read_table
from clv.inputs.ingest import INGEST_ORDER, infer_table, ingest, ingest_all, status, validate

NOW = pd.Timestamp("2024-06-15", tz="UTC")
JAN, FEB = pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-02-01", tz="UTC")
COSTS = "channel,month,spend,new_customers\n"
ARMS = "experiment,customer_id,arm,assigned_at\n"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(tmp_path, environ={})


def test_every_table_has_a_contract_and_an_ingest_place() -> None:
    assert set(CONTRACTS) == set(TABLES) == set(INGEST_ORDER)
    assert INGEST_ORDER[-2:] == ("acquisition_costs", "assignments")
    assert CONTRACTS["acquisition_costs"].key == ("channel", "month")
    assert CONTRACTS["assignments"].key == ("experiment", "customer_id")
    assert infer_table(Path("acquisition_costs-2024.csv")) == "acquisition_costs"
    assert infer_table(Path("assignments.parquet")) == "assignments"


def test_a_month_is_stored_as_its_first_instant_in_utc() -> None:
    frame = pd.DataFrame(
        {
            "channel": ["a", "b", "c", "d", "e"],
            "month": ["2024-01", "2024-01-01", "2024-01-31T23:59:59Z", "Jan 2024", "2024-02-01"],
            "spend": ["1", "2", "3", "4", "5"],
        }
    )
    v = validate(frame, "acquisition_costs", now=NOW)
    assert v.counts == {}
    assert str(v.accepted["month"].dtype) == TS_DTYPE
    assert list(v.accepted["month"]) == [JAN, JAN, JAN, JAN, FEB]
    assert v.accepted["new_customers"].isna().all()  # optional, absent


def test_a_time_in_a_month_elsewhere_is_the_utc_month_it_falls_in() -> None:
    frame = pd.DataFrame(
        {"channel": ["a", "b"], "month": ["2024-01-31T22:00-05:00", "2024-02-01T01:00+02:00"]}
    ).assign(spend="1")
    v = validate(frame, "acquisition_costs", now=NOW)
    assert list(v.accepted["month"]) == [FEB, JAN]


def test_a_month_in_progress_is_not_in_the_future() -> None:
    frame = pd.DataFrame({"channel": ["a", "b"], "month": ["2024-06-28", "2024-07"], "spend": "1"})
    v = validate(frame, "acquisition_costs", now=NOW)  # NOW: 2024-06-15
    assert list(v.accepted["month"]) == [pd.Timestamp("2024-06-01", tz="UTC")]
    assert v.counts == {RejectReason.FUTURE_TIMESTAMP.value: 1}


def test_acquisition_costs_quarantine_each_reason(settings: Settings, tmp_path: Path) -> None:
    path = write(
        tmp_path / "acquisition_costs.csv",
        COSTS
        + "paid_search,2024-01,1200.50,40\n"  # 1 good
        + "social,2024-01,300,\n"  # 2 good: new_customers optional
        + ",2024-01,10,1\n"  # 3 no channel
        + "affiliate,,10,1\n"  # 4 no month
        + "affiliate,2024-01,,1\n"  # 5 no spend
        + "affiliate,sometime,10,1\n"  # 6 unparseable month
        + "affiliate,2024-01,-5,1\n"  # 7 negative spend
        + "affiliate,2024-01,12;50,1\n"  # 8 non-numeric spend
        + "affiliate,2024-01,10,-1\n"  # 9 negative new_customers
        + "affiliate,2024-01,10,many\n"  # 10 non-numeric new_customers
        + "paid_search,2024-01-01,1200.5,40\n"  # 11 the same row as 1
        + "social,2024-01-20,350,\n"  # 12 row 2's key, another spend
        + "organic,2024-02,0,12\n",  # 13 good: zero spend
    )
    r = ingest(settings, path, now=NOW)
    assert (r.read, r.inserted, r.replaced, r.unchanged) == (13, 3, 0, 0)
    assert reasons(r.quarantine_path) == {
        3: RejectReason.MISSING_VALUE.value,
        4: RejectReason.MISSING_VALUE.value,
        5: RejectReason.MISSING_VALUE.value,
        6: RejectReason.BAD_TIMESTAMP.value,
        7: RejectReason.NEGATIVE_VALUE.value,
        8: RejectReason.BAD_VALUE.value,
        9: RejectReason.NEGATIVE_VALUE.value,
        10: RejectReason.BAD_VALUE.value,
        11: RejectReason.DUPLICATE.value,
        12: RejectReason.DUPLICATE_LINE.value,
    }
    stored = read_table(settings, "acquisition_costs")
    assert list(stored.columns) == list(CONTRACTS["acquisition_costs"].names)
    assert stored["channel"].tolist() == ["paid_search", "social", "organic"]  # month, channel
    assert stored["month"].tolist() == [JAN, JAN, FEB]
    assert stored["spend"].tolist() == [1200.5, 300.0, 0.0]
    assert stored["new_customers"].fillna(-1).tolist() == [40.0, -1, 12.0]


def test_acquisition_costs_reingest_unchanged_and_a_corrected_spend_replaces(
    settings: Settings, tmp_path: Path
) -> None:
    first = COSTS + "paid_search,2024-01,1200,40\nsocial,2024-01,300,10\nsocial,2024-02,310,9\n"
    path = write(tmp_path / "acquisition_costs.csv", first)
    assert ingest(settings, path, now=NOW).inserted == 3
    again = ingest(settings, path, now=NOW)
    assert (again.inserted, again.replaced, again.unchanged, again.stored_rows) == (0, 0, 3, 3)
    assert again.quarantine_path is None
    # The February spend corrected, the month written as a date this time; a new month.
    fixed = COSTS + "social,2024-02-01,325.5,9\nsocial,2024-03,280,8\n"
    r = ingest(settings, write(tmp_path / "acquisition_costs-fix.csv", fixed), now=NOW)
    assert (r.inserted, r.replaced, r.unchanged, r.quarantined) == (1, 1, 0, {})
    stored = read_table(settings, "acquisition_costs").set_index(["channel", "month"])
    assert len(stored) == 4
    assert stored.loc[("social", FEB), "spend"] == 325.5
    assert stored.loc[("paid_search", JAN), "spend"] == 1200.0
    # stored by month, then channel
    assert list(stored.index.get_level_values("month")) == sorted(
        stored.index.get_level_values("month")
    )


def test_acquisition_costs_key_conflict_under_quarantine(tmp_path: Path) -> None:
    strict = load_settings(tmp_path, environ={"CLV_INGEST__ON_KEY_CONFLICT": "quarantine"})
    ingest(strict, write(tmp_path / "acquisition_costs.csv", COSTS + "social,2024-02,310,9\n"))
    r = ingest(
        strict,
        write(tmp_path / "acquisition_costs-2.csv", COSTS + "social,2024-02,325,9\n"),
        now=NOW,
    )
    assert (r.inserted, r.replaced, r.quarantined) == (0, 0, {"key_conflict": 1})
    assert read_table(strict, "acquisition_costs")["spend"].tolist() == [310.0]


def test_assignments_quarantine_each_reason(settings: Settings, tmp_path: Path) -> None:
    path = write(
        tmp_path / "assignments.csv",
        ARMS
        + "retention,C1,control,2024-03-01\n"  # 1 good
        + "retention,C2,treatment,2024-03-01T00:00:00Z\n"  # 2 good
        + "retention,,control,2024-03-01\n"  # 3 no customer
        + ",C3,control,2024-03-01\n"  # 4 no experiment
        + "retention,C3,,2024-03-01\n"  # 5 no arm
        + "retention,C3,control,\n"  # 6 no time
        + "retention,C3,control,the first\n"  # 7 unparseable time
        + "retention,C3,control,2030-01-01\n"  # 8 in the future
        + "retention,C1,control,2024-03-01 00:00\n"  # 9 the same row as 1
        + "retention,C2,control,2024-03-01\n"  # 10 C2 again, in the other arm
        + "pricing,C1,treatment,2024-04-01\n",  # 11 good: C1 in another experiment
    )
    r = ingest(settings, path, now=NOW)
    assert (r.read, r.inserted) == (11, 3)
    assert reasons(r.quarantine_path) == {
        3: RejectReason.MISSING_ID.value,
        4: RejectReason.MISSING_VALUE.value,
        5: RejectReason.MISSING_VALUE.value,
        6: RejectReason.MISSING_VALUE.value,
        7: RejectReason.BAD_TIMESTAMP.value,
        8: RejectReason.FUTURE_TIMESTAMP.value,
        9: RejectReason.DUPLICATE.value,
        10: RejectReason.DUPLICATE_LINE.value,
    }
    stored = read_table(settings, "assignments")
    assert list(stored.columns) == ["experiment", "customer_id", "arm", "assigned_at"]
    assert stored[["experiment", "customer_id", "arm"]].values.tolist() == [
        ["retention", "C1", "control"],
        ["retention", "C2", "treatment"],
        ["pricing", "C1", "treatment"],
    ]
    assert str(stored["assigned_at"].dtype) == TS_DTYPE


def test_a_later_file_moving_a_customer_to_another_arm(settings: Settings, tmp_path: Path) -> None:
    first = ARMS + "retention,C1,control,2024-03-01\nretention,C2,treatment,2024-03-01\n"
    path = write(tmp_path / "assignments.csv", first)
    ingest(settings, path, now=NOW)
    again = ingest(settings, path, now=NOW)
    assert (again.inserted, again.replaced, again.unchanged) == (0, 0, 2)
    moved = ARMS + "retention,C1,treatment,2024-03-01\n"
    r = ingest(settings, write(tmp_path / "assignments-2.csv", moved), now=NOW)
    assert (r.inserted, r.replaced, r.unchanged) == (0, 1, 0)
    arms = read_table(settings, "assignments").set_index("customer_id")["arm"]
    assert arms.to_dict() == {"C1": "treatment", "C2": "treatment"}  # one arm per customer

    strict = load_settings(
        tmp_path / "strict", environ={"CLV_INGEST__ON_KEY_CONFLICT": "quarantine"}
    )
    ingest(strict, path, now=NOW)
    r = ingest(strict, tmp_path / "assignments-2.csv", now=NOW)
    assert (r.replaced, r.quarantined) == (0, {"key_conflict": 1})
    arms = read_table(strict, "assignments").set_index("customer_id")["arm"]
    assert arms.to_dict() == {"C1": "control", "C2": "treatment"}


def test_parquet_costs_with_typed_months(settings: Settings, tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "channel": ["social", "referral"],
            "month": pd.to_datetime(["2024-01-17 08:00", "2024-02-29 23:00"]),  # naive: UTC
            "spend": [120.0, -1.0],
            "new_customers": [4, 2],
        }
    )
    path = tmp_path / "acquisition_costs.parquet"
    frame.to_parquet(path, index=False)
    r = ingest(settings, path, now=NOW)
    assert (r.inserted, r.quarantined) == (1, {RejectReason.NEGATIVE_VALUE.value: 1})
    assert read_table(settings, "acquisition_costs")["month"].tolist() == [JAN]


FOLDER = {
    "identities.csv": "alias_id,customer_id,valid_from\ne:1,C1,\n",
    "customers.csv": "customer_id,signup_ts,acquisition_channel\n"
    "C1,2024-01-03,social\nC2,2024-01-09,referral\n",
    "transactions.csv": "customer_id,ts,amount,order_id\n"
    "C1,2024-01-03,20,O1\ne:1,2024-02-10,15,O2\nC2,2024-01-09,40,O3\n",
    "events.csv": "customer_id,ts,event_type\nC1,2024-01-05,feature_use\n",
    "acquisition_costs.csv": COSTS + "social,2024-01,90,1\nreferral,2024-01,40,1\n",
    "assignments.csv": ARMS
    + "retention,C1,treatment,2024-03-01\nretention,C2,control,2024-03-01\n",
}


def test_a_folder_of_all_six_tables_ingests_in_order(settings: Settings, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for name, text in reversed(FOLDER.items()):
        write(raw / name, text)
    run = ingest_all(settings, raw, now=NOW)
    subscriptions = ("subscriptions", "subscription_changes")  # none in this folder
    assert [r.table for r in run] == [t for t in INGEST_ORDER if t not in subscriptions]
    assert {r.table: r.inserted for r in run} == {
        "identities": 1,
        "customers": 2,
        "transactions": 3,
        "events": 1,
        "acquisition_costs": 2,
        "assignments": 2,
    }
    assert all(f.outcome == "stored" for f in run.files)
    spans = {s.table: (s.rows, s.start, s.end) for s in status(settings)}
    assert spans["acquisition_costs"] == (2, JAN, JAN)
    march = pd.Timestamp("2024-03-01", tz="UTC")
    assert spans["assignments"] == (2, march, march)


def test_status_without_the_decision_tables(settings: Settings, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    write(raw / "transactions.csv", FOLDER["transactions.csv"])
    ingest_all(settings, raw, now=NOW)
    stored = {s.table: s.stored for s in status(settings)}
    assert stored == {t: t == "transactions" for t in TABLES}
