"""The one Feast adapter: build the store from settings, apply, materialize and read features.

The store is configured in code, from `Settings`, never from a `feature_store.yaml` next to the
declarations: DuckDB offline store, SQLite online store `<ws>/.clv/feast/online.db` (or Redis
when `feast.online_store == "redis"`), registry `<ws>/.clv/feast/registry.db` (or
`feast.registry`: a path, or a SQLAlchemy URL for a SQL registry). Feast's `repo_path` is the
workspace's state folder `<ws>/.clv`, so the relative FileSource path of
`feature_repo/data_sources.py` names the features file of this workspace. Feast 0.67 resolves
relative FileSource paths against `RepoConfig.repo_path` only when validating and writing; its
DuckDB reader opens `FileSource.path` as given (relative to the current directory), so the
declarations are copied and their paths made absolute with Feast's own
`FileSource.get_uri_for_file_path(repo_path, path)` before they are applied.

The declarations are loaded by importing every module of `settings.feast.repo_path` as the
package `feature_repo`; nothing is written next to the code.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib
import importlib.machinery
import importlib.util
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clv.core.contracts import TS_DTYPE
from clv.core.errors import NotReadyError
from clv.core.services import is_sql, redact, uri_scheme
from clv.core.settings import Settings
from clv.core.store import duckdb_connection, has_table, read_table
from clv.core.time import DateLike, to_utc
from clv.features import feast_private
from clv.features.query import known_entities
from clv.features.snapshots import features_path
from clv.inputs.identities import read_identities

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore, FeatureView, RepoConfig

    from clv.features.online_store import BatchedSqliteOnlineStore

PACKAGE = "feature_repo"
"""The import name of the declarations package (whatever folder `feast.repo_path` names)."""

BATCHED_SQLITE = "clv.features.online_store.BatchedSqliteOnlineStore"
"""The SQLite online store clv configures: Feast's, with batched writes
(clv.features.online_store)."""

_ROW = "_clv_row"
_TS_SUFFIX = "__ts"
FEATURE_STORE_YAML = "feature_store.yaml"
ENTITY_KEY_VERSION = 3
PASSWORD_VARIABLE = "CLV_FEAST_PASSWORD"
"""A password in a registry URL or Redis connection string is written to feature_store.yaml as
`${CLV_FEAST_PASSWORD}` (Feast expands variables when it reads the file), never in clear."""


@dataclass(frozen=True)
class ApplyResult:
    """What `apply` registered."""

    project: str
    registry: str
    """Where: a file path, or a SQL registry's URL with its password hidden (it is printed)."""
    entities: list[str]
    feature_views: list[str]
    feature_services: list[str]


@dataclass(frozen=True)
class MaterializeResult:
    """What `materialize` loaded into the online store."""

    start: pd.Timestamp
    end: pd.Timestamp
    feature_views: list[str]
    customers: int
    latest_snapshot: pd.Timestamp | None


# --------------------------------------------------------------------------- configuration


def _registry_config(settings: Settings) -> dict[str, object]:
    value = settings.feast.registry
    if value is None:
        return {"registry_type": "file", "path": str(settings.feast_dir / "registry.db")}
    scheme = uri_scheme(value)
    if is_sql(value):
        return {"registry_type": "sql", "path": value, "cache_ttl_seconds": 60}
    if scheme:  # s3://, gs://: object-store file registries
        return {"path": value, "cache_ttl_seconds": 60}
    path = Path(value).expanduser()
    return {
        "registry_type": "file",
        "path": str(path if path.is_absolute() else settings.workspace / path),
    }


def _online_config(settings: Settings) -> dict[str, object]:
    if settings.feast.online_store == "redis":
        # redis-py retries a failed call for up to ~14 s by default; a scoring request would
        # hang that long before answering 503. Fail fast unless the user chose a retry policy.
        connection = settings.feast.redis_connection
        if "retry=" not in connection:
            connection += ",retry=null"
        return {"type": "redis", "connection_string": connection}
    value = settings.feast.online_path
    path = Path(value).expanduser() if value else settings.feast_dir / "online.db"
    return {
        "type": BATCHED_SQLITE,
        "path": str(path if path.is_absolute() else settings.workspace / path),
    }


_REDIS_TIMEOUTS = ("socket_timeout", "socket_connect_timeout")


def online_config(settings: Settings) -> dict[str, object]:
    """The online store section Feast is configured with: for Redis, the connection string also
    sets redis-py's socket and connect timeouts to `feast.redis_timeout_seconds` (unless it sets
    them itself), so a stalled Redis fails a read instead of freezing the server."""
    config = _online_config(settings)
    if config["type"] != "redis":
        return config
    connection = str(config["connection_string"])
    for option in _REDIS_TIMEOUTS:
        if f"{option}=" not in connection:
            connection += f",{option}={settings.feast.redis_timeout_seconds}"
    return {**config, "connection_string": connection}


def _repo_config(settings: Settings) -> RepoConfig:
    """The Feast configuration of a workspace (the production profile is the same code)."""
    from feast import RepoConfig

    return RepoConfig(
        project=settings.feast.project,
        provider="local",
        registry=_registry_config(settings),
        online_store=online_config(settings),
        offline_store={"type": "duckdb"},
        repo_path=settings.state_dir,
        entity_key_serialization_version=ENTITY_KEY_VERSION,
    )


def feature_store_yaml(settings: Settings) -> dict[str, object]:
    """The workspace's Feast configuration as Feast's own CLI reads it (no secret in it)."""
    return {
        "project": settings.feast.project,
        "provider": "local",
        "registry": _without_password(_registry_config(settings)),
        "online_store": _without_password(online_config(settings)),
        "offline_store": {"type": "duckdb"},
        "entity_key_serialization_version": ENTITY_KEY_VERSION,
    }


def write_feature_store_yaml(settings: Settings) -> Path:
    """<workspace>/.clv/feast/feature_store.yaml, so that `feast -c <that folder> feature-views
    list` and `feast ui` work on the workspace's registry and online store."""
    import yaml

    settings.ensure_dirs()
    path = settings.feast_dir / FEATURE_STORE_YAML
    header = "# Written by `clv features apply` from clv.yaml; edit clv.yaml, not this file.\n"
    path.write_text(header + yaml.safe_dump(feature_store_yaml(settings), sort_keys=False))
    return path


def _without_password(section: dict[str, object]) -> dict[str, object]:
    mask = f"${{{PASSWORD_VARIABLE}}}"
    return {k: redact(v, mask=mask) if isinstance(v, str) else v for k, v in section.items()}


@functools.lru_cache(maxsize=8)
def feature_store(settings: Settings) -> FeatureStore:
    """The workspace's FeatureStore, built once per process and settings (it is expensive).

    Settings are frozen and hashable, so the key is the workspace plus its configuration. A
    Feast SQL registry that does not answer stops here, in one line, within
    `services.connect_timeout_seconds`."""
    from feast import FeatureStore

    from clv.core.services import require_feast_registry

    require_feast_registry(settings)
    settings.ensure_dirs()
    return FeatureStore(config=_repo_config(settings), repo_path=str(settings.state_dir))


# --------------------------------------------------------------------------- declarations


def _package(repo_path: Path) -> None:
    """Make `feature_repo` import from repo_path (a namespace-like package, no __init__)."""
    where = str(repo_path.resolve())
    current = sys.modules.get(PACKAGE)
    if current is not None and where in list(getattr(current, "__path__", [])):
        return
    for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
        del sys.modules[name]
    spec = importlib.machinery.ModuleSpec(PACKAGE, None, is_package=True)
    spec.submodule_search_locations = [where]
    module = importlib.util.module_from_spec(spec)
    module.__path__ = [where]
    sys.modules[PACKAGE] = module


def _modules(repo_path: Path) -> Iterator[object]:
    if not repo_path.is_dir():
        raise NotReadyError(f"no Feast declarations at {repo_path}: set feast.repo_path")
    _package(repo_path)
    for file in sorted(repo_path.glob("*.py")):
        if file.stem.startswith(("_", ".")):
            continue
        yield importlib.import_module(f"{PACKAGE}.{file.stem}")


def _declarations(settings: Settings) -> list[object]:
    """Every Feast object declared in the feature repo, with file paths made absolute."""
    from feast import Entity, FeatureService, FeatureView
    from feast.data_source import DataSource
    from feast.infra.offline_stores.file_source import FileSource

    found: dict[tuple[str, str], object] = {}
    for module in _modules(Path(settings.feast.repo_path)):
        for value in vars(module).values():
            if isinstance(value, Entity | DataSource | FeatureView | FeatureService):
                found.setdefault((type(value).__name__, value.name), value)
    objects: list[object] = copy.deepcopy(list(found.values()))
    sources = [o for o in objects if isinstance(o, FileSource)]
    for view in (o for o in objects if isinstance(o, FeatureView)):
        sources += [
            s
            for s in (view.batch_source, getattr(view, "data_source", None))
            if isinstance(s, FileSource)
        ]
    for source in sources:
        source.file_options.uri = FileSource.get_uri_for_file_path(
            settings.state_dir, source.file_options.uri
        )
    return objects


# --------------------------------------------------------------------------- commands


def apply(settings: Settings) -> ApplyResult:
    """Register the declarations in the workspace's registry and create online tables."""
    from feast import Entity, FeatureService, FeatureView

    store = feature_store(settings)
    objects = _declarations(settings)
    with _quiet():
        store.apply(objects)  # type: ignore[arg-type]
    write_feature_store_yaml(settings)
    names = {
        kind: sorted(o.name for o in objects if isinstance(o, kind))
        for kind in (Entity, FeatureView, FeatureService)
    }
    return ApplyResult(
        project=settings.feast.project,
        registry=redact(str(_registry_config(settings)["path"])),
        entities=names[Entity],
        feature_views=names[FeatureView],
        feature_services=names[FeatureService],
    )


def ensure_applied(settings: Settings) -> ApplyResult | None:
    """Apply the declarations when the workspace's registry lacks the FeatureService (a new
    workspace: `clv features build` then `train` work without a separate `features apply`);
    None when it is registered already."""
    try:
        require_service(settings, feature_store(settings))
    except NotReadyError:
        return apply(settings)
    return None


def _snapshot_range(settings: Settings) -> tuple[pd.Timestamp, pd.Timestamp]:
    path = features_path(settings)
    if not path.exists():
        raise NotReadyError(f"no feature snapshots at {path}: run `clv features build`")
    column = pq.read_table(path, columns=["event_timestamp"])["event_timestamp"]
    if len(column) == 0:
        raise NotReadyError("the feature snapshots are empty: run `clv features build`")
    series = column.to_pandas()
    return to_utc(series.min()), to_utc(series.max())


def materialize(settings: Settings, *, end: DateLike | None = None) -> MaterializeResult:
    """Load each customer's latest snapshot before `end` into the online store.

    Default end: the last snapshot + 1 day (the whole build). The interval starts at the first
    snapshot, so every customer's latest row (not only recent ones) is loaded.
    """
    first, last = _snapshot_range(settings)
    end_ts = to_utc(end) if end is not None else last + pd.Timedelta(days=1)
    start_ts = first - pd.Timedelta(seconds=1)
    if end_ts <= start_ts:
        raise NotReadyError(f"no snapshot before {end_ts.date()}: the first is {first.date()}")
    store = feature_store(settings)
    require_service(settings, store)
    online = [v for v in store.list_feature_views() if v.online]
    views = [v.name for v in online]
    latest_rows = _latest_rows(settings, end_ts)
    if _batched_store(store) is not None and _direct(online):
        _materialize_direct(store, online, latest_rows, start_ts, end_ts)
    else:
        with _quiet():
            store.materialize(
                start_date=start_ts.to_pydatetime(),
                end_date=end_ts.to_pydatetime(),
                feature_views=views,
            )
    stamps = latest_rows.column("event_timestamp")
    latest = pc.max(stamps).as_py() if latest_rows.num_rows else None
    return MaterializeResult(
        start=start_ts,
        end=end_ts,
        feature_views=sorted(views),
        customers=latest_rows.num_rows,
        latest_snapshot=to_utc(latest) if latest is not None else None,
    )


def _latest_rows(settings: Settings, end: pd.Timestamp) -> pa.Table:
    """Each customer's latest snapshot row before `end` (ties: the latest created_timestamp).

    The rows Feast's materialization selects for an interval that starts before the first
    snapshot: the latest row per entity by event, then created, timestamp.
    """
    con = duckdb_connection()
    try:
        relation = con.sql(
            """
            SELECT * FROM read_parquet($path)
            WHERE event_timestamp < $end
            QUALIFY row_number() OVER (
                PARTITION BY customer_id
                ORDER BY event_timestamp DESC, created_timestamp DESC NULLS LAST
            ) = 1
            ORDER BY customer_id
            """,
            params={"path": str(features_path(settings)), "end": end.to_pydatetime()},
        )
        table = relation.to_arrow_table()
    finally:
        con.close()
    return _microseconds_utc(table)


def _microseconds_utc(table: pa.Table) -> pa.Table:
    fields = [
        pa.field(f.name, pa.timestamp("us", tz="UTC")) if pa.types.is_timestamp(f.type) else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields))


def _batched_store(store: FeatureStore) -> BatchedSqliteOnlineStore | None:
    from clv.features.online_store import BatchedSqliteOnlineStore

    online = feast_private.provider_online_store(store)  # None off the verified Feast versions
    return online if isinstance(online, BatchedSqliteOnlineStore) else None


def _direct(views: Sequence[FeatureView]) -> bool:
    """True when the views are plain views of one features file, keyed by customer_id."""
    from feast.infra.offline_stores.file_source import FileSource

    sources = {v.batch_source.name for v in views if v.batch_source is not None}
    return len(sources) == 1 and all(
        isinstance(v.batch_source, FileSource)
        and not v.batch_source.field_mapping
        and [c.name for c in v.entity_columns] == ["customer_id"]
        for v in views
    )


def _materialize_direct(
    store: FeatureStore,
    views: Sequence[FeatureView],
    rows: pa.Table,
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> None:
    """Write the latest rows straight into the batched SQLite store, then record the interval.

    Same rows, same table format as `FeatureStore.materialize` (a test compares both), without
    building one ValueProto per value in Python.
    """
    online = _batched_store(store)
    assert online is not None
    source = views[0].batch_source
    key = views[0].entity_columns[0]
    assert source is not None
    online.write_arrow(
        store.config,
        views,
        rows,
        join_key=key.name,
        join_key_type=key.dtype.to_value_type(),
        timestamp_field=source.timestamp_field,
        created_timestamp_column=source.created_timestamp_column or None,
    )
    for view in views:
        store.registry.apply_materialization(
            view, store.project, start.to_pydatetime(), end.to_pydatetime(), commit=True
        )


# --------------------------------------------------------------------------- reads


def require_service(settings: Settings, store: FeatureStore) -> FeatureService:
    """The workspace's FeatureService (`features.service`), or NotReadyError naming the fix."""
    from feast.errors import FeastObjectNotFoundException

    name = settings.features.service
    try:
        return store.get_feature_service(name, allow_cache=True)
    except FeastObjectNotFoundException as exc:
        raise NotReadyError(
            f"feature service {name!r} is not registered: run `clv features apply`"
        ) from exc


def _features(settings: Settings) -> list[tuple[str, str]]:
    """(name, Feast dtype) of every feature of the service, in service order."""
    service = require_service(settings, feature_store(settings))
    return [
        (f.name, str(f.dtype))
        for projection in service.feature_view_projections
        for f in projection.features
    ]


def feature_names(settings: Settings) -> list[str]:
    """The bare names of every feature of the FeatureService, in its order."""
    return [name for name, _ in _features(settings)]


def categorical_features(settings: Settings) -> list[str]:
    """The string-valued features of the FeatureService (e.g. acquisition_channel)."""
    return [name for name, dtype in _features(settings) if dtype == "String"]


def historical_features(settings: Settings, entities: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time features for entity rows (customer_id, event_timestamp UTC).

    Returns the entity frame's columns plus every feature, one row per entity row in the same
    order (rows sharing key and timestamp are all kept). A row gets the latest snapshot at or
    before its timestamp, within the TTL; otherwise nulls.
    """
    missing = {"customer_id", "event_timestamp"} - set(entities.columns)
    if missing:
        raise ValueError(f"entity frame lacks {sorted(missing)}")
    store = feature_store(settings)
    service = require_service(settings, store)
    names = feature_names(settings)
    rows = entities.reset_index(drop=True)
    entity_df = pd.DataFrame(
        {
            "customer_id": rows["customer_id"].astype(str),
            "event_timestamp": pd.to_datetime(rows["event_timestamp"], utc=True).astype(TS_DTYPE),
            _ROW: np.arange(len(rows), dtype=np.int64),
        }
    )
    if entity_df.empty:
        out = rows.copy()
        for name in names:
            out[name] = pd.Series(dtype=object)
        return out
    _snapshot_range(settings)
    with _quiet():
        job = store.get_historical_features(
            entity_df=entity_df, features=service, full_feature_names=False
        )
        result = job.to_df()
    result = result.sort_values(_ROW, kind="stable").reset_index(drop=True)
    if len(result) != len(entities) or not np.array_equal(
        result[_ROW].to_numpy(), np.arange(len(entities))
    ):
        raise RuntimeError(f"Feast returned {len(result)} rows for {len(entities)} entity rows")
    out = rows.copy()
    out["customer_id"] = entity_df["customer_id"]
    out["event_timestamp"] = entity_df["event_timestamp"]
    for name in names:
        out[name] = result[name].to_numpy()
    return _typed(settings, out)


def online_features(settings: Settings, customer_ids: Sequence[str]) -> pd.DataFrame:
    """The served features of customers (one row per id, in order; unknown ids -> nulls).

    `feature_timestamp` is the snapshot the values come from (the latest Feast timestamp over
    the service's feature views), null when the online store has nothing for the id.
    """
    store = feature_store(settings)
    service = require_service(settings, store)
    names = feature_names(settings)
    ids = [str(c) for c in customer_ids]
    if not ids:
        empty = pd.DataFrame({"customer_id": pd.Series(dtype=str)})
        for name in names:
            empty[name] = pd.Series(dtype=object)
        empty["feature_timestamp"] = pd.Series(dtype=TS_DTYPE)
        return empty
    response = store.get_online_features(
        features=service, entity_rows=[{"customer_id": c} for c in ids]
    )
    data = response.to_dict(include_event_timestamps=True)
    out = pd.DataFrame({"customer_id": ids})
    for name in names:
        out[name] = data[name]
    seconds = np.column_stack(
        [np.asarray(data[k], dtype="float64") for k in data if k.endswith(_TS_SUFFIX)]
    ).max(axis=1)
    present = out[names].notna().any(axis=1).to_numpy() & (seconds > 0)
    stamps = pd.to_datetime(np.where(present, seconds, np.nan), unit="s", utc=True)
    out["feature_timestamp"] = pd.Series(stamps).astype(TS_DTYPE)
    return _typed(settings, out)


def snapshot_entities(settings: Settings, as_of: DateLike) -> pd.DataFrame:
    """Entity rows (customer_id, event_timestamp = as_of) of every customer known before as_of."""
    transactions = read_table(settings, "transactions")
    customers = read_table(settings, "customers") if has_table(settings, "customers") else None
    return known_entities(transactions, customers, as_of, identities=read_identities(settings))


# --------------------------------------------------------------------------- internals


def _typed(settings: Settings, frame: pd.DataFrame) -> pd.DataFrame:
    """Same dtypes online and offline: numeric features float64 (nulls as NaN), strings object."""
    for name, dtype in _features(settings):
        if dtype == "String":
            column = frame[name].astype(object)
            frame[name] = column.where(column.notna(), None)
        else:
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    return frame


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Feast prints progress on stdout; send it to stderr so `--json` stays one document."""
    with contextlib.redirect_stdout(sys.stderr):
        yield
