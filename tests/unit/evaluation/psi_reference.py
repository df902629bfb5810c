"""PSI by the definition, one column at a time: what clv.evaluation.psi computed before it was
vectorised (a binary search per value into the reference's deciles, every category made a
string first). The tests pin the fast path to it."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from clv.evaluation.psi import N_BINS, ColumnKind, ColumnPsi, _result


def reference_psi(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numerical: list[str],
    categorical: list[str],
) -> tuple[ColumnPsi, ...]:
    out = [_numeric(c, reference[c], current[c]) for c in numerical]
    out += [_categorical(c, reference[c], current[c]) for c in categorical]
    return tuple(out)


def _floats(series: pd.Series) -> npt.NDArray[np.float64]:
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _counts(values: npt.NDArray[np.float64], edges: npt.NDArray[np.float64]) -> np.ndarray:
    finite = np.isfinite(values)
    idx = np.searchsorted(edges, values[finite], side="right")
    counts = np.bincount(idx, minlength=edges.size + 1)
    return np.append(counts, int((~finite).sum())).astype(np.int64)


def _numeric(column: str, reference: pd.Series, current: pd.Series) -> ColumnPsi:
    ref, cur = _floats(reference), _floats(current)
    finite = ref[np.isfinite(ref)]
    edges = (
        np.unique(np.quantile(finite, np.linspace(0.0, 1.0, N_BINS + 1)[1:-1]))
        if finite.size
        else np.empty(0)
    )
    bounds = [-np.inf, *edges.tolist(), np.inf]
    labels = [f"[{_fmt(bounds[i])}, {_fmt(bounds[i + 1])})" for i in range(edges.size + 1)]
    return _column(column, "numerical", _counts(ref, edges), _counts(cur, edges), labels)


def _categorical(column: str, reference: pd.Series, current: pd.Series) -> ColumnPsi:
    ref, cur = reference.astype("string"), current.astype("string")
    levels = sorted(set(ref.dropna().unique()) | set(cur.dropna().unique()))
    rvc, cvc = ref.value_counts(), cur.value_counts()
    rc = np.array([int(rvc.get(v, 0)) for v in levels] + [int(ref.isna().sum())])
    cc = np.array([int(cvc.get(v, 0)) for v in levels] + [int(cur.isna().sum())])
    return _column(column, "categorical", rc, cc, [str(v) for v in levels])


def _column(
    column: str, kind: ColumnKind, rc: np.ndarray, cc: np.ndarray, labels: list[str]
) -> ColumnPsi:
    """The shares and the result from the counts: that step is the module's own."""
    return _result(column, kind, rc, cc, [*labels, "missing"])


def _fmt(x: float) -> str:
    if not np.isfinite(x):
        return "-inf" if x < 0 else "inf"
    return f"{x:.4g}"
