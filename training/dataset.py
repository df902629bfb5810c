"""The training set: entity rows of the feature build, features through a `FeatureSource`
(Feast's FeatureService by default), labels and the naive rules' past margins from the
transaction log, joined point in time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from clv.core.errors import DataError, NotReadyError
from clv.core.settings import Settings
from clv.core.time import utc_series
from clv.training.labels import KEYS, make_labels, past_margins

Progress = Callable[[str], None]


class FeatureSource(Protocol):
    """Where training gets features; `clv.features.feast_io` (the module) satisfies it."""

    def feature_names(self, settings: Settings) -> list[str]: ...

    def categorical_features(self, settings: Settings) -> list[str]: ...

    def historical_features(self, settings: Settings, entities: pd.DataFrame) -> pd.DataFrame: ...


@dataclass(frozen=True)
class TrainingData:
    """Entity rows with features and labels (NaN label = window not complete)."""

    frame: pd.DataFrame
    feature_names: tuple[str, ...]
    categorical: tuple[str, ...] = ()
    feature_service: str = "clv_v1"
    data_end: pd.Timestamp | None = None


def load_training_data(
    settings: Settings,
    *,
    source: FeatureSource,
    buckets: int = 1,
    bucket: int = 0,
    data_end: pd.Timestamp | None = None,
) -> TrainingData:
    """Entity rows of the feature build, labels from the log, features through `source`.

    With `buckets` > 1, only the customers of one hash bucket (clv.core.store.bucket_predicate):
    labels and features are per customer, so the buckets' frames together are the whole
    training set. `data_end` (default: the log's last timestamp) must then be passed, the same
    for every bucket. Raises DataError when no row has a complete label."""
    frame, data_end = labelled_rows(
        settings, source=source, buckets=buckets, bucket=bucket, data_end=data_end
    )
    if frame.empty:
        m = settings.model
        raise DataError(
            f"no snapshot has a complete {m.horizon_days}-day label window before {data_end}: "
            "build features with earlier snapshots or generate a longer history"
        )
    return TrainingData(
        frame=frame,
        feature_names=tuple(source.feature_names(settings)),
        categorical=tuple(source.categorical_features(settings)),
        feature_service=settings.features.service,
        data_end=data_end,
    )


def log_end(settings: Settings) -> pd.Timestamp:
    """The transaction log's last timestamp (labels are complete up to it)."""
    from clv.core.store import duckdb_connection, table_path

    path = table_path(settings, "transactions")
    if not path.exists():
        raise NotReadyError("no transactions ingested: run `clv data ingest`")
    con = duckdb_connection()
    try:
        row = con.execute("SELECT max(ts) FROM read_parquet(?)", [str(path)]).fetchone()
    finally:
        con.close()
    if row is None or row[0] is None:
        raise DataError("no transactions ingested: run `clv data ingest`")
    return pd.Timestamp(row[0]).tz_convert("UTC")


def labelled_rows(
    settings: Settings,
    *,
    source: FeatureSource,
    buckets: int,
    bucket: int,
    data_end: pd.Timestamp | None,
) -> tuple[pd.DataFrame, pd.Timestamp]:
    """One bucket's rows with at least one complete label, features joined point in time."""
    from clv.core.store import read_parquet_bucket, read_table_bucket
    from clv.features.snapshots import require_features
    from clv.inputs.identities import read_identities

    path = require_features(settings)
    end = data_end if data_end is not None else log_end(settings)
    identities = read_identities(settings)  # a customer's aliases share its bucket
    groups = identities.groups if identities is not None else None
    entities = read_parquet_bucket(
        path, buckets=buckets, bucket=bucket, columns=list(KEYS), groups=groups
    )
    entities = entities.drop_duplicates(ignore_index=True)
    entities["customer_id"] = entities["customer_id"].astype(str)
    entities["event_timestamp"] = utc_series(entities["event_timestamp"])
    transactions = read_table_bucket(
        settings, "transactions", buckets=buckets, bucket=bucket, groups=groups
    )
    m = settings.model
    labels = make_labels(
        transactions,
        entities,
        horizon_days=m.horizon_days,
        churn_window_days=m.churn_window_days,
        annual_discount_rate=m.annual_discount_rate,
        margin_rate=m.margin_rate,
        data_end=end,
        identities=identities,
    )
    past = past_margins(
        transactions,
        entities,
        horizon_days=m.horizon_days,
        margin_rate=m.margin_rate,
        identities=identities,
    )
    labels = pd.concat([labels, past], axis=1)
    labelled = labels.loc[labels["clv_label"].notna() | labels["churn_label"].notna()]
    if labelled.empty:
        return labelled.reset_index(drop=True), end
    feats = source.historical_features(settings, labelled[list(KEYS)].reset_index(drop=True))
    feats["event_timestamp"] = utc_series(feats["event_timestamp"])
    feats["customer_id"] = feats["customer_id"].astype(str)
    frame = feats.merge(labelled, on=list(KEYS), how="inner", validate="many_to_one")
    return frame, end


def value_target(frame: pd.DataFrame) -> np.ndarray:
    """The value model's target: the CLV label clipped at 0 (see clv.training.objective)."""
    return np.clip(frame["clv_label"].to_numpy(dtype=np.float64), 0.0, None)
