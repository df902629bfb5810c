"""Ingest never corrupts silently (issue 15): ids with control characters or over the length
limit, ragged CSV rows, time-zone names, the day-month order of numeric dates, epoch numbers.
Each case is a real CSV file through the real `ingest`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

import clv.cli.main
from clv.cli import data as data_cli
from clv.core.contracts import RejectReason
from clv.core.settings import Settings, load_settings
from clv.core.store import read_table
from clv.inputs.ingest import IngestResult, ingest

NOW = pd.Timestamp("2024-06-01", tz="UTC")
HEADER = b"customer_id,ts,amount,order_id\n"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(tmp_path / "ws", environ={})


def write(tmp_path: Path, body: bytes, name: str = "transactions.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(HEADER + body)
    return path


def quarantine(result: IngestResult) -> pd.DataFrame:
    assert result.quarantine_path is not None
    return pd.read_csv(result.quarantine_path, dtype=str, keep_default_na=False)


def reasons(result: IngestResult) -> dict[int, str]:
    q = quarantine(result)
    return dict(zip(q["row_number"].astype(int), q["reason"], strict=True))


def stored_ts(settings: Settings) -> dict[str, pd.Timestamp]:
    tx = read_table(settings, "transactions")
    return dict(zip(tx["order_id"], tx["ts"], strict=True))


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


# --- identifiers -------------------------------------------------------------------------


def test_nul_byte_in_an_id_is_quarantined_not_merged(settings: Settings, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        b"C1,2024-01-01,10,O1\nC2\x00X,2024-01-02,20,O2\nC2,2024-01-03,30,O3\n",
    )
    r = ingest(settings, path, now=NOW)
    assert r.quarantined == {RejectReason.INVALID_ID.value: 1}
    assert reasons(r) == {2: "invalid_id"}
    tx = read_table(settings, "transactions")
    assert sorted(tx["customer_id"]) == ["C1", "C2"]
    assert tx.loc[tx["customer_id"] == "C2", "amount"].tolist() == [30.0]  # not 20 + 30


def test_control_characters_in_any_id_column(settings: Settings, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        b'C1,2024-01-01,10,O1\nC\tTAB,2024-01-02,20,O2\nC3,2024-01-03,30,"O\n3"\n'
        b"C4,2024-01-04,40,O4\x7f\nC5,2024-01-05,50,O5\n",
    )
    r = ingest(settings, path, now=NOW)
    assert reasons(r) == {2: "invalid_id", 3: "invalid_id", 4: "invalid_id"}
    assert sorted(read_table(settings, "transactions")["order_id"]) == ["O1", "O5"]
    assert r.read == 5


def test_ids_over_the_length_limit(tmp_path: Path) -> None:
    at_limit, over = b"C" * 256, b"C" * 257
    path = write(tmp_path, at_limit + b",2024-01-01,10,O1\n" + over + b",2024-01-02,20,O2\n")
    r = ingest(load_settings(tmp_path / "default", environ={}), path, now=NOW)
    assert reasons(r) == {2: "invalid_id"}  # the default limit is 256 characters

    short = load_settings(tmp_path / "short", environ={"CLV_INGEST__MAX_ID_LENGTH": "8"})
    path = write(tmp_path, b"C1,2024-01-01,10,ORDER-123\nC2,2024-01-02,20,ORDER-12\n")
    r = ingest(short, path, now=NOW)
    assert reasons(r) == {1: "invalid_id"}  # order_id of 9 characters
    assert read_table(short, "transactions")["order_id"].tolist() == ["ORDER-12"]


# --- ragged rows -------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_rows", ["500000", "2"])
def test_a_ragged_row_is_quarantined_and_the_file_goes_on(tmp_path: Path, chunk_rows: str) -> None:
    settings = load_settings(tmp_path / "ws", environ={"CLV_INGEST__CHUNK_ROWS": chunk_rows})
    path = write(
        tmp_path,
        b"C1,2024-01-01,10,O1\n"
        b"C2,2024-01-02,20,O2,extra\n"  # 2: a field too many
        b'C3,2024-01-03,30,"O\n3b"\n'  # 3: a quoted newline is one row, not two
        b"C4,2024-01-04,40\n"  # 4: a field too few
        b"C5,2024-01-05,abc,O5\n"  # 5: numbered right after the ragged rows
        b"C6,2024-01-06,60,O6\n"
        b"C7,2024-01-07\n",  # 7: the last row ragged
    )
    r = ingest(settings, path, now=NOW)
    assert reasons(r) == {
        2: "malformed_row",
        3: "invalid_id",
        4: "malformed_row",
        5: "non_numeric_amount",
        7: "malformed_row",
    }
    assert r.read == 7
    assert r.inserted == 2
    assert sorted(read_table(settings, "transactions")["order_id"]) == ["O1", "O6"]
    q = quarantine(r).set_index("row_number")
    assert q.loc["2", "order_id"] == "O2,extra"  # the extra field kept, in the last column
    assert q.loc["4", "amount"] == "40"
    assert q.loc["4", "order_id"] == ""


def test_a_ragged_row_in_a_folder_part_names_its_part(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "transactions"
    folder.mkdir()
    (folder / "a.csv").write_bytes(HEADER + b"C1,2024-01-01,10,O1\nC2,2024-01-02,20,O2\n")
    (folder / "b.csv").write_bytes(HEADER + b"C3,2024-01-03,30,O3,x\nC4,2024-01-04,40,O4\n")
    r = ingest(settings, folder, now=NOW)
    q = quarantine(r)
    assert q[["row_number", "reason", "source_file"]].values.tolist() == [
        ["3", "malformed_row", "b.csv"]
    ]
    assert r.inserted == 3


# --- time zones --------------------------------------------------------------------------


def test_time_zone_names_are_resolved_or_rejected(settings: Settings, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        b"C1,2024-01-05 10:00 EST,1,O1\n"
        b"C1,2024-01-05 10:00 CET,1,O2\n"
        b"C1,2024-01-05 10:00 PST,1,O3\n"
        b"C1,2024-05-05 10:00 PDT,1,O4\n"
        b"C1,Fri 05 Jan 2024 10:00 PM UTC,1,O5\n"
        b"C1,2024-01-05 10:00 IST,1,O6\n"  # India, Ireland or Israel
        b"C1,2024-01-05 10:00 XYZ,1,O7\n"
        b"C1,2024-01-05 10:00 GMT+2,1,O8\n",  # UTC+2 to a person, UTC-2 to POSIX
    )
    r = ingest(settings, path, now=NOW)
    assert stored_ts(settings) == {
        "O1": utc("2024-01-05 15:00"),
        "O2": utc("2024-01-05 09:00"),
        "O3": utc("2024-01-05 18:00"),
        "O4": utc("2024-05-05 17:00"),
        "O5": utc("2024-01-05 22:00"),
    }
    assert reasons(r) == {6: "unknown_timezone", 7: "unknown_timezone", 8: "unknown_timezone"}


def test_iso_timestamps_are_read_as_before(settings: Settings, tmp_path: Path) -> None:
    cells = ["2024-01-05T10:00:00Z", "2024-01-05 10:00:00+02:00", "2024-01-05", "20240105T1030"]
    body = "".join(f"C1,{c},1,O{k}\n" for k, c in enumerate(cells)).encode()
    r = ingest(settings, write(tmp_path, body), now=NOW)
    assert r.quarantined == {}
    expected = pd.to_datetime(pd.Series(cells), utc=True, format="ISO8601")
    assert list(stored_ts(settings).values()) == sorted(expected)


# --- day-month order ---------------------------------------------------------------------


def test_day_first_is_decided_once_for_the_file(settings: Settings, tmp_path: Path) -> None:
    path = write(tmp_path, b"C1,01/02/2024,1,O1\nC1,13/02/2024,1,O2\nC1,5.1.2024,1,O3\n")
    r = ingest(settings, path, now=NOW)
    assert r.quarantined == {}
    assert stored_ts(settings) == {  # 13/02 says day first: so are 01/02 and 5.1
        "O1": utc("2024-02-01"),
        "O2": utc("2024-02-13"),
        "O3": utc("2024-01-05"),
    }


def test_month_first_decided_by_a_later_chunk(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "ws", environ={"CLV_INGEST__CHUNK_ROWS": "2"})
    path = write(
        tmp_path,
        b"C1,01/02/2024,1,O1\nC1,03/04/2024 10:00 PM,1,O2\nC1,2024-03-01,1,O3\n"
        b"C1,02/13/2024,1,O4\n",  # row 4 decides: month first
    )
    r = ingest(settings, path, now=NOW)
    assert r.quarantined == {}
    assert stored_ts(settings) == {
        "O1": utc("2024-01-02"),
        "O2": utc("2024-03-04 22:00"),
        "O3": utc("2024-03-01"),
        "O4": utc("2024-02-13"),
    }


def test_ambiguous_dates_ask_for_the_setting(tmp_path: Path) -> None:
    path = write(tmp_path, b"C1,01/02/2024,1,O1\nC1,2024-03-01,1,O2\nC1,5.1.2024,1,O3\n")
    auto = load_settings(tmp_path / "auto", environ={})
    r = ingest(auto, path, now=NOW)
    assert reasons(r) == {1: "ambiguous_date", 3: "ambiguous_date"}
    assert list(stored_ts(auto)) == ["O2"]  # the unambiguous rows go on

    root = typer.Typer(add_completion=False)
    root.callback()(clv.cli.main.root)
    root.add_typer(data_cli.app, name="data")
    ws = ["--workspace", str(tmp_path / "cli")]
    res = CliRunner().invoke(root, [*ws, "data", "ingest", str(path)])
    assert res.exit_code == 0, res.output
    assert "ambiguous_date 2" in res.output
    assert "ingest.dayfirst" in res.output

    dayfirst = load_settings(tmp_path / "dayfirst", environ={"CLV_INGEST__DAYFIRST": "true"})
    assert ingest(dayfirst, path, now=NOW).quarantined == {}
    assert stored_ts(dayfirst)["O1"] == utc("2024-02-01")
    assert stored_ts(dayfirst)["O3"] == utc("2024-01-05")


def test_configured_order_rejects_dates_of_the_other_order(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "ws", environ={"CLV_INGEST__DAYFIRST": "false"})
    path = write(tmp_path, b"C1,01/02/2024,1,O1\nC1,13/02/2024,1,O2\n")
    r = ingest(settings, path, now=NOW)
    assert reasons(r) == {2: "unparseable_timestamp"}  # never read day first instead
    assert stored_ts(settings) == {"O1": utc("2024-01-02")}


def test_a_file_with_both_orders_is_not_guessed(settings: Settings, tmp_path: Path) -> None:
    path = write(tmp_path, b"C1,13/02/2024,1,O1\nC1,02/13/2024,1,O2\nC1,2024-03-01,1,O3\n")
    r = ingest(settings, path, now=NOW)
    assert reasons(r) == {1: "ambiguous_date", 2: "ambiguous_date"}


# --- epoch numbers -----------------------------------------------------------------------


def test_epoch_numbers_only_when_opted_into(tmp_path: Path) -> None:
    path = write(tmp_path, b"C1,1704448800,1,O1\nC1,2024-01-06,1,O2\n")
    plain = load_settings(tmp_path / "none", environ={})
    assert reasons(ingest(plain, path, now=NOW)) == {1: "unparseable_timestamp"}

    seconds = load_settings(tmp_path / "s", environ={"CLV_INGEST__EPOCH_UNIT": "s"})
    assert ingest(seconds, path, now=NOW).quarantined == {}
    assert stored_ts(seconds)["O1"] == utc("2024-01-05 10:00")

    path = write(tmp_path, b"C1,1704448800500,1,O1\n")
    millis = load_settings(tmp_path / "ms", environ={"CLV_INGEST__EPOCH_UNIT": "ms"})
    assert ingest(millis, path, now=NOW).quarantined == {}
    assert stored_ts(millis)["O1"] == utc("2024-01-05 10:00:00.500")
