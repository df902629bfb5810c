"""Feast's private API, in one place, used only on the Feast versions it was verified against.

clv reads and writes Feast's online tables directly (clv.features.online_read,
clv.features.online_store) and reaches into Feast for four private pieces:

- the Redis hash field of `view:feature`: `helpers._mmh3`; fallback the `mmh3` package
  (murmur3_32, unsigned, 4 bytes little-endian: what `_mmh3` computes);
- a Redis connection string: `RedisOnlineStore._parse_connection_string`; fallback the format
  its config documents (`host:port,key=value,...`, values JSON-decoded when they parse);
- the online store a FeatureStore writes through: `FeatureStore._get_provider().online_store`;
  fallback None, and `feast_io.materialize` runs `FeatureStore.materialize` (Feast's own write);
- the SQLite store's connection: `SqliteOnlineStore._get_conn`; no fallback needed, the batched
  writes give way to Feast's own first.

The storage formats themselves (SQLite table rows, Redis hashes) are Feast's too: on a version
not listed here `clv.features.online_read.online_source` reads through
`FeatureStore.get_online_features` and `BatchedSqliteOnlineStore.online_write_batch` through
Feast's own. The fallbacks give the same values (tests/unit/features/test_feast_private.py);
what they cost is measured by benchmarks/public_paths.py.
"""

from __future__ import annotations

import json
import sqlite3
import struct
from typing import TYPE_CHECKING

from clv.core.dependencies import dependency_version, unverified

if TYPE_CHECKING:
    from feast import FeatureStore
    from feast.infra.online_stores.sqlite import SqliteOnlineStore
    from feast.repo_config import RepoConfig

VERIFIED = ("0.67.0",)
"""Feast versions whose private API and storage formats clv's direct paths were checked against."""


def installed_version() -> str | None:
    """The installed Feast's version, None when it is not installed."""
    return dependency_version("feast")


def unavailable() -> str | None:
    """None when Feast's private API may be used (a verified version), else why not."""
    return unverified(
        "feast",
        installed_version(),
        VERIFIED,
        public="clv uses Feast's public API",
        logger=__name__,
    )


def enabled() -> bool:
    """True when clv's direct paths into Feast's storage may run."""
    return unavailable() is None


def redis_field(view: str, feature: str) -> bytes:
    """The hash field under which Feast's Redis store keeps `feature` of `view`."""
    name = f"{view}:{feature}"
    if enabled():
        from feast.infra.online_stores.helpers import _mmh3

        return bytes(_mmh3(name))
    import mmh3

    return struct.pack("<I", mmh3.hash(name, signed=False))


Nodes = list[dict[str, str]]


def parse_connection_string(connection_string: str) -> tuple[Nodes, dict[str, object]]:
    """(host/port nodes, client options) of a Feast Redis connection string, as Feast reads it."""
    if enabled():
        from feast.infra.online_stores.redis import RedisOnlineStore

        nodes, params = RedisOnlineStore._parse_connection_string(connection_string)
        return nodes, dict(params)
    nodes = []
    options: dict[str, object] = {}
    for part in connection_string.split(","):
        if "=" not in part:
            nodes.append(dict(zip(["host", "port"], part.split(":"), strict=False)))
            continue
        key, raw = part.split("=", 1)
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    return nodes, options


def provider_online_store(store: FeatureStore) -> object | None:
    """The online store instance a FeatureStore writes through; None off the verified versions
    (the caller then writes through `FeatureStore.materialize`)."""
    if not enabled():
        return None
    return getattr(store._get_provider(), "online_store", None)


def sqlite_connection(store: SqliteOnlineStore, config: RepoConfig) -> sqlite3.Connection:
    """The connection Feast's SQLite store holds (its tables, its file); verified versions only:
    callers give way to Feast's own writes first (`enabled()`)."""
    reason = unavailable()
    if reason is not None:
        raise RuntimeError(f"no direct SQLite write: {reason}")
    conn: sqlite3.Connection = store._get_conn(config)
    return conn
