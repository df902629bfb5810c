"""Feature builds in customer buckets: same rows as one bucket, as many buckets as estimated."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from clv.cli.features import app
from clv.core.errors import ConfigError
from clv.core.settings import Settings, load_settings
from clv.core.store import read_table, write_table
from clv.features.build import BuildResult, build_features
from clv.features.memory import (
    BYTES_PER_CUSTOMER,
    BYTES_PER_EVENT,
    BYTES_PER_FEATURE_ROW,
    BYTES_PER_TRANSACTION,
    MIB,
    plan_buckets,
)
from clv.features.query import compute_features_arrow
from clv.features.snapshots import features_path
from clv.inputs.generator import generate, write_raw
from clv.inputs.ingest import ingest, ingest_all

KEYS = ["customer_id", "event_timestamp"]
FEB = pd.Timestamp("2024-02-01", tz="UTC")
TINY_BUDGET = {"CLV_COMPUTE__MEMORY_BUDGET_MB": "1"}


@dataclass(frozen=True)
class Built:
    result: BuildResult
    table: pa.Table


def _build(settings: Settings, *, buckets: int | None = None) -> Built:
    result = build_features(settings, buckets=buckets)
    return Built(result, pq.read_table(result.path))


def _sorted(table: pa.Table) -> pd.DataFrame:
    frame = table.to_pandas().drop(columns="created_timestamp")
    return frame.sort_values(KEYS, ignore_index=True)


def _customer_changes(settings: Settings, folder: Path) -> None:
    """Customer versions: every third customer switches plan 60 days after signing up (dated),
    every fifth who signed up before Sep 1 moves country, undated, ingested on Sep 1."""
    cust = read_table(settings, "customers").drop(columns=["valid_from", "ingested_at"])
    dated = cust.iloc[::3].assign(
        plan=lambda f: np.where(f["plan"] == "free", "premium", "free"),
        valid_from=lambda f: f["signup_ts"] + pd.Timedelta(days=60),
    )
    dated.to_parquet(folder / "customers-plans.parquet")
    sep = pd.Timestamp("2023-09-01", tz="UTC")
    moved = cust.iloc[::5].loc[lambda f: f["signup_ts"] < sep].assign(country="IS")
    moved.to_parquet(folder / "customers-moves.parquet")
    for name, now in (("customers-plans", None), ("customers-moves", sep)):
        result = ingest(settings, folder / f"{name}.parquet", now=now)
        assert result.inserted > 10 and not result.quarantined


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The seeded generator's log: refunds, margins, events and a versioned customers table."""
    ws = tmp_path_factory.mktemp("chunks")
    settings = load_settings(ws, environ={})
    data = generate(customers=300, months=12, seed=5)
    write_raw(data, settings.raw_dir, fmt="parquet")
    ingest_all(settings, settings.raw_dir)
    _customer_changes(settings, tmp_path_factory.mktemp("changes"))
    yield ws


@pytest.fixture(scope="module")
def builds(world: Path) -> tuple[Built, Built]:
    one = _build(load_settings(world, environ={}))
    many = _build(load_settings(world, environ=TINY_BUDGET))
    return one, many


def test_default_budget_builds_in_one_chunk(builds: tuple[Built, Built]) -> None:
    one, _ = builds
    assert one.result.chunks == 1
    assert one.result.memory_budget_mb == 4096
    assert one.result.rows == one.table.num_rows > 1_000


def test_tiny_budget_gives_the_same_rows_and_values(builds: tuple[Built, Built]) -> None:
    one, many = builds
    assert many.result.chunks > 1
    assert many.table.schema == one.table.schema
    assert (many.result.rows, many.result.customers) == (one.result.rows, one.result.customers)
    assert many.result.snapshots == one.result.snapshots
    pd.testing.assert_frame_equal(_sorted(many.table), _sorted(one.table))
    # the customer versions show: plans switch within a customer's history
    plans = _sorted(one.table).groupby("customer_id")["plan"].nunique()
    assert (plans > 1).sum() > 10
    # one `created` timestamp for the whole build, whatever the bucket
    assert len(many.table["created_timestamp"].unique()) == 1


def test_chunk_count_is_the_estimate_over_the_budget(
    world: Path, builds: tuple[Built, Built]
) -> None:
    _, many = builds
    est = many.result.estimate
    settings = load_settings(world, environ={})
    stored = {
        t: pq.read_metadata(settings.offline_dir / f"{t}.parquet").num_rows
        for t in ("transactions", "events", "customers")
    }
    assert (est.transactions, est.events, est.customers) == (
        stored["transactions"],
        stored["events"],
        stored["customers"],
    )
    assert est.snapshots == len(many.result.snapshots)
    # known customers: an approximate distinct count of the ids in transactions and customers
    assert abs(est.known_customers - many.result.customers) <= 0.03 * many.result.customers
    expected = (
        stored["transactions"] * BYTES_PER_TRANSACTION
        + stored["events"] * BYTES_PER_EVENT
        + stored["customers"] * BYTES_PER_CUSTOMER
        + est.known_customers * est.snapshots * BYTES_PER_FEATURE_ROW
    )
    assert est.bytes == expected
    assert many.result.chunks == math.ceil(expected / MIB)  # budget 1 MiB


def test_plan_buckets_rounds_up_and_never_returns_zero() -> None:
    assert plan_buckets(0, budget_mb=1) == 1
    assert plan_buckets(MIB, budget_mb=1) == 1
    assert plan_buckets(MIB + 1, budget_mb=1) == 2
    assert plan_buckets(10 * MIB, budget_mb=4) == 3
    with pytest.raises(ConfigError, match="memory_budget_mb"):
        plan_buckets(MIB, budget_mb=0)


def _bucket_of(ids: list[str], buckets: int) -> set[int]:
    con = duckdb.connect()
    try:
        rows = con.execute(
            f"SELECT DISTINCT hash(CAST(id AS VARCHAR)) % {buckets} FROM unnest(?) t(id)", [ids]
        ).fetchall()
    finally:
        con.close()
    return {int(r[0]) for r in rows}


def test_empty_buckets_keep_the_schema_and_the_rows(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, environ={})
    ids = ["a", "b"]
    write_table(
        settings,
        "transactions",
        pd.DataFrame(
            {
                "customer_id": ["a", "b", "a"],
                "ts": pd.Series(
                    pd.to_datetime(["2024-01-05", "2024-01-10", "2024-02-10"], utc=True)
                ).astype("datetime64[us, UTC]"),
                "amount": [15.0, 7.0, 20.0],
            }
        ),
    )
    # more buckets than customers, and the first bucket (whose table opens the file) is empty
    buckets = next(k for k in range(4, 64) if 0 not in _bucket_of(ids, k))
    one = _build(settings)
    many = _build(settings, buckets=buckets)
    assert many.result.chunks == buckets > len(ids)
    assert many.table.schema == one.table.schema
    assert many.result.rows == one.result.rows == 4  # a and b at Feb 1 and Mar 1
    pd.testing.assert_frame_equal(_sorted(many.table), _sorted(one.table))


def test_bucket_count_below_one_is_refused(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, environ={})
    write_table(
        settings,
        "transactions",
        pd.DataFrame(
            {
                "customer_id": ["a"],
                "ts": pd.Series(pd.to_datetime(["2024-01-05"], utc=True)).astype(
                    "datetime64[us, UTC]"
                ),
                "amount": [15.0],
            }
        ),
    )
    with pytest.raises(ConfigError, match="at least 1"):
        build_features(settings, buckets=0)


def test_cli_reports_the_chunks(world: Path) -> None:
    runner = CliRunner()
    env = {"CLV_WORKSPACE": str(world), **TINY_BUDGET}
    out = runner.invoke(app, ["build", "--json"], env=env)
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout)
    assert payload["chunks"] > 1 and payload["memory_budget_mb"] == 1
    assert payload["estimate_mb"] > 1.0
    human = runner.invoke(app, ["build"], env=env)
    assert human.exit_code == 0, human.output
    assert f"in {payload['chunks']} chunks (estimate" in human.stdout


def test_store_and_frames_read_inputs_the_same_way(tmp_path: Path) -> None:
    """A duplicated customer keeps its last row; missing optional columns are nulls."""
    settings = load_settings(tmp_path, environ={})
    tx = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "ts": pd.Series(pd.to_datetime(["2024-01-05", "2024-01-10"], utc=True)).astype(
                "datetime64[us, UTC]"
            ),
            "amount": [15.0, 7.0],
        }
    )
    customers = pd.DataFrame(
        {
            "customer_id": ["a", "b", "a"],
            "signup_ts": pd.Series(
                pd.to_datetime(["2023-12-20", "2024-01-09", "2023-12-01"], utc=True)
            ).astype("datetime64[us, UTC]"),
            "country": ["DE", "FR", "NL"],  # no acquisition_channel or plan column
        }
    )
    write_table(settings, "transactions", tx)
    write_table(settings, "customers", customers)
    stored = _sorted(_build(settings, buckets=3).table)
    framed_table = compute_features_arrow(tx, customers, None, [FEB], margin_rate=0.3)
    assert framed_table.schema == pq.read_schema(features_path(settings))
    framed = _sorted(framed_table)
    pd.testing.assert_frame_equal(stored, framed)
    a = stored.set_index("customer_id").loc["a"]
    assert (a["country"], a["tenure_days"]) == ("NL", 62)  # Dec 1 -> Feb 1, the last row
    assert a["plan"] is None and a["acquisition_channel"] is None
    assert a["margin_30d"] == pytest.approx(15.0 * settings.model.margin_rate)  # no margin column


def test_buckets_built_on_a_dask_cluster_are_the_same_file(
    world: Path, tmp_path: Path, dask_scheduler: str
) -> None:
    import shutil

    local = load_settings(world, environ=TINY_BUDGET)
    expected = _build(local)
    ws = tmp_path / "ws"
    shutil.copytree(world, ws)
    remote = load_settings(
        ws, environ={**TINY_BUDGET, "CLV_COMPUTE__DASK_SCHEDULER": dask_scheduler}
    )
    built = _build(remote)
    assert built.result.chunks == expected.result.chunks > 1
    # Bucket order is kept: the same rows in the same order, not only the same set.
    left = built.table.drop_columns(["created_timestamp"]).to_pandas()
    right = expected.table.drop_columns(["created_timestamp"]).to_pandas()
    pd.testing.assert_frame_equal(left, right)
    assert not list(remote.state_dir.glob("duckdb-spill-*"))  # the parts are gone
    from distributed import Client

    # The cluster, not this process, built the buckets: the scheduler timed their tasks.
    with Client(dask_scheduler) as client:  # type: ignore[no-untyped-call]
        seconds = client.run_on_scheduler(
            lambda dask_scheduler: {
                k: float(v.all_durations.get("compute", 0.0))
                for k, v in dask_scheduler.task_prefixes.items()
            }
        )
    assert seconds.get("bucket_part", 0.0) > 0.0, seconds
