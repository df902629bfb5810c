"""The ingest benchmarks: the demo-size generator and ingest, and a 1M-row CSV with corrupted
rows (the big-file ingest is benchmarks.ingest_big)."""

from __future__ import annotations

import time

from benchmarks.case import Figures, workspace
from clv.core.compute import peak_rss_mib


def generate_and_ingest(*, quick: bool) -> Figures:
    """The demo-size generator and ingest of its three tables."""
    from clv.inputs.generator import generate, write_raw
    from clv.inputs.ingest import ingest_all

    customers, months = (2_000, 24) if quick else (20_000, 36)
    settings = workspace("generate")
    t0 = time.perf_counter()
    data = generate(customers=customers, months=months, seed=7, world="btyd")
    t1 = time.perf_counter()
    write_raw(data, settings.raw_dir, fmt="csv")
    t2 = time.perf_counter()
    results = ingest_all(settings, settings.raw_dir)
    t3 = time.perf_counter()
    return {
        "customers": customers,
        "months": months,
        "transactions": len(data.transactions),
        "events": len(data.events),
        "generate_seconds": round(t1 - t0, 2),
        "write_csv_seconds": round(t2 - t1, 2),
        "ingest_csv_seconds": round(t3 - t2, 2),
        "inserted": {r.table: r.inserted for r in results},
        "peak_rss_mib": peak_rss_mib(),
    }


def ingest_1m(*, quick: bool) -> Figures:
    """A 1,000,000-row transactions CSV with 1% corrupted rows of five kinds, ingested."""
    from clv.core.store import read_table
    from clv.inputs.generator import corrupted_transactions_csv
    from clv.inputs.ingest import ingest

    rows = 20_000 if quick else 1_000_000
    settings = workspace("ingest-1m")
    path = settings.raw_dir / "transactions.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    expected = corrupted_transactions_csv(path, rows=rows)
    t1 = time.perf_counter()
    result = ingest(settings, path)
    t2 = time.perf_counter()
    stored = len(read_table(settings, "transactions"))
    valid = rows - sum(expected.values())
    return {
        "rows": rows,
        "csv_mib": round(path.stat().st_size / 2**20, 1),
        "write_csv_seconds": round(t1 - t0, 2),
        "ingest_seconds": round(t2 - t1, 2),
        "stored_rows": stored,
        "valid_rows": valid,
        "every_valid_row_stored": stored == valid,
        "quarantined": result.quarantined,
        "expected_quarantined": expected,
        "quarantine_matches": result.quarantined == expected,
        "peak_rss_mib": peak_rss_mib(),
    }
