"""Data quality of the current window against the reference: missing, new categories, range.

Pure checks over two frames; each issue is one sentence for the report and the policy (WARN).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


def check_quality(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numerical: Sequence[str],
    categorical: Sequence[str],
    missing_share_warn: float,
    out_of_range_warn: float,
) -> QualityReport:
    """Per-column quality and the issues crossing the thresholds (new categories always count)."""
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
    return QualityReport(tuple(columns), tuple(issues))


def _missing(values: np.ndarray) -> float:
    return float(np.isnan(values).mean()) if values.size else 0.0


def _missing_issue(q: ColumnQuality, warn: float, issues: list[str]) -> None:
    rise = q.missing_current - q.missing_reference
    if rise >= warn:
        issues.append(
            f"{q.column} is missing on {q.missing_current:.1%} of rows "
            f"(reference {q.missing_reference:.1%})"
        )
