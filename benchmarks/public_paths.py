"""What the public fallbacks of clv's private-API fast paths cost (clv.model.xgboost_private,
clv.features.feast_private): the same work timed both ways on the serving workspace.

- predict: `ClvModel.predict_matrix` through XGBoost's C entry point (the default) against
  `public_predict=True` (`Booster.inplace_predict`), on a batch and one row at a time;
- online reads: `SqliteOnlineReader` against `FeastOnlineReader`
  (`FeatureStore.get_online_features`), for a batch of customers and one customer at a time;
  the same for Redis (`RedisOnlineReader`) when one answers at `CLV_FEAST__REDIS_CONNECTION`
  (default localhost:6379): the workspace is then materialized into it.

The write fallback (`FeatureStore.materialize` instead of the direct batched write) is what
benchmarks.features.materialize_online measures already (stock Feast against ours).
"""

from __future__ import annotations

import itertools
import os
import random
import statistics
import time
from collections.abc import Callable

from benchmarks.case import Figures
from benchmarks.serving import SERVING_READY, serving_workspace
from clv.core.settings import Settings, load_settings


def _customer_ids(settings: Settings, n: int) -> list[str]:
    """n of the workspace's customers, in a seeded random order."""
    from clv.core.store import read_table

    ids = sorted(read_table(settings, "customers")["customer_id"].astype(str).unique())
    random.Random(0).shuffle(ids)
    return ids[:n]


def _round_seconds(call: Callable[[], object], calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - t0) / calls


def _pair(
    figures: Figures,
    name: str,
    fast: Callable[[], object],
    public: Callable[[], object],
    *,
    calls: int,
    repeats: int,
    unit: float,
    suffix: str,
) -> None:
    """`<name>_fast_<suffix>`, `<name>_public_<suffix>` (the median over `repeats` rounds of the
    mean seconds of one call, the two paths' rounds interleaved so that the machine's load falls
    on both alike, after one warm-up call each) and their ratio, into `figures`."""
    fast()
    public()
    rounds: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        rounds[0].append(_round_seconds(fast, calls))
        rounds[1].append(_round_seconds(public, calls))
    a, b = statistics.median(rounds[0]), statistics.median(rounds[1])
    figures[f"{name}_fast_{suffix}"] = round(a * unit, 3)
    figures[f"{name}_public_{suffix}"] = round(b * unit, 3)
    figures[f"{name}_public_over_fast"] = round(b / a, 2) if a > 0 else None


def _predict_figures(settings: Settings, ids: list[str], *, quick: bool) -> Figures:
    import numpy as np

    from clv.features.online_read import online_frame
    from clv.model import xgboost_private
    from clv.registry.mlflow_io import load_version

    marker = (settings.state_dir / SERVING_READY).read_text().split()
    fast = load_version(settings, marker[-1]).model
    public = fast.with_public_predict()
    x = fast.matrix(online_frame(settings, ids))
    same = all(
        np.array_equal(a, b, equal_nan=True)
        for a, b in zip(
            fast.predict_matrix(x).values(), public.predict_matrix(x).values(), strict=True
        )
    )
    figures: Figures = {"predict_rows": int(x.shape[0]), "predict_same_numbers": same}
    figures["xgboost_private_path"] = xgboost_private.private_unavailable() is None
    repeats = 5 if quick else 9
    _pair(
        figures,
        "predict_batch",
        lambda: fast.predict_matrix(x),
        lambda: public.predict_matrix(x),
        calls=3,
        repeats=repeats,
        unit=1e3,
        suffix="ms",
    )
    rows = [x[i : i + 1] for i in range(min(200, x.shape[0]))]
    fast_rows, public_rows = itertools.cycle(rows), itertools.cycle(rows)
    _pair(
        figures,
        "predict_one_row",
        lambda: fast.predict_matrix(next(fast_rows)),
        lambda: public.predict_matrix(next(public_rows)),
        calls=200 if quick else 1000,
        repeats=repeats,
        unit=1e6,
        suffix="us",
    )
    return figures


Read = Callable[[list[str]], object]


def _read_figures(store: str, fast: Read, public: Read, ids: list[str], *, quick: bool) -> Figures:
    figures: Figures = {f"{store}_batch_ids": len(ids)}
    repeats = 5 if quick else 9
    _pair(
        figures,
        f"{store}_read_batch",
        lambda: fast(ids),
        lambda: public(ids),
        calls=2 if quick else 5,
        repeats=repeats,
        unit=1e3,
        suffix="ms",
    )
    singles = [[c] for c in ids[:100]]
    fast_ids, public_ids = itertools.cycle(singles), itertools.cycle(singles)
    _pair(
        figures,
        f"{store}_read_one_id",
        lambda: fast(next(fast_ids)),
        lambda: public(next(public_ids)),
        calls=50 if quick else 200,
        repeats=repeats,
        unit=1e3,
        suffix="ms",
    )
    return figures


def _feast_api_ms(settings: Settings, ids: list[str], *, quick: bool) -> float:
    """Milliseconds of one bare `FeatureStore.get_online_features(...).to_dict()` for one id:
    Feast's own share of `FeastOnlineReader.read` (the rest is clv's adapter: the service's
    feature names and types looked up in the registry, the frame built and typed)."""
    from clv.features import feast_io

    store = feast_io.feature_store(settings)
    service = feast_io.require_service(settings, store)
    rows = itertools.cycle([[{"customer_id": c}] for c in ids[:100]])

    def read() -> object:
        return store.get_online_features(features=service, entity_rows=next(rows)).to_dict()

    read()
    rounds = [_round_seconds(read, 50 if quick else 200) for _ in range(5 if quick else 9)]
    return round(statistics.median(rounds) * 1e3, 3)


def _redis_settings(settings: Settings) -> Settings | str:
    """The workspace with the Redis profile when a Redis answers, else why not."""
    from clv.features.online_read import redis_client

    connection = os.environ.get("CLV_FEAST__REDIS_CONNECTION", "localhost:6379")
    probe = connection if "retry=" in connection else f"{connection},retry=null"
    client = redis_client(probe, timeout_seconds=1.0)
    try:
        client.ping()
    except Exception as exc:  # any failure to answer: skip Redis
        return f"no Redis at {connection}: {type(exc).__name__}"
    finally:
        client.close()
    profile = {"CLV_FEAST__ONLINE_STORE": "redis", "CLV_FEAST__REDIS_CONNECTION": connection}
    return load_settings(settings.workspace, environ=profile)


def public_paths(*, quick: bool) -> Figures:
    """Fast path against public fallback: predict, SQLite reads and (if reachable) Redis reads."""
    from clv.features import feast_io, feast_private
    from clv.features.online_read import (
        FeastOnlineReader,
        RedisOnlineReader,
        SqliteOnlineReader,
        redis_layout,
        sqlite_layout,
    )

    settings = serving_workspace(quick=quick)
    n = 1_000 if quick else 10_000
    ids = _customer_ids(settings, n)
    figures: Figures = {"load_average_1m_before": round(os.getloadavg()[0], 2)}
    figures["feast_private_path"] = feast_private.enabled()
    figures.update(_predict_figures(settings, ids, quick=quick))
    batch = ids[: 500 if quick else 1_000]
    sqlite = SqliteOnlineReader(sqlite_layout(settings))
    feast = FeastOnlineReader(settings)
    figures.update(_read_figures("sqlite", sqlite.read, feast.read, batch, quick=quick))
    figures["sqlite_read_one_id_feast_api_ms"] = _feast_api_ms(settings, batch, quick=quick)
    redis_settings = _redis_settings(settings)
    if isinstance(redis_settings, str):
        figures["redis_skipped"] = redis_settings
    else:
        feast_io.materialize(redis_settings)
        redis = RedisOnlineReader(redis_layout(redis_settings))
        feast_redis = FeastOnlineReader(redis_settings)
        figures.update(_read_figures("redis", redis.read, feast_redis.read, batch, quick=quick))
        figures["redis_read_one_id_feast_api_ms"] = _feast_api_ms(
            redis_settings, batch, quick=quick
        )
    figures["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    return figures
