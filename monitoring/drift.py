"""`clv monitor run`: drift, data quality, calibration and matured-cohort backtest -> verdict.

Reference (`monitoring.reference_window`):
- "training_end" (default): every customer's features at the snapshot of the champion's
  training data end, rebuilt point-in-time from the feature store, with the champion's
  predictions: the newest population the champion was trained up to. The logged reference
  sample (`reference/reference.parquet`) holds only rows with a complete CLV label, at least
  one horizon older than the data end; against today it conflates a year of the customer base
  ageing (tenure, T, 365-day windows) with drift. The logged sample is the fallback when the
  feature store cannot rebuild that snapshot.
- "latest": the logged reference sample's latest snapshot; "all": all of it.
Current: every customer's features at `as_of` (default: the latest snapshot) + predictions.

Evidence: PSI per column on all rows (clv.evaluation.psi), importance-weighted over the models'
key features; data quality (clv.monitoring.quality), with the non-finite values of every numeric
column of the current window (features and predictions, compared or not); the matured cohorts
(clv.monitoring.backtest), the value cohort with every simple baseline beside the champion
(clv.monitoring.baselines); Evidently's report on a seeded sample of at most
`monitoring.sample_rows` rows per side.
The verdict is `clv.monitoring.policy.decide`. Writes `reports/<as-of>/`: index.html,
data_drift.html (Evidently), data_drift.json, summary.json and plots; updates reports/index.html.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from clv.core.errors import DataError
from clv.core.settings import Settings
from clv.core.tags import CHURN_ECE, MODEL_GINI
from clv.evaluation.psi import ColumnPsi, column_psi
from clv.features.definitions import CALENDAR_FEATURES
from clv.monitoring.backtest import (
    ChurnBacktest,
    ValueBacktest,
)
from clv.monitoring.baselines import label
from clv.monitoring.evidently_io import DriftConfig, run_drift
from clv.monitoring.policy import Decision, Evidence, Verdict, decide
from clv.monitoring.quality import QualityReport, check_quality
from clv.monitoring.report import INDEX_FILE, SUMMARY_FILE

SEED = 20240601
PREDICTIONS = ("clv", "churn_probability")
INTERVALS = ("clv_p10", "clv_p90")
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
        "clv_label",
        "churn_label",
        "clv_p50",
    }
)
HTML_FILE = "data_drift.html"
JSON_FILE = "data_drift.json"
Z99 = 2.576


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

    def as_dict(self) -> dict[str, object]:
        return {"rows_total": self.rows_total, "rows_used": self.rows_used, "sampled": self.sampled}

    @property
    def sampled(self) -> bool:
        return self.rows_used < self.rows_total


@dataclass(frozen=True)
class MonitorInputs:
    """What one monitoring run judges, gathered from the workspace (or given by a test)."""

    as_of: pd.Timestamp
    reference: pd.DataFrame
    current: pd.DataFrame
    reference_label: str = "the given reference frame"
    current_label: str = "the given current frame"
    importance: Mapping[str, Mapping[str, float]] | None = None
    """Per model ("value", "churn"): feature -> importance share; None = all features equal."""
    model_version: str | None = None
    model_tags: Mapping[str, str] = field(default_factory=dict)
    """The judged version's tags (eval.model.gini, eval.churn.ece, ...)."""
    churn: ChurnBacktest | None = None
    value: ValueBacktest | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class MonitorResult:
    as_of: pd.Timestamp
    report_dir: Path
    index_path: Path
    html_path: Path
    json_path: Path
    summary_path: Path
    verdict: Verdict
    decision: Decision
    evidence: Evidence
    psi: tuple[ColumnPsi, ...]
    quality: QualityReport
    key_features: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]
    reference: Sample
    current: Sample
    model_version: str | None
    seconds: float = 0.0
    value_backtest: ValueBacktest | None = None
    """The matured value cohort as scored (champion and baselines), judged or not."""
    keys: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    """Per model, its key features and their importance shares."""
    evidently_drift: float = float("nan")
    """The share of drifted columns in the Evidently report."""

    @property
    def reasons(self) -> tuple[str, ...]:
        return self.decision.reasons

    @property
    def drift_share(self) -> float:
        shares = [v for v in self.evidence.drift_share.values() if math.isfinite(v)]
        return max(shares) if shares else float("nan")

    @property
    def drifted(self) -> tuple[str, ...]:
        return self.evidence.drifted_key_features


def comparable_columns(
    reference: pd.DataFrame, current: pd.DataFrame, *, only: Sequence[str] | None = None
) -> Comparison:
    """Columns present on both sides (or `only` of them), split into numerical and categorical.

    Identifiers, timestamps, labels and serving metadata are never compared; a column that is
    entirely missing on either side is skipped with a reason instead of failing the report.
    """
    wanted = list(only) if only is not None else list(current.columns)
    numerical: list[str] = []
    categorical: list[str] = []
    skipped: list[tuple[str, str]] = []
    for c in wanted:
        if c in NOT_COMPARED:
            continue
        if c in CALENDAR_FEATURES:
            skipped.append((c, "calendar: one value per snapshot, which a later one never has"))
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
    """The logged reference rows to compare with: its latest snapshot, or all ("all")."""
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


def key_features(
    importance: Mapping[str, Mapping[str, float]], *, top: int
) -> dict[str, dict[str, float]]:
    """Per model, its `top` features by importance (zero-importance features never key)."""
    out: dict[str, dict[str, float]] = {}
    for model, imp in importance.items():
        ranked = sorted(((f, v) for f, v in imp.items() if v > 0), key=lambda kv: -kv[1])
        out[model] = dict(ranked[:top])
    return out


def drift_shares(keys: Mapping[str, Mapping[str, float]], drifted: set[str]) -> dict[str, float]:
    """Per model: the share of its key features' importance carried by drifted ones."""
    out: dict[str, float] = {}
    for model, imp in keys.items():
        total = sum(imp.values())
        out[model] = sum(v for f, v in imp.items() if f in drifted) / total if total else math.nan
    return out


def proportion_bound(n: int) -> float:
    """99% half-width of a share estimated from n sampled rows (worst case p = 0.5)."""
    return Z99 * 0.5 / math.sqrt(n) if n else float("inf")


def judge(settings: Settings, inputs: MonitorInputs) -> MonitorResult:
    """Judge one window; the Evidently report is written to its folder, the rest of the folder by
    clv.monitoring.run.evaluate (no registry or feature store access)."""
    import time

    started = time.perf_counter()
    m = settings.monitoring
    reference, current = inputs.reference, inputs.current
    comparison = comparable_columns(reference, current)
    if not comparison.numerical and not comparison.categorical:
        raise DataError("reference and current share no comparable columns")
    features_num = tuple(c for c in comparison.numerical if c not in (*PREDICTIONS, *INTERVALS))
    features_cat = comparison.categorical
    preds = tuple(c for c in comparison.numerical if c in (*PREDICTIONS, *INTERVALS))

    psi = column_psi(reference, current, numerical=comparison.numerical, categorical=features_cat)
    by_column = {p.column: p for p in psi}
    drifted = {p.column for p in psi if p.drifted(m.psi_threshold)}
    features = (*features_num, *features_cat)
    importance = inputs.importance or {"features": dict.fromkeys(features, 1.0 / len(features))}
    top = m.key_features if inputs.importance else len(features)
    keys = key_features(
        {k: {f: v for f, v in imp.items() if f in by_column} for k, imp in importance.items()},
        top=top,
    )
    key_union = tuple(dict.fromkeys(f for imp in keys.values() for f in imp))
    quality = check_quality(
        reference,
        current,
        numerical=features_num,
        categorical=features_cat,
        missing_share_warn=m.missing_share_warn,
        out_of_range_warn=m.out_of_range_warn,
        finite=[c for c in current.columns if c not in NOT_COMPARED],
    )
    quality_issues = tuple(
        i for i in quality.issues if any(i.startswith(f"{k} ") for k in key_union)
    )
    churn, value = inputs.churn, inputs.value
    churn_judged = churn is not None and not churn.cohort.in_training
    value_judged = value is not None and not value.cohort.in_training
    # The baselines are judged like the champion's backtest: out of sample, enough rows.
    compared = (
        value.baselines
        if value is not None and value_judged and value.n >= m.min_backtest_rows
        else ()
    )
    evidence = Evidence(
        drift_share=drift_shares(keys, drifted),
        drifted_key_features=tuple(f for f in key_union if f in drifted),
        prediction_psi={c: by_column[c].psi for c in PREDICTIONS if c in by_column},
        churn_ece=_usable(churn.ece, churn.n, m.min_backtest_rows)
        if churn is not None and churn_judged
        else None,
        churn_ece_test=tag_value(inputs.model_tags, CHURN_ECE),
        value_gini=_usable(value.gini, value.n, m.min_backtest_rows)
        if value is not None and value_judged
        else None,
        value_gini_test=tag_value(inputs.model_tags, MODEL_GINI),
        value_rmse=_usable(value.rmse, value.n, m.min_backtest_rows)
        if value is not None and value_judged
        else None,
        baseline_gini={label(b.predictor): b.gini for b in compared if b.reason is None},
        baseline_rmse={label(b.predictor): b.rmse for b in compared if b.reason is None},
        coverage=_usable(value.coverage, value.n, m.min_backtest_rows)
        if value is not None and value_judged
        else None,
        quality_issues=quality_issues,
        non_finite=quality.non_finite,
        in_sample=tuple(
            b.cohort.kind for b in (churn, value) if b is not None and b.cohort.in_training
        ),
    )
    decision = decide(evidence, thresholds=m, baseline_loss_warns=m.baseline_loss_warns)

    out_dir = settings.reports_dir / str(inputs.as_of.date())
    out_dir.mkdir(parents=True, exist_ok=True)
    ref_used = subsample(reference, max_rows=m.sample_rows)
    cur_used = subsample(current, max_rows=m.sample_rows, seed=SEED + 1)
    drift = run_drift(
        ref_used,
        cur_used,
        config=DriftConfig(
            numerical=(*features_num, *preds),
            categorical=features_cat,
            drift_share=m.drift_share_retrain,
            psi_columns=(*key_union, *[c for c in PREDICTIONS if c in by_column]),
            psi_threshold=m.psi_threshold,
            summary=True,
        ),
        html_path=out_dir / HTML_FILE,
        json_path=out_dir / JSON_FILE,
    )
    result = MonitorResult(
        as_of=inputs.as_of,
        report_dir=out_dir,
        index_path=out_dir / INDEX_FILE,
        html_path=drift.html_path,
        json_path=drift.json_path,
        summary_path=out_dir / SUMMARY_FILE,
        verdict=decision.verdict,
        decision=decision,
        evidence=evidence,
        psi=psi,
        quality=quality,
        key_features=key_union,
        skipped=comparison.skipped,
        reference=Sample(len(reference), len(ref_used)),
        current=Sample(len(current), len(cur_used)),
        model_version=inputs.model_version,
        seconds=time.perf_counter() - started,
        value_backtest=value,
        keys=keys,
        evidently_drift=drift.drift_share,
    )
    return result


def _usable(value: float, n: int, minimum: int) -> float | None:
    return value if n >= minimum and math.isfinite(value) else None


def tag_value(tags: Mapping[str, str], key: str) -> float | None:
    """A version tag as a finite float, else None."""
    try:
        value = float(tags[key])
    except (KeyError, ValueError):
        return None
    return value if math.isfinite(value) else None
