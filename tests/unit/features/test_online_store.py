"""The batched SQLite online store holds exactly what stock Feast's SQLite store holds."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feast import FeatureStore, RepoConfig
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import extract_text_and_num
from feast.infra.online_stores.sqlite import SqliteOnlineStore
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.type_map import python_values_to_proto_values
from feast.utils import _convert_arrow_to_proto
from feast.value_type import ValueType

from clv.core.settings import Settings, load_settings
from clv.core.store import write_table
from clv.features import feast_io
from clv.features.build import build_features
from clv.features.online_store import (
    BatchedSqliteOnlineStore,
    _double_values,
    _field_sql,
    entity_keys,
    pack_rows,
)
from clv.features.snapshots import features_path

ROW_SQL = (
    "SELECT entity_key, feature_name, value, value_text, event_ts, created_ts FROM {} "
    "ORDER BY entity_key, feature_name"
)


def _ts(values: list[str]) -> pd.Series:
    return pd.Series(pd.to_datetime(values, utc=True)).astype("datetime64[us, UTC]")


def _stock_config(settings: Settings, db: Path) -> RepoConfig:
    return RepoConfig(
        project=settings.feast.project,
        provider="local",
        registry=feast_io._registry_config(settings),
        online_store={"type": "sqlite", "path": str(db)},
        offline_store={"type": "duckdb"},
        repo_path=settings.state_dir,
        entity_key_serialization_version=3,
    )


def _rows(db: Path) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(db) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: con.execute(ROW_SQL.format(f'"{t}"')).fetchall() for t in sorted(tables)}


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, FeatureStore]]:
    """A workspace materialized by clv (batched) and the same data by stock Feast (sqlite)."""
    ws = tmp_path_factory.mktemp("ws")
    settings = load_settings(ws, environ={})
    write_table(
        settings,
        "transactions",
        pd.DataFrame(
            {
                "customer_id": ["a", "a", "b", "a", "b"],
                "ts": _ts(["2024-01-05", "2024-01-20", "2024-01-10", "2024-02-10", "2024-02-11"]),
                "amount": [15.25, 30.0, 7.0, 20.0, -3.5],
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
                "acquisition_channel": ["ads", None, "ads"],
                "country": ["DE", "FR", "NL"],
                "plan": ["pro", "free", "free"],
            }
        ),
    )
    build_features(settings)  # snapshots Feb 1 and Mar 1; c has no purchase (null features)
    feast_io.apply(settings)
    result = feast_io.materialize(settings)
    stock = FeatureStore(
        config=_stock_config(settings, settings.feast_dir / "stock.db"),
        repo_path=str(settings.state_dir),
    )
    stock.apply(feast_io._declarations(settings))  # type: ignore[arg-type,unused-ignore]
    stock.materialize(start_date=result.start.to_pydatetime(), end_date=result.end.to_pydatetime())
    yield settings, stock


def test_clv_configures_the_batched_store(stores: tuple[Settings, FeatureStore]) -> None:
    settings, _ = stores
    online = feast_io.feature_store(settings)._get_provider().online_store
    assert isinstance(online, BatchedSqliteOnlineStore)


def test_materialized_rows_are_byte_identical_to_stock_feast(
    stores: tuple[Settings, FeatureStore],
) -> None:
    settings, _ = stores
    ours = _rows(settings.feast_dir / "online.db")
    stock = _rows(settings.feast_dir / "stock.db")
    assert sorted(ours) == sorted(stock) and len(ours) == 5
    assert sum(len(rows) for rows in ours.values()) == 3 * 45  # 3 customers x 45 features
    for table in ours:
        assert ours[table] == stock[table], table


def test_online_reads_agree_with_stock_feast(stores: tuple[Settings, FeatureStore]) -> None:
    settings, stock = stores
    service = stock.get_feature_service(settings.features.service)
    rows = [{"customer_id": c} for c in ("a", "b", "c", "unknown")]
    ours = feast_io.feature_store(settings).get_online_features(features=service, entity_rows=rows)
    theirs = stock.get_online_features(features=service, entity_rows=rows)
    mine = ours.to_dict(include_event_timestamps=True)
    assert mine == theirs.to_dict(include_event_timestamps=True)
    # a: three purchase days; b: one (the refund is not a purchase day); unknown: nulls
    assert mine["frequency"][:2] == [2, 0] and mine["recency"][3] is None


def test_online_write_batch_matches_stock_for_feast_proto_rows(
    stores: tuple[Settings, FeatureStore], tmp_path: Path
) -> None:
    settings, stock = stores
    view = stock.get_feature_view("spend_windows")
    table = pq.read_table(features_path(settings))
    protos = _convert_arrow_to_proto(
        table, view, {"customer_id": view.entity_columns[0].dtype.to_value_type()}
    )
    written = {}
    for name, store in (("stock", SqliteOnlineStore()), ("ours", BatchedSqliteOnlineStore())):
        config = _stock_config(settings, tmp_path / f"{name}.db")
        store.update(config, [], [view], [], [], partial=False)
        store.online_write_batch(config, view, protos, None)
        written[name] = _rows(tmp_path / f"{name}.db")
    assert written["ours"] == written["stock"]
    assert sum(len(r) for r in written["ours"].values()) == 3 * len(view.features)


def test_write_arrow_in_small_chunks_and_twice_matches_stock(
    stores: tuple[Settings, FeatureStore], tmp_path: Path
) -> None:
    """Chunk boundaries and the upsert of rows already there change nothing."""
    settings, stock = stores
    views = [v for v in stock.list_feature_views() if v.online]
    rows = feast_io._latest_rows(settings, pd.Timestamp("2100-01-01", tz="UTC"))
    config = _stock_config(settings, tmp_path / "ours.db")
    store = BatchedSqliteOnlineStore()
    store.update(config, [], views, [], [], partial=False)
    key = views[0].entity_columns[0]
    for _ in range(2):
        written = store.write_arrow(
            config,
            views,
            rows,
            join_key=key.name,
            join_key_type=key.dtype.to_value_type(),
            timestamp_field="event_timestamp",
            created_timestamp_column="created_timestamp",
            chunk=2,
        )
        assert written == 3 * 45
    assert _rows(tmp_path / "ours.db") == _rows(settings.feast_dir / "stock.db")


def test_double_encoding_matches_feast_converter() -> None:
    values = [1.5, -0.0, 0.0, float("nan"), None, 1e20, 0.1, -3.25e-7]
    blobs, texts = _double_values(pa.array(values, pa.float64()))
    protos = python_values_to_proto_values(values, ValueType.DOUBLE)
    assert blobs.to_pylist() == [p.SerializeToString() for p in protos]
    assert texts.to_pylist() == [extract_text_and_num(p, False)[0] for p in protos]
    assert texts.to_pylist()[1:4] == ["-0.0", "0.0", None]


@pytest.mark.parametrize(
    ("values", "value_type"),
    [(["C0000001", "aé", "", "z" * 300], ValueType.STRING), ([3, -1, 2**40], ValueType.INT64)],
)
def test_entity_keys_match_feast_serialization(values: list[object], value_type: ValueType) -> None:
    keys = entity_keys(
        pa.array(values), join_key="customer_id", join_key_type=value_type, version=3
    )
    expected = [
        serialize_entity_key(
            EntityKeyProto(join_keys=["customer_id"], entity_values=[proto]),
            entity_key_serialization_version=3,
        )
        for proto in python_values_to_proto_values(values, value_type)
    ]
    assert keys.to_pylist() == expected


def test_packed_rows_read_back_in_sqlite_including_nulls_and_empties() -> None:
    columns = [
        pa.array([b"ab", b"", None], pa.large_binary()),
        pa.array(["x" * 12, None, "é"], pa.large_string()),
    ]
    packed = pack_rows(columns, digits=2, widths=[2, 12])
    width = packed.shape[1]
    assert width == 2 + 2 + 2 + 12
    with sqlite3.connect(":memory:") as con:
        got = [
            con.execute(
                f"SELECT {_field_sql(f'{1 + row * width} + {offset}', 2)}",
                {"rows": packed.tobytes()},
            ).fetchone()[0]
            for row in range(3)
            for offset in (0, 4)
        ]
    assert got == [b"ab", b"x" * 12, b"", None, None, "é".encode()]
    with pytest.raises(ValueError, match="longer than its field"):
        pack_rows(columns, digits=2, widths=[1, 12])
