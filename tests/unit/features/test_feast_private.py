"""Feast's private API is version-gated, and every public fallback gives the same values.

No Redis server here: `RecordingRedis` stands in for redis-py's client and keeps what goes
through its pipelines as Redis would hold it (keys, fields and values encoded by redis-py's own
encoder). Feast's `RedisOnlineStore.online_write_batch` writes through it, so the bytes our
reader decodes are the very bytes Feast produces. tests/integration/test_online_read_redis.py
does the same against a real Redis.
"""

from __future__ import annotations

import importlib.metadata
import logging
import sqlite3
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pyarrow as pa
import pytest
import redis
from feast import Entity, FeatureView, Field, FileSource
from feast.infra.online_stores.helpers import _mmh3
from feast.infra.online_stores.redis import RedisOnlineStore
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import feast_value_type_to_python_type
from feast.types import Float64, Int64, String
from feast.value_type import ValueType
from redis.commands.helpers import list_or_args
from redis.connection import Encoder

from clv.core.settings import Settings, load_settings
from clv.core.store import write_table
from clv.features import feast_io, feast_private
from clv.features.build import build_features
from clv.features.online_read import (
    FeastOnlineReader,
    RedisLayout,
    RedisOnlineReader,
    SqliteOnlineReader,
    ViewTable,
    _entity_key,
    _redis_fields,
    online_source,
    redis_client,
    redis_layout,
    sqlite_layout,
)
from clv.features.online_store import BatchedSqliteOnlineStore

_ENCODE = Encoder("utf-8", "strict", False).encode  # what redis-py sends for a key or value
REDIS_ENV = {"CLV_FEAST__ONLINE_STORE": "redis", "CLV_FEAST__REDIS_CONNECTION": "redis.test:6379"}
IDS = ["a", "nobody", "b", "c", "a", ""]  # unknown, repeated and empty ids


class RecordingPipeline:
    """redis-py's pipeline, in memory: HSET, HMGET and EXPIRE, answered on `execute`."""

    def __init__(self, hashes: dict[bytes, dict[bytes, bytes]]) -> None:
        self.hashes = hashes
        self.queued: list[tuple[str, bytes, object]] = []

    def __enter__(self) -> RecordingPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.queued.clear()

    def hset(self, name: str | bytes, *, mapping: Mapping[str | bytes, bytes]) -> None:
        fields = {_ENCODE(k): _ENCODE(v) for k, v in mapping.items()}
        self.queued.append(("hset", _ENCODE(name), fields))

    def hmget(self, name: str | bytes, keys: object, *args: object) -> None:
        self.queued.append(("hmget", _ENCODE(name), [_ENCODE(k) for k in list_or_args(keys, args)]))

    def expire(self, name: str | bytes, time: int) -> None:
        self.queued.append(("expire", _ENCODE(name), time))

    def execute(self) -> list[object]:
        replies: list[object] = []
        for command, key, arg in self.queued:
            stored = self.hashes.setdefault(key, {}) if command == "hset" else self.hashes.get(key)
            if command == "hset":
                assert isinstance(arg, dict) and stored is not None
                stored.update(arg)
                replies.append(len(arg))
            elif command == "hmget":
                assert isinstance(arg, list)
                replies.append([None if stored is None else stored.get(f) for f in arg])
            else:
                replies.append(stored is not None)
        self.queued.clear()
        return replies


class RecordingRedis:
    """A stand-in for `redis.Redis`: the options each client is built with, the hashes written."""

    built: ClassVar[list[dict[str, object]]]
    hashes: ClassVar[dict[bytes, dict[bytes, bytes]]]

    def __init__(self, **options: object) -> None:
        self.built.append(options)

    def pipeline(self, transaction: bool = True) -> RecordingPipeline:
        return RecordingPipeline(self.hashes)

    def ping(self) -> bool:
        return True


def _recording(patch: pytest.MonkeyPatch) -> type[RecordingRedis]:
    """A fresh RecordingRedis, made the client class of redis-py and of Feast's Redis store."""
    fake = type("Recording", (RecordingRedis,), {"built": [], "hashes": {}})
    patch.setattr(redis, "Redis", fake)
    patch.setattr("feast.infra.online_stores.redis.Redis", fake)
    return fake


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> type[RecordingRedis]:
    return _recording(monkeypatch)


@pytest.fixture
def public_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unverified Feast version: every direct path gives way to Feast's public API."""
    monkeypatch.setattr(feast_private, "installed_version", lambda: "0.99.0")


def _ts(values: list[str]) -> pd.Series:
    return pd.Series(pd.to_datetime(values, utc=True)).astype("datetime64[us, UTC]")


def _workspace(root: Path, environ: dict[str, str]) -> Settings:
    """Three customers (c never buys: null features), built and applied."""
    settings = load_settings(root, environ=environ)
    write_table(
        settings,
        "transactions",
        pd.DataFrame(
            {
                "customer_id": ["a", "a", "b", "a"],
                "ts": _ts(["2024-01-05", "2024-01-20", "2024-01-10", "2024-02-10"]),
                "amount": [15.25, 30.0, 7.0, 20.0],
            }
        ),
    )
    write_table(
        settings,
        "customers",
        pd.DataFrame(
            {
                "customer_id": ["a", "b", "c"],
                "signup_ts": _ts(["2023-12-20", "2024-01-09", "2024-02-20"]),
                "acquisition_channel": ["ads", "seo", "ads"],
                "country": ["DE", "FR", "NL"],
                "plan": ["pro", "free", "free"],
            }
        ),
    )
    build_features(settings)
    feast_io.apply(settings)
    return settings


# --------------------------------------------------------------------------- the gate


def test_the_pinned_feast_is_verified() -> None:
    assert feast_private.installed_version() == importlib.metadata.version("feast")
    assert feast_private.unavailable() is None  # a new Feast: re-verify the formats, then list it
    assert feast_private.enabled()


def test_an_unverified_feast_closes_the_gate_and_says_so_once(
    public_only: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=feast_private.__name__)
    assert not feast_private.enabled()
    reason = feast_private.unavailable()
    assert reason is not None and "feast 0.99.0 is not one of 0.67.0" in reason
    logged = [r for r in caplog.records if "0.99.0" in r.getMessage()]
    assert len(logged) == 1 and logged[0].levelno == logging.DEBUG


# --------------------------------------------------------------------------- Redis formats


NAMES = ["frequency", "rfm:x", "ümlaut", "", "a" * 300]


def test_redis_field_fallback_equals_feasts_mmh3(monkeypatch: pytest.MonkeyPatch) -> None:
    private = [feast_private.redis_field("rfm_v2", n) for n in NAMES]
    assert private == [bytes(_mmh3(f"rfm_v2:{n}")) for n in NAMES]
    monkeypatch.setattr(feast_private, "installed_version", lambda: "0.99.0")
    assert [feast_private.redis_field("rfm_v2", n) for n in NAMES] == private
    assert len(set(private)) == len(NAMES) and {len(f) for f in private} == {4}


@pytest.mark.parametrize(
    "connection",
    [
        "localhost:6379",
        "redis.internal:6379,retry=null",
        "h:1,db=0,ssl=true,password=p=w,socket_timeout=2.5",
        "r1:7000,r2:7001,skip_full_coverage_check=true,username=u,password=123",
        "h:1,name={not json",
    ],
)
def test_connection_string_fallback_equals_feasts_parse(
    connection: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    feasts = RedisOnlineStore._parse_connection_string(connection)
    assert feast_private.parse_connection_string(connection) == feasts
    monkeypatch.setattr(feast_private, "installed_version", lambda: "0.99.0")
    assert feast_private.parse_connection_string(connection) == feasts


VIEW = FeatureView(
    name="rfm",
    entities=[Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)],
    schema=[
        Field(name="frequency", dtype=Float64),
        Field(name="orders", dtype=Int64),
        Field(name="channel", dtype=String),
    ],
    source=FileSource(path="unused.parquet", timestamp_field="event_timestamp"),
)
FEATURES = ("frequency", "orders", "channel")
WRITTEN: dict[str, tuple[dict[str, ValueProto], datetime]] = {
    "a": (
        {
            "frequency": ValueProto(double_val=2.5),
            "orders": ValueProto(int64_val=3),
            "channel": ValueProto(string_val="ads"),
        },
        datetime(2024, 3, 1, 12, 30, 15, 250_000, tzinfo=UTC),
    ),
    "b": (
        {
            "frequency": ValueProto(),  # a null value
            "orders": ValueProto(int64_val=0),
            "channel": ValueProto(string_val="ümlaut ✓"),
        },
        datetime(2024, 2, 1, tzinfo=UTC),
    ),
}


def _layout(connection: str = "redis.test:6379,retry=null") -> RedisLayout:
    return RedisLayout(
        connection_string=connection,
        project="clv",
        key_version=3,
        join_key="customer_id",
        views=(ViewTable("rfm", FEATURES),),
        feature_names=FEATURES,
        strings=frozenset({"channel"}),
    )


def _feast_writes(settings: Settings) -> None:
    rows = [
        (
            EntityKeyProto(join_keys=["customer_id"], entity_values=[ValueProto(string_val=c)]),
            values,
            ts,
            None,
        )
        for c, (values, ts) in WRITTEN.items()
    ]
    RedisOnlineStore().online_write_batch(feast_io._repo_config(settings), VIEW, rows, None)


def test_our_keys_and_fields_are_the_ones_feast_writes(
    recording: type[RecordingRedis], tmp_path: Path
) -> None:
    _feast_writes(load_settings(tmp_path, environ=REDIS_ENV))
    assert set(recording.hashes) == {_entity_key("customer_id", c, 3) + b"clv" for c in WRITTEN}
    fields, _ = _redis_fields(_layout().views)
    assert fields == [*(bytes(_mmh3(f"rfm:{f}")) for f in FEATURES), b"_ts:rfm"]
    for stored in recording.hashes.values():
        assert sorted(stored) == sorted(fields)  # every field Feast wrote, none we do not read
    a = recording.hashes[_entity_key("customer_id", "a", 3) + b"clv"]
    assert a[fields[0]] == ValueProto(double_val=2.5).SerializeToString()


@pytest.mark.parametrize("public", [False, True])
def test_our_reader_decodes_feasts_bytes_as_feast_reads_them(
    recording: type[RecordingRedis],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    public: bool,
) -> None:
    settings = load_settings(tmp_path, environ=REDIS_ENV)
    _feast_writes(settings)
    if public:  # field names through the public mmh3 fallback, connection parsed by ours
        monkeypatch.setattr(feast_private, "installed_version", lambda: "0.99.0")
    batch = RedisOnlineReader(_layout()).read(["b", "nobody", "a", "b"])
    keys = [
        EntityKeyProto(join_keys=["customer_id"], entity_values=[ValueProto(string_val=c)])
        for c in batch.customer_ids
    ]
    feasts = RedisOnlineStore().online_read(feast_io._repo_config(settings), VIEW, keys)
    for i, (stamp, values) in enumerate(feasts):
        assert stamp is not None and values is not None
        seconds = stamp.timestamp()  # 0 when Feast found nothing: our None
        assert batch.timestamps[i] == (seconds if seconds > 0 else None)
        for name in FEATURES:
            want = feast_value_type_to_python_type(values[name])
            assert batch.values[name][i] == (float(want) if isinstance(want, int) else want)
    assert batch.values["frequency"] == [None, None, 2.5, None]
    assert batch.values["orders"] == [0.0, None, 3.0, 0.0]
    assert batch.values["channel"] == ["ümlaut ✓", None, "ads", "ümlaut ✓"]
    assert batch.timestamps[2] == WRITTEN["a"][1].timestamp()  # sub-second part kept
    assert feasts[1][0] is not None and feasts[1][0].timestamp() == 0  # nothing for it either


# --------------------------------------------------------------------------- Redis timeouts


def _timeouts(options: dict[str, object]) -> tuple[object, object]:
    return options["socket_timeout"], options["socket_connect_timeout"]


def test_every_redis_client_gets_the_configured_timeouts(
    recording: type[RecordingRedis], tmp_path: Path
) -> None:
    environ = {**REDIS_ENV, "CLV_FEAST__REDIS_TIMEOUT_SECONDS": "0.5"}
    settings = load_settings(tmp_path, environ=environ)
    RedisOnlineStore().online_write_batch(feast_io._repo_config(settings), VIEW, [], None)
    feasts = recording.built[-1]  # the client Feast's Redis store made
    assert _timeouts(feasts) == (0.5, 0.5)
    assert feasts["retry"] is None and feasts["host"] == "redis.test"
    # ours, from the connection string redis_layout takes (the one Feast is given)
    assert isinstance(
        redis_client(str(feast_io.online_config(settings)["connection_string"])), RecordingRedis
    )
    assert _timeouts(recording.built[-1]) == (0.5, 0.5)
    RedisOnlineReader(_layout()).read(["a"])  # a hand-made layout: the setting's default
    assert _timeouts(recording.built[-1]) == (2.0, 2.0)
    assert load_settings(tmp_path, environ={}).feast.redis_timeout_seconds == 2.0
    redis_client("h:1,socket_timeout=7,socket_connect_timeout=3", timeout_seconds=0.5)
    assert _timeouts(recording.built[-1]) == (7, 3)  # the connection string's own win


def test_a_connection_string_keeps_its_own_timeouts(tmp_path: Path) -> None:
    settings = load_settings(
        tmp_path,
        environ={**REDIS_ENV, "CLV_FEAST__REDIS_CONNECTION": "h:1,socket_timeout=9"},
    )
    connection = feast_io.online_config(settings)["connection_string"]
    assert connection == "h:1,socket_timeout=9,retry=null,socket_connect_timeout=2.0"
    sqlite = load_settings(tmp_path, environ={})
    assert feast_io.online_config(sqlite) == feast_io._online_config(sqlite)


# --------------------------------------------------------------------------- end to end, Redis


@pytest.fixture(scope="module")
def redis_ws(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Settings, type[RecordingRedis]]]:
    """A workspace materialized by Feast into a recording Redis."""
    with pytest.MonkeyPatch.context() as patch:
        fake = _recording(patch)
        settings = _workspace(tmp_path_factory.mktemp("redis"), REDIS_ENV)
        feast_io.materialize(settings)
        yield settings, fake


def test_direct_redis_read_equals_feasts_read_of_what_feast_wrote(
    redis_ws: tuple[Settings, type[RecordingRedis]],
) -> None:
    settings, fake = redis_ws
    assert len(fake.hashes) == 3  # a, b, c
    expected = feast_io.online_features(settings, IDS)
    reader = RedisOnlineReader(redis_layout(settings))
    assert reader.ping() is None
    pd.testing.assert_frame_equal(reader.read(IDS).frame(), expected)
    assert expected["feature_timestamp"].notna().sum() == 4  # a, b, c, a: not all null
    assert fake.built[-1]["socket_timeout"] == settings.feast.redis_timeout_seconds


def test_an_unverified_feast_reads_redis_through_feast(
    redis_ws: tuple[Settings, type[RecordingRedis]], public_only: None
) -> None:
    settings, _ = redis_ws
    source = online_source(settings)
    assert source.ping() is None
    assert isinstance(source._reader, FeastOnlineReader)  # type: ignore[attr-defined]
    direct = RedisOnlineReader(redis_layout(settings)).read(IDS).frame()  # public mmh3 fields
    pd.testing.assert_frame_equal(source.read(IDS).frame(), direct)


# --------------------------------------------------------------------------- end to end, SQLite


def _rows(db: Path) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(db) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {
            t: con.execute(f'SELECT * FROM "{t}" ORDER BY entity_key, feature_name').fetchall()
            for t in sorted(tables)
        }


@pytest.fixture(scope="module")
def sqlite_ws(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = _workspace(tmp_path_factory.mktemp("sqlite"), {})
    feast_io.materialize(settings)  # the direct, batched write
    return settings


def test_an_unverified_feast_materializes_through_feast_with_the_same_rows(
    sqlite_ws: Settings, public_only: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    public = load_settings(sqlite_ws.workspace, environ={"CLV_FEAST__ONLINE_PATH": "public.db"})
    feast_io.apply(public)
    store = feast_io.feature_store(public)
    assert feast_private.provider_online_store(store) is None
    called: list[int] = []
    monkeypatch.setattr(BatchedSqliteOnlineStore, "write_arrow", lambda *a, **k: called.append(1))
    feast_io.materialize(public)
    assert called == []  # FeatureStore.materialize wrote, through Feast's own online_write_batch
    ours = _rows(sqlite_ws.feast_dir / "online.db")
    theirs = _rows(sqlite_ws.workspace / "public.db")
    assert sorted(theirs) == sorted(ours) and sum(len(r) for r in ours.values()) == 3 * 45
    for table in ours:
        assert theirs[table] == ours[table], table


def test_an_unverified_feast_reads_sqlite_through_feast(
    sqlite_ws: Settings, public_only: None
) -> None:
    source = online_source(sqlite_ws)
    batch = source.read(IDS)
    assert isinstance(source._reader, FeastOnlineReader)  # type: ignore[attr-defined]
    direct = SqliteOnlineReader(sqlite_layout(sqlite_ws)).read(IDS)
    pd.testing.assert_frame_equal(batch.frame(), direct.frame())
    assert direct.frame()["feature_timestamp"].notna().sum() == 4


def test_direct_writes_refuse_an_unverified_feast(sqlite_ws: Settings, public_only: None) -> None:
    store = feast_io.feature_store(sqlite_ws)
    online = BatchedSqliteOnlineStore()
    with pytest.raises(RuntimeError, match=r"feast 0\.99\.0 .*FeatureStore\.materialize writes"):
        online.write_arrow(
            store.config,
            [],
            pa.table({"customer_id": ["a"]}),
            join_key="customer_id",
            join_key_type=ValueType.STRING,
            timestamp_field="event_timestamp",
            created_timestamp_column=None,
        )
    with pytest.raises(RuntimeError, match=r"no direct SQLite write: feast 0\.99\.0"):
        feast_private.sqlite_connection(online, store.config)
