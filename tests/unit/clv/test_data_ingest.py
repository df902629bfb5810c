"""Ingest: validation reasons, quarantine files, idempotent merge, customer versions, order
lines, formats, errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from clv.core.contracts import TS_DTYPE, RejectReason
from clv.core.errors import DataError
from clv.core.settings import Settings, load_settings
from clv.core.store import read_table
from clv.inputs.ingest import infer_table, ingest, ingest_all, status, validate

NOW = pd.Timestamp("2024-06-01", tz="UTC")
JAN, FEB, MAR, MAY, JUN = (pd.Timestamp(f"2024-{m:02d}-01", tz="UTC") for m in (1, 2, 3, 5, 6))
TX_COLUMNS = ["customer_id", "ts", "amount", "margin", "order_id", "channel"]


def tx(*rows: tuple[str, str, str, str, str, str]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=TX_COLUMNS)


GOOD = ("C1", "2024-01-01T10:00:00Z", "10.5", "3.0", "O1", "web")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(tmp_path, environ={})


def test_each_reject_reason_first_that_applies() -> None:
    frame = tx(
        GOOD,
        (" ", "2024-01-01", "1", "", "O2", "web"),  # 2 missing id
        ("C2", "not a date", "1", "", "O3", "web"),  # 3 unparseable
        ("C2", "2024-07-01", "1", "", "O4", "web"),  # 4 future
        ("C2", "2024-01-02", "abc", "", "O5", "web"),  # 5 non-numeric amount
        ("C2", "2024-01-02", "5", "x", "O6", "web"),  # 6 non-numeric margin
        ("C2", "2024-01-02", "", "", "O7", "web"),  # 7 missing amount
        ("C2", "", "5", "", "O8", "web"),  # 8 missing ts
        GOOD,  # 9 duplicate of 1
        ("", "garbage", "abc", "", "O9", "web"),  # 10 missing id wins over the rest
        ("C3", "2030-01-01", "abc", "", "O10", "web"),  # 11 future wins over amount
    )
    v = validate(frame, "transactions", now=NOW)
    reasons = dict(zip(v.rejected["row_number"], v.rejected["reason"], strict=True))
    assert reasons == {
        2: RejectReason.MISSING_ID.value,
        3: RejectReason.BAD_TIMESTAMP.value,
        4: RejectReason.FUTURE_TIMESTAMP.value,
        5: RejectReason.BAD_AMOUNT.value,
        6: RejectReason.BAD_VALUE.value,
        7: RejectReason.MISSING_VALUE.value,
        8: RejectReason.MISSING_VALUE.value,
        9: RejectReason.DUPLICATE.value,
        10: RejectReason.MISSING_ID.value,
        11: RejectReason.FUTURE_TIMESTAMP.value,
    }
    assert v.counts == {
        "missing_customer_id": 2,
        "unparseable_timestamp": 1,
        "future_timestamp": 2,
        "non_numeric_amount": 1,
        "non_numeric_value": 1,
        "missing_required_value": 2,
        "exact_duplicate": 1,
    }
    assert len(v.accepted) == 1
    assert v.read == 11
    # originals are kept as text
    row5 = v.rejected.set_index("row_number").loc[5]
    assert row5["amount"] == "abc"
    assert row5["ts"] == "2024-01-02"


def test_accepted_rows_are_canonical() -> None:
    frame = tx(
        (" C1 ", "2024-01-01 10:00:00", "10", "", "", ""),  # naive -> UTC; blanks -> missing
        ("C2", "2024-01-01T12:00:00+02:00", "-3.25", "-1", "O2", "app"),  # offset -> UTC
        ("C3", "01/31/2024 10:00", "1e2", "30", "O3", "store"),  # a common non-ISO form
    )
    v = validate(frame, "transactions", now=NOW)
    acc = v.accepted
    assert len(v.rejected) == 0
    assert str(acc["ts"].dtype) == TS_DTYPE
    assert acc["customer_id"].tolist() == ["C1", "C2", "C3"]
    assert acc["ts"].tolist() == [
        pd.Timestamp("2024-01-01 10:00", tz="UTC"),
        pd.Timestamp("2024-01-01 10:00", tz="UTC"),
        pd.Timestamp("2024-01-31 10:00", tz="UTC"),
    ]
    assert acc["amount"].tolist() == [10.0, -3.25, 100.0]
    assert pd.isna(acc.loc[0, "margin"])
    assert acc.loc[0, "order_id"] is None
    assert acc["amount"].dtype == "float64"


def test_duplicates_judged_after_parsing() -> None:
    frame = tx(
        ("C1", "2024-01-01", "10", "", "O1", "web"),
        ("C1", "2024-01-01T00:00:00Z", "10.0", "", "O1", "web"),
        ("C1", "2024-01-01", "10", "", "O2", "web"),  # another order: not a duplicate
    )
    v = validate(frame, "transactions", now=NOW)
    assert v.rejected["row_number"].tolist() == [2]
    assert v.rejected["reason"].tolist() == ["exact_duplicate"]


def test_events_and_customers_rules() -> None:
    ev = pd.DataFrame(
        {
            "customer_id": ["C1", "C1"],
            "ts": ["2024-01-01", "2024-01-02"],
            "event_type": ["login", ""],
        }
    )
    v = validate(ev, "events", now=NOW)
    assert v.counts == {"missing_required_value": 1}
    cu = pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C3"],
            "signup_ts": ["", "yesterday-ish", "2023-05-05"],  # optional, but must parse if given
            "plan": ["free", "basic", "premium"],
        }
    )
    v = validate(cu, "customers", now=NOW)
    assert v.accepted["customer_id"].tolist() == ["C1", "C3"]
    assert v.counts == {"unparseable_timestamp": 1}
    assert v.accepted["country"].isna().all()  # optional column absent -> null


def test_missing_required_column_names_file_and_column(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "transactions.csv"
    tx(GOOD).drop(columns=["amount"]).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"transactions\.csv: missing required column 'amount'"):
        ingest(settings, path)


def test_bad_inputs_raise_data_error(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        ingest(settings, tmp_path / "transactions.csv")
    (tmp_path / "transactions.json").write_text("{}")
    with pytest.raises(DataError, match="unknown format"):
        ingest(settings, tmp_path / "transactions.json")
    (tmp_path / "orders.csv").write_text("customer_id,ts,amount\nC1,2024-01-01,1\n")
    with pytest.raises(DataError, match="cannot tell the table"):
        ingest(settings, tmp_path / "orders.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no transactions / customers / events"):
        ingest_all(settings, tmp_path / "empty")


def test_table_inferred_from_the_name() -> None:
    assert infer_table(Path("transactions.csv")) == "transactions"
    assert infer_table(Path("events-2024-01.parquet")) == "events"
    assert infer_table(Path("customers_eu.csv.gz")) == "customers"
    assert infer_table(Path("transactionsX.csv")) is None


def test_ingest_quarantines_stores_and_is_idempotent(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "transactions.csv"
    tx(GOOD, ("C2", "2024-01-02", "7", "", "O2", "app"), ("C3", "nope", "1", "", "O3", "")).to_csv(
        path, index=False
    )
    first = ingest(settings, path, now=NOW)
    assert (first.read, first.inserted, first.unchanged) == (3, 2, 0)
    assert first.quarantined == {"unparseable_timestamp": 1}
    assert first.stored_rows == 2
    assert first.quarantine_path is not None
    assert first.quarantine_path.parent == settings.quarantine_dir
    assert first.quarantine_path.name.startswith("transactions-")
    q = pd.read_csv(first.quarantine_path, dtype=str, keep_default_na=False)
    assert q.to_dict("records") == [
        {
            "row_number": "3",
            "reason": "unparseable_timestamp",
            "customer_id": "C3",
            "ts": "nope",
            "amount": "1",
            "margin": "",
            "order_id": "O3",
            "channel": "",
        }
    ]
    stored = read_table(settings, "transactions")
    assert str(stored["ts"].dtype) == TS_DTYPE
    assert stored["customer_id"].tolist() == ["C1", "C2"]

    second = ingest(settings, path, now=NOW)
    assert (second.inserted, second.unchanged, second.stored_rows) == (0, 2, 2)
    assert second.quarantined == {"unparseable_timestamp": 1}  # still reported, not stored
    assert len(read_table(settings, "transactions")) == 2

    more = tmp_path / "transactions-2.csv"
    tx(GOOD, ("C4", "2024-02-02", "9", "", "O9", "store")).to_csv(more, index=False)
    third = ingest(settings, more, now=NOW)
    assert (third.inserted, third.unchanged, third.stored_rows) == (1, 1, 3)
    assert third.quarantine_path is None


def _versions(settings: Settings) -> list[tuple[str, str | None, str | None, str | None]]:
    """(customer_id, plan, valid_from date, ingested_at date) of every stored version."""
    stored = read_table(settings, "customers")

    def day(ts: object) -> str | None:
        return None if pd.isna(ts) else pd.Timestamp(ts).strftime("%Y-%m-%d")

    return [
        (r.customer_id, r.plan, day(r.valid_from), day(r.ingested_at))
        for r in stored.itertuples(index=False)
    ]


def test_customers_without_valid_from_are_versioned_by_ingest_time(
    settings: Settings, tmp_path: Path
) -> None:
    p1 = tmp_path / "customers.csv"
    pd.DataFrame({"customer_id": ["C1", "C2"], "plan": ["free", "basic"]}).to_csv(p1, index=False)
    ingest(settings, p1, now=JAN)
    p2 = tmp_path / "customers-update.csv"
    pd.DataFrame(
        {"customer_id": ["C1", "C2", "C3", "C3"], "plan": ["premium", "basic", "free", "basic"]}
    ).to_csv(p2, index=False)
    res = ingest(settings, p2, now=FEB)
    # C1 changed: a new version; C2 did not; C3's first row is superseded by its second
    assert (res.inserted, res.unchanged, res.superseded, res.stored_rows) == (2, 1, 1, 4)
    assert _versions(settings) == [
        ("C1", "free", None, "2024-01-01"),
        ("C1", "premium", None, "2024-02-01"),
        ("C2", "basic", None, "2024-01-01"),
        ("C3", "basic", None, "2024-02-01"),
    ]
    again = ingest(settings, p2, now=MAR)  # the same file again: nothing new
    assert (again.inserted, again.unchanged, again.superseded) == (0, 3, 1)
    assert again.stored_rows == 4
    # An older file again is news: C1 is free as of now (a downgrade looks the same)
    old = ingest(settings, p1, now=MAR)
    assert (old.inserted, old.unchanged, old.stored_rows) == (1, 1, 5)
    assert _versions(settings)[2] == ("C1", "free", None, "2024-03-01")


def test_customers_with_valid_from_keep_their_history(settings: Settings, tmp_path: Path) -> None:
    base = tmp_path / "customers.csv"
    pd.DataFrame({"customer_id": ["C1"], "plan": ["free"]}).to_csv(base, index=False)
    ingest(settings, base, now=FEB)  # undated first version: in force from the beginning
    history = tmp_path / "customers-history.csv"
    pd.DataFrame(
        {
            "customer_id": ["C1", "C1", "C1", "C2", "C2"],
            "plan": ["free", "pro", "pro", "free", "pro"],
            "valid_from": ["2024-01-15", "2024-03-10", "2024-04-01", "2024-01-01", "2024-02-20"],
        }
    ).to_csv(history, index=False)
    res = ingest(settings, history, now=MAY)
    # C1 free on Jan 15: already in force (from the beginning); pro on Apr 1: in force since
    # Mar 10; C2's two rows are new
    assert (res.inserted, res.unchanged, res.superseded) == (3, 2, 0)
    assert _versions(settings) == [
        ("C1", "free", None, "2024-02-01"),
        ("C1", "pro", "2024-03-10", "2024-05-01"),
        ("C2", "free", "2024-01-01", "2024-05-01"),
        ("C2", "pro", "2024-02-20", "2024-05-01"),
    ]
    again = ingest(settings, history, now=JUN)
    assert (again.inserted, again.unchanged, again.stored_rows) == (0, 5, 4)
    # a correction: the same customer and valid_from with another plan replaces that version
    fix = tmp_path / "customers-fix.csv"
    pd.DataFrame({"customer_id": ["C2"], "plan": ["basic"], "valid_from": ["2024-02-20"]}).to_csv(
        fix, index=False
    )
    fixed = ingest(settings, fix, now=JUN)
    assert (fixed.inserted, fixed.replaced, fixed.stored_rows) == (0, 1, 4)
    assert _versions(settings)[3] == ("C2", "basic", "2024-02-20", "2024-06-01")


def test_customers_input_cannot_set_ingested_at(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "customers.csv"
    pd.DataFrame({"customer_id": ["C1"], "ingested_at": ["2020-01-01"]}).to_csv(path, index=False)
    ingest(settings, path, now=FEB)
    assert _versions(settings) == [("C1", None, None, "2024-02-01")]


LINE_COLUMNS = ["customer_id", "ts", "order_id", "line_id", "sku", "quantity", "unit_price"]


def test_order_lines_are_rows_identified_by_order_and_line(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "transactions.csv"
    lines = [
        ("C1", "2024-01-05T10:00", "O1", "1", "SKU-A", "2", "5"),
        ("C1", "2024-01-05T10:00", "O1", "2", "SKU-A", "2", "5"),  # the same goods, line 2
        ("C1", "2024-01-05T10:00", "O1", "2", "SKU-A", "2", "5"),  # line 2 again: a duplicate
        ("C1", "2024-01-05T10:00", "O1", "2", "SKU-B", "1", "9"),  # line 2, other values
        ("C2", "2024-01-06T10:00", "O2", "1", "SKU-B", "x", "9"),  # a bad quantity: amount
        ("C2", "2024-01-06T10:00", "O2", "2", "SKU-B", "", "9"),  # no amount, no quantity
    ]
    pd.DataFrame(lines, columns=LINE_COLUMNS).to_csv(path, index=False)  # no amount column
    first = ingest(settings, path, now=NOW)
    assert (first.read, first.inserted) == (6, 2)
    assert first.quarantined == {
        "exact_duplicate": 1,
        "duplicate_line": 1,
        "non_numeric_amount": 1,
        "missing_required_value": 1,
    }
    stored = read_table(settings, "transactions")
    assert stored["line_id"].tolist() == ["1", "2"]
    assert stored["amount"].tolist() == [10.0, 10.0]  # quantity x unit_price
    assert stored["quantity"].tolist() == [2.0, 2.0]

    again = ingest(settings, path, now=NOW)
    assert (again.inserted, again.unchanged, again.stored_rows) == (0, 2, 2)
    # another file with line 1 of O1 at another price: a correction, in the stored line's place
    other = tmp_path / "transactions-2.csv"
    pd.DataFrame(
        [("C1", "2024-01-05T10:00", "O1", "1", "SKU-A", "2", "6", "12")],
        columns=[*LINE_COLUMNS, "amount"],
    ).to_csv(other, index=False)
    third = ingest(settings, other, now=NOW)
    assert (third.inserted, third.replaced, third.unchanged, third.stored_rows) == (0, 1, 0, 2)
    stored = read_table(settings, "transactions")
    assert dict(zip(stored["line_id"], stored["amount"], strict=True)) == {"1": 12.0, "2": 10.0}


def test_amount_is_required_unless_quantity_and_unit_price(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "transactions.csv"
    pd.DataFrame({"customer_id": ["C1"], "ts": ["2024-01-01"], "quantity": ["1"]}).to_csv(
        path, index=False
    )
    with pytest.raises(DataError, match=r"'amount' \(or 'quantity' and 'unit_price'\)"):
        ingest(settings, path, now=NOW)
    given = validate(
        pd.DataFrame(
            {
                "customer_id": ["C1", "C1"],
                "ts": ["2024-01-01", "2024-01-02"],
                "amount": ["", "7"],
                "quantity": ["3", "3"],
                "unit_price": ["2.5", "2.5"],
            }
        ),
        "transactions",
        now=NOW,
    )
    assert given.accepted["amount"].tolist() == [7.5, 7.0]  # a given amount is kept


def test_parquet_and_csv_give_the_same_store(tmp_path: Path) -> None:
    typed = pd.DataFrame(
        {
            "customer_id": ["C1", "C2"],
            "ts": pd.to_datetime(["2024-01-01 10:00", "2024-01-02 11:30"]),  # naive -> UTC
            "amount": [10.5, -2.0],
            "margin": [3.0, None],
            "order_id": ["O1", "O2"],
            "channel": ["web", None],
        }
    )
    a = load_settings(tmp_path / "a", environ={})
    b = load_settings(tmp_path / "b", environ={})
    typed.to_parquet(tmp_path / "transactions.parquet")
    typed.to_csv(tmp_path / "transactions.csv", index=False)
    ra = ingest(a, tmp_path / "transactions.parquet", now=NOW)
    rb = ingest(b, tmp_path / "transactions.csv", now=NOW)
    assert ra.inserted == rb.inserted == 2
    pd.testing.assert_frame_equal(read_table(a, "transactions"), read_table(b, "transactions"))
    # a Parquet file with a timezone-aware column converts to UTC
    aware = typed.assign(ts=typed["ts"].dt.tz_localize("Europe/Berlin"))
    aware.to_parquet(tmp_path / "transactions-aware.parquet")
    v = ingest(a, tmp_path / "transactions-aware.parquet", now=NOW)
    assert (v.inserted, v.replaced) == (0, 2)  # one hour earlier: the same orders, corrected
    assert read_table(a, "transactions")["ts"].min() == pd.Timestamp("2024-01-01 09:00", tz="UTC")


def test_folder_ingest_and_status(settings: Settings, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    tx(GOOD).to_csv(raw / "transactions.csv", index=False)
    pd.DataFrame({"customer_id": ["C1"], "signup_ts": ["2023-12-01"]}).to_csv(
        raw / "customers.csv", index=False
    )
    (raw / "notes.txt").write_text("not a table")
    before = {s.table: s for s in status(settings)}
    assert not before["transactions"].stored
    results = ingest_all(settings, raw, now=NOW)
    assert [r.table for r in results] == ["customers", "transactions"]
    after = {s.table: s for s in status(settings)}
    assert after["transactions"].rows == 1
    assert after["transactions"].start == pd.Timestamp("2024-01-01 10:00", tz="UTC")
    assert after["customers"].end == pd.Timestamp("2023-12-01", tz="UTC")
    assert not after["events"].stored


def test_implausible_amounts_and_dates_before_the_minimum_are_quarantined() -> None:
    from clv.inputs.ingest import Plausibility

    frame = tx(
        GOOD,
        ("C2", "2024-01-02", "12.0", "", "O2", "web"),
        ("C3", "2024-01-03", "1e308", "", "O3", "web"),  # 3: far above 10,000 x the median
        ("C4", "1899-12-30", "9.0", "", "O4", "web"),  # 4: a spreadsheet's zero date
        ("C5", "2024-01-04", "-20.0", "", "O5", "web"),  # a refund: kept
        ("C6", "2024-01-05", "1e400", "", "O6", "web"),  # 6: overflows: not a number
    )
    v = validate(frame, "transactions", now=NOW)
    reasons = dict(zip(v.rejected["row_number"], v.rejected["reason"], strict=True))
    assert reasons == {
        3: RejectReason.IMPLAUSIBLE_AMOUNT.value,
        4: RejectReason.BEFORE_MIN_DATE.value,
        6: RejectReason.BAD_AMOUNT.value,
    }
    assert list(v.accepted["customer_id"]) == ["C1", "C2", "C5"]
    # A configured bound replaces the file's own: 11 is too much, the 12-unit order goes.
    strict = validate(frame, "transactions", now=NOW, bounds=Plausibility(max_abs_amount=11.0))
    assert list(strict.accepted["customer_id"]) == ["C1"]
    assert strict.counts[RejectReason.IMPLAUSIBLE_AMOUNT.value] == 3


def test_plausibility_bounds_come_from_settings(settings: Settings, tmp_path: Path) -> None:
    src = tmp_path / "transactions.csv"
    tx(GOOD, ("C2", "2001-05-01", "12.0", "", "O2", "web")).to_csv(src, index=False)
    configured = load_settings(tmp_path, environ={"CLV_INGEST__MIN_DATE": "2010-01-01"})
    result = ingest(configured, src, now=NOW)
    assert result.quarantined == {"before_min_date": 1} and result.stored_rows == 1
