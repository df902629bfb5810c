"""Personal data never leaves ingest in clear (issue 12, requirement 4).

A small mixed world gets personal columns (e-mail, name, phone, address), an identities file
whose aliases are e-mails, and one customer whose id is an e-mail; some planted values sit in
rows that ingest quarantines. The whole lifecycle runs through the `clv` command in child
processes (ingest, features build and materialize, train, score, monitor), each one's
stdout and stderr kept as log files. Then every file it wrote is searched for the planted
values: text and unknown files byte by byte, Parquet column by column (pages are compressed),
SQLite table by table, gzip, zip, bzip2 and xz decompressed. The pseudonym of the planted
e-mail must be found in each kind of file it reaches: a search that finds nothing proves
nothing unless it can find something.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import sqlite3
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from clv.cli.main import main
from clv.core.contracts import RejectReason
from clv.inputs.generator import generate, write_raw
from clv.inputs.personal import pseudonym

KEY = "test-personal-key-5d1e"
EMAIL = "planted.person.7f3a@example.org"
"""The planted customer's e-mail (and, where ids are e-mails, its customer_id)."""
NAME = "Zebedee Quuxworth"
PHONE = "+44 7700 900123"
ADDRESS = "17 Planted Lane"
ALIAS = "alias.planted.9e2b@example.org"
"""Another id of the planted customer, in the identities file."""
QUARANTINED_EMAIL = "quarantined.person.c4d2@example.org"
"""Only in rows that ingest rejects (bad signup_ts, bad amount)."""
QUARANTINED_NAME = "Ophelia Zxqvarantine"
PLANTED = (EMAIL, NAME, PHONE, ADDRESS, ALIAS, QUARANTINED_EMAIL, QUARANTINED_NAME)
FRAGMENTS = ("planted.person", "7f3a@", "zebedee", "quuxworth", "7700 900123", "7700900123")
FRAGMENTS += ("planted lane", "alias.planted", "quarantined.person", "ophelia", "zxqvarantine")
"""Parts of the planted values: a partial leak (an e-mail's local part, a surname) counts."""
BAD_TS, BAD_AMOUNT = RejectReason.BAD_TIMESTAMP.value, RejectReason.BAD_AMOUNT.value


def config(personal: list[str], action: str) -> str:
    return f"""model:
  horizon_days: 90
tuning:
  n_trials: 2
evaluation:
  backtest_origins: 0
features:
  snapshot_every: 3M  # fewer snapshots: a faster lifecycle, the same files
ingest:
  personal_columns: [{", ".join(personal)}]
  personal_action: {action}
  chunk_rows: 2000  # several chunks a file: each one is protected
"""


def planted_world(incoming: Path, *, customers: int, months: int, email_ids: bool) -> str:
    """Raw CSV files of a small mixed world with personal data planted in every table; the
    planted customer's id (EMAIL when `email_ids`, else its generated id). The customers file
    also has an undeclared extra column, `loyalty_tier`."""
    data = generate(customers=customers, months=months, seed=11, world="mixed")
    counts = data.transactions["customer_id"].value_counts()
    first = data.customers["customer_id"].head(50)
    planted = str(counts[counts.index.isin(first)].index[0])  # a customer who buys often
    if email_ids:
        for frame in data.tables().values():
            frame["customer_id"] = frame["customer_id"].replace(planted, EMAIL)
        planted = EMAIL
    people = data.customers
    ids = people["customer_id"].astype(str)
    people["email"] = ids.str.lower() + "@shop.example.com"
    people["name"] = "Customer " + ids
    people["phone"] = "+1 555 0100"
    people["address"] = ids + " Main Street"
    people["loyalty_tier"] = "gold"
    people.loc[ids == planted, ["email", "name", "phone", "address"]] = [
        EMAIL,
        NAME,
        PHONE,
        ADDRESS,
    ]
    tx = data.transactions
    tx["email"] = None
    tx.loc[tx["customer_id"] == planted, "email"] = EMAIL
    write_raw(data, incoming)
    identities = pd.DataFrame({"alias_id": [ALIAS], "customer_id": [planted], "valid_from": [""]})
    identities.to_csv(incoming / "identities.csv", index=False)
    # Rows ingest quarantines, carrying planted values (a quarantine file keeps every column of
    # a rejected row as it was read).
    bad_id = QUARANTINED_EMAIL if email_ids else "C_REJECTED"
    bad_customer = {
        "customer_id": bad_id,
        "signup_ts": "not a date",
        "email": QUARANTINED_EMAIL,
        "name": QUARANTINED_NAME,
        "phone": PHONE,
        "address": ADDRESS,
        "loyalty_tier": "gold",
    }
    bad_tx = [
        {"customer_id": planted, "ts": "2024-03-01T10:00:00Z", "amount": "lots", "email": EMAIL},
        {"customer_id": bad_id, "ts": "2024-03-02T10:00:00Z", "amount": "1e400"},
    ]
    bad_event = {"customer_id": planted, "ts": "yesterday-ish", "event_type": "login"}
    for table, rows in (
        ("customers", [bad_customer]),
        ("transactions", bad_tx),
        ("events", [bad_event]),
    ):
        path = incoming / f"{table}.csv"
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
        both = pd.concat([raw, pd.DataFrame(rows)], ignore_index=True)
        both.fillna("").to_csv(path, index=False)
    return planted


# --- the search ----------------------------------------------------------------------------


@dataclass
class Found:
    """Where each needle occurs (lower-cased needle -> {(file, kind)}), and how many files were
    searched; `opaque`: files in a compressed format this search cannot read."""

    hits: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    opaque: list[str] = field(default_factory=list)
    files: int = 0

    def kinds(self, needle: str) -> set[str]:
        return {kind for _, kind in self.hits.get(needle.lower(), set())}

    def paths(self, needle: str) -> set[str]:
        return {path for path, _ in self.hits.get(needle.lower(), set())}


def _values(value: object) -> Iterator[bytes]:
    """Every scalar inside a (possibly nested) Parquet or SQLite value, as bytes."""
    if value is None:
        return
    if isinstance(value, bytes | bytearray | memoryview):
        yield bytes(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _values(k)
            yield from _values(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _values(v)
    else:
        yield str(value).encode()


def _parquet(data: bytes) -> Iterator[bytes]:
    table = pq.read_table(io.BytesIO(data))
    yield str(table.schema).encode()
    for column in table.columns:
        for value in column.to_pylist():
            yield from _values(value)


def _sqlite(path: Path) -> Iterator[bytes]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    yield from _values(value)


def _unpacked(data: bytes, depth: int = 0) -> Iterator[tuple[str, bytes]]:
    """(kind, bytes to search) for one file's content: the bytes, then what they decode to."""
    yield "bytes", data
    if depth > 3:
        return
    if data[:4] == b"PAR1":
        for value in _parquet(data):
            yield "parquet", value
    elif data[:2] == b"\x1f\x8b":
        yield from _unpacked(gzip.decompress(data), depth + 1)
    elif data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.namelist():
                yield from _unpacked(archive.read(member), depth + 1)
    elif data[:3] == b"BZh":
        yield from _unpacked(bz2.decompress(data), depth + 1)
    elif data[:6] == b"\xfd7zXZ\x00":
        yield from _unpacked(lzma.decompress(data), depth + 1)


def _opaque(data: bytes) -> bool:
    """zstd, lz4 frames or a DuckDB database: compressed in a way this search cannot read."""
    return data[:4] in (b"\x28\xb5\x2f\xfd", b"\x04\x22\x4d\x18") or data[8:12] == b"DUCK"


def search(roots: list[Path], needles: tuple[str, ...]) -> Found:
    """Every file under `roots` searched for every needle (case-insensitive)."""
    found = Found()
    wanted = [(n.lower(), n.lower().encode()) for n in needles]
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
            found.files += 1
            data = path.read_bytes()
            parts = list(_unpacked(data))
            if data[:16] == b"SQLite format 3\x00":
                parts += [("sqlite", v) for v in _sqlite(path)]
            if _opaque(data):
                found.opaque.append(str(path))
            for kind, blob in parts:
                low = blob.lower()
                for needle, raw in wanted:
                    if raw in low:
                        found.hits.setdefault(needle, set()).add((str(path), kind))
    return found


# --- the lifecycle in child processes ------------------------------------------------------


@dataclass(frozen=True)
class Cli:
    """`python -m clv --workspace WS ...` in a child process, its output kept in `logs`."""

    workspace: Path
    logs: Path
    env: dict[str, str]

    def run(self, name: str, *argv: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "clv", "--workspace", str(self.workspace), *argv]
        done = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=300)
        (self.logs / f"{name}.stdout").write_text(done.stdout)
        (self.logs / f"{name}.stderr").write_text(done.stderr)
        return done

    def ok(self, name: str, *argv: str) -> dict[str, object]:
        done = self.run(name, *argv, "--json")
        assert done.returncode == 0, (argv, done.stderr[-3000:])
        payload: dict[str, object] = json.loads(done.stdout)
        return payload


def child_env(tmp: Path, **extra: str) -> dict[str, str]:
    """This environment without CLV_* settings, with temporary files and HOME in the test's
    folder (so that whatever a library writes there is searched too)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLV_")}
    for name in ("tmp", "home"):
        (tmp / name).mkdir()
    env.update(TMPDIR=str(tmp / "tmp"), HOME=str(tmp / "home"), **extra)
    return env


def quarantined(payload: dict[str, object]) -> dict[str, dict[str, int]]:
    results = payload["results"]
    assert isinstance(results, list)
    return {r["table"]: r["quarantined"] for r in results}


@pytest.mark.slow
def test_planted_personal_values_appear_nowhere_the_lifecycle_writes(tmp_path: Path) -> None:
    incoming, ws, logs = tmp_path / "incoming", tmp_path / "ws", tmp_path / "logs"
    for folder in (incoming, ws, logs):
        folder.mkdir()
    personal = ["email", "name", "phone", "address", "customer_id", "alias_id"]
    (ws / "clv.yaml").write_text(config(personal, "hash"))
    planted_world(incoming, customers=400, months=24, email_ids=True)
    cli = Cli(ws, logs, child_env(tmp_path, CLV_PERSONAL_KEY=KEY))

    ingested = cli.ok("ingest", "data", "ingest", str(incoming))
    assert quarantined(ingested) == {
        "identities": {},
        "customers": {BAD_TS: 1},
        "transactions": {BAD_AMOUNT: 2},
        "events": {BAD_TS: 1},
    }
    cli.ok("build", "features", "build")
    cli.ok("materialize", "features", "materialize")
    trained = cli.ok("train", "train", "--skip-readiness")  # the world is small on purpose
    assert trained["version"] == "1"
    cli.ok("score", "score", "--all")
    monitored = cli.run("monitor", "monitor", "run", "--json")
    assert monitored.returncode in (0, 3), monitored.stderr[-3000:]  # OK, WARN or RETRAIN
    assert list((ws / "reports").glob("*/data_drift.html"))

    hashed = pseudonym(EMAIL, KEY.encode())
    hashed_rejected = pseudonym(QUARANTINED_EMAIL, KEY.encode())
    scores = pd.read_parquet(ws / "scores.parquet")
    mine = scores[scores["customer_id"] == hashed]
    assert len(mine) == 1 and mine["clv"].notna().all()  # the hashed id is scored
    assert scores["customer_id"].str.startswith("h:").all()  # every id is a pseudonym
    identities = pd.read_parquet(ws / ".clv" / "offline" / "identities.parquet")
    assert identities["alias_id"].tolist() == [pseudonym(ALIAS, KEY.encode())]
    assert identities["customer_id"].tolist() == [hashed]  # one key: the alias joins the id

    clear = (*PLANTED, *FRAGMENTS, KEY)  # the key is a secret too
    found = search(
        [ws, logs, tmp_path / "tmp", tmp_path / "home"], (*clear, hashed, hashed_rejected)
    )
    assert found.files > 50, found.files  # the lifecycle wrote its files where searched
    assert not found.opaque, found.opaque
    leaks = {n: sorted(w) for n, w in found.hits.items() if n in {c.lower() for c in clear}}
    assert not leaks, leaks
    # The search finds what is there: the pseudonym in the stores (Parquet values, the online
    # store's SQLite rows) and the quarantine files (text), and the rejected customer's.
    assert {"parquet", "sqlite", "bytes"} <= found.kinds(hashed), found.hits
    in_quarantine = {p for p in found.paths(hashed) if "/.clv/quarantine/" in p}
    assert {Path(p).name.split("-")[0] for p in in_quarantine} == {"transactions", "events"}
    assert any("/.clv/quarantine/customers-" in p for p in found.paths(hashed_rejected))
    # ...and the clear values where they are: in the raw files the test wrote.
    raw = search([incoming], PLANTED)
    assert set(raw.hits) == {n.lower() for n in PLANTED}, raw.hits


# --- drop, and the configurations ingest refuses (in process: ingest only) ----------------


def ingest_cli(ws: Path, path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["--workspace", str(ws), "data", "ingest", str(path), "--json"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_drop_removes_personal_columns_from_store_and_quarantine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLV_PERSONAL_KEY", raising=False)  # drop needs no key
    incoming, ws = tmp_path / "incoming", tmp_path / "ws"
    incoming.mkdir()
    ws.mkdir()
    (ws / "clv.yaml").write_text(config(["email", "name", "phone", "address"], "drop"))
    planted = planted_world(incoming, customers=60, months=6, email_ids=False)

    code, out, err = ingest_cli(ws, incoming, capsys)
    assert code == 0, err
    assert quarantined(json.loads(out)) == {
        "identities": {},
        "customers": {BAD_TS: 1},
        "transactions": {BAD_AMOUNT: 2},
        "events": {BAD_TS: 1},
    }
    stored = {p.stem: pd.read_parquet(p) for p in (ws / ".clv" / "offline").glob("*.parquet")}
    assert planted in set(stored["customers"]["customer_id"])
    for frame in stored.values():
        assert not {"email", "name", "phone", "address"} & set(frame.columns)
    files = {p.name.split("-")[0]: p for p in (ws / ".clv" / "quarantine").glob("*.csv")}
    customers = pd.read_csv(files["customers"], dtype=str)
    # the undeclared extra column is kept, so the declared ones are gone because of drop
    assert list(customers.columns) == [
        "row_number",
        "reason",
        "customer_id",
        "signup_ts",
        "acquisition_channel",
        "country",
        "plan",
        "valid_from",
        "loyalty_tier",
    ]
    transactions = pd.read_csv(files["transactions"], dtype=str)
    assert "email" not in transactions.columns
    assert planted in set(transactions["customer_id"])

    clear = (EMAIL, NAME, PHONE, ADDRESS, QUARANTINED_EMAIL, QUARANTINED_NAME, *FRAGMENTS[:7])
    found = search([ws], (*clear, planted))
    assert not {n: w for n, w in found.hits.items() if n != planted.lower()}, found.hits
    assert {"parquet", "bytes"} <= found.kinds(planted)  # the search reads these files


@pytest.mark.parametrize(
    ("personal", "action", "message"),
    [
        (
            ["email", "customer_id"],
            "drop",
            "ingest.personal_action is drop, but customer_id is a required column; "
            "use personal_action: hash for it",
        ),
        (["email"], "hash", "ingest.personal_columns is set but $CLV_PERSONAL_KEY is empty"),
    ],
)
def test_a_personal_data_misconfiguration_stops_ingest_with_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    personal: list[str],
    action: str,
    message: str,
) -> None:
    monkeypatch.delenv("CLV_PERSONAL_KEY", raising=False)
    incoming, ws = tmp_path / "incoming", tmp_path / "ws"
    incoming.mkdir()
    ws.mkdir()
    (ws / "clv.yaml").write_text(config(personal, action))
    planted_world(incoming, customers=20, months=3, email_ids=False)

    code, out, err = ingest_cli(ws, incoming, capsys)
    assert code == 1 and out == ""
    assert err.strip().splitlines()[-1].startswith(f"error: {message}"), err
    assert "Traceback" not in err
    assert not any(p.lower() in err.lower() for p in PLANTED), err
    assert not (ws / ".clv" / "offline" / "customers.parquet").exists()  # nothing stored


def test_a_file_without_a_header_row_does_not_echo_its_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLV_PERSONAL_KEY", KEY)
    (tmp_path / "clv.yaml").write_text(config(["email", "name", "phone"], "hash"))
    raw = tmp_path / "customers.csv"
    raw.write_text(f"{EMAIL},2024-01-01T00:00:00Z,{NAME},{PHONE}\nC2,2024-01-02,Bob,+1 555\n")

    code, _, err = ingest_cli(tmp_path, raw, capsys)
    assert code == 1 and "missing required column 'customer_id'" in err, err
    assert not any(p.lower() in err.lower() for p in (EMAIL, NAME, PHONE)), err
