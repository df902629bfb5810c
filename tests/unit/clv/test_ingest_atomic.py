"""Ingest loses nothing and stores nothing twice (issue 15): concurrent ingests store exactly
the union, a crash leaves the previous store or finishes the commit, keys decide identity, and
a folder is stored whole or not at all, with every file's fate reported."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from clv.core.errors import DataError
from clv.core.settings import Settings, load_settings
from clv.core.store import read_table, table_path
from clv.inputs.commit import JOURNAL_FILE, store_writer
from clv.inputs.ingest import IngestFailed, ingest, ingest_all

NOW = pd.Timestamp("2024-06-01", tz="UTC")
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(tmp_path / "ws", environ={})


def orders(first: int, n: int, *, customers: int = 50) -> pd.DataFrame:
    k = pd.RangeIndex(first, first + n)
    return pd.DataFrame(
        {
            "customer_id": [f"C{i % customers}" for i in k],
            "ts": (pd.Timestamp("2023-01-01") + pd.to_timedelta(k % 500, unit="D")).strftime(
                "%Y-%m-%d"
            ),
            "amount": (k % 97 + 1).astype(float),
            "order_id": [f"O{i}" for i in k],
        }
    )


def clv_ingest(workspace: Path, path: Path) -> subprocess.Popen[str]:
    """`clv data ingest PATH` in its own process, as an operator or a job runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", "clv", "--workspace", str(workspace), "data", "ingest", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


# --- concurrency and crashes -------------------------------------------------------------


def test_concurrent_ingests_store_exactly_the_union(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    files = []
    for k in range(4):
        path = tmp_path / f"transactions-{k}.csv"
        orders(k * 20_000, 20_000).to_csv(path, index=False)
        files.append(path)
    procs = [clv_ingest(ws, f) for f in files]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [e[-400:] for _, e in outs]
    assert all("inserted 20,000" in out for out, _ in outs)
    stored = read_table(load_settings(ws, environ={}), "transactions")
    assert len(stored) == 80_000
    assert set(stored["order_id"]) == {f"O{i}" for i in range(80_000)}
    waited = [e for _, e in outs if "waiting for the ingest of" in e]
    assert waited, "no ingest waited for another: the runs did not overlap"


def test_a_killed_ingest_leaves_the_previous_store(settings: Settings, tmp_path: Path) -> None:
    first = tmp_path / "transactions.csv"
    orders(0, 1_000).to_csv(first, index=False)
    ingest(settings, first, now=NOW)
    before = read_table(settings, "transactions")
    big = tmp_path / "transactions-big.csv"
    orders(1_000, 200_000).to_csv(big, index=False)
    proc = clv_ingest(settings.workspace, big)
    assert proc.stderr is not None
    proc.stderr.readline()  # "ingesting ...": the command is past its imports
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    pd.testing.assert_frame_equal(read_table(settings, "transactions"), before)
    # the next ingest cleans up what the killed one left, and stores the file whole
    again = ingest(settings, big, now=NOW)
    assert (again.inserted, again.stored_rows) == (200_000, 201_000)
    leftovers = list(settings.offline_dir.glob(".*.staged")) + list(
        (settings.state_dir / "staging").iterdir()
    )
    assert leftovers == []


def test_a_crash_after_the_journal_is_rolled_forward(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    orders(0, 10).to_csv(raw / "transactions.csv", index=False)
    pd.DataFrame({"customer_id": ["C1", "C2"], "plan": ["a", "b"]}).to_csv(
        raw / "customers.csv", index=False
    )
    real = os.replace
    calls = []

    def replace(src: object, dst: object) -> None:  # the process dies at its second rename
        calls.append(dst)
        if len(calls) == 3:  # 1: the journal; 2: customers; 3: transactions
            raise KeyboardInterrupt
        real(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        ingest_all(settings, raw, now=NOW)
    monkeypatch.setattr(os, "replace", real)
    assert len(read_table(settings, "customers")) == 2  # half committed
    assert (settings.offline_dir / JOURNAL_FILE).exists()
    assert not table_path(settings, "transactions").exists()
    # the next writer finishes the commit before it reads anything
    more = tmp_path / "transactions-more.csv"
    orders(10, 5).to_csv(more, index=False)
    result = ingest(settings, more, now=NOW)
    assert (result.inserted, result.stored_rows) == (5, 15)
    assert len(read_table(settings, "customers")) == 2
    assert not (settings.offline_dir / JOURNAL_FILE).exists()


def test_waiting_for_the_lock_says_for_whom_and_gives_up(tmp_path: Path) -> None:
    s = load_settings(tmp_path / "ws", environ={"CLV_INGEST__LOCK_TIMEOUT_SECONDS": "0.5"})
    path = tmp_path / "transactions.csv"
    orders(0, 10).to_csv(path, index=False)
    said: list[str] = []
    with store_writer(s, what="/data/big.csv", timeout_seconds=1):
        started = time.monotonic()
        with pytest.raises(
            DataError,
            match=r"gave up after 0\.5 s waiting for the ingest of "
            r"/data/big\.csv \(pid \d+",
        ):
            ingest(s, path, now=NOW, on_wait=said.append)
        assert time.monotonic() - started < 5
    assert len(said) == 1 and said[0].startswith("waiting for the ingest of /data/big.csv")
    assert not table_path(s, "transactions").exists()
    assert ingest(s, path, now=NOW).inserted == 10  # the lock is free again


# --- keys decide identity ----------------------------------------------------------------

EXPORT = """customer_id,ts,amount,order_id,channel
C1,2024-01-05,20.0,O1,web
C1,2024-02-05,20.5,O2,web
C2,2024-01-07,50.0,O3,app
C2,2024-03-01,60.0,O4,web
C3,2024-01-09,40.0,O5,store
C3,2024-02-09,48.0,O6,web
C4,2024-04-01,50.0,O7,app
"""


def test_a_corrected_export_replaces_its_orders(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "transactions.csv").write_text(EXPORT)
    first = ingest(settings, tmp_path / "transactions.csv", now=NOW)
    assert (first.inserted, first.stored_rows) == (7, 7)
    corrected = EXPORT.replace("20.0,O1,web", "20.0,O1,Web").replace("20.5,O2", "25.0,O2")
    (tmp_path / "transactions-corrected.csv").write_text(corrected)
    again = ingest(settings, tmp_path / "transactions-corrected.csv", now=NOW)
    assert (again.inserted, again.replaced, again.unchanged) == (0, 2, 5)
    stored = read_table(settings, "transactions")
    assert len(stored) == 7 and stored["amount"].sum() == pytest.approx(293.0)  # 288.5 + 4.5
    assert stored.set_index("order_id").loc["O1", "channel"] == "Web"


def test_a_conflict_policy_keeps_the_stored_rows(tmp_path: Path) -> None:
    s = load_settings(tmp_path / "ws", environ={"CLV_INGEST__ON_KEY_CONFLICT": "quarantine"})
    (tmp_path / "transactions.csv").write_text(EXPORT)
    ingest(s, tmp_path / "transactions.csv", now=NOW)
    corrected = EXPORT.replace("20.5,O2", "25.0,O2") + "C5,2024-04-02,10.0,O8,web\n"
    (tmp_path / "transactions-corrected.csv").write_text(corrected)
    again = ingest(s, tmp_path / "transactions-corrected.csv", now=NOW)
    assert (again.inserted, again.replaced, again.unchanged) == (1, 0, 6)
    assert again.quarantined == {"key_conflict": 1}
    q = pd.read_csv(again.quarantine_path, dtype=str)
    assert q[["row_number", "reason", "order_id", "amount"]].values.tolist() == [
        ["2", "key_conflict", "O2", "25.0"]
    ]
    stored = read_table(s, "transactions")
    assert len(stored) == 8 and stored["amount"].sum() == pytest.approx(298.5)


def test_a_refund_with_its_orders_id_is_not_the_order(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "transactions.csv"
    path.write_text(
        "customer_id,ts,amount,order_id,quantity\n"
        "C1,2024-01-05,20.0,O1,2\n"
        "C1,2024-01-09,10.0,O1,-1\n"  # a return of one unit, on the order's own id
    )
    r = ingest(settings, path, now=NOW)
    assert (r.inserted, r.quarantined) == (2, {})
    assert sorted(read_table(settings, "transactions")["amount"]) == [-10.0, 20.0]
    assert ingest(settings, path, now=NOW).unchanged == 2


# --- folders -----------------------------------------------------------------------------


def test_a_folder_reports_every_file(settings: Settings, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    (raw / "misc").mkdir(parents=True)
    orders(0, 10).to_csv(raw / "transactions.csv", index=False)
    pd.DataFrame({"customer_id": ["C1"], "plan": ["a"]}).to_csv(raw / "customers.csv", index=False)
    (raw / "notes.txt").write_text("not data\n")
    (raw / "README.md").write_text("# export\n")
    (raw / ".transactions-tmp.csv").write_text("x\n")
    (raw / "orders_2024.csv").write_text("customer_id,ts,amount\n")
    run = ingest_all(settings, raw, now=NOW)
    outcomes = {f.path.name: (f.outcome, f.reason) for f in run.files}
    tables = (
        "transactions, customers, events, identities, acquisition_costs, assignments, "
        "subscriptions, subscription_changes"
    )
    assert outcomes == {
        "customers.csv": ("stored", None),
        "transactions.csv": ("stored", None),
        ".transactions-tmp.csv": ("skipped", "hidden"),
        "README.md": ("skipped", "not a .csv, .csv.gz, .txt or .parquet file"),
        "misc": ("skipped", f"a folder not named after a table ({tables})"),
        "notes.txt": ("skipped", f"its name does not start with a table's ({tables})"),
        "orders_2024.csv": ("skipped", f"its name does not start with a table's ({tables})"),
    }
    assert [r.table for r in run] == ["customers", "transactions"]


def test_a_failing_folder_stores_nothing(settings: Settings, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    orders(0, 10).to_csv(raw / "transactions.csv", index=False)
    pd.DataFrame({"customer_id": ["C1"], "plan": ["a"]}).to_csv(raw / "customers.csv", index=False)
    pd.DataFrame({"customer_id": ["C1"], "when": ["2024-01-01"]}).to_csv(
        raw / "events.csv", index=False
    )
    (raw / "notes.txt").write_text("x\n")
    with pytest.raises(IngestFailed) as failed:
        ingest_all(settings, raw, now=NOW)
    message = str(failed.value)
    assert message.startswith(f"{raw}: events.csv failed, nothing of this ingest was stored: ")
    assert "missing required column 'ts'" in message and "\n" not in message
    fates = {f.path.name: f.outcome for f in failed.value.files}
    assert fates == {
        "customers.csv": "not_stored",
        "transactions.csv": "not_stored",
        "events.csv": "failed",
        "notes.txt": "skipped",
    }
    assert not settings.offline_dir.exists() or not any(settings.offline_dir.glob("*.parquet"))
    assert not settings.quarantine_dir.exists() or not any(settings.quarantine_dir.iterdir())


def test_a_folder_of_parts_reports_what_it_skipped(settings: Settings, tmp_path: Path) -> None:
    parts = tmp_path / "transactions"
    (parts / "old").mkdir(parents=True)
    orders(0, 5).to_csv(parts / "part-1.csv", index=False)
    orders(5, 5).to_parquet(parts / "part-2.parquet", index=False)
    (parts / "_SUCCESS").write_text("")
    (parts / ".part-3.csv.crc").write_text("")
    run = ingest_all(settings, parts, now=NOW)
    outcomes = {f.path.name: (f.outcome, f.reason) for f in run.files}
    assert outcomes == {
        "part-1.csv": ("stored", None),
        "part-2.parquet": ("stored", None),
        "old": ("skipped", "a folder inside a table's folder"),
        "_SUCCESS": ("skipped", "not a .csv, .csv.gz, .txt or .parquet file"),
        ".part-3.csv.crc": ("skipped", "hidden"),
    }
    assert run[0].inserted == 10
