"""The benchmark cases: each takes `quick` and returns the measured figures.

Workspaces go under `benchmarks/work/` (git-ignored), never into the repo tree proper.
"""

from __future__ import annotations

import resource
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from clv.settings import Settings, load_settings

WORK = Path(__file__).resolve().parent / "work"

Figures = dict[str, object]


def workspace(name: str) -> Settings:
    """A fresh, empty workspace for one benchmark."""
    path = WORK / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    settings = load_settings(path, environ={})
    settings.ensure_dirs()
    return settings


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def generate_and_ingest(*, quick: bool) -> Figures:
    """The demo-size generator and ingest of its three tables."""
    from clv.generator import generate, write_raw
    from clv.ingest import ingest_all

    customers, months = (2_000, 24) if quick else (20_000, 36)
    settings = workspace("generate")
    t0 = time.perf_counter()
    data = generate(customers=customers, months=months, seed=7)
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
        "accepted": {r.table: r.accepted for r in results},
        "peak_rss_mib": peak_rss_mib(),
    }


CASES: dict[str, Callable[..., Figures]] = {
    "generate_and_ingest": generate_and_ingest,
}
