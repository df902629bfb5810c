"""The bad-input corpus (issue 15): every kind of broken export a user sends, through the real
`ingest`, with the outcome it must have and the exact number of valid rows stored.

Each kind is one small file. The outcome is either the quarantine reasons with their counts
(the rest of the file stored), or a one-line error naming the file (nothing stored). Every run
also accounts for every row: read = stored now + unchanged + quarantined (+ lines summed), and
the quarantine file holds exactly the quarantined rows, with their original cells."""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from clv.core.errors import DataError
from clv.core.settings import load_settings
from clv.core.store import has_table, read_table
from clv.inputs.ingest import ingest

NOW = pd.Timestamp("2024-06-01", tz="UTC")
TX = b"customer_id,ts,amount,order_id\n"
GOOD = b"C1,2024-01-05,20.0,O1\nC2,2024-02-05,30.0,O2\n"
"""Two valid orders most kinds carry beside their bad rows."""


@dataclass(frozen=True)
class Kind:
    body: bytes
    stored: int
    """Valid rows stored by the ingest (exactly)."""
    reasons: dict[str, int] = field(default_factory=dict)
    """Quarantined rows per reason (exactly)."""
    error: str | None = None
    """A regular expression the one-line error matches; then nothing is stored."""
    name: str = "transactions.csv"
    env: dict[str, str] = field(default_factory=dict)
    before: bytes | None = None
    """A file ingested first (the store the bad file meets)."""
    gz: bool = False


CORPUS: dict[str, Kind] = {
    # identifiers
    "missing customer id": Kind(TX + GOOD + b",2024-03-01,10,O3\n", 2, {"missing_customer_id": 1}),
    "NUL byte inside an id": Kind(TX + GOOD + b"C2\x00X,2024-03-01,10,O3\n", 2, {"invalid_id": 1}),
    "tab and newline inside ids": Kind(
        TX + GOOD + b'C\tT,2024-03-01,10,O3\nC4,2024-03-02,10,"O\n4"\n', 2, {"invalid_id": 2}
    ),
    "id over the length limit": Kind(
        TX + GOOD + b"C" * 257 + b",2024-03-01,10,O3\n", 2, {"invalid_id": 1}
    ),
    # shape of the file
    "row with an extra field": Kind(
        TX + GOOD + b"C3,2024-03-01,10,O3,web\n", 2, {"malformed_row": 1}
    ),
    "row with a missing field": Kind(TX + GOOD + b"C3,2024-03-01\n", 2, {"malformed_row": 1}),
    "unclosed quote swallowing the rest": Kind(
        TX + b'C1,2024-01-05,20.0,"O1\nC2,2024-02-05,30.0,O2\n', 0, {"invalid_id": 1}
    ),
    "latin-1 byte in a UTF-8 file": Kind(
        TX + GOOD + b"Jos\xe9,2024-03-01,10,O3\n", 2, {"invalid_encoding": 1}
    ),
    "latin-1 file with ingest.encoding": Kind(
        TX + GOOD + b"Jos\xe9,2024-03-01,10,O3\n", 3, env={"CLV_INGEST__ENCODING": "latin-1"}
    ),
    "byte-order mark and CRLF line ends": Kind(
        b"\xef\xbb\xbf" + (TX + GOOD).replace(b"\n", b"\r\n"), 2
    ),
    "blank lines between rows": Kind(TX + b"C1,2024-01-05,20.0,O1\n\n\nC2,2024-02-05,30.0,O2\n", 2),
    "semicolon-separated export": Kind(
        b"customer_id;ts;amount;order_id\nC1;2024-01-05;20.0;O1\n",
        0,
        error=r"transactions\.csv: the header is one column holding ';'.*ingest\.delimiter",
    ),
    "semicolon-separated with ingest.delimiter": Kind(
        b"customer_id;ts;amount;order_id\nC1;2024-01-05;20,5;O1\nC2;2024-02-05;30;O2\n",
        1,
        {"non_numeric_amount": 1},  # a decimal comma is not a number: never guessed
        env={"CLV_INGEST__DELIMITER": ";"},
    ),
    "a column named twice": Kind(
        b"customer_id,ts,amount,amount\nC1,2024-01-05,20,21\n",
        0,
        error=r"transactions\.csv: columns 3 and 4 of the header have the same name",
    ),
    "missing required column": Kind(
        b"customer_id,ts,order_id\nC1,2024-01-05,O1\n",
        0,
        error=r"transactions\.csv: missing required column 'amount'",
    ),
    "empty file": Kind(b"", 0, error=r"transactions\.csv: cannot read \(the file is empty"),
    "header only": Kind(TX, 0),
    "gzip export with a bad row": Kind(
        TX + GOOD + b"C3,soon,10,O3\n",
        2,
        {"unparseable_timestamp": 1},
        name="transactions.csv.gz",
        gz=True,
    ),
    # timestamps
    "unparseable timestamp": Kind(
        TX + GOOD + b"C3,2024-13-45,10,O3\n", 2, {"unparseable_timestamp": 1}
    ),
    "future timestamp": Kind(TX + GOOD + b"C3,2031-01-01,10,O3\n", 2, {"future_timestamp": 1}),
    "a transaction dated 1850": Kind(
        TX + GOOD + b"C3,1850-01-01,10,O3\n", 2, {"before_min_date": 1}
    ),
    "spreadsheet zero date": Kind(TX + GOOD + b"C3,1899-12-30,10,O3\n", 2, {"before_min_date": 1}),
    "time-zone name of one offset": Kind(TX + b"C1,2024-01-05 10:00 EST,20.0,O1\n", 1),
    "time-zone name of several zones": Kind(
        TX + GOOD + b"C3,2024-01-05 10:00 IST,10,O3\n", 2, {"unknown_timezone": 1}
    ),
    "day-month order the file does not decide": Kind(
        TX + b"C1,01/02/2024,20.0,O1\nC2,03/04/2024,30.0,O2\n", 0, {"ambiguous_date": 2}
    ),
    "day first decided by one row": Kind(TX + b"C1,01/02/2024,20.0,O1\nC2,13/02/2024,30.0,O2\n", 2),
    "epoch seconds not opted into": Kind(
        TX + GOOD + b"C3,1704067200,10,O3\n", 2, {"unparseable_timestamp": 1}
    ),
    "epoch seconds opted into": Kind(
        TX + GOOD + b"C3,1704067200,10,O3\n", 3, env={"CLV_INGEST__EPOCH_UNIT": "s"}
    ),
    # amounts and values
    "amount that is text": Kind(
        TX + GOOD + b"C3,2024-03-01,ten,O3\n", 2, {"non_numeric_amount": 1}
    ),
    "amount inf and nan": Kind(
        TX + GOOD + b"C3,2024-03-01,inf,O3\nC4,2024-03-02,nan,O4\n", 2, {"non_numeric_amount": 2}
    ),
    "thousands separator": Kind(
        TX + GOOD + b'C3,2024-03-01,"1,234.50",O3\n', 2, {"non_numeric_amount": 1}
    ),
    "amount 1e308": Kind(TX + GOOD + b"C3,2024-03-01,1e308,O3\n", 2, {"implausible_amount": 1}),
    "empty amount": Kind(TX + GOOD + b"C3,2024-03-01,,O3\n", 2, {"missing_required_value": 1}),
    "margin that is text": Kind(
        b"customer_id,ts,amount,order_id,margin\nC1,2024-01-05,20,O1,5\nC2,2024-02-05,30,O2,n/a\n",
        1,
        {"non_numeric_value": 1},
    ),
    "currency without a rate": Kind(
        b"customer_id,ts,amount,order_id,currency\nC1,2024-01-05,20,O1,USD\n"
        b"C2,2024-02-05,30,O2,USD\nC3,2024-02-06,30,O3,JPY\n",
        2,
        {"mixed_currency": 1},
    ),
    # duplicates and keys
    "exact duplicate row": Kind(TX + GOOD + b"C2,2024-02-05,30.0,O2\n", 2, {"exact_duplicate": 1}),
    "one order twice with other values": Kind(
        b"customer_id,ts,amount,order_id,line_id\nC1,2024-01-05,20,O1,1\nC1,2024-01-05,25,O1,1\n",
        1,
        {"duplicate_line": 1},
    ),
    "the same file again": Kind(TX + GOOD, 0, before=TX + GOOD),
    "a corrected export": Kind(
        TX + b"C1,2024-01-05,25.0,O1\nC2,2024-02-05,30.0,O2\n", 1, before=TX + GOOD
    ),
    "a corrected export under quarantine policy": Kind(
        TX + b"C1,2024-01-05,25.0,O1\nC2,2024-02-05,30.0,O2\n",
        0,
        {"key_conflict": 1},
        env={"CLV_INGEST__ON_KEY_CONFLICT": "quarantine"},
        before=TX + GOOD,
    ),
    # other tables
    "event without a type": Kind(
        b"customer_id,ts,event_type\nC1,2024-01-05,login\nC1,2024-01-06,\n",
        1,
        {"missing_required_value": 1},
        name="events.csv",
    ),
    "customer with a bad signup date": Kind(
        b"customer_id,signup_ts,plan\nC1,2023-01-01,pro\nC2,someday,free\n",
        1,
        {"unparseable_timestamp": 1},
        name="customers.csv",
    ),
    "alias with a control character": Kind(
        b"alias_id,customer_id\nA1,C1\nA\x002,C2\n", 1, {"invalid_id": 1}, name="identities.csv"
    ),
}


@pytest.mark.parametrize("kind", list(CORPUS), ids=list(CORPUS))
def test_bad_input(kind: str, tmp_path: Path) -> None:
    case = CORPUS[kind]
    settings = load_settings(tmp_path / "ws", environ=case.env)
    table = case.name.split(".")[0]
    stored_before = 0
    if case.before is not None:
        (tmp_path / "before.csv").write_bytes(case.before)
        stored_before = ingest(settings, tmp_path / "before.csv", table=table, now=NOW).stored_rows  # type: ignore[arg-type]
    path = tmp_path / case.name
    path.write_bytes(gzip.compress(case.body) if case.gz else case.body)
    if case.error is not None:
        with pytest.raises(DataError, match=case.error) as failed:
            ingest(settings, path, now=NOW)
        assert "\n" not in str(failed.value)
        assert not has_table(settings, table)  # type: ignore[arg-type]
        return
    result = ingest(settings, path, now=NOW)
    assert result.quarantined == case.reasons
    assert result.inserted + result.replaced == case.stored
    quarantined = sum(case.reasons.values())
    lines = result.lines.lines_summed + result.superseded
    assert result.read == result.inserted + result.replaced + result.unchanged + quarantined + lines
    stored = read_table(settings, table)  # type: ignore[arg-type]
    assert len(stored) == stored_before + result.inserted
    if quarantined:
        assert result.quarantine_path is not None
        q = pd.read_csv(result.quarantine_path, dtype=str, keep_default_na=False)
        assert q["reason"].value_counts().to_dict() == case.reasons
    else:
        assert result.quarantine_path is None


def test_the_corpus_has_at_least_25_kinds() -> None:
    assert len(CORPUS) >= 25
