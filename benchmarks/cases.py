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


# --------------------------------------------------------------------------- serving (issue 5)

SERVING_READY = "serving-ready.txt"


def serving_workspace(*, quick: bool) -> Settings:
    """A trained, materialized workspace shared by the serving benchmarks (built once).

    generate -> ingest -> features (apply, build, apply, materialize) -> train (3 trials) ->
    champion. Reused while `.clv/serving-ready.txt` exists; delete the folder to rebuild.
    """
    from clv.generator import generate, write_raw
    from clv.ingest import ingest_all
    from features import feast_io
    from features.build import build_features
    from training.train import run as train_run

    name = "serving-quick" if quick else "serving"
    path = WORK / name
    marker = path / ".clv" / SERVING_READY
    if marker.exists():
        return load_settings(path, environ={})
    settings = workspace(name)
    customers, months = (3_000, 30) if quick else (20_000, 36)
    data = generate(customers=customers, months=months, seed=7)
    write_raw(data, settings.raw_dir, fmt="parquet")
    ingest_all(settings, settings.raw_dir)
    feast_io.apply(settings)
    build_features(settings)
    feast_io.apply(settings)
    feast_io.materialize(settings)
    trained = train_run(settings, n_trials=3)
    marker.write_text(f"version {trained.version}\n")
    return settings


def synthetic_log(settings: Settings, *, customers: int, transactions: int, seed: int = 11) -> None:
    """A year (2023) of transactions and a customers table, written straight to the offline store.

    numpy only (fast at 10M rows); the contract's format: string ids, UTC microsecond `ts`,
    float amounts (3% refunds). Customers sign up through 2023 and buy after signing up, with
    gamma-distributed purchase rates. 12 monthly snapshots: 2023-02-01 .. 2024-01-01.
    """
    import numpy as np
    import pandas as pd

    from clv.contracts import TS_DTYPE
    from clv.store import write_table

    rng = np.random.default_rng(seed)
    start = np.datetime64("2023-01-01T00:00:00", "us").astype(np.int64)
    span = 365 * 86_400_000_000
    signup = start + rng.integers(0, span, customers)
    ids = np.char.add("C", np.char.zfill(np.arange(customers).astype(str), 7)).astype(object)
    weight = rng.gamma(0.8, 1.0, customers)
    who = rng.choice(customers, size=transactions, p=weight / weight.sum())
    ts = signup[who] + (rng.random(transactions) * (start + span - signup[who])).astype(np.int64)
    amount = np.round(rng.lognormal(3.5, 0.8, transactions), 2)
    amount[rng.random(transactions) < 0.03] *= -1

    def utc(values: np.ndarray) -> pd.Series:
        return pd.Series(pd.to_datetime(values, unit="us", utc=True)).astype(TS_DTYPE)

    write_table(
        settings,
        "transactions",
        pd.DataFrame({"customer_id": ids[who], "ts": utc(ts), "amount": amount}),
    )
    pick = {
        "acquisition_channel": ["ads", "seo", "referral", "social"],
        "country": ["DE", "FR", "NL", "US", "GB"],
        "plan": ["free", "pro", "team"],
    }
    cust = pd.DataFrame({"customer_id": ids, "signup_ts": utc(signup)})
    for column, options in pick.items():
        cust[column] = np.array(options, dtype=object)[rng.integers(0, len(options), customers)]
    write_table(settings, "customers", cust)


_BUILD_ONE = """
import json, resource, sys, time
from clv.settings import load_settings
from features.build import build_features
settings = load_settings(sys.argv[1], environ={})
result = build_features(settings)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": round(result.seconds, 2), "rows": result.rows,
                  "customers": result.customers, "snapshots": len(result.snapshots),
                  "peak_rss_mib": round(peak, 1)}))
"""


def feature_build_scaling(*, quick: bool) -> Figures:
    """`build_features` for 12 monthly snapshots of 200k customers at 1M, 3M and 10M transactions.

    Each size builds in a fresh `python` process, so its wall time and peak RSS are its own.
    """
    import json
    import subprocess
    import sys

    customers = 2_000 if quick else 200_000
    sizes = (10_000, 30_000, 100_000) if quick else (1_000_000, 3_000_000, 10_000_000)
    out: Figures = {"customers": customers, "snapshots_every": "1M"}
    for n in sizes:
        settings = workspace(f"build-{n}")
        t0 = time.perf_counter()
        synthetic_log(settings, customers=customers, transactions=n)
        generated = time.perf_counter() - t0
        t1 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", _BUILD_ONE, str(settings.workspace)],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        wall = time.perf_counter() - t1
        figures = json.loads(proc.stdout.strip().splitlines()[-1])
        out[f"tx_{n}"] = {
            "generate_seconds": round(generated, 2),
            "build_seconds": figures["seconds"],
            "process_wall_seconds": round(wall, 2),
            "peak_rss_mib": figures["peak_rss_mib"],
            "feature_rows": figures["rows"],
            "snapshots": figures["snapshots"],
        }
        shutil.rmtree(settings.workspace, ignore_errors=True)
    return out


def materialize_online(*, quick: bool) -> Figures:
    """200k customers x every clv_v1 feature into SQLite: stock Feast store vs ours, read back."""
    import numpy as np
    import pandas as pd
    from feast import FeatureStore, RepoConfig

    from features import feast_io
    from features.build import build_features

    customers = 2_000 if quick else 200_000
    settings = workspace("materialize")
    synthetic_log(settings, customers=customers, transactions=5 * customers)
    build_features(settings)
    feast_io.apply(settings)
    n_features = len(feast_io.feature_names(settings))

    t0 = time.perf_counter()
    ours = feast_io.materialize(settings)
    ours_seconds = time.perf_counter() - t0

    stock_config = RepoConfig(
        project=settings.feast.project,
        provider="local",
        registry=feast_io._registry_config(settings),
        online_store={"type": "sqlite", "path": str(settings.feast_dir / "stock-online.db")},
        offline_store={"type": "duckdb"},
        repo_path=settings.state_dir,
        entity_key_serialization_version=3,
    )
    stock = FeatureStore(config=stock_config, repo_path=str(settings.state_dir))
    stock.apply(feast_io._declarations(settings))  # type: ignore[arg-type]
    t1 = time.perf_counter()
    stock.materialize(start_date=ours.start.to_pydatetime(), end_date=ours.end.to_pydatetime())
    stock_seconds = time.perf_counter() - t1

    rng = np.random.default_rng(3)
    sample = [f"C{i:07d}" for i in rng.choice(customers, size=min(1_000, customers), replace=False)]
    service = stock.get_feature_service(settings.features.service)
    rows = [{"customer_id": c} for c in sample]
    from_stock = stock.get_online_features(features=service, entity_rows=rows).to_dict(
        include_event_timestamps=True
    )
    from_ours = (
        feast_io._feature_store(settings)
        .get_online_features(features=service, entity_rows=rows)
        .to_dict(include_event_timestamps=True)
    )
    identical = pd.DataFrame(from_stock).equals(pd.DataFrame(from_ours))
    return {
        "customers": ours.customers,
        "features": n_features,
        "values": ours.customers * n_features,
        "stock_feast_sqlite_seconds": round(stock_seconds, 2),
        "ours_batched_sqlite_seconds": round(ours_seconds, 2),
        "speedup": round(stock_seconds / ours_seconds, 1),
        "read_back_sample": len(sample),
        "read_back_identical": identical,
        "peak_rss_mib": peak_rss_mib(),
    }


def corrupted_transactions_csv(path: Path, *, rows: int, seed: int = 5) -> dict[str, int]:
    """A transactions CSV of `rows` rows, 1% corrupted in five kinds; returns the count per kind.

    Kinds (each 0.2% of rows, on distinct rows): missing customer id, unparseable timestamp,
    future timestamp, non-numeric amount, and an exact copy of the previous valid row.
    """
    import numpy as np
    import pandas as pd

    from clv.contracts import RejectReason

    rng = np.random.default_rng(seed)
    base = np.datetime64("2023-01-01T00:00:00", "s").astype(np.int64)
    ts = pd.to_datetime(base + rng.integers(0, 365 * 86_400, rows), unit="s", utc=True)
    frame = pd.DataFrame(
        {
            "customer_id": np.char.add("C", rng.integers(0, 100_000, rows).astype(str)),
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "amount": np.round(rng.lognormal(3.5, 0.8, rows), 2).astype(str),
            "order_id": np.char.add("O", np.arange(rows).astype(str)),
        }
    )
    kinds = (
        RejectReason.MISSING_ID,
        RejectReason.BAD_TIMESTAMP,
        RejectReason.FUTURE_TIMESTAMP,
        RejectReason.BAD_AMOUNT,
        RejectReason.DUPLICATE,
    )
    per_kind = rows // 100 // len(kinds)
    # Corrupt rows 1.. (never row 0, so a duplicate always has a valid row before it); no
    # two corrupted rows are adjacent, so each duplicate copies a valid row.
    chosen = 1 + 2 * rng.choice((rows - 1) // 2, size=per_kind * len(kinds), replace=False)
    for k, kind in enumerate(kinds):
        at = chosen[k * per_kind : (k + 1) * per_kind]
        if kind is RejectReason.MISSING_ID:
            frame.loc[at, "customer_id"] = ""
        elif kind is RejectReason.BAD_TIMESTAMP:
            frame.loc[at, "ts"] = "not-a-date"
        elif kind is RejectReason.FUTURE_TIMESTAMP:
            frame.loc[at, "ts"] = "2099-01-01T00:00:00Z"
        elif kind is RejectReason.BAD_AMOUNT:
            frame.loc[at, "amount"] = "12,5O"
        else:
            frame.iloc[at] = frame.iloc[at - 1].to_numpy()
    frame.to_csv(path, index=False)
    return {kind.value: per_kind for kind in kinds}


def ingest_1m(*, quick: bool) -> Figures:
    """A 1,000,000-row transactions CSV with 1% corrupted rows of five kinds, ingested."""
    from clv.ingest import ingest
    from clv.store import read_table

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


CASES: dict[str, Callable[..., Figures]] = {
    "generate_and_ingest": generate_and_ingest,
    "feature_build_scaling": feature_build_scaling,
    "materialize_online": materialize_online,
    "ingest_1m": ingest_1m,
}
