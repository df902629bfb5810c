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

Evidence, clv's own on every row: PSI per column (clv.evaluation.psi), importance-weighted over
the models' key features; data quality and each column's description on both sides
(clv.monitoring.quality), with the non-finite values of every numeric column of the current
window (features and predictions, compared or not); the matured cohorts
(clv.monitoring.backtest), the value cohort with every simple baseline beside the champion
(clv.monitoring.baselines). Evidently's DataDriftPreset, on a seeded sample of at most
`monitoring.sample_rows` rows per side, adds its own drift test and the distributions of every
compared column (`evidently_config`); the verdict reads nothing from it.
The verdict is `clv.monitoring.policy.decide`. `clv.monitoring.run.evaluate` writes
`reports/<as-of>/`: index.html, data_drift.html (Evidently), data_drift.json, summary.json and
plots; updates reports/index.html.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from clv.core.errors import DataError
from clv.core.settings import MonitoringSettings, Settings
from clv.core.tags import CHURN_ECE, MODEL_GINI
from clv.evaluation.psi import ColumnPsi, column_psi
from clv.features.definitions import CALENDAR_FEATURES
from clv.monitoring.backtest import (
    ChurnBacktest,
    ValueBacktest,
)
from clv.monitoring.baselines import label
from clv.monitoring.evidently_io import DriftConfig
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
    """The share of drifted columns in the Evidently report (NaN until it has run)."""
    timings: Mapping[str, float] = field(default_factory=dict)
    """Seconds of the run's parts: "psi", "quality" (clv's own), "evidently" (its report, in
    its own process alongside the rest), "evidently_import" (of which importing it),
    "evidently_wait" (what the run waited for it after its own work)."""

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
        if _all_missing(reference[c]) or _all_missing(current[c]):
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


def _all_missing(series: pd.Series, *, chunk: int = 65_536) -> bool:
    """`series.isna().all()`, stopping at the first chunk with a value (a column that has any
    usually has one in its first rows; isna over a million strings costs tens of ms)."""
    values = series.to_numpy()
    return all(pd.isna(values[i : i + chunk]).all() for i in range(0, len(values), chunk))


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


@dataclass(frozen=True)
class Plan:
    """What one run compares: the columns by kind and, per model, its key features."""

    comparison: Comparison
    features_num: tuple[str, ...]
    features_cat: tuple[str, ...]
    predictions: tuple[str, ...]
    """The predictions and intervals compared (numerical)."""
    keys: Mapping[str, Mapping[str, float]]

    @property
    def key_union(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f for imp in self.keys.values() for f in imp))

    @property
    def compared(self) -> frozenset[str]:
        """Every column with a PSI."""
        return frozenset((*self.comparison.numerical, *self.features_cat))


def plan(settings: Settings, inputs: MonitorInputs) -> Plan:
    """The columns both windows are compared on and the key features among them."""
    comparison = comparable_columns(inputs.reference, inputs.current)
    if not comparison.numerical and not comparison.categorical:
        raise DataError("reference and current share no comparable columns")
    features_num = tuple(c for c in comparison.numerical if c not in (*PREDICTIONS, *INTERVALS))
    preds = tuple(c for c in comparison.numerical if c in (*PREDICTIONS, *INTERVALS))
    features = (*features_num, *comparison.categorical)
    compared = {*comparison.numerical, *comparison.categorical}
    importance = inputs.importance or {"features": dict.fromkeys(features, 1.0 / len(features))}
    top = settings.monitoring.key_features if inputs.importance else len(features)
    keys = key_features(
        {k: {f: v for f, v in imp.items() if f in compared} for k, imp in importance.items()},
        top=top,
    )
    return Plan(comparison, features_num, comparison.categorical, preds, keys)


def evidently_config(p: Plan, m: MonitoringSettings) -> DriftConfig:
    """The Evidently report of a run: the drift of every compared column, PSI on the key
    features and the predictions as clv judges them. Not Evidently's DataSummaryPreset: the
    columns' statistics are clv.monitoring.quality's, on every row, in a fraction of its time
    (benchmarks/monitoring.py measures both)."""
    return DriftConfig(
        numerical=(*p.features_num, *p.predictions),
        categorical=p.features_cat,
        drift_share=m.drift_share_retrain,
        psi_columns=(*p.key_union, *[c for c in PREDICTIONS if c in p.compared]),
        psi_threshold=m.psi_threshold,
    )


def evidently_samples(
    inputs: MonitorInputs, m: MonitoringSettings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The seeded samples of both windows the Evidently report compares."""
    return (
        subsample(inputs.reference, max_rows=m.sample_rows),
        subsample(inputs.current, max_rows=m.sample_rows, seed=SEED + 1),
    )


def report_dir(settings: Settings, as_of: pd.Timestamp) -> Path:
    """`reports/<as-of date>/`: one run's folder."""
    return settings.reports_dir / str(as_of.date())


def judge(settings: Settings, inputs: MonitorInputs, p: Plan) -> MonitorResult:
    """Judge one window: PSI and data quality on every row, the backtests, the verdict (no
    file is written; the Evidently share is the caller's, `clv.monitoring.run.evaluate`)."""
    import time

    started = time.perf_counter()
    m = settings.monitoring
    reference, current = inputs.reference, inputs.current
    psi = column_psi(
        reference, current, numerical=p.comparison.numerical, categorical=p.features_cat
    )
    psi_done = time.perf_counter()
    by_column = {c.column: c for c in psi}
    drifted = {c.column for c in psi if c.drifted(m.psi_threshold)}
    key_union = p.key_union
    quality = check_quality(
        reference,
        current,
        numerical=p.features_num,
        categorical=p.features_cat,
        missing_share_warn=m.missing_share_warn,
        out_of_range_warn=m.out_of_range_warn,
        finite=[c for c in current.columns if c not in NOT_COMPARED],
    )
    quality_done = time.perf_counter()
    quality_issues = tuple(
        i for i in quality.issues if any(i.startswith(f"{k} ") for k in key_union)
    )
    evidence = _evidence(
        inputs,
        m,
        keys=p.keys,
        drifted=drifted,
        by_column=by_column,
        quality_issues=quality_issues,
        non_finite=quality.non_finite,
    )
    decision = decide(evidence, thresholds=m, baseline_loss_warns=m.baseline_loss_warns)
    out_dir = report_dir(settings, inputs.as_of)
    used = m.sample_rows
    return MonitorResult(
        as_of=inputs.as_of,
        report_dir=out_dir,
        index_path=out_dir / INDEX_FILE,
        html_path=out_dir / HTML_FILE,
        json_path=out_dir / JSON_FILE,
        summary_path=out_dir / SUMMARY_FILE,
        verdict=decision.verdict,
        decision=decision,
        evidence=evidence,
        psi=psi,
        quality=quality,
        key_features=key_union,
        skipped=p.comparison.skipped,
        reference=Sample(len(reference), min(len(reference), used)),
        current=Sample(len(current), min(len(current), used)),
        model_version=inputs.model_version,
        seconds=time.perf_counter() - started,
        value_backtest=inputs.value,
        keys=p.keys,
        timings={"psi": psi_done - started, "quality": quality_done - psi_done},
    )


def _evidence(
    inputs: MonitorInputs,
    m: MonitoringSettings,
    *,
    keys: Mapping[str, Mapping[str, float]],
    drifted: set[str],
    by_column: Mapping[str, ColumnPsi],
    quality_issues: tuple[str, ...],
    non_finite: Mapping[str, int],
) -> Evidence:
    """What the policy weighs: drifted importance, prediction PSI, the judged backtests."""
    key_union = tuple(dict.fromkeys(f for imp in keys.values() for f in imp))
    churn, value = inputs.churn, inputs.value
    churn_judged = churn is not None and not churn.cohort.in_training
    value_judged = value is not None and not value.cohort.in_training
    # The baselines are judged like the champion's backtest: out of sample, enough rows.
    compared = (
        value.baselines
        if value is not None and value_judged and value.n >= m.min_backtest_rows
        else ()
    )
    return Evidence(
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
        non_finite=non_finite,
        in_sample=tuple(
            b.cohort.kind for b in (churn, value) if b is not None and b.cohort.in_training
        ),
    )


def _usable(value: float, n: int, minimum: int) -> float | None:
    return value if n >= minimum and math.isfinite(value) else None


def tag_value(tags: Mapping[str, str], key: str) -> float | None:
    """A version tag as a finite float, else None."""
    try:
        value = float(tags[key])
    except (KeyError, ValueError):
        return None
    return value if math.isfinite(value) else None
