"""Ingest of real exports: order lines without a line id, cancellations and returns,
currencies, chunked reading, gzip and folders of parts."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from clv.core.settings import Settings, load_settings
from clv.core.store import read_table
from clv.inputs.ingest import ingest, ingest_all, validate
from clv.inputs.reconcile import FileRules

NOW = pd.Timestamp("2024-06-01", tz="UTC")
INVOICE = ["customer_id", "ts", "amount", "order_id"]


def write(path: Path, rows: list[tuple[object, ...]], columns: list[str]) -> Path:
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)
    return path


def order_totals(settings: Settings) -> dict[tuple[str, str], float]:
    stored = read_table(settings, "transactions")
    return {
        (str(c), str(o)): round(float(a), 6)
        for (c, o), a in stored.groupby(["customer_id", "order_id"])["amount"].sum().items()
    }


def test_identical_lines_of_an_invoice_are_summed_not_dropped(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, environ={})
    # The export: customer, time, line amount, invoice; two products at one price
    # look identical. Invoice 1 is 5 + 5 + 7 = 17, invoice 2 is 3.
    rows = [
        ("C1", "2024-01-05 10:00", "5.0", "1"),
        ("C1", "2024-01-05 10:00", "5.0", "1"),
        ("C1", "2024-01-05 10:00", "7.0", "1"),
        ("C2", "2024-01-06 11:00", "3.0", "2"),
        ("C3", "2024-01-07 12:00", "4.0", ""),  # no invoice: a row is an order
        ("C3", "2024-01-07 12:00", "4.0", ""),  # ... so this one is a duplicate
    ]
    path = write(tmp_path / "transactions.csv", rows, INVOICE)
    first = ingest(settings, path, now=NOW)
    assert first.lines.line_level  # invoice 1 has rows that differ
    assert first.lines.lines_summed == 1
    assert first.quarantined == {"exact_duplicate": 1}
    assert (first.read, first.inserted) == (6, 4)
    assert order_totals(settings) == {("C1", "1"): 17.0, ("C2", "2"): 3.0}
    stored = read_table(settings, "transactions")
    assert stored["amount"].sum() == pytest.approx(24.0)  # 17 + 3 + 4: nothing lost
    again = ingest(settings, path, now=NOW)
    assert (again.inserted, again.unchanged, again.stored_rows) == (0, 4, 4)


def test_an_order_level_file_drops_repeated_rows_as_duplicates() -> None:
    frame = pd.DataFrame(
        [("C1", "2024-01-05", "5.0", "1"), ("C1", "2024-01-05", "5.0", "1")], columns=INVOICE
    )
    auto = validate(frame, "transactions", now=NOW)
    assert not auto.lines.line_level  # one distinct row per order: a doubled export
    assert auto.counts == {"exact_duplicate": 1}
    lines = validate(frame, "transactions", now=NOW, rules=FileRules(grain="line"))
    assert lines.counts == {} and lines.accepted["amount"].tolist() == [10.0]


LINES = ["customer_id", "ts", "order_id", "sku", "quantity", "unit_price"]


def test_cancellations_become_refunds_linked_to_their_order(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, environ={"CLV_INGEST__CANCELLATION_PATTERN": "^C"})
    rows = [
        ("U1", "2024-01-05 10:00", "536365", "A", "2", "5.00"),
        ("U1", "2024-01-05 10:00", "536365", "B", "1", "9.50"),
        ("U1", "2024-01-09 10:00", "C536365", "A", "-1", "5.00"),  # a partial return
        ("U2", "2024-01-10 10:00", "C500000", "B", "-2", "9.50"),  # its order predates the log
        ("U2", "2024-01-11 10:00", "536400", "A", "3", "5.00"),
        ("U2", "2024-01-11 10:00", "536400", "A", "-1", "5.00"),  # a return on the invoice
    ]
    path = write(tmp_path / "transactions.csv", rows, LINES)
    result = ingest(settings, path, now=NOW)
    assert result.quarantined == {}
    assert (result.lines.refunds, result.lines.refunds_linked) == (3, 2)
    stored = read_table(settings, "transactions").set_index(["order_id", "quantity"])
    assert stored.loc[("C536365", -1.0), "amount"] == -5.0
    assert stored.loc[("C536365", -1.0), "refund_of"] == "536365"
    assert stored.loc[("C500000", -2.0), "amount"] == -19.0
    assert stored.loc[("C500000", -2.0), "refund_of"] is None
    assert stored.loc[("536400", -1.0), "refund_of"] == "536400"
    assert order_totals(settings) == {
        ("U1", "536365"): 19.5,
        ("U1", "C536365"): -5.0,
        ("U2", "C500000"): -19.0,
        ("U2", "536400"): 10.0,
    }
    # A cancellation ingested after its order (another file) links to the stored order.
    late = write(
        tmp_path / "transactions-2.csv",
        [("U2", "2024-02-01 10:00", "C536400", "A", "-2", "5.00")],
        LINES,
    )
    assert ingest(settings, late, now=NOW).lines.refunds_linked == 1
    stored = read_table(settings, "transactions")
    assert stored.loc[stored["order_id"] == "C536400", "refund_of"].tolist() == ["536400"]


def test_a_positive_amount_on_a_cancellation_is_made_a_refund() -> None:
    frame = pd.DataFrame(
        [("C1", "2024-01-05", "12.0", "9"), ("C1", "2024-01-08", "12.0", "C9")], columns=INVOICE
    )
    v = validate(frame, "transactions", now=NOW, rules=FileRules(cancellation_pattern="^C"))
    assert v.accepted["amount"].tolist() == [12.0, -12.0]
    assert v.accepted["refund_of"].tolist() == [None, "9"]


CURRENCY = ["customer_id", "ts", "amount", "order_id", "currency"]


def test_other_currencies_are_converted_or_quarantined(tmp_path: Path) -> None:
    (tmp_path / "clv.yaml").write_text("ingest:\n  currency: GBP\n  currency_rates: {EUR: 0.86}\n")
    settings = load_settings(tmp_path, environ={})
    rows = [
        ("C1", "2024-01-05", "10.0", "1", "GBP"),
        ("C1", "2024-01-06", "10.0", "2", "eur"),  # converted: 8.60 GBP
        ("C2", "2024-01-07", "1000", "3", "JPY"),  # no rate: quarantined, not guessed
        ("C2", "2024-01-08", "4.0", "4", ""),  # no currency: the workspace's
    ]
    result = ingest(settings, write(tmp_path / "transactions.csv", rows, CURRENCY), now=NOW)
    assert result.quarantined == {"mixed_currency": 1}
    assert (result.lines.converted, result.lines.currency) == (1, "GBP")
    stored = read_table(settings, "transactions")
    assert stored["amount"].tolist() == pytest.approx([10.0, 8.6, 4.0])
    assert stored["currency"].tolist() == ["GBP", "GBP", None]
    quarantine = pd.read_csv(result.quarantine_path, dtype=str, keep_default_na=False)
    assert quarantine[["row_number", "reason", "currency", "amount"]].values.tolist() == [
        ["3", "mixed_currency", "JPY", "1000"]
    ]


def test_without_a_configured_currency_the_first_one_holds(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, environ={})
    rows = [
        ("C1", "2024-01-05", "10.0", "1", "USD"),
        ("C1", "2024-01-06", "11.0", "2", "USD"),
        ("C2", "2024-01-07", "12.0", "3", "EUR"),  # the minority currency
    ]
    first = ingest(settings, write(tmp_path / "transactions.csv", rows, CURRENCY), now=NOW)
    assert first.quarantined == {"mixed_currency": 1} and first.lines.currency == "USD"
    # A later file in EUR only: the stored rows' currency still holds.
    later = write(
        tmp_path / "transactions-2.csv", [("C3", "2024-02-01", "5", "9", "EUR")], CURRENCY
    )
    assert ingest(settings, later, now=NOW).quarantined == {"mixed_currency": 1}


def _messy_export() -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for k in range(40):
        order, ts = str(1000 + k // 3), f"2024-01-{1 + k // 3:02d} 10:00"
        amount = "7.0" if k % 3 == 2 else "5.0"  # two identical lines and one other per order
        rows.append((f"C{k // 3 % 7}", ts, amount, order))
    rows += [("C1", "not a date", "1", "77"), ("C2", "2024-02-01", "1e308", "78")]
    rows += [("C3", "2024-02-02", "2.0", ""), ("C3", "2024-02-02", "2.0", "")]  # a duplicate
    return rows


def test_chunked_reading_gives_the_same_store_and_quarantine(tmp_path: Path) -> None:
    rows = _messy_export()
    path = write(tmp_path / "transactions.csv", rows, INVOICE)
    whole = load_settings(tmp_path / "whole", environ={})
    small = load_settings(tmp_path / "small", environ={"CLV_INGEST__CHUNK_ROWS": "4"})
    a, b = ingest(whole, path, now=NOW), ingest(small, path, now=NOW)
    assert a.as_dict() | {"quarantine_path": None} == b.as_dict() | {"quarantine_path": None}
    assert a.lines.lines_summed > 0 and a.quarantined == {
        "unparseable_timestamp": 1,
        "implausible_amount": 1,
        "exact_duplicate": 1,
    }
    pd.testing.assert_frame_equal(
        read_table(whole, "transactions"), read_table(small, "transactions")
    )
    assert a.quarantine_path is not None and b.quarantine_path is not None
    assert a.quarantine_path.read_text() == b.quarantine_path.read_text()
    total = sum(7.0 if k % 3 == 2 else 5.0 for k in range(40)) + 2.0
    assert read_table(whole, "transactions")["amount"].sum() == pytest.approx(total)


def test_gzip_and_a_folder_of_parquet_parts(tmp_path: Path) -> None:
    rows = _messy_export()
    plain = write(tmp_path / "transactions.csv", rows, INVOICE)
    zipped = tmp_path / "transactions.csv.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    parts = tmp_path / "raw" / "transactions"
    parts.mkdir(parents=True)
    frame = pd.DataFrame(rows, columns=INVOICE)
    frame.iloc[:20].to_parquet(parts / "part-00000.parquet")
    frame.iloc[20:].to_parquet(parts / "part-00001.parquet", index=False)
    (parts / ".part-00002.parquet.crc").write_text("hidden files are not parts")
    a = load_settings(tmp_path / "a", environ={})
    b = load_settings(tmp_path / "b", environ={})
    c = load_settings(tmp_path / "c", environ={})
    ra = ingest(a, plain, now=NOW)
    rb = ingest(b, zipped, now=NOW)
    (rc,) = ingest_all(c, tmp_path / "raw", now=NOW)  # a subfolder named by its table
    assert rc.table == "transactions"
    assert ra.quarantined == rb.quarantined == rc.quarantined
    for s in (b, c):
        pd.testing.assert_frame_equal(read_table(a, "transactions"), read_table(s, "transactions"))
    assert rc.quarantine_path is not None
    quarantine = pd.read_csv(rc.quarantine_path, dtype=str, keep_default_na=False)
    assert set(quarantine["source_file"]) == {"part-00001.parquet"}  # rows 41.. are in part 2


def test_a_store_written_before_the_new_columns_still_merges(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, environ={})
    settings.offline_dir.mkdir(parents=True)
    old = pd.DataFrame(
        {
            "customer_id": ["C1"],
            "ts": pd.to_datetime(["2024-01-01"], utc=True).astype("datetime64[us, UTC]"),
            "amount": [5.0],
            "margin": [None],
            "order_id": ["1"],
            "channel": [None],
        }
    )
    old.to_parquet(settings.offline_dir / "transactions.parquet", index=False)
    rows = [("C1", "2024-01-01", "5.0", "1"), ("C2", "2024-01-02", "6.0", "2")]
    result = ingest(settings, write(tmp_path / "transactions.csv", rows, INVOICE), now=NOW)
    assert (result.inserted, result.unchanged, result.stored_rows) == (1, 1, 2)
    assert list(read_table(settings, "transactions")["currency"]) == [None, None]


def test_summed_lines_equal_to_another_line_are_both_kept() -> None:
    # One unit of A twice (summed: 2 x A) and a line of 2 x A: 30.0 in all, nothing dropped.
    frame = pd.DataFrame(
        [
            ("C1", "2024-01-05", "7", "A", "1", "7.5"),
            ("C1", "2024-01-05", "7", "A", "1", "7.5"),
            ("C1", "2024-01-05", "7", "A", "2", "7.5"),
        ],
        columns=LINES,
    )
    v = validate(frame, "transactions", now=NOW)
    assert v.counts == {} and v.lines.lines_summed == 1
    assert sorted(v.accepted["amount"]) == [15.0, 15.0]
