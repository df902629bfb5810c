"""`clv monitor run`: data drift of the latest snapshot against the champion's training reference.

Reference: the champion run's `reference/reference.parquet` (training features + predictions).
Current: every customer's features point-in-time at `as_of` (default: the latest snapshot) plus
the champion's predictions on them. Both sides are compared column by column with Evidently
and the share of drifted columns is turned into a verdict by `monitoring.policy.decide`.
Writes `reports/<as-of date>/data_drift.html`, `data_drift.json` and `summary.json`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from clv.errors import DataError
from clv.settings import Settings
from monitoring.evidently_io import ColumnDrift, DriftConfig, run_drift
from monitoring.policy import Verdict, decide

SEED = 20240601
NOT_COMPARED = frozenset(
    {
        "customer_id",
        "event_timestamp",
        "created_timestamp",
        "feature_timestamp",
        "as_of",
        "model_version",
        "alias",
        "segment",
        "cold_start",
    }
)
HTML_FILE = "data_drift.html"
JSON_FILE = "data_drift.json"
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class Comparison:
    """Which columns the two frames are compared on, by kind, and which were left out."""

    numerical: tuple[str, ...]
    categorical: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]
    """(column, reason) pairs."""


@dataclass(frozen=True)
class Sample:
    rows_total: int
    rows_used: int

    @property
    def sampled(self) -> bool:
        return self.rows_used < self.rows_total


@dataclass(frozen=True)
class MonitorResult:
    as_of: pd.Timestamp
    report_dir: Path
    html_path: Path
    json_path: Path
    summary_path: Path
    verdict: Verdict
    reasons: tuple[str, ...]
    drift_share: float
    drifted_count: int
    columns: tuple[ColumnDrift, ...]
    skipped: tuple[tuple[str, str], ...]
    reference: Sample
    current: Sample
    model_version: str | None

    @property
    def drifted(self) -> tuple[str, ...]:
        return tuple(c.column for c in self.columns if c.drifted)


def comparable_columns(
    reference: pd.DataFrame, current: pd.DataFrame, *, only: Sequence[str] | None = None
) -> Comparison:
    """Columns present on both sides (or `only` of them), split into numerical and categorical.

    Identifiers, timestamps and serving metadata are never compared; a column that is entirely
    missing on either side is skipped with a reason instead of failing the report.
    """
    wanted = list(only) if only is not None else [c for c in current.columns]
    numerical: list[str] = []
    categorical: list[str] = []
    skipped: list[tuple[str, str]] = []
    for c in wanted:
        if c in NOT_COMPARED:
            continue
        if c not in reference.columns or c not in current.columns:
            skipped.append((c, "not in both reference and current"))
            continue
        if reference[c].isna().all() or current[c].isna().all():
            skipped.append((c, "entirely missing on one side"))
            continue
        dtype = reference[c].dtype
        if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
            if pd.api.types.is_datetime64_any_dtype(dtype):
                skipped.append((c, "timestamp"))
            else:
                categorical.append(c)
        else:
            numerical.append(c)
    return Comparison(tuple(numerical), tuple(categorical), tuple(skipped))


def reference_window(reference: pd.DataFrame, *, window: str) -> pd.DataFrame:
    """The reference rows to compare with: its latest snapshot ("latest") or all ("all").

    The training reference pools many monthly snapshots whose customers are younger than today's;
    against one current snapshot that pooling alone reads as drift in tenure-like features, so
    the default compares like with like: one snapshot against one snapshot.
    """
    if window == "all" or "event_timestamp" not in reference.columns:
        return reference
    ts = pd.to_datetime(reference["event_timestamp"], utc=True)
    return reference[ts == ts.max()]


def subsample(frame: pd.DataFrame, *, max_rows: int, seed: int = SEED) -> pd.DataFrame:
    """At most `max_rows` rows, drawn without replacement with a fixed seed (order kept)."""
    if len(frame) <= max_rows:
        return frame
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(frame), size=max_rows, replace=False))
    return frame.iloc[keep]


def run_monitor(
    settings: Settings,
    *,
    as_of: pd.Timestamp | None = None,
    reference: pd.DataFrame | None = None,
    current: pd.DataFrame | None = None,
) -> MonitorResult:
    """Compare current features (+ predictions) with the training reference; write reports."""
    only: list[str] | None = None
    version: str | None = None
    when = as_of
    if reference is None or current is None:
        from registry.mlflow_io import load_alias, reference_frame
        from serving.batch import latest_snapshot

        loaded = load_alias(settings, alias="champion")
        model = loaded.model
        version = str(loaded.version)
        only = [*model.feature_names, "clv", "clv_p10", "clv_p90", "churn_probability"]
        if reference is None:
            reference = reference_frame(settings, loaded.run_id)
        if current is None:
            from features.feast_io import historical_features, snapshot_entities

            when = when if when is not None else latest_snapshot(settings)
            features = historical_features(settings, snapshot_entities(settings, when))
            if features.empty:
                raise DataError(f"no customers known before {when.date()}; check --as-of")
            preds = model.predict(features)
            current = pd.concat([features, preds], axis=1)
    if when is None:
        when = _date_of(current)
    reference = reference_window(reference, window=settings.monitoring.reference_window)
    comparison = comparable_columns(reference, current, only=only)
    if not comparison.numerical and not comparison.categorical:
        raise DataError("reference and current share no comparable columns")

    max_rows = settings.monitoring.sample_rows
    ref_used = subsample(reference, max_rows=max_rows)
    cur_used = subsample(current, max_rows=max_rows, seed=SEED + 1)
    out_dir = settings.reports_dir / str(when.date())
    drift = run_drift(
        ref_used,
        cur_used,
        config=DriftConfig(
            numerical=comparison.numerical,
            categorical=comparison.categorical,
            drift_share=settings.monitoring.drift_share_retrain,
        ),
        html_path=out_dir / HTML_FILE,
        json_path=out_dir / JSON_FILE,
    )
    decision = decide(
        drift.drift_share,
        warn=settings.monitoring.drift_share_warn,
        retrain=settings.monitoring.drift_share_retrain,
    )
    result = MonitorResult(
        as_of=when,
        report_dir=out_dir,
        html_path=drift.html_path,
        json_path=drift.json_path,
        summary_path=out_dir / SUMMARY_FILE,
        verdict=decision.verdict,
        reasons=decision.reasons,
        drift_share=drift.drift_share,
        drifted_count=drift.drifted_count,
        columns=drift.columns,
        skipped=comparison.skipped,
        reference=Sample(len(reference), len(ref_used)),
        current=Sample(len(current), len(cur_used)),
        model_version=version,
    )
    result.summary_path.write_text(json.dumps(summary(result, settings), indent=2) + "\n")
    return result


def summary(result: MonitorResult, settings: Settings) -> dict[str, object]:
    """The summary.json document: metrics, thresholds, sampling and the verdict."""

    def sample(s: Sample) -> dict[str, object]:
        return {"rows_total": s.rows_total, "rows_used": s.rows_used, "sampled": s.sampled}

    return {
        "as_of": result.as_of.isoformat(),
        "model_version": result.model_version,
        "verdict": result.verdict.value,
        "reasons": list(result.reasons),
        "metrics": {
            "drift_share": _finite(result.drift_share),
            "drifted_count": result.drifted_count,
            "columns_compared": len(result.columns),
            "drifted_columns": list(result.drifted),
            "columns": [
                {**asdict(c), "score": _finite(c.score), "threshold": _finite(c.threshold)}
                for c in result.columns
            ],
        },
        "thresholds": {
            "drift_share_warn": settings.monitoring.drift_share_warn,
            "drift_share_retrain": settings.monitoring.drift_share_retrain,
        },
        "reference_window": settings.monitoring.reference_window,
        "sampling": {
            "max_rows": settings.monitoring.sample_rows,
            "seed": SEED,
            "reference": sample(result.reference),
            "current": sample(result.current),
        },
        "skipped_columns": [{"column": c, "reason": r} for c, r in result.skipped],
        "files": {"html": result.html_path.name, "json": result.json_path.name},
    }


def _date_of(frame: pd.DataFrame) -> pd.Timestamp:
    if "event_timestamp" in frame.columns and frame["event_timestamp"].notna().any():
        return pd.Timestamp(pd.to_datetime(frame["event_timestamp"], utc=True).max())
    return pd.Timestamp.now(tz="UTC").normalize()


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None
