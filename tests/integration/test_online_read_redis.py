"""The direct Redis online read returns exactly what Feast's online read returns from Redis."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
from clv_cli import clv_json as _clv

from clv.core.processes import free_port

pytestmark = [pytest.mark.integration]


def test_direct_redis_read_equals_feast_online_features(tmp_path: Path, redis_address: str) -> None:
    from clv.core.settings import load_settings
    from clv.core.store import read_table
    from clv.features import feast_io
    from clv.features.online_read import (
        RedisOnlineReader,
        online_frame,
        online_source,
        redis_layout,
    )

    (tmp_path / "clv.yaml").write_text(
        f"feast:\n  online_store: redis\n  redis_connection: {redis_address}\n"
    )
    _clv(tmp_path, "data", "generate", "--customers", "300", "--months", "18", "--seed", "5")
    _clv(tmp_path, "data", "ingest", str(tmp_path / "data" / "raw"))
    _clv(tmp_path, "features", "apply")
    _clv(tmp_path, "features", "build")
    _clv(tmp_path, "features", "apply")
    _clv(tmp_path, "features", "materialize")
    settings = load_settings(tmp_path)

    known = sorted(read_table(settings, "customers")["customer_id"].astype(str).unique())
    assert len(known) >= 40
    ids = known[:40:2] + ["nobody", known[3], "C999999"] + known[1:40:2] + [known[0], ""] * 3
    ids += ["also-unknown", known[-1]]  # ~50 ids: unknown, empty and repeated ones included

    expected = feast_io.online_features(settings, ids)
    reader = RedisOnlineReader(redis_layout(settings))
    assert reader.ping() is None
    got = reader.read(ids).frame()
    pd.testing.assert_frame_equal(got, expected)
    pd.testing.assert_frame_equal(online_frame(settings, ids), expected)
    assert isinstance(online_source(settings).ping(), type(None))

    # The parity is not vacuous: most ids have values, the unknown ones are null rows.
    stamps = expected["feature_timestamp"]
    assert stamps.notna().sum() >= 40
    unknown = expected["customer_id"].isin(["nobody", "C999999", "", "also-unknown"])
    assert stamps[unknown].isna().all()
    features = [c for c in expected.columns if c not in ("customer_id", "feature_timestamp")]
    assert expected.loc[unknown, features].isna().all().all()
    assert expected.loc[~unknown, features].notna().any(axis=1).all()
    assert (
        got.loc[got["customer_id"] == known[0], features].nunique(dropna=False).max() == 1
    )  # a repeated id gets the same row each time


def test_unreachable_redis_pings_unreachable_and_read_raises() -> None:
    import redis

    from clv.features.online_read import RedisLayout, RedisOnlineReader, ViewTable

    port = free_port()  # nothing listens there
    layout = RedisLayout(
        connection_string=f"127.0.0.1:{port},retry=null",
        project="clv",
        key_version=3,
        join_key="customer_id",
        views=(ViewTable("customer_stats", ("recency_days",)),),
        feature_names=("recency_days",),
        strings=frozenset(),
    )
    reader = RedisOnlineReader(layout)
    started = time.monotonic()
    problem = reader.ping()
    assert problem is not None and problem.startswith("online store unreachable"), problem
    with pytest.raises(redis.ConnectionError):
        reader.read(["C000001"])
    assert time.monotonic() - started < 2.0  # retry=null: no backoff
