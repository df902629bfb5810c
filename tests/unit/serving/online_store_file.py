"""A SQLite online store file for the store-fault tests: one view of the fixture model's
features, laid out as Feast's SQLite online store writes it, read by `SqliteOnlineReader`."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pandas as pd
from serving_fixtures import FEATURES

from clv.features.online_read import OnlineLayout, ViewTable

IDS = ["c0001", "c0042", "c0107"]
TABLE = "clv_fixture"
EVENT_TS = 1_717_200_000  # 2024-06-01 UTC, epoch seconds as Feast stores them


def store_rows(features: pd.DataFrame, *, scale: float = 1.0) -> pd.DataFrame:
    """The stored features of `IDS` (`monetary_value` times `scale`), one row each."""
    rows = features.set_index("customer_id").loc[IDS, FEATURES].reset_index()
    rows["monetary_value"] = rows["monetary_value"] * scale
    rows["sessions_30d"] = rows["sessions_30d"].fillna(0.0)
    return rows


def write_store(path: Path, rows: pd.DataFrame) -> None:
    """`rows` as Feast's SQLite online store holds them (`entity_key` as Feast serializes it,
    one row per feature, `value` a serialized ValueProto), written beside `path` and renamed
    over it, as a re-materialization that writes a new file does."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    records = []
    for record in rows.to_dict("records"):
        entity = EntityKey(
            join_keys=["customer_id"], entity_values=[Value(string_val=record["customer_id"])]
        )
        key = serialize_entity_key(entity, entity_key_serialization_version=3)
        for name in FEATURES:
            v = record[name]
            value = Value(string_val=v) if isinstance(v, str) else Value(double_val=float(v))
            records.append((key, name, value.SerializeToString(), EVENT_TS))
    fresh = path.with_name(path.name + ".new")
    fresh.unlink(missing_ok=True)
    conn = sqlite3.connect(fresh)
    with conn:
        conn.execute(
            f'CREATE TABLE "{TABLE}" (entity_key BLOB, feature_name TEXT, value BLOB, '
            "event_ts timestamp, PRIMARY KEY (entity_key, feature_name))"
        )
        conn.executemany(f'INSERT INTO "{TABLE}" VALUES (?, ?, ?, ?)', records)
    conn.close()
    os.replace(fresh, path)


def store_layout(path: Path) -> OnlineLayout:
    """Where `SqliteOnlineReader` finds the features `write_store` wrote."""
    return OnlineLayout(
        key_version=3,
        join_key="customer_id",
        feature_names=tuple(FEATURES),
        strings=frozenset({"acquisition_channel"}),
        path=str(path),
        views=(ViewTable(TABLE, tuple(FEATURES)),),
    )
