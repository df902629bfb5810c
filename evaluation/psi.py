"""Population Stability Index per column, with the bound that sampling noise alone stays under.

PSI (Siddiqi 2006, ch. 8; Yurdakul 2018, eq. 1) of a current distribution c over reference
bins r_1..r_B:

    PSI = sum_i (c_i - r_i) ln(c_i / r_i)

Bins: numerical columns use the reference's deciles (edges deduplicated, so a count with few
values gets one bin per value); categorical columns one bin per level seen on either side;
missing values are one more bin on both kinds. Empty bins get a share of EPSILON (as Evidently
does) so that the logarithm stays finite.

PSI is the symmetric Kullback-Leibler (Jeffreys) divergence of the binned shares; with no
drift, n_r reference rows and n_c current rows, it is asymptotically (1/n_r + 1/n_c) times a
chi-square variable with B - 1 degrees of freedom (the G-test's law; Lin, Wu & Chen 2017).
`noise_bound` is that variable's 99th percentile: a PSI below it is indistinguishable from
sampling noise, and a sample size makes the bound explicit in the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

EPSILON = 1e-4
N_BINS = 10
NOISE_QUANTILE = 0.99
ColumnKind = Literal["numerical", "categorical"]
FloatArray = npt.NDArray[np.float64]
BinShares = tuple[float, ...]
"""Each bin's share of one side's rows, in the order of the bins' labels."""


@dataclass(frozen=True)
class ColumnPsi:
    """One column's PSI, its bins, and the sampling-noise bound for its sizes."""

    column: str
    kind: ColumnKind
    psi: float
    bins: int
    n_reference: int
    n_current: int
    noise_bound: float
    reference_shares: BinShares
    current_shares: BinShares
    labels: tuple[str, ...]

    def drifted(self, threshold: float) -> bool:
        """PSI at or above `threshold` and above what sampling noise alone explains."""
        return self.psi >= threshold and self.psi > self.noise_bound


def psi_from_shares(reference: npt.ArrayLike, current: npt.ArrayLike) -> float:
    """PSI of two share vectors over the same bins (empty bins floored at EPSILON)."""
    r = np.maximum(np.asarray(reference, dtype=np.float64), EPSILON)
    c = np.maximum(np.asarray(current, dtype=np.float64), EPSILON)
    return float(np.sum((c - r) * np.log(c / r)))


def noise_bound(bins: int, n_reference: int, n_current: int, *, q: float = NOISE_QUANTILE) -> float:
    """The q-quantile of PSI between two samples of one distribution (see the module docs)."""
    from scipy.stats import chi2

    if bins < 2 or n_reference == 0 or n_current == 0:
        return float("inf")
    return float(chi2.ppf(q, bins - 1) * (1.0 / n_reference + 1.0 / n_current))


def numeric_edges(reference: npt.ArrayLike, *, bins: int = N_BINS) -> FloatArray:
    """Inner bin edges: the reference's quantiles at 1/B .. (B-1)/B, deduplicated."""
    values = np.asarray(reference, dtype=np.float64)
    return _edges(values[np.isfinite(values)], bins)


def _edges(finite: FloatArray, bins: int) -> FloatArray:
    if finite.size == 0:
        return np.empty(0)
    return np.unique(np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)[1:-1]))


def floats(series: pd.Series) -> FloatArray:
    """A column as float64, unparseable and missing values as NaN (no copy for float64)."""
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def numeric_counts(values: FloatArray, edges: FloatArray) -> npt.NDArray[np.int64]:
    """Counts per bin: (-inf, e1), [e1, e2), ..., [eK, inf), then missing (NaN and +/-inf).

    One comparison pass per edge instead of a binary search per value: with G_k the finite
    values at or above e_k, bin 0 holds n_finite - G_1, bin k G_k - G_(k+1), bin K G_K; +inf
    compares above every edge and is taken back out of each G_k."""
    finite = int(np.count_nonzero(np.isfinite(values)))
    if edges.size == 0:
        return np.array([finite, values.size - finite], dtype=np.int64)
    pos_inf = int(np.count_nonzero(values == np.inf))
    at_or_above = np.array([np.count_nonzero(values >= e) for e in edges], dtype=np.int64)
    at_or_above -= pos_inf
    counts = np.empty(edges.size + 2, dtype=np.int64)
    counts[0] = finite - at_or_above[0]
    counts[1:-2] = at_or_above[:-1] - at_or_above[1:]
    counts[-2] = at_or_above[-1]
    counts[-1] = values.size - finite
    return counts


def numeric_psi(
    column: str, reference: pd.Series, current: pd.Series, *, bins: int = N_BINS
) -> ColumnPsi:
    ref, cur = floats(reference), floats(current)
    edges = _edges(ref[np.isfinite(ref)], bins)
    rc, cc = numeric_counts(ref, edges), numeric_counts(cur, edges)
    bounds = [-np.inf, *edges.tolist(), np.inf]
    labels = [f"[{_fmt(bounds[i])}, {_fmt(bounds[i + 1])})" for i in range(edges.size + 1)]
    return _result(column, "numerical", rc, cc, [*labels, "missing"])


@dataclass(frozen=True)
class LevelCounts:
    """One categorical column's rows per level (as strings) and its missing rows."""

    levels: Mapping[str, int]
    missing: int

    @property
    def rows(self) -> int:
        return sum(self.levels.values()) + self.missing


def level_counts(series: pd.Series) -> LevelCounts:
    """Rows per level of `series.astype("string")`, counted on the raw values first (one hash
    pass) and only the distinct values made strings. Raw values that compare equal but print
    differently (1, 1.0 and True in one object column) are made strings first."""
    if series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) not in (
        "string",
        "empty",
    ):
        series = series.astype("string")
    counts = series.value_counts(dropna=False, sort=False)
    counts = counts[counts.to_numpy() > 0]  # a categorical dtype lists unused categories
    keys = pd.Series(counts.index, dtype=series.dtype).astype("string")
    missing = keys.isna().to_numpy()
    levels: dict[str, int] = {}
    for key, n in zip(keys[~missing].tolist(), counts.to_numpy()[~missing].tolist(), strict=True):
        levels[key] = levels.get(key, 0) + int(n)
    return LevelCounts(levels, int(counts.to_numpy()[missing].sum()))


def categorical_psi(column: str, reference: pd.Series, current: pd.Series) -> ColumnPsi:
    ref, cur = level_counts(reference), level_counts(current)
    levels = sorted(set(ref.levels) | set(cur.levels))
    rc = np.array([ref.levels.get(v, 0) for v in levels] + [ref.missing], dtype=np.int64)
    cc = np.array([cur.levels.get(v, 0) for v in levels] + [cur.missing], dtype=np.int64)
    return _result(column, "categorical", rc, cc, [*levels, "missing"])


def column_psi(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numerical: Sequence[str],
    categorical: Sequence[str] = (),
    bins: int = N_BINS,
) -> tuple[ColumnPsi, ...]:
    """PSI of every listed column, numerical then categorical, in the given order."""
    out = [numeric_psi(c, reference[c], current[c], bins=bins) for c in numerical]
    out += [categorical_psi(c, reference[c], current[c]) for c in categorical]
    return tuple(out)


def _result(
    column: str,
    kind: ColumnKind,
    ref_counts: npt.NDArray[np.int64],
    cur_counts: npt.NDArray[np.int64],
    labels: list[str],
) -> ColumnPsi:
    used = (ref_counts + cur_counts) > 0  # bins empty on both sides do not exist
    rc, cc = ref_counts[used], cur_counts[used]
    nr, nc = int(rc.sum()), int(cc.sum())
    r = rc / nr if nr else np.zeros(rc.size)
    c = cc / nc if nc else np.zeros(cc.size)
    return ColumnPsi(
        column=column,
        kind=kind,
        psi=psi_from_shares(r, c) if nr and nc else float("nan"),
        bins=int(used.sum()),
        n_reference=nr,
        n_current=nc,
        noise_bound=noise_bound(int(used.sum()), nr, nc),
        reference_shares=tuple(float(x) for x in r),
        current_shares=tuple(float(x) for x in c),
        labels=tuple(lab for lab, u in zip(labels, used, strict=True) if u),
    )


def _fmt(x: float) -> str:
    if not np.isfinite(x):
        return "-inf" if x < 0 else "inf"
    return f"{x:.4g}"
