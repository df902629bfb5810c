"""Data quality of the current window against the reference: missing, new categories, range,
and non-finite values.

Pure checks over two frames; each issue is one sentence for the report and the policy (WARN).
Non-finite values are counted apart (`QualityReport.non_finite`): the policy fails on any.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


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
        values = pd.to_numeric(frame[c], errors="coerce").to_numpy(np.float64, na_value=np.nan)
        with np.errstate(over="ignore"):
            count = int(np.isinf(values.astype(np.float32)).sum())
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
        ref = pd.to_numeric(reference[c], errors="coerce").to_numpy(np.float64, na_value=np.nan)
        cur = pd.to_numeric(current[c], errors="coerce").to_numpy(np.float64, na_value=np.nan)
        finite_ref, finite_cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
        outside = 0.0
        if finite_ref.size and finite_cur.size:
            lo, hi = finite_ref.min(), finite_ref.max()
            outside = float(((finite_cur < lo) | (finite_cur > hi)).mean())
        q = ColumnQuality(c, _missing(ref), _missing(cur), out_of_range=outside)
        columns.append(q)
        if outside >= out_of_range_warn:
            issues.append(f"{outside:.1%} of {c} values lie outside the reference range")
        _missing_issue(q, missing_share_warn, issues)
    for c in categorical:
        ref_s, cur_s = reference[c].astype("string"), current[c].astype("string")
        known = set(ref_s.dropna().unique())
        new_mask = cur_s.notna() & ~cur_s.isin(known)
        new = tuple(sorted(str(v) for v in cur_s[new_mask].unique()))
        share = float(new_mask.mean()) if len(cur_s) else 0.0
        q = ColumnQuality(
            c,
            float(ref_s.isna().mean()) if len(ref_s) else 0.0,
            float(cur_s.isna().mean()) if len(cur_s) else 0.0,
            new_categories=new,
            new_category_share=share,
        )
        columns.append(q)
        if new:
            shown = ", ".join(new[:5]) + (" ..." if len(new) > 5 else "")
            issues.append(
                f"{c} has {len(new)} new categor{'y' if len(new) == 1 else 'ies'} "
                f"({shown}) on {share:.1%} of rows"
            )
        _missing_issue(q, missing_share_warn, issues)
    return QualityReport(tuple(columns), tuple(issues), non_finite_counts(current, finite))


def _missing(values: np.ndarray) -> float:
    return float(np.isnan(values).mean()) if values.size else 0.0


def _missing_issue(q: ColumnQuality, warn: float, issues: list[str]) -> None:
    rise = q.missing_current - q.missing_reference
    if rise >= warn:
        issues.append(
            f"{q.column} is missing on {q.missing_current:.1%} of rows "
            f"(reference {q.missing_reference:.1%})"
        )
