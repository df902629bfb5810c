"""`clv score --all`: score every customer point-in-time at a snapshot date.

Features come from the offline store as of `as_of` (default: the latest feature snapshot), the
model from the champion alias; the numbers come from `serving.scorer.score_features`, the same
function `/score` uses. Writes `scores.parquet` and, beside it, `at_risk.csv` (high value / at
risk customers, highest CLV first) for the retention team.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import pandas as pd

from clv.errors import DataError, NotReadyError
from clv.settings import Settings
from serving.scorer import (
    Champion,
    ModelSource,
    ReferenceSource,
    load_champion,
    registry_champion,
    registry_reference,
    score_features,
)
from serving.segments import HIGH_VALUE_AT_RISK

SnapshotSource: TypeAlias = Callable[[pd.Timestamp], pd.DataFrame]
FEATURES_FILE = "customer_features.parquet"
AT_RISK_FILE = "at_risk.csv"


@dataclass(frozen=True)
class BatchResult:
    """What `score_all` wrote."""

    path: Path
    at_risk_path: Path
    rows: int
    at_risk: int
    cold_start: int
    model_version: str
    alias: str
    as_of: pd.Timestamp
    segments: dict[str, int]
    thresholds: tuple[float, float]
    thresholds_source: str


def parse_as_of(text: str) -> pd.Timestamp:
    """A date or timestamp from the command line, as a UTC timestamp."""
    try:
        ts = pd.Timestamp(text)
    except ValueError as exc:
        raise DataError(f"--as-of {text!r} is not a date (use YYYY-MM-DD)") from exc
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def latest_snapshot(settings: Settings) -> pd.Timestamp:
    """The newest snapshot date in the built feature table."""
    path = settings.features_dir / FEATURES_FILE
    if not path.exists():
        raise NotReadyError(f"no feature snapshots at {path}; run `clv features build` first")
    ts = pd.read_parquet(path, columns=["event_timestamp"])["event_timestamp"]
    if ts.empty:
        raise NotReadyError(f"{path} is empty; run `clv features build` first")
    return pd.Timestamp(pd.to_datetime(ts, utc=True).max())


def score_snapshot(
    champion: Champion, features: pd.DataFrame, *, as_of: pd.Timestamp
) -> pd.DataFrame:
    """Scores for every row of a point-in-time feature frame, tagged with version and date."""
    scores = score_features(champion, features)
    scores["model_version"] = champion.version
    scores["alias"] = champion.alias
    scores["as_of"] = as_of
    return scores.reset_index(drop=True)


def at_risk(scores: pd.DataFrame) -> pd.DataFrame:
    """High-value customers at risk of churning, highest CLV first."""
    chosen = scores[scores["segment"] == HIGH_VALUE_AT_RISK]
    return chosen.sort_values(["clv", "customer_id"], ascending=[False, True], kind="stable")


def score_all(
    settings: Settings,
    *,
    as_of: pd.Timestamp | None = None,
    out: Path,
    model_source: ModelSource | None = None,
    reference_source: ReferenceSource | None = None,
    snapshot_source: SnapshotSource | None = None,
) -> BatchResult:
    """Score every customer known at `as_of`; write scores.parquet and at_risk.csv."""
    when = as_of if as_of is not None else latest_snapshot(settings)
    load = model_source or registry_champion(settings)
    if reference_source is None and settings.serving.value_thresholds is None:
        reference_source = registry_reference(settings)
    champion = load_champion(load(), serving=settings.serving, reference_source=reference_source)
    features = (snapshot_source or _offline_snapshot(settings))(when)
    if features.empty:
        raise DataError(f"no customers known before {when.date()}; check --as-of")
    scores = score_snapshot(champion, features, as_of=when)
    out.parent.mkdir(parents=True, exist_ok=True)
    scores.to_parquet(out, index=False)
    risky = at_risk(scores)
    risk_path = out.parent / AT_RISK_FILE
    risky.to_csv(risk_path, index=False)
    counts = scores["segment"].value_counts().sort_index()
    return BatchResult(
        path=out,
        at_risk_path=risk_path,
        rows=len(scores),
        at_risk=len(risky),
        cold_start=int(scores["cold_start"].sum()),
        model_version=champion.version,
        alias=champion.alias,
        as_of=when,
        segments={str(k): int(v) for k, v in counts.items()},
        thresholds=champion.value_thresholds,
        thresholds_source=champion.thresholds_source,
    )


def _offline_snapshot(settings: Settings) -> SnapshotSource:
    def load(when: pd.Timestamp) -> pd.DataFrame:
        from features.feast_io import historical_features, snapshot_entities

        entities = snapshot_entities(settings, when)
        frame: pd.DataFrame = historical_features(settings, entities)
        return frame

    return load
