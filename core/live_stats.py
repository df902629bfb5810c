"""The serving state files of a workspace (`<workspace>/.clv/serving/`).

`live_stats.json`: what one local `clv serve` writes every `serving.stats_seconds` and the
canary judge (`clv registry status`) reads when no Prometheus server is configured:
`{"aliases": {alias: {"version", "requests", "errors", "latency_buckets", "prediction_buckets"}},
"routing": {alias: version, "share", "shadow"}, "written_at": unix seconds, "pid": the writer}`;
the buckets are `[[le, cumulative count], ...]` of the `clv.core.telemetry` histograms.

`batch_scoring.json`: the last successful `clv score --all` (`BatchScoring`), which every
replica exposes as the batch-freshness and coverage SLIs.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from clv.core.settings import Settings

LIVE_STATS_FILE = "live_stats.json"
BATCH_SCORING_FILE = "batch_scoring.json"


@dataclass(frozen=True)
class BatchScoring:
    """The last successful batch scoring."""

    finished_at: float
    """Unix seconds."""
    scored: int
    active: int | None
    """Customers with a purchase in the churn window before the log's end (None: unknown)."""
    active_scored: int | None
    model_version: str

    @property
    def coverage(self) -> float | None:
        """The share of active customers the batch scored."""
        if self.active is None or self.active_scored is None:
            return None
        return self.active_scored / self.active if self.active else 1.0


def live_stats_path(settings: Settings) -> Path:
    """Where the server writes its per-alias live stats."""
    return settings.state_dir / "serving" / LIVE_STATS_FILE


def write_live_stats(settings: Settings, snapshot: Mapping[str, object]) -> Path:
    """Atomically replace the live-stats file with `snapshot` (aliases and routing), stamped with
    the time and the writer's pid."""
    path = live_stats_path(settings)
    _replace(path, {**snapshot, "written_at": time.time(), "pid": os.getpid()})
    return path


def read_live_stats_doc(settings: Settings) -> dict[str, object] | None:
    """The last document written, or None when there is none or it cannot be read."""
    return _read(live_stats_path(settings))


def batch_scoring_path(settings: Settings) -> Path:
    return settings.state_dir / "serving" / BATCH_SCORING_FILE


def write_batch_scoring(settings: Settings, record: BatchScoring) -> Path:
    """Atomically replace the batch-scoring record."""
    path = batch_scoring_path(settings)
    _replace(path, asdict(record))
    return path


def read_batch_scoring(settings: Settings) -> BatchScoring | None:
    """The last record, or None when there is none or it cannot be read."""
    doc = _read(batch_scoring_path(settings))
    if doc is None:
        return None
    try:
        return BatchScoring(
            finished_at=float(doc["finished_at"]),  # type: ignore[arg-type]
            scored=int(doc["scored"]),  # type: ignore[call-overload]
            active=_optional_int(doc.get("active")),
            active_scored=_optional_int(doc.get("active_scored")),
            model_version=str(doc["model_version"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _optional_int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


def _replace(path: Path, doc: Mapping[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def _read(path: Path) -> dict[str, object] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None
