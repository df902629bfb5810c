"""Fast online reads: Feast's SQLite online tables read directly, for a batch of customer ids.

`FeatureStore.get_online_features` costs milliseconds per call in Python (request validation,
protos, response building) before SQLite is touched. On the request path clv reads the same
tables Feast writes (`<project>_<view>`: entity_key = Feast's `serialize_entity_key`, one row
per feature, `value` a serialized ValueProto, `event_ts` epoch seconds) with one prepared
`SELECT ... WHERE entity_key IN (...)` per feature view on a per-thread connection, and decodes
the values itself (a double's 9-byte wire form directly, anything else with the protobuf parser,
memoized). `OnlineBatch.frame()` equals `clv.features.feast_io.online_features` (a tested property).
A connection is reopened when the file at the path is no longer the one it opened (a new file
renamed over it, or the file truncated or restored) and after any SQLite error; `ping` tells a
missing, locked or corrupt store apart.

Redis gets the same treatment: Feast keeps one hash per entity under `serialize_entity_key(...)
+ project`, with fields `mmh3("<view>:<feature>")` (serialized ValueProto) and `_ts:<view>` (a
serialized protobuf Timestamp). `RedisOnlineReader` sends one pipeline of one HMGET per distinct
id for exactly the service's fields on a single redis-py client (connection string parsed as
Feast parses it, so `retry=null` and the like still apply; socket and connect timeouts
`feast.redis_timeout_seconds` unless it sets them) and decodes the values as above.

`online_source(settings)` chooses the path from configuration once: `feast.online_store ==
"sqlite"` -> `SqliteOnlineReader`, `"redis"` -> `RedisOnlineReader`. Both read Feast's storage
formats, verified on the Feast versions of clv.features.feast_private (which also holds the
private Feast helpers they use); on any other version `online_source` gives `FeastOnlineReader`
(Feast's public read through `feast_io.online_features`, the same values), which also stays for
comparison and other stores. Callers see one interface, `FeatureReader`.
"""

from __future__ import annotations

import functools
import math
import os
import sqlite3
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, TypedDict

import numpy as np
import pandas as pd

from clv.core.contracts import TS_DTYPE
from clv.core.settings import FeastSettings, Settings
from clv.features import feast_private

if TYPE_CHECKING:
    import redis

_DOUBLE_TAG = 0x29  # ValueProto.double_val: field 5, wire type 1
_UNPACK_DOUBLE = struct.Struct("<d").unpack_from
_CHUNK = 900  # ids per statement, below SQLite's bound-parameter limit
SQLITE_LOCK_WAIT = 10.0
"""Seconds a SQLite read waits for a writer's lock unless told otherwise (serving: less)."""
_REDIS_TIMEOUT = float(FeastSettings.model_fields["redis_timeout_seconds"].default)
Value = float | str | None


@dataclass(frozen=True)
class OnlineBatch:
    """Features of a batch of customers, column-wise; `timestamps` in epoch seconds."""

    customer_ids: list[str]
    feature_names: tuple[str, ...]
    strings: frozenset[str]
    """The string-valued features (kept as text; every other feature is numeric)."""
    values: dict[str, list[Value]]
    timestamps: list[float | None]

    def frame(self) -> pd.DataFrame:
        """The frame `clv.features.feast_io.online_features` returns for the same ids."""
        out = pd.DataFrame({"customer_id": pd.Series(self.customer_ids, dtype=object)})
        for name in self.feature_names:
            col = self.values[name]
            if name in self.strings:
                out[name] = pd.Series(col, dtype=object)
            else:
                out[name] = np.array([np.nan if v is None else v for v in col], dtype=np.float64)
        out["feature_timestamp"] = _utc_stamps(self.timestamps)
        return out

    @classmethod
    def from_frame(
        cls, frame: pd.DataFrame, *, feature_names: Sequence[str], strings: frozenset[str]
    ) -> OnlineBatch:
        """The batch form of an `online_features` frame (the Redis path)."""
        values: dict[str, list[Value]] = {}
        for name in feature_names:
            col = frame[name].tolist()
            values[name] = [None if _missing(v) else v for v in col]
        ts = pd.to_datetime(frame["feature_timestamp"], utc=True)
        seconds = [None if pd.isna(t) else t.timestamp() for t in ts]
        return cls(
            customer_ids=[str(c) for c in frame["customer_id"]],
            feature_names=tuple(feature_names),
            strings=strings,
            values=values,
            timestamps=seconds,
        )


_NAT = np.iinfo(np.int64).min


def _micros(seconds: float | None) -> int:
    """Epoch seconds as whole microseconds, as `pd.to_datetime(unit="s")` then `[us]` gives
    them (whole seconds, nanoseconds rounded to 9 places, floored to us); NaT when missing."""
    if seconds is None or not math.isfinite(seconds):
        return int(_NAT)
    whole = int(seconds)
    nanos = whole * 1_000_000_000 + int(round(seconds - whole, 9) * 1_000_000_000)
    return nanos // 1_000


def _utc_stamps(timestamps: Sequence[float | None]) -> pd.Series:
    """Feature timestamps (epoch seconds, None for a cold start) as a `TS_DTYPE` column.

    In integers: pandas' float path (`to_datetime(unit="s")`) multiplies under
    `np.errstate(over="raise")`, and a cold start's NaN there failed `explain` requests with
    `FloatingPointError: overflow encountered in multiply` (issue 15)."""
    micros = np.fromiter((_micros(t) for t in timestamps), dtype=np.int64, count=len(timestamps))
    return pd.Series(micros.view("M8[us]")).dt.tz_localize("UTC").astype(TS_DTYPE)


class FeatureReader(Protocol):
    """What serving needs from an online store."""

    def read(self, customer_ids: Sequence[str]) -> OnlineBatch: ...

    def ping(self) -> str | None:
        """None when the store answers, else why not."""
        ...


@dataclass(frozen=True)
class ViewTable:
    table: str
    features: tuple[str, ...]


@dataclass(frozen=True)
class OnlineLayout:
    """Where and how Feast stored the FeatureService's features in SQLite: the key format and
    features the service gives (`_LayoutCommon`), then the database file and its tables."""

    key_version: int
    join_key: str
    feature_names: tuple[str, ...]
    strings: frozenset[str]
    path: str
    views: tuple[ViewTable, ...]


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT


@functools.lru_cache(maxsize=65_536)
def _decode_proto(blob: bytes) -> Value:
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    proto = ValueProto()
    proto.ParseFromString(blob)
    kind = proto.WhichOneof("val")
    if kind is None or kind == "null_val":
        return None
    raw = getattr(proto, kind)
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool | int | float):
        return float(raw)
    return str(raw)


def decode_value(blob: bytes | None) -> Value:
    """A ValueProto's scalar as Python: float for numbers, str for text, None when empty."""
    if not blob:
        return None
    if blob[0] == _DOUBLE_TAG and len(blob) == 9:
        return float(_UNPACK_DOUBLE(blob, 1)[0])
    return _decode_proto(bytes(blob))


def _start(
    layout: OnlineLayout | RedisLayout, customer_ids: Sequence[str]
) -> tuple[list[str], dict[bytes, list[int]], dict[str, list[Value]]]:
    """The start of a direct read: the ids as text, the positions of each distinct entity key
    among them, and an empty column per feature."""
    ids = [str(c) for c in customer_ids]
    positions: dict[bytes, list[int]] = {}
    join_key, version = layout.join_key, layout.key_version
    for i, c in enumerate(ids):
        positions.setdefault(_entity_key(join_key, c, version), []).append(i)
    values: dict[str, list[Value]] = {f: [None] * len(ids) for f in layout.feature_names}
    return ids, positions, values


def _batch(
    layout: OnlineLayout | RedisLayout,
    ids: list[str],
    values: dict[str, list[Value]],
    timestamps: list[float | None],
) -> OnlineBatch:
    return OnlineBatch(
        customer_ids=ids,
        feature_names=layout.feature_names,
        strings=layout.strings,
        values=values,
        timestamps=timestamps,
    )


@dataclass(frozen=True)
class FileIdentity:
    """Which file a path names, and its size and modification time: a file renamed over the
    path changes `device`/`inode`; one truncated or rewritten in place, `size`/`mtime_ns`."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @property
    def file(self) -> tuple[int, int]:
        return (self.device, self.inode)


def file_identity(path: str) -> FileIdentity | None:
    """The identity of the file at `path` now; None when nothing is there."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return FileIdentity(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


StoreFault = Literal["locked", "missing", "corrupt"]


def store_fault(exc: sqlite3.Error) -> StoreFault:
    """What a SQLite error says about the store file: locked by a writer, missing, or corrupt
    (not a database, malformed, or without the service's tables: truncated or emptied)."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return "locked"
    if "unable to open" in text:
        return "missing"
    return "corrupt"


def _connect(path: str, *, timeout: float) -> sqlite3.Connection:
    """A read-only connection that waits up to `timeout` seconds for a writer's lock."""
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=timeout)


class SqliteOnlineReader:
    """Reads a FeatureService's rows from Feast's SQLite online store (one connection/thread).

    Each read first compares the file at the path with the one its connection opened
    (`file_identity`) and reopens when they differ (a re-materialization renamed a new file
    over it, or it was truncated or restored); any SQLite error drops the connection, so the
    next read opens afresh. `timeout_seconds`: how long a read waits for a writer's lock."""

    def __init__(self, layout: OnlineLayout, *, timeout_seconds: float = SQLITE_LOCK_WAIT) -> None:
        self.layout = layout
        self.timeout_seconds = timeout_seconds
        self._local = threading.local()
        self._wanted = [frozenset(v.features) for v in layout.views]
        self._sql = [
            f'SELECT entity_key, feature_name, value, event_ts FROM "{v.table}" '
            "WHERE entity_key IN ({})"
            for v in layout.views
        ]
        self._probes = [f'SELECT 1 FROM "{v.table}" LIMIT 1' for v in layout.views]
        # One customer (the online case): every view in one statement, its rows tagged with
        # the view's index (one query's overhead, not one per view; no key in each row).
        self._one = " UNION ALL ".join(
            f'SELECT {i}, feature_name, value, event_ts FROM "{v.table}" WHERE entity_key = ?'
            for i, v in enumerate(layout.views)
        )

    def _conn(self, *, wait: bool) -> sqlite3.Connection:
        """This thread's connection (`wait`: one that waits for a writer's lock, else one that
        does not wait at all), reopened when the file at the path changed."""
        identity = file_identity(self.layout.path)
        local = self._local
        name = "conn" if wait else "conn_now"
        conn: sqlite3.Connection | None = getattr(local, name, None)
        if conn is not None and identity is not None and getattr(local, f"{name}_of") == identity:
            return conn
        self._drop(wait=wait)
        conn = _connect(self.layout.path, timeout=self.timeout_seconds if wait else 0.0)
        setattr(local, name, conn)
        setattr(local, f"{name}_of", identity)
        return conn

    def _drop(self, *, wait: bool = True) -> None:
        name = "conn" if wait else "conn_now"
        conn: sqlite3.Connection | None = getattr(self._local, name, None)
        setattr(self._local, name, None)
        if conn is not None:
            conn.close()

    def ping(self) -> str | None:
        """None when every table of the service reads, else why not: the store is `missing`,
        `locked` (for half of `timeout_seconds`, so that the answer comes before a caller
        bounded by the read timeout gives up), `corrupt`, or `stale` (another file was renamed
        over it during the check). A fresh connection each time: it checks the file there now."""
        path = self.layout.path
        before = file_identity(path)
        if before is None:
            return f"online store missing: {path} does not exist: run `clv features materialize`"
        try:
            conn = _connect(path, timeout=self.timeout_seconds / 2)
            try:
                for sql in self._probes:
                    conn.execute(sql).fetchall()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            return f"online store {store_fault(exc)}: {path}: {exc}"
        after = file_identity(path)
        if after is None or after.file != before.file:
            return f"online store stale: {path} was replaced during the check"
        return None

    def read(self, customer_ids: Sequence[str]) -> OnlineBatch:
        return self._read(customer_ids, wait=True)

    def read_now(self, customer_ids: Sequence[str]) -> OnlineBatch | None:
        """`read` without waiting for anything: None when a writer holds the lock or the read
        fails in any way (the caller then reads on a worker thread, bounded by its timeout,
        which says what is wrong). For the event loop: a few ids of a file on a local disk,
        tens of microseconds, where a worker thread costs two thread wake-ups a request."""
        try:
            return self._read(customer_ids, wait=False)
        except sqlite3.Error:
            return None

    def _read(self, customer_ids: Sequence[str], *, wait: bool) -> OnlineBatch:
        ids, positions, values = _start(self.layout, customer_ids)
        n = len(ids)
        keys = list(positions)
        stamps: list[float] = [0.0] * n
        conn = self._conn(wait=wait)
        try:
            if len(keys) == 1:
                rows = conn.execute(self._one, keys * len(self._wanted)).fetchall()
                rows.sort(key=_view_of)  # the views in order, as one statement each reads them
                _apply(rows, self._wanted, positions[keys[0]], values, stamps)
            else:
                for sql, wanted in zip(self._sql, self._wanted, strict=True):
                    for start in range(0, len(keys), _CHUNK):
                        chunk = keys[start : start + _CHUNK]
                        query = sql.format(",".join("?" * len(chunk)))
                        for key, feature, blob, event_ts in conn.execute(query, chunk):
                            if feature not in wanted:
                                continue
                            value = decode_value(blob)
                            column = values[feature]
                            ts = float(event_ts) if event_ts is not None else 0.0
                            for i in positions[key]:
                                column[i] = value
                                if ts > stamps[i]:
                                    stamps[i] = ts
        except sqlite3.Error:
            self._drop(wait=wait)  # locked, truncated, replaced mid-read: the next read reopens
            raise
        present = [False] * n
        for column in values.values():
            for i, v in enumerate(column):
                if v is not None and not present[i] and not (isinstance(v, float) and v != v):
                    present[i] = True
        timestamps: list[float | None] = [
            stamps[i] if present[i] and stamps[i] > 0 else None for i in range(n)
        ]
        return _batch(self.layout, ids, values, timestamps)


def _view_of(row: tuple[int, str, bytes | None, object]) -> int:
    return row[0]


def _apply(
    rows: list[tuple[int, str, bytes | None, object]],
    wanted: Sequence[frozenset[str]],
    positions: list[int],
    values: dict[str, list[Value]],
    stamps: list[float],
) -> None:
    """One customer's rows (view index, feature, value, event_ts) into the columns at its
    positions, as the per-view reads do: later views win, the newest timestamp is kept."""
    if len(positions) == 1:  # asked once (the usual case)
        i = positions[0]
        newest = stamps[i]
        for view, feature, blob, event_ts in rows:
            if feature in wanted[view]:
                values[feature][i] = decode_value(blob)
                ts = float(event_ts) if event_ts is not None else 0.0  # type: ignore[arg-type]
                if ts > newest:
                    newest = ts
        stamps[i] = newest
        return
    for view, feature, blob, event_ts in rows:
        if feature not in wanted[view]:
            continue
        value = decode_value(blob)
        column = values[feature]
        ts = float(event_ts) if event_ts is not None else 0.0  # type: ignore[arg-type]
        for i in positions:
            column[i] = value
            if ts > stamps[i]:
                stamps[i] = ts


@functools.lru_cache(maxsize=262_144)
def _entity_key(join_key: str, customer_id: str, version: int) -> bytes:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    key = EntityKeyProto(join_keys=[join_key], entity_values=[ValueProto(string_val=customer_id)])
    return bytes(serialize_entity_key(key, entity_key_serialization_version=version))


@dataclass(frozen=True)
class RedisLayout:
    """Where and how Feast stored the FeatureService's features in Redis."""

    connection_string: str
    project: str
    key_version: int
    join_key: str
    views: tuple[ViewTable, ...]
    """`table` is the (versioned) feature view name Feast hashes field names with."""
    feature_names: tuple[str, ...]
    strings: frozenset[str]
    timeout_seconds: float = _REDIS_TIMEOUT
    """Socket and connect timeout of the client, unless the connection string sets its own."""


def _redis_fields(views: Sequence[ViewTable]) -> tuple[list[bytes], list[tuple[str, ...]]]:
    """The HMGET fields (per view: its features' mmh3 fields, then `_ts:<view>`) and, per
    view, the feature names its slots hold (each group is followed by its timestamp slot)."""
    fields: list[bytes] = []
    groups: list[tuple[str, ...]] = []
    for view in views:
        fields.extend(feast_private.redis_field(view.table, name) for name in view.features)
        fields.append(f"_ts:{view.table}".encode())
        groups.append(view.features)
    return fields, groups


def _timestamp_seconds(blob: bytes | None) -> float:
    """A serialized protobuf Timestamp as epoch seconds; 0.0 when absent (as Feast reads it)."""
    if not blob:
        return 0.0
    from google.protobuf.timestamp_pb2 import Timestamp

    ts = Timestamp()
    ts.ParseFromString(blob)
    return float(ts.seconds + ts.nanos / 1_000_000_000.0)


def redis_client(connection_string: str, *, timeout_seconds: float = _REDIS_TIMEOUT) -> redis.Redis:
    """A redis-py client configured like Feast's from its connection string
    (`host:port,key=value,...`, values JSON-decoded when they parse, e.g. `retry=null`), with
    socket and connect timeouts of `timeout_seconds` unless the string sets them."""
    import redis as redis_py

    nodes, params = feast_private.parse_connection_string(connection_string)
    if not nodes:
        raise ValueError(f"no host:port in redis connection string {connection_string!r}")
    kwargs: dict[str, object] = dict(params)
    kwargs.setdefault("socket_timeout", timeout_seconds)
    kwargs.setdefault("socket_connect_timeout", timeout_seconds)
    kwargs["host"] = nodes[0]["host"]
    kwargs["port"] = nodes[0]["port"]
    return redis_py.Redis(**kwargs)  # type: ignore[arg-type]


class RedisOnlineReader:
    """Reads a FeatureService's hashes from Feast's Redis online store (one thread-safe client)."""

    def __init__(self, layout: RedisLayout) -> None:
        self.layout = layout
        self._fields, self._groups = _redis_fields(layout.views)
        self._suffix = layout.project.encode("utf-8")
        self._client: redis.Redis | None = None
        self._lock = threading.Lock()

    def _redis(self) -> redis.Redis:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = redis_client(
                        self.layout.connection_string, timeout_seconds=self.layout.timeout_seconds
                    )
        return self._client

    def ping(self) -> str | None:
        import redis as redis_py

        try:
            self._redis().ping()
        except redis_py.RedisError as exc:
            return f"online store unreachable: {type(exc).__name__}: {exc}"
        return None

    def read(self, customer_ids: Sequence[str]) -> OnlineBatch:
        ids, positions, values = _start(self.layout, customer_ids)
        timestamps: list[float | None] = [None] * len(ids)
        if not positions:
            return _batch(self.layout, ids, values, timestamps)
        keys = list(positions)
        with self._redis().pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(key + self._suffix, self._fields)  # type: ignore[arg-type]  # bytes ok
            replies: list[list[bytes | None]] = pipe.execute()
        for key, reply in zip(keys, replies, strict=True):
            at = 0
            stamp = 0.0
            present = False
            decoded: list[tuple[str, Value]] = []
            for features in self._groups:
                for name in features:
                    value = decode_value(reply[at])
                    at += 1
                    if value is not None:
                        decoded.append((name, value))
                        if not (isinstance(value, float) and value != value):
                            present = True
                stamp = max(stamp, _timestamp_seconds(reply[at]))
                at += 1
            rows = positions[key]
            for name, value in decoded:
                column = values[name]
                for i in rows:
                    column[i] = value
            if present and stamp > 0:
                for i in rows:
                    timestamps[i] = stamp
        return _batch(self.layout, ids, values, timestamps)


class FeastOnlineReader:
    """Feast's own online read (any online store, e.g. Redis) behind the same interface; the
    service's feature names are looked up once, as the direct readers' layouts are."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._columns: tuple[tuple[str, ...], frozenset[str]] | None = None

    def read(self, customer_ids: Sequence[str]) -> OnlineBatch:
        from clv.features.feast_io import categorical_features, feature_names, online_features

        frame = online_features(self.settings, list(customer_ids))
        if self._columns is None:
            strings = frozenset(categorical_features(self.settings))
            self._columns = (tuple(feature_names(self.settings)), strings)
        names, strings = self._columns
        return OnlineBatch.from_frame(frame, feature_names=names, strings=strings)

    def ping(self) -> str | None:
        try:
            self.read(["__clv_ping__"])
        except Exception as exc:
            return f"online store unreachable: {type(exc).__name__}: {exc}"
        return None


class _LayoutCommon(TypedDict):
    """The fields `OnlineLayout` and `RedisLayout` both take from the service as they are."""

    key_version: int
    join_key: str
    feature_names: tuple[str, ...]
    strings: frozenset[str]


@dataclass(frozen=True)
class _ServiceViews:
    project: str
    tables: tuple[ViewTable, ...]
    names: tuple[ViewTable, ...]
    """Like `tables`, with the (versioned) view name instead of the SQLite table name."""
    online: dict[str, object]
    """The online store section Feast is configured with (`feast_io.online_config`)."""
    common: _LayoutCommon


def _service_views(settings: Settings) -> _ServiceViews:
    """The FeatureService's views, features and entity key format, from the Feast registry,
    and the online store's configuration."""
    from feast.infra.online_stores.helpers import compute_table_id, compute_versioned_name

    from clv.features.feast_io import feature_store, online_config, require_service

    store = feature_store(settings)
    service = require_service(settings, store)
    versioning = bool(store.config.registry.enable_online_feature_view_versioning)
    tables: list[ViewTable] = []
    named: list[ViewTable] = []
    names: list[str] = []
    strings: set[str] = set()
    join_keys: set[str] = set()
    for projection in service.feature_view_projections:
        view = store.get_feature_view(projection.name, allow_registry_cache=True)
        join_keys.update(c.name for c in view.entity_columns)
        features = tuple(f.name for f in projection.features)
        tables.append(ViewTable(compute_table_id(store.project, view, versioning), features))
        named.append(ViewTable(compute_versioned_name(view, versioning), features))
        names.extend(features)
        strings.update(f.name for f in projection.features if str(f.dtype) == "String")
    if len(join_keys) != 1:
        raise ValueError(f"expected one join key over the service's views, got {join_keys}")
    common = _LayoutCommon(
        key_version=int(store.config.entity_key_serialization_version),
        join_key=join_keys.pop(),
        feature_names=tuple(names),
        strings=frozenset(strings),
    )
    return _ServiceViews(
        project=str(store.project),
        tables=tuple(tables),
        names=tuple(named),
        online=online_config(settings),
        common=common,
    )


def sqlite_layout(settings: Settings) -> OnlineLayout:
    """The tables, key format and features of the FeatureService, from the Feast registry."""
    views = _service_views(settings)
    return OnlineLayout(path=str(views.online["path"]), views=views.tables, **views.common)


def redis_layout(settings: Settings) -> RedisLayout:
    """The hash fields, key format and features of the FeatureService in Redis."""
    views = _service_views(settings)
    return RedisLayout(
        connection_string=str(views.online["connection_string"]),
        project=views.project,
        views=views.names,
        timeout_seconds=settings.feast.redis_timeout_seconds,
        **views.common,
    )


class _LazyReader:
    """Builds the real reader on first use (reading the Feast registry is not free)."""

    def __init__(self, settings: Settings, *, timeout_seconds: float) -> None:
        self.settings = settings
        self.timeout_seconds = timeout_seconds
        self._reader: FeatureReader | None = None
        self._lock = threading.Lock()

    def _get(self) -> FeatureReader:
        if self._reader is None:
            with self._lock:
                if self._reader is None:
                    store = self.settings.feast.online_store
                    if not feast_private.enabled():  # Feast's storage unverified: its own read
                        self._reader = FeastOnlineReader(self.settings)
                    elif store == "sqlite":
                        self._reader = SqliteOnlineReader(
                            sqlite_layout(self.settings), timeout_seconds=self.timeout_seconds
                        )
                    elif store == "redis":
                        self._reader = RedisOnlineReader(redis_layout(self.settings))
                    else:
                        self._reader = FeastOnlineReader(self.settings)
        return self._reader

    def read(self, customer_ids: Sequence[str]) -> OnlineBatch:
        return self._get().read(customer_ids)

    def read_now(self, customer_ids: Sequence[str]) -> OnlineBatch | None:
        """The real reader's `read_now` once built and when it has one (SQLite), else None:
        the first read builds it, on a worker thread."""
        reader = self._reader
        if not isinstance(reader, SqliteOnlineReader):
            return None
        return reader.read_now(customer_ids)

    def ping(self) -> str | None:
        try:
            reader = self._get()
        except Exception as exc:
            return f"feature store not ready: {type(exc).__name__}: {exc}"
        return reader.ping()


def online_source(
    settings: Settings, *, timeout_seconds: float = SQLITE_LOCK_WAIT
) -> FeatureReader:
    """The online read chosen by `feast.online_store`: direct SQLite or direct Redis;
    `timeout_seconds`: how long a SQLite read waits for a writer's lock."""
    return _LazyReader(settings, timeout_seconds=timeout_seconds)


def online_frame(settings: Settings, customer_ids: Sequence[str]) -> pd.DataFrame:
    """Like `feast_io.online_features`, through the configured fast path."""
    return online_source(settings).read(customer_ids).frame()
