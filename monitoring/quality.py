"""Data quality of the current window against the reference: missing, new categories, range,
and non-finite values; and each column's description on both sides (`ColumnStats`).

clv's own checks on every row, in a few vectorised passes per column (Evidently's report, on a
sample, holds the drift tests and per-column distributions: clv.monitoring.evidently_io).

Pure checks over two frames; each issue is one sentence for the report and the policy (WARN).
Non-finite values are counted apart (`QualityReport.non_finite`): the policy fails on any.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd

from clv.evaluation.psi import LevelCounts, floats, level_counts


@dataclass(frozen=True)
class ColumnStats:
    """One side's description of a column, on every row: numbers over the finite values (std
    with n - 1), categories by level."""

    rows: int
    missing: int
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    levels: int | None = None
    most_common: str | None = None
    most_common_share: float | None = None
    """Of the rows."""


@dataclass(frozen=True)
class ColumnQuality:
    column: str
    missing_reference: float
    missing_current: float
    new_categories: tuple[str, ...] = ()
    new_category_share: float = 0.0
    """Share of current rows holding a category the reference never had."""
    out_of_range: float = 0.0
    """Share of current non-missing values outside the reference's [min, max]."""
    reference: ColumnStats | None = None
    current: ColumnStats | None = None


@dataclass(frozen=True)
class QualityReport:
    columns: tuple[ColumnQuality, ...]
    issues: tuple[str, ...]
    non_finite: Mapping[str, int] = field(default_factory=dict)
    """Per column of the current window with any: its count of non-finite values."""


def non_finite_counts(frame: pd.DataFrame, columns: Sequence[str]) -> dict[str, int]:
    """Per numeric column with any, in order: values that are +inf or -inf as the model reads
    them (float32, so beyond +/-3.4e38 too). NaN is missing, judged by the missing share."""
    out: dict[str, int] = {}
    for c in columns:
        if c not in frame.columns or not _is_number(frame[c].dtype):
            continue
        with np.errstate(over="ignore"):
            count = int(np.isinf(floats(frame[c]).astype(np.float32)).sum())
        if count:
            out[c] = count
    return out


def _is_number(dtype: object) -> bool:
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def check_quality(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numerical: Sequence[str],
    categorical: Sequence[str],
    missing_share_warn: float,
    out_of_range_warn: float,
    finite: Sequence[str] = (),
) -> QualityReport:
    """Per-column quality and the issues crossing the thresholds (new categories always count);
    the current window's non-finite values in `finite` (`non_finite_counts`)."""
    columns: list[ColumnQuality] = []
    issues: list[str] = []
    for c in numerical:
        q = numeric_quality(c, floats(reference[c]), floats(current[c]))
        columns.append(q)
        if q.out_of_range >= out_of_range_warn:
            issues.append(f"{q.out_of_range:.1%} of {c} values lie outside the reference range")
        _missing_issue(q, missing_share_warn, issues)
    for c in categorical:
        q = categorical_quality(c, level_counts(reference[c]), level_counts(current[c]))
        columns.append(q)
        new = q.new_categories
        if new:
            shown = ", ".join(new[:5]) + (" ..." if len(new) > 5 else "")
            issues.append(
                f"{c} has {len(new)} new categor{'y' if len(new) == 1 else 'ies'} "
                f"({shown}) on {q.new_category_share:.1%} of rows"
            )
        _missing_issue(q, missing_share_warn, issues)
    return QualityReport(tuple(columns), tuple(issues), non_finite_counts(current, finite))


def numeric_quality(
    column: str, reference: npt.NDArray[np.float64], current: npt.NDArray[np.float64]
) -> ColumnQuality:
    """Both sides' statistics, their missing (NaN) shares, and the share of the current finite
    values outside the reference's finite [min, max], in a few passes that copy nothing."""
    ref, cur = numeric_stats(reference), numeric_stats(current)
    outside = 0.0
    cur_finite = int(np.count_nonzero(np.isfinite(current)))
    if ref.min is not None and ref.max is not None and cur_finite:
        # -inf is below and +inf above any finite bound: not finite, so not counted.
        below = np.count_nonzero(current < ref.min) - np.count_nonzero(current == -np.inf)
        above = np.count_nonzero(current > ref.max) - np.count_nonzero(current == np.inf)
        outside = int(below + above) / cur_finite
    return ColumnQuality(
        column,
        _missing(reference),
        _missing(current),
        out_of_range=outside,
        reference=ref,
        current=cur,
    )


def numeric_stats(values: npt.NDArray[np.float64]) -> ColumnStats:
    """Rows, NaN count, and min, max, mean and std of the finite values."""
    missing = int(np.count_nonzero(np.isnan(values)))
    lo, hi = _finite_range(values)
    if lo is None or hi is None:
        return ColumnStats(values.size, missing)
    finite = np.isfinite(values)
    x = values if missing == 0 and np.isfinite(lo + hi) and finite.all() else values[finite]
    std = float(x.std(ddof=1)) if x.size > 1 else None
    return ColumnStats(values.size, missing, min=lo, max=hi, mean=float(x.mean()), std=std)


def _finite_range(values: npt.NDArray[np.float64]) -> tuple[float | None, float | None]:
    """The finite values' min and max (None, None when there is none)."""
    if values.size == 0:
        return None, None
    lo, hi = np.fmin.reduce(values), np.fmax.reduce(values)  # NaN skipped, inf kept
    if not (np.isfinite(lo) and np.isfinite(hi)):
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return None, None
        lo, hi = finite.min(), finite.max()
    return float(lo), float(hi)


def categorical_quality(column: str, reference: LevelCounts, current: LevelCounts) -> ColumnQuality:
    """Both sides' levels, missing shares, and the current levels the reference never had
    with their row share."""
    new = tuple(sorted(v for v in current.levels if v not in reference.levels))
    n_ref, n_cur = reference.rows, current.rows
    return ColumnQuality(
        column,
        reference.missing / n_ref if n_ref else 0.0,
        current.missing / n_cur if n_cur else 0.0,
        new_categories=new,
        new_category_share=sum(current.levels[v] for v in new) / n_cur if n_cur else 0.0,
        reference=categorical_stats(reference),
        current=categorical_stats(current),
    )


def categorical_stats(counts: LevelCounts) -> ColumnStats:
    """Rows, missing rows, the number of levels and the most common one (ties: the first in
    sorted order)."""
    if not counts.levels:
        return ColumnStats(counts.rows, counts.missing, levels=0)
    top = min(counts.levels, key=lambda v: (-counts.levels[v], v))
    return ColumnStats(
        counts.rows,
        counts.missing,
        levels=len(counts.levels),
        most_common=top,
        most_common_share=counts.levels[top] / counts.rows,
    )


def _missing(values: np.ndarray) -> float:
    return int(np.count_nonzero(np.isnan(values))) / values.size if values.size else 0.0


def _missing_issue(q: ColumnQuality, warn: float, issues: list[str]) -> None:
    rise = q.missing_current - q.missing_reference
    if rise >= warn:
        issues.append(
            f"{q.column} is missing on {q.missing_current:.1%} of rows "
            f"(reference {q.missing_reference:.1%})"
        )
