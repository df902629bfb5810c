"""The one Evidently adapter (Evidently 0.7 API: `Report`, `Dataset`, `DataDefinition`).

The report is data first (`DriftConfig`), then an Evidently `Report` with `DataDriftPreset`
(features and predictions; PSI for the key features via `per_column_method`) and, when asked,
`DataSummaryPreset` (the data-quality statistics of both sides), run on reference vs current,
saved as HTML and JSON. Per-column drift is read back from the saved
JSON document: each `ValueDrift` metric carries the column's score, method and threshold, and
its test (status FAIL) says whether Evidently judged the column drifted. Evidently picks the
method per column from its size and type (K-S / chi-square or Z-test p-values up to 1000 rows,
normed Wasserstein / Jensen-Shannon distance above) unless `method` is set.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

ColumnKind = Literal["numerical", "categorical"]


@dataclass(frozen=True)
class DriftConfig:
    """What to compare and how: the report as data, before Evidently sees it."""

    numerical: tuple[str, ...]
    categorical: tuple[str, ...] = ()
    drift_share: float = 0.5
    """The share of drifted columns at which Evidently's own dataset-drift test fails."""
    method: str | None = None
    """One Evidently stat test for every column (e.g. "psi", "wasserstein"); None = per column."""
    threshold: float | None = None
    psi_columns: tuple[str, ...] = ()
    """Columns judged by PSI whatever their type (the key features)."""
    psi_threshold: float = 0.1
    summary: bool = False
    """Add Evidently's DataSummaryPreset (missing values, ranges, categories per column)."""

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.numerical, *self.categorical)


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: ColumnKind
    method: str
    threshold: float
    score: float
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    columns: tuple[ColumnDrift, ...]
    drifted_count: int
    drift_share: float
    html_path: Path
    json_path: Path

    @property
    def drifted(self) -> tuple[str, ...]:
        return tuple(c.column for c in self.columns if c.drifted)


def run_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    config: DriftConfig,
    html_path: Path,
    json_path: Path,
) -> DriftResult:
    """Run the data-drift report on reference vs current; save HTML and JSON; read it back."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset, DataSummaryPreset

    cols = list(config.columns)
    missing = [c for c in cols if c not in reference.columns or c not in current.columns]
    if missing:
        raise KeyError(f"columns missing from reference or current: {missing}")
    definition = DataDefinition(
        numerical_columns=list(config.numerical), categorical_columns=list(config.categorical)
    )
    psi = [c for c in config.psi_columns if c in cols]
    presets: list[DataDriftPreset | DataSummaryPreset] = [
        DataDriftPreset(
            columns=cols,
            drift_share=config.drift_share,
            method=config.method,
            threshold=config.threshold,
            per_column_method=dict.fromkeys(psi, "psi") or None,
            per_column_threshold=dict.fromkeys(psi, config.psi_threshold) or None,
        )
    ]
    if config.summary:
        presets.append(DataSummaryPreset(columns=cols))
    report = Report(presets, include_tests=True)
    snapshot = report.run(
        current_data=Dataset.from_pandas(_typed(current, config), data_definition=definition),
        reference_data=Dataset.from_pandas(_typed(reference, config), data_definition=definition),
    )
    html_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(html_path))
    snapshot.save_json(str(json_path))
    document = json.loads(json_path.read_text())
    columns, count, share = parse_drift(document, config=config)
    return DriftResult(
        columns=columns,
        drifted_count=count,
        drift_share=share,
        html_path=html_path,
        json_path=json_path,
    )


def parse_drift(
    document: Mapping[str, object], *, config: DriftConfig
) -> tuple[tuple[ColumnDrift, ...], int, float]:
    """Per-column drift and the drifted count/share from an Evidently 0.7 snapshot document."""
    metrics = _records(document.get("metrics"))
    tests = _records(document.get("tests"))
    failed = {
        str(_get(t, "metric_config", "metric_id"))
        for t in tests
        if t.get("status") == "FAIL" and t.get("id") == "drift"
    }
    tested = {str(_get(t, "metric_config", "metric_id")) for t in tests if t.get("id") == "drift"}
    kinds: dict[str, ColumnKind] = {c: "numerical" for c in config.numerical}
    kinds.update({c: "categorical" for c in config.categorical})
    columns: list[ColumnDrift] = []
    count: int | None = None
    share: float | None = None
    for m in metrics:
        cfg = m.get("config")
        kind = cfg.get("type") if isinstance(cfg, Mapping) else None
        if kind == "evidently:metric_v2:DriftedColumnsCount":
            value = m.get("value")
            if isinstance(value, Mapping):
                count = int(_number(value.get("count")))
                share = _number(value.get("share"))
        elif kind == "evidently:metric_v2:ValueDrift" and isinstance(cfg, Mapping):
            name = str(cfg.get("column"))
            method = str(cfg.get("method"))
            threshold = _number(cfg.get("threshold"))
            score = _number(m.get("value"))
            metric_id = str(m.get("id"))
            if metric_id in tested:
                drifted = metric_id in failed
            else:  # no test attached: p-values drift below, distances at or above
                drifted = score < threshold if "p_value" in method else score >= threshold
            columns.append(
                ColumnDrift(
                    column=name,
                    kind=kinds.get(name, "numerical"),
                    method=method,
                    threshold=threshold,
                    score=score,
                    drifted=drifted,
                )
            )
    n_drifted = sum(c.drifted for c in columns)
    if count is None or share is None:
        count = n_drifted
        share = n_drifted / len(columns) if columns else float("nan")
    return tuple(columns), count, share


def _typed(frame: pd.DataFrame, config: DriftConfig) -> pd.DataFrame:
    """Only the configured columns: numbers as float, categories as strings (missing kept).

    +inf and -inf are given as missing: Evidently's bins need a finite range (it raises
    otherwise), and clv.monitoring.quality counts them as a data-quality failure."""
    out = pd.DataFrame(index=frame.index)
    for c in config.numerical:
        values = pd.to_numeric(frame[c], errors="coerce").astype("float64")
        out[c] = values.where(~np.isinf(values))
    for c in config.categorical:
        out[c] = frame[c].astype("string").astype(object).where(frame[c].notna(), None)
    return out.reset_index(drop=True)


def _records(value: object) -> list[Mapping[str, object]]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        return []
    return [v for v in value if isinstance(v, Mapping)]


def _get(record: Mapping[str, object], *keys: str) -> object:
    cur: object = record
    for k in keys:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(k)
    return cur


def _number(value: object) -> float:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return float("nan")
    return float("nan")
