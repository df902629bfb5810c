"""The feature benchmarks: `build_features` at 1M-10M transactions and in customer buckets,
each build in a fresh process (benchmarks.children), and materializing to the SQLite online
store (stock Feast against ours)."""

from __future__ import annotations

import os
import shutil
import time

from benchmarks.case import Figures, workspace
from benchmarks.children import build, build_checksum
from clv.core.compute import peak_rss_mib
from clv.core.settings import Settings


def synthetic_log(settings: Settings, *, customers: int, transactions: int, seed: int = 11) -> None:
    """A year (2023) of transactions and a customers table, written straight to the offline store.

    numpy only (fast at 10M rows); the contract's format: string ids, UTC microsecond `ts`,
    float amounts (3% refunds). Customers sign up through 2023 and buy after signing up, with
    gamma-distributed purchase rates. 12 monthly snapshots: 2023-02-01 .. 2024-01-01.
    """
    import numpy as np
    import pandas as pd

    from clv.core.contracts import TS_DTYPE
    from clv.core.store import write_table

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


def feature_build_scaling(*, quick: bool) -> Figures:
    """`build_features` for 12 monthly snapshots of 200k customers at 1M, 3M and 10M transactions.

    Each size builds in a fresh `python` process (benchmarks.children.build), so its wall time
    and peak RSS are its own.
    """
    customers = 2_000 if quick else 200_000
    sizes = (10_000, 30_000, 100_000) if quick else (1_000_000, 3_000_000, 10_000_000)
    out: Figures = {"customers": customers, "snapshots_every": "1M"}
    for n in sizes:
        settings = workspace(f"build-{n}")
        t0 = time.perf_counter()
        synthetic_log(settings, customers=customers, transactions=n)
        generated = time.perf_counter() - t0
        t1 = time.perf_counter()
        figures = build.in_child(settings.workspace)
        wall = time.perf_counter() - t1
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


def feature_build_chunked(*, quick: bool) -> Figures:
    """The 10M-transaction world of `feature_build_scaling`, built in customer buckets.

    One fresh process per build (benchmarks.children.build_checksum): one bucket (the unchunked
    build), the default budget (4096 MiB) and a small budget (1024 MiB; 16 MiB in the quick run,
    so it chunks too). Rows equal: the row count and a checksum (sum of the key hashes, integer
    sums of a few feature columns, non-null counts, one created timestamp) agree with the
    unchunked build.
    """
    customers, transactions = (2_000, 100_000) if quick else (200_000, 10_000_000)
    small = "16" if quick else "1024"
    settings = workspace("build-chunked")
    t0 = time.perf_counter()
    synthetic_log(settings, customers=customers, transactions=transactions)
    generated = time.perf_counter() - t0
    load_before = os.getloadavg()
    runs: dict[str, dict[str, object]] = {}
    for name, budget, buckets in (
        ("unchunked", "4096", "1"),
        ("default_budget", "4096", "auto"),
        ("small_budget", small, "auto"),
    ):
        figures = build_checksum.in_child(settings.workspace, budget=budget, buckets=buckets)
        runs[name] = {
            "memory_budget_mb": int(budget),
            "chunks": figures["chunks"],
            "estimate_mib": figures["estimate_mib"],
            "seconds": figures["seconds"],
            "peak_rss_gib": round(figures["peak_rss_mib"] / 1024, 2),
            "rows": figures["rows"],
            "checksum": figures["checksum"],
        }
    shutil.rmtree(settings.workspace, ignore_errors=True)
    base = runs["unchunked"]
    out: Figures = {
        "customers": customers,
        "transactions": transactions,
        "generate_seconds": round(generated, 2),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    for name, run in runs.items():
        run["rows_equal"] = run["rows"] == base["rows"] and run["checksum"] == base["checksum"]
        out[name] = run
    return out


def materialize_online(*, quick: bool) -> Figures:
    """200k customers x every clv_v1 feature into SQLite: stock Feast store vs ours, read back."""
    import numpy as np
    import pandas as pd
    from feast import FeatureStore, RepoConfig

    import clv.features.feast_io as feast_io
    from clv.features.build import build_features

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
        feast_io.feature_store(settings)
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
