"""The online feature reader the server reads from: a `FeatureReader`, or a plain function.

The default is `clv.features.online_read.online_source` (direct SQLite or Redis reads of
Feast's online tables); tests and embedders may pass a function of ids to a frame or batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeAlias

import pandas as pd

from clv.core.settings import Settings
from clv.features.online_read import FeatureReader, OnlineBatch, online_source

FeatureSource: TypeAlias = Callable[[Sequence[str]], "pd.DataFrame | OnlineBatch"]


class CallableReader:
    """A plain function (ids -> frame or batch) as a FeatureReader."""

    def __init__(self, source: FeatureSource) -> None:
        self.source = source

    def read(self, customer_ids: Sequence[str]) -> OnlineBatch:
        got = self.source(customer_ids)
        if isinstance(got, OnlineBatch):
            return got
        names = [c for c in got.columns if c not in ("customer_id", "feature_timestamp")]
        strings = frozenset(
            n for n in names if got[n].dtype == object or str(got[n].dtype) == "string"
        )
        if "feature_timestamp" not in got.columns:
            got = got.assign(feature_timestamp=pd.NaT)
        return OnlineBatch.from_frame(got, feature_names=names, strings=strings)

    def ping(self) -> str | None:
        return None


def feature_reader(
    settings: Settings, source: FeatureSource | FeatureReader | None
) -> FeatureReader:
    """The reader for `source`; None: the configured online store, whose SQLite reads wait
    for a writer's lock no longer than a request waits for them (`serving.read_timeout_seconds`)."""
    if source is None:
        return online_source(settings, timeout_seconds=settings.serving.read_timeout_seconds)
    if hasattr(source, "read") and hasattr(source, "ping"):
        return source
    return CallableReader(source)
