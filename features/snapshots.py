"""The built feature snapshots: where the file lives, that it exists, its snapshot dates.

`<ws>/.clv/offline/features/customer_features.parquet` is the file behind the Feast FileSource;
`clv.features.build.build_features` writes it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from clv.core.errors import NotReadyError
from clv.core.settings import Settings

FEATURES_FILE = "customer_features.parquet"
"""File name of the feature snapshots inside `Settings.features_dir`."""


def features_path(settings: Settings) -> Path:
    """Where the feature snapshots live (the Feast FileSource resolves to this file)."""
    return settings.features_dir / FEATURES_FILE


def require_features(settings: Settings) -> Path:
    """The built snapshot file; NotReadyError naming the command when it is missing."""
    path = features_path(settings)
    if not path.exists():
        raise NotReadyError(f"no feature snapshots in {path}: run `clv features build`")
    return path


def snapshot_times(settings: Settings) -> list[pd.Timestamp]:
    """Every snapshot date of the built feature table, oldest first."""
    path = require_features(settings)
    ts = pd.read_parquet(path, columns=["event_timestamp"])["event_timestamp"]
    if ts.empty:
        raise NotReadyError(f"{path} is empty: run `clv features build`")
    return sorted(pd.Timestamp(t) for t in pd.to_datetime(ts.unique(), utc=True))
