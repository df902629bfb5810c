"""A Feast SQLite online store that writes in batches, in Feast's own table format.

Feast 0.67's `SqliteOnlineStore.online_write_batch` serializes the entity key and converts both
timestamps once per *value* and calls `execute` once per value: 200,000 customers x 43 features
are 8.6 million Python-level upserts (about 130 s here). `BatchedSqliteOnlineStore` keeps the
table Feast creates (`update`), the rows it writes (entity key serialized by Feast's
`serialize_entity_key`, `value` a serialized `ValueProto`, `value_text`, epoch-second `event_ts`
and `created_ts`) and the read path (`online_read` is inherited), and changes only how rows get
there:

- `online_write_batch` (Feast's interface: proto rows from `materialize`, `push`,
  `write_to_online_store`) serializes each key and timestamp once per entity row and upserts
  with one `executemany` per chunk, in one transaction.
- `write_arrow` writes an Arrow table (join key, timestamps, feature columns) without building
  a `ValueProto` per value and without a Python-level row per value: the serialized entity
  keys (`entity_keys`) and every feature's (`value`, `value_text`) are built column-wise
  (a double is its protobuf wire form, tag 0x29 = field 5 `double_val` + 8 little-endian
  bytes; every other type goes through Feast's `python_values_to_proto_values` once per
  distinct value), packed into one BLOB per chunk of customers (`pack_rows`), and SQLite
  unpivots that BLOB into Feast's rows in C (`_unpivot_sql`: a recursive CTE over the packed
  rows crossed with the view's feature names, `substr` per field, Feast's upsert), sorted by
  (entity key, feature name) so every B-tree insert is an append.
  `clv.features.feast_io.materialize` uses it; `tests/unit/features/test_online_store.py` checks
  that it stores byte-identical rows to stock Feast.

Use it with `online_store: {type: clv.features.online_store.BatchedSqliteOnlineStore, path: ...}`
(Feast imports `<module>.<Name>` and its config class `<Name>Config`).

Both writes go into Feast's tables through Feast's own connection (`SqliteOnlineStore._get_conn`,
private): on a Feast version clv was not verified against (clv.features.feast_private)
`online_write_batch` is Feast's own and `write_arrow` refuses (its caller,
`feast_io.materialize`, then runs `FeatureStore.materialize`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from feast.feature_view import FeatureView
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import compute_table_id, extract_text_and_num
from feast.infra.online_stores.sqlite import (
    SqliteOnlineStore,
    SqliteOnlineStoreConfig,
    adapt_datetime_epoch,
)
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import RepoConfig
from feast.type_map import python_values_to_proto_values
from feast.types import Float64
from feast.utils import to_naive_utc
from feast.value_type import ValueType

from clv.features import feast_private

CHUNK_ROWS = 200_000
"""Values (table rows) per `executemany` call: bounds the memory of one write."""

CHUNK_CUSTOMERS = 50_000
"""Customers packed into one BLOB by `write_arrow`: bounds the memory of one statement."""

_DOUBLE_TAG = 0x29  # protobuf key of Value.double_val: field 5, wire type 1 (64-bit)
_COLUMNS = ("entity_key", "feature_name", "value", "value_text", "event_ts", "created_ts")

Row = tuple[bytes, str, bytes, str | None, int, int | None]
ProtoRow = tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]


class BatchedSqliteOnlineStoreConfig(SqliteOnlineStoreConfig):
    """Same options as Feast's SQLite store (`path`); only the type differs."""

    # Feast picks the store class by this `type`; narrowing the parent's Literal is intended.
    type: Literal["clv.features.online_store.BatchedSqliteOnlineStore"] = (
        "clv.features.online_store.BatchedSqliteOnlineStore"  # type: ignore[assignment]
    )


def _quote_id(identifier: str) -> str:
    """A quoted SQLite identifier (embedded double quotes doubled), as Feast quotes its tables."""
    return '"' + identifier.replace('"', '""') + '"'


def _upsert_sql(table_name: str) -> str:
    """Feast's upsert statement (same columns, same conflict rule)."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[2:])
    return (
        f"INSERT INTO {_quote_id(table_name)} ({', '.join(_COLUMNS)}) "
        f"VALUES ({', '.join('?' * len(_COLUMNS))}) "
        f"ON CONFLICT(entity_key, feature_name) DO UPDATE SET {updates};"
    )


def epoch_seconds(ts: datetime | None) -> int | None:
    """A timestamp as Feast's SQLite store stores it (its own adapter, on naive UTC)."""
    return None if ts is None else int(adapt_datetime_epoch(to_naive_utc(ts)))


def _chunks(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _double_values(column: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, pa.Array]:
    """(serialized ValueProto, value_text) of a double column; null and NaN -> empty Value.

    The blob is built in numpy; the text (Python's `str`, as Feast stores it) is formatted
    once per distinct bit pattern, so -0.0 and 0.0 stay apart.
    """
    values: npt.NDArray[np.float64] = np.asarray(
        column.to_numpy(zero_copy_only=False), dtype=np.float64
    )
    null = np.isnan(values)
    size = np.where(null, 0, 9).astype(np.int64)
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(size, out=offsets[1:])
    present = values[~null]
    data = np.empty((len(present), 9), dtype=np.uint8)
    data[:, 0] = _DOUBLE_TAG
    data[:, 1:] = present.astype("<f8").view(np.uint8).reshape(-1, 8)
    blobs = pa.Array.from_buffers(
        pa.large_binary(),
        len(values),
        [None, pa.py_buffer(offsets), pa.py_buffer(data.tobytes())],
    )
    bits, inverse = np.unique(values.view(np.int64), return_inverse=True)
    distinct = [None if v != v else str(v) for v in bits.view(np.float64).tolist()]
    texts = pa.array(distinct, pa.large_string()).take(pa.array(inverse.ravel()))
    return blobs, texts


def _distinct_values(
    column: pa.ChunkedArray | pa.Array, value_type: ValueType
) -> tuple[pa.Array, pa.Array]:
    """(serialized ValueProto, value_text) via Feast's converter, once per distinct value."""
    encoded = pc.dictionary_encode(column)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    distinct = encoded.dictionary.to_pylist()
    protos = python_values_to_proto_values(distinct, value_type) if distinct else []
    blobs = [p.SerializeToString() for p in protos] + [b""]
    texts = [extract_text_and_num(p, False)[0] for p in protos] + [None]
    codes = encoded.indices.fill_null(len(distinct))
    return (
        pa.array(blobs, pa.large_binary()).take(codes),
        pa.array(texts, pa.large_string()).take(codes),
    )


def entity_keys(
    column: pa.ChunkedArray | pa.Array,
    *,
    join_key: str,
    join_key_type: ValueType,
    version: int,
) -> pa.Array:
    """Feast's `serialize_entity_key` of each value of a single join key, as a binary array.

    A string key (version 3) is its constant head (key count, key name, value type) plus a
    little-endian length plus the UTF-8 bytes: built column-wise, which is what
    `serialize_entity_key` writes value by value. Other key types go through Feast.
    """
    values = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if join_key_type != ValueType.STRING or version < 3 or values.null_count:
        return pa.array(
            [
                serialize_entity_key(
                    EntityKeyProto(join_keys=[join_key], entity_values=[value]),
                    entity_key_serialization_version=version,
                )
                for value in python_values_to_proto_values(values.to_pylist(), join_key_type)
            ],
            pa.large_binary(),
        )
    empty = EntityKeyProto(join_keys=[join_key], entity_values=[ValueProto(string_val="")])
    head = serialize_entity_key(empty, entity_key_serialization_version=version)[:-4]
    utf8 = values.cast(pa.large_string()).cast(pa.large_binary())
    lengths = np.asarray(pc.binary_length(utf8).to_numpy(zero_copy_only=False), dtype="<u4")
    sizes = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(4), len(lengths), [None, pa.py_buffer(lengths.tobytes())]
    ).cast(pa.large_binary())
    empty_sep = pa.scalar(b"", pa.large_binary())
    return pc.binary_join_element_wise(pa.scalar(head, pa.large_binary()), sizes, utf8, empty_sep)


def pack_rows(
    columns: Sequence[pa.Array], *, digits: int, widths: Sequence[int]
) -> npt.NDArray[np.uint8]:
    """Lay binary/string columns out as fixed-width rows, one matrix row per table row.

    Column j takes `digits + widths[j]` bytes: its length + 1 in ASCII decimal digits (0 for
    null), then its bytes, zero padded. SQLite reads a field back with `substr` and `CAST`
    (see `_field_sql`), so one bound BLOB carries a whole chunk of rows into C.
    """
    rows = len(columns[0]) if columns else 0
    starts = np.cumsum([0, *(digits + w for w in widths)])
    packed = np.zeros((rows, int(starts[-1])), dtype=np.uint8)
    for column, start, width in zip(columns, starts[:-1].tolist(), widths, strict=True):
        array = column.cast(pa.large_binary())
        valid = np.asarray(array.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        buffers = array.buffers()
        offsets = np.frombuffer(buffers[1], dtype=np.int64)[array.offset : array.offset + rows + 1]
        lengths = np.where(valid, np.diff(offsets), 0)
        if int(lengths.max(initial=0)) > width:
            raise ValueError(f"a value is longer than its field ({width} bytes)")
        code = np.where(valid, lengths + 1, 0)
        for place in range(digits):
            packed[:, start + digits - 1 - place] = 48 + (code // 10**place) % 10
        total = int(lengths.sum())
        if total:
            data = np.frombuffer(buffers[2], dtype=np.uint8)
            row = np.repeat(np.arange(rows), lengths)
            within = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            source = np.repeat(offsets[:-1], lengths) + within
            packed[row, start + digits + within] = data[source]
    return packed


def _field_sql(at: str, digits: int) -> str:
    """SQL reading the `pack_rows` field at 1-based position `at` of the bound `:rows`."""
    code = f"CAST(CAST(substr(:rows, {at}, {digits}) AS TEXT) AS INTEGER)"
    return f"substr(:rows, {at} + {digits}, nullif({code}, 0) - 1)"  # code 0: NULL


def _unpivot_sql(table_name: str, *, features: int, width: int, digits: int) -> str:
    """Feast's upsert, fed by an unpivot of packed rows (`:rows`) that runs inside SQLite.

    `n` walks the `:count` packed rows (`width` bytes each) and reads the per-customer fields
    once: key at offset `:key`, timestamps at `:event` and `:created`. Crossed with `f`
    (`:name{i}`, feature i's value at `:value{i}`, its text at `:text{i}`), rows come out in
    (entity key, feature name) order when the packed rows are sorted by key and the names
    are sorted: every B-tree insert is then an append.
    """

    def number(at: str) -> str:
        return f"CAST(CAST({_field_sql(at, digits)} AS TEXT) AS INTEGER)"

    def customer(at: str) -> str:  # at: SQL of the packed row's 1-based start
        key = _field_sql(f"{at} + :key", digits)
        return f"{at}, {key}, {number(f'{at} + :event')}, {number(f'{at} + :created')}"

    names = ", ".join(f"(:name{i}, :value{i}, :text{i})" for i in range(features))
    updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[2:])
    value = _field_sql("n.base + f.value", digits)
    text = _field_sql("n.base + f.text", digits)
    return (
        "WITH RECURSIVE n(base, key, event, created) AS ("
        f"SELECT {customer('1')} "
        f"UNION ALL SELECT {customer(f'base + {width}')} FROM n LIMIT :count), "
        f"f(name, value, text) AS (VALUES {names}) "
        f"INSERT INTO {_quote_id(table_name)} ({', '.join(_COLUMNS)}) "
        f"SELECT n.key, f.name, {value}, CAST({text} AS TEXT), n.event, n.created "
        "FROM n CROSS JOIN f WHERE true "  # WHERE: SQLite's rule for an upsert from a SELECT
        f"ON CONFLICT(entity_key, feature_name) DO UPDATE SET {updates};"
    )


class BatchedSqliteOnlineStore(SqliteOnlineStore):
    """Feast's SQLite online store with batched writes (same tables, same reads)."""

    def _plain(self, config: RepoConfig) -> bool:
        """True when no optional column (vectors, value_num) is in play: the batched path."""
        store = config.online_store
        return not (
            getattr(store, "vector_enabled", False)
            or getattr(store, "enable_openai_compatible_store", False)
        )

    def _write(self, config: RepoConfig, table: FeatureView, rows: Iterable[Row]) -> int:
        conn = feast_private.sqlite_connection(self, config)
        name = compute_table_id(
            config.project, table, config.registry.enable_online_feature_view_versioning
        )
        sql = _upsert_sql(name)
        written = 0
        with conn:
            for chunk in _chunks(rows, CHUNK_ROWS):
                conn.executemany(sql, chunk)
                written += len(chunk)
        return written

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[ProtoRow],
        progress: Callable[[int], object] | None,
    ) -> None:
        """Feast's interface: upsert proto rows, one `executemany` per chunk (Feast's own write
        off the verified Feast versions)."""
        if not self._plain(config) or not feast_private.enabled():
            super().online_write_batch(config, table, data, progress)
            return
        version = config.entity_key_serialization_version

        def rows() -> Iterator[Row]:
            for entity_key, values, event_ts, created_ts in data:
                key = serialize_entity_key(entity_key, entity_key_serialization_version=version)
                event = epoch_seconds(event_ts)
                assert event is not None
                created = epoch_seconds(created_ts)
                for feature, value in values.items():
                    text = extract_text_and_num(value, False)[0]
                    yield key, feature, value.SerializeToString(), text, event, created
                if progress:
                    progress(1)

        self._write(config, table, rows())

    def write_arrow(
        self,
        config: RepoConfig,
        tables: Sequence[FeatureView],
        data: pa.Table,
        *,
        join_key: str,
        join_key_type: ValueType,
        timestamp_field: str,
        created_timestamp_column: str | None,
        chunk: int = CHUNK_CUSTOMERS,
    ) -> int:
        """Upsert the rows of `data` (already the latest per entity) into each view's table.

        The serialized entity keys, timestamps and every feature's (ValueProto, value_text)
        are built column-wise, packed `chunk` customers at a time into one BLOB
        (`pack_rows`), and SQLite unpivots them into Feast's rows itself (`_unpivot_sql`): no
        Python-level work per table row. One transaction. Returns the table rows written.
        """
        if not self._plain(config):
            raise ValueError("write_arrow does not write vector or value_num columns")
        reason = feast_private.unavailable()
        if reason is not None:
            raise RuntimeError(f"write_arrow: {reason}; FeatureStore.materialize writes instead")
        keys = entity_keys(
            data.column(join_key),
            join_key=join_key,
            join_key_type=join_key_type,
            version=config.entity_key_serialization_version,
        )
        order = pc.sort_indices(keys)
        data = data.take(order)
        columns: list[pa.Array] = [
            keys.take(order),
            _epochs(data.column(timestamp_field)),
            _epochs(data.column(created_timestamp_column))
            if created_timestamp_column
            else pa.nulls(data.num_rows, pa.large_string()),
        ]
        position: dict[str, int] = {}
        for name, dtype in sorted({(f.name, f.dtype) for t in tables for f in t.features}):
            column = data.column(name)
            blobs, texts = (
                _double_values(column)
                if dtype == Float64
                else _distinct_values(column, dtype.to_value_type())
            )
            position[name] = len(columns)
            columns += [blobs, texts]
        widths = [int(pc.max(pc.binary_length(c)).as_py() or 0) for c in columns]
        digits = len(str(max(widths) + 1))
        starts = np.cumsum([0, *(digits + w for w in widths)]).tolist()
        conn = feast_private.sqlite_connection(self, config)
        versioned = config.registry.enable_online_feature_view_versioning
        statements = []
        for table in tables:
            names = sorted(f.name for f in table.features)
            sql = _unpivot_sql(
                compute_table_id(config.project, table, versioned),
                features=len(names),
                width=starts[-1],
                digits=digits,
            )
            params: dict[str, object] = {"key": starts[0], "event": starts[1]}
            params["created"] = starts[2]
            for i, name in enumerate(names):
                params[f"name{i}"] = name
                params[f"value{i}"] = starts[position[name]]
                params[f"text{i}"] = starts[position[name] + 1]
            statements.append((sql, params, len(names)))
        written = 0
        with conn:
            for first in range(0, data.num_rows, chunk):
                part = [c.slice(first, chunk) for c in columns]
                rows = pack_rows(part, digits=digits, widths=widths)
                blob = rows.tobytes()
                del rows
                for sql, params, width in statements:
                    conn.execute(sql, {**params, "rows": blob, "count": len(part[0])})
                    written += width * len(part[0])
        return written


def _epochs(column: pa.ChunkedArray) -> pa.Array:
    """Epoch seconds per row as decimal text, via Feast's adapter once per distinct timestamp."""
    encoded = pc.dictionary_encode(column).combine_chunks()
    distinct = [epoch_seconds(t) for t in encoded.dictionary.to_pylist()]
    seconds = pa.array(distinct, pa.int64()).take(encoded.indices)
    return seconds.cast(pa.large_string())
