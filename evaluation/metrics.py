"""Evaluation metrics for the value and churn models, as typed results.

Value metrics compare predicted with realised CLV on one snapshot; churn metrics compare churn
probabilities with the realised churn label; `paired_bootstrap` says how much of the difference
between two models on the same rows is noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.stats import spearmanr

from clv.core.records import FloatRecord
from clv.evaluation.calibration import expected_calibration_error

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ValueMetrics(FloatRecord):
    """How well predicted CLV matches the realised label."""

    rmse: float
    mae: float
    spearman: float
    gini: float
    """Normalized Gini: Gini(label, prediction) / Gini(label, label); 1 = perfect ranking."""
    top_decile_share: float
    """Share of the total realised value held by the 10% of rows ranked highest by prediction."""
    bias_pct: float
    """(sum of predictions - sum of labels) / sum of labels, in percent."""
    n: int


@dataclass(frozen=True)
class ChurnMetrics(FloatRecord):
    """Discrimination and accuracy of churn probabilities."""

    roc_auc: float
    brier: float
    churn_rate: float
    n: int
    pr_auc: float = float("nan")
    """Average precision (the area under the precision-recall curve)."""
    ece: float = float("nan")
    """Expected calibration error over 10 equal-width bins (clv.evaluation.calibration)."""


def rmse(y: npt.ArrayLike, pred: npt.ArrayLike) -> float:
    a, b = _pair(y, pred)
    return float(np.sqrt(np.mean((a - b) ** 2))) if a.size else float("nan")


def mae(y: npt.ArrayLike, pred: npt.ArrayLike) -> float:
    a, b = _pair(y, pred)
    return float(np.mean(np.abs(a - b))) if a.size else float("nan")


def gini(y: npt.ArrayLike, pred: npt.ArrayLike) -> float:
    """Gini of the cumulative-value (Lorenz) curve of `y` ordered by `pred` descending.

    The Kaggle insurance formulation: with rows sorted by prediction (ties kept in input
    order), G = sum_i (L_i - i/n) / n, L_i the cumulative share of the label.
    """
    a, b = _pair(y, pred)
    n = a.size
    total = a.sum()
    if n == 0 or total == 0:
        return float("nan")
    order = np.argsort(-b, kind="stable")
    lorenz = np.cumsum(a[order]) / total
    expected = np.arange(1, n + 1) / n
    return float(np.sum(lorenz - expected) / n)


def normalized_gini(y: npt.ArrayLike, pred: npt.ArrayLike) -> float:
    """Gini(y, pred) / Gini(y, y): 1 for a perfect ranking, about 0 for a random one."""
    best = gini(y, y)
    if not np.isfinite(best) or best == 0:
        return float("nan")
    return gini(y, pred) / best


def top_decile_share(y: npt.ArrayLike, pred: npt.ArrayLike, *, share: float = 0.1) -> float:
    """Fraction of the total label held by the top `share` of rows ranked by prediction."""
    a, b = _pair(y, pred)
    total = a.sum()
    if a.size == 0 or total == 0:
        return float("nan")
    k = max(1, int(np.ceil(share * a.size)))
    top = np.argsort(-b, kind="stable")[:k]
    return float(a[top].sum() / total)


def bias_pct(y: npt.ArrayLike, pred: npt.ArrayLike) -> float:
    a, b = _pair(y, pred)
    total = a.sum()
    return float(100.0 * (b.sum() - total) / total) if total != 0 else float("nan")


def value_metrics(y: npt.ArrayLike, pred: npt.ArrayLike) -> ValueMetrics:
    a, b = _pair(y, pred)
    rho = float(spearmanr(a, b).statistic) if a.size > 1 else float("nan")
    return ValueMetrics(
        rmse=rmse(a, b),
        mae=mae(a, b),
        spearman=rho,
        gini=normalized_gini(a, b),
        top_decile_share=top_decile_share(a, b),
        bias_pct=bias_pct(a, b),
        n=int(a.size),
    )


def churn_metrics(y: npt.ArrayLike, prob: npt.ArrayLike) -> ChurnMetrics:
    from sklearn.metrics import average_precision_score, roc_auc_score  # ~1 s to import

    a, p = _pair(y, prob)
    both = a.size > 0 and 0 < a.sum() < a.size
    return ChurnMetrics(
        roc_auc=float(roc_auc_score(a, p)) if both else float("nan"),
        brier=float(np.mean((p - a) ** 2)) if a.size else float("nan"),
        churn_rate=float(a.mean()) if a.size else float("nan"),
        n=int(a.size),
        pr_auc=float(average_precision_score(a, p)) if both else float("nan"),
        ece=expected_calibration_error(a, p) if a.size else float("nan"),
    )


def decile_table(y: npt.ArrayLike, pred: npt.ArrayLike, *, groups: int = 10) -> pd.DataFrame:
    """Rows ranked by prediction into `groups` equal-count groups (1 = highest predicted):
    count, mean predicted and mean actual per group (ties broken by input order)."""
    a, b = _pair(y, pred)
    order = np.argsort(-b, kind="stable")
    group = np.empty(a.size, dtype=np.int64)
    group[order] = np.arange(a.size) * groups // max(a.size, 1) + 1
    frame = pd.DataFrame({"decile": group, "predicted": b, "actual": a})
    table = frame.groupby("decile").agg(
        n=("actual", "size"), mean_predicted=("predicted", "mean"), mean_actual=("actual", "mean")
    )
    return table.reset_index()


@dataclass(frozen=True)
class PairedBootstrap:
    """a - b in normalized Gini and RMSE on the same rows, each with its CI at `level`."""

    gini: Difference
    rmse: Difference
    samples: int
    level: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        """Flat: `gini_diff`, `gini_diff_low`, `gini_diff_high`, the same for `rmse`, and
        `bootstrap_samples`, `bootstrap_level` (training's `eval.champion.*` tag names)."""
        g, r = self.gini, self.rmse
        return {
            "gini_diff": g.diff,
            "gini_diff_low": g.low,
            "gini_diff_high": g.high,
            "rmse_diff": r.diff,
            "rmse_diff_low": r.low,
            "rmse_diff_high": r.high,
            "bootstrap_samples": self.samples,
            "bootstrap_level": self.level,
        }


@dataclass(frozen=True)
class Difference:
    """Model a minus model b on one metric: observed on the rows, and a bootstrap percentile CI."""

    diff: float
    low: float
    high: float


BOOTSTRAP_CELLS = 2**19
"""Resamples x rows scored at once: 4 MB per array of floats (measured: smaller is no faster)."""


def paired_bootstrap(
    y: npt.ArrayLike,
    pred_a: npt.ArrayLike,
    pred_b: npt.ArrayLike,
    *,
    samples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedBootstrap:
    """Paired percentile bootstrap of a - b (Efron & Tibshirani 1993, ch. 13): every resample
    draws the rows with replacement, the same rows for both models, and recomputes both metrics.

    A resample is held as its row multiplicities, so each model's rows are sorted once and a
    resample's normalized Gini (`_resampled_gini`) equals `normalized_gini` of the resampled
    rows without sorting them again; RMSE is a product with the squared errors. Deterministic per
    `seed`, whatever the block size (BOOTSTRAP_CELLS).
    """
    t, a = _pair(y, pred_a)
    _, b = _pair(t, pred_b)
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    n = t.size
    if n == 0:
        raise ValueError("no rows to resample")
    rng = np.random.default_rng(seed)
    orders = [np.argsort(-v, kind="stable") for v in (t, a, b)]  # by label: Gini(y, y)
    columns = np.column_stack([t, (t - a) ** 2, (t - b) ** 2])
    gini_diffs, rmse_diffs = np.empty(samples), np.empty(samples)
    chunk = max(1, BOOTSTRAP_CELLS // n)
    for start in range(0, samples, chunk):
        stop = min(start + chunk, samples)
        rows = rng.integers(0, n, size=(stop - start, n)) + (np.arange(stop - start) * n)[:, None]
        counts = np.bincount(rows.ravel(), minlength=rows.size).reshape(rows.shape)
        weights = counts.astype(np.float64)
        total, sse_a, sse_b = np.einsum("ij,jk->ki", weights, columns)
        repeated = np.einsum("ij,ij,j->i", weights, weights, t)
        if n * int(counts.max()) < 2**31:  # S_i w_i <= n max(w): int32 is exact, and faster
            counts = counts.astype(np.int32)
        best, gini_a, gini_b = (
            _resampled_gini(counts[:, o], t[o], total=total, repeated=repeated) for o in orders
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            gini_diffs[start:stop] = (gini_a - gini_b) / best
        rmse_diffs[start:stop] = np.sqrt(sse_a / n) - np.sqrt(sse_b / n)
    observed = (normalized_gini(t, a) - normalized_gini(t, b), rmse(t, a) - rmse(t, b))
    gini_ci, rmse_ci = (_percentile_ci(d, level) for d in (gini_diffs, rmse_diffs))
    return PairedBootstrap(
        gini=Difference(observed[0], *gini_ci),
        rmse=Difference(observed[1], *rmse_ci),
        samples=samples,
        level=level,
        n=n,
    )


def _resampled_gini(
    counts: npt.NDArray[np.integer], y: FloatArray, *, total: FloatArray, repeated: FloatArray
) -> FloatArray:
    """`gini` of each resample, its multiplicities `counts` (one row per resample) given in the
    order of the ranking and `y` in that order; `total` = sum w y, `repeated` = sum w^2 y.

    Expanded, row i fills w_i places after S_(i-1) = w_1 + ... + w_(i-1), and with m places
    sum_k L_k = ((m + 1/2) T - sum_i w_i y_i S_i + 1/2 sum_i w_i^2 y_i) / T, T = sum_i w_i y_i;
    then G = (sum_k L_k - (m + 1) / 2) / m, as in `gini`.
    """
    m = counts.shape[1]  # n draws per resample
    reach = np.cumsum(counts, axis=1, dtype=counts.dtype)  # S_i
    reach *= counts  # S_i w_i
    with np.errstate(invalid="ignore", divide="ignore"):
        lorenz = ((m + 0.5) * total - np.einsum("ij,j->i", reach, y) + 0.5 * repeated) / total
    return np.asarray((lorenz - (m + 1) / 2) / m, dtype=np.float64)


def _percentile_ci(diffs: FloatArray, level: float) -> tuple[float, float]:
    """The central `level` interval of the finite differences (NaN: a resample of zero value)."""
    finite = diffs[np.isfinite(diffs)]
    if finite.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return float(low), float(high)


def _pair(y: npt.ArrayLike, pred: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    a = np.asarray(y, dtype=np.float64).ravel()
    b = np.asarray(pred, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"labels and predictions differ in length: {a.size} != {b.size}")
    return a, b
