"""Data quality by the definition, one column at a time: what clv.monitoring.quality computed
before it was vectorised (a copy of each column's finite values, every category made a string
first). The tests pin the fast checks to it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def reference_quality(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numerical: Sequence[str],
    categorical: Sequence[str],
) -> dict[str, dict[str, object]]:
    """Per column: missing shares, out-of-range share, new categories and their share."""
    out: dict[str, dict[str, object]] = {}
    for c in numerical:
        ref = pd.to_numeric(reference[c], errors="coerce").to_numpy(np.float64, na_value=np.nan)
        cur = pd.to_numeric(current[c], errors="coerce").to_numpy(np.float64, na_value=np.nan)
        finite_ref, finite_cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
        outside = 0.0
        if finite_ref.size and finite_cur.size:
            lo, hi = finite_ref.min(), finite_ref.max()
            outside = float(((finite_cur < lo) | (finite_cur > hi)).mean())
        out[c] = {
            "missing_reference": float(np.isnan(ref).mean()) if ref.size else 0.0,
            "missing_current": float(np.isnan(cur).mean()) if cur.size else 0.0,
            "out_of_range": outside,
            "new_categories": (),
            "new_category_share": 0.0,
        }
    for c in categorical:
        ref_s, cur_s = reference[c].astype("string"), current[c].astype("string")
        known = set(ref_s.dropna().unique())
        new_mask = cur_s.notna() & ~cur_s.isin(known)
        out[c] = {
            "missing_reference": float(ref_s.isna().mean()) if len(ref_s) else 0.0,
            "missing_current": float(cur_s.isna().mean()) if len(cur_s) else 0.0,
            "out_of_range": 0.0,
            "new_categories": tuple(sorted(str(v) for v in cur_s[new_mask].unique())),
            "new_category_share": float(new_mask.mean()) if len(cur_s) else 0.0,
        }
    return out
