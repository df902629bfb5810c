"""Evaluation metrics for the value and churn models, as typed results.

Value metrics compare predicted with realised CLV on one snapshot; churn metrics compare churn
probabilities with the realised churn label.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from training.calibration import expected_calibration_error

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ValueMetrics:
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

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class ChurnMetrics:
    """Discrimination and accuracy of churn probabilities."""

    roc_auc: float
    brier: float
    churn_rate: float
    n: int
    pr_auc: float = float("nan")
    """Average precision (the area under the precision-recall curve)."""
    ece: float = float("nan")
    """Expected calibration error over 10 equal-width bins (training.calibration)."""

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


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
    a, p = _pair(y, prob)
    both = a.size > 0 and 0 < a.sum() < a.size
    return ChurnMetrics(
        roc_auc=float(roc_auc_score(a, p)) if both else float("nan"),
        brier=float(brier_score_loss(a, p)) if a.size else float("nan"),
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


def _pair(y: npt.ArrayLike, pred: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    a = np.asarray(y, dtype=np.float64).ravel()
    b = np.asarray(pred, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"labels and predictions differ in length: {a.size} != {b.size}")
    return a, b
