"""Contractual expansion: the next-quarter MRR change of subscriptions that stay, from the
point-in-time features of training/survival.py, and the expected MRR path it gives the CLV.

Two XGBoost boosters on one row per (subscription active at a training origin o, still active
at o + 3 months): P(expansion) = P(MRR_{o+3} > MRR_o), a classifier, and the growth factor
E[MRR_{o+3} / MRR_o], a squared-error regression on the ratio (its conditional mean, so the
expected MRR is unbiased; a log-ratio model would need a retransformation). The CLV's MRR path
compounds the monthly factor g = factor^(1/3) for EXPANSION_HOLD_MONTHS, then holds:
choices and figures in docs/decisions/contractual-model.md (expansion section).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd
import xgboost as xgb

from clv.core.time import utc
from clv.evaluation.metrics import normalized_gini
from clv.features.subscription_features import subscription_features
from clv.model.subscription import EXPANSION_MONTHS, FEATURES, ExpansionModel
from clv.training.booster import BoosterParams
from clv.training.churn import churn_params

FloatArray = npt.NDArray[np.float64]

EXPANSION_ROUNDS = 200
EXPANSION_PARAMS: BoosterParams = {**churn_params(nthread=1, seed=0), "min_child_weight": 20.0}
"""P(expansion): the churn classifier's configuration, the hazard's larger leaf weight."""
GROWTH_PARAMS: BoosterParams = {
    **EXPANSION_PARAMS,
    "objective": "reg:squarederror",
    "eval_metric": "rmse",
    "base_score": 1.0,
}
"""E[MRR_{o+3} / MRR_o]: the same trees on the ratio, starting from no change."""
INPUTS: tuple[str, ...] = tuple(c for c in FEATURES if c != "plan_code")


def expansion_labels(start: pd.DataFrame, later: pd.DataFrame) -> pd.DataFrame:
    """The subscriptions of `start` (features at o) still in `later` (features at o + 3
    months, so active and paying then), with mrr_ratio = MRR then / MRR at o and expanded =
    ratio > 1; a zero MRR at o has no ratio and is left out."""
    both = start.index.intersection(later.index, sort=False)
    m0 = start.loc[both, "mrr"].to_numpy(dtype=np.float64)
    m3 = later.loc[both, "mrr"].to_numpy(dtype=np.float64)
    keep = m0 > 0
    ratio = m3[keep] / m0[keep]
    return pd.DataFrame(
        {"mrr_ratio": ratio, "expanded": (ratio > 1.0 + 1e-9).astype(np.int64)},
        index=both[keep],
    )


def expansion_rows(
    subscriptions: pd.DataFrame,
    changes: pd.DataFrame,
    events: pd.DataFrame,
    transactions: pd.DataFrame,
    *,
    origins: Sequence[pd.Timestamp],
    known_until: pd.Timestamp,
    months: int = EXPANSION_MONTHS,
) -> pd.DataFrame:
    """One row per survivor of each training origin: INPUTS, plan, mrr_ratio, expanded,
    origin. The embargo: o + `months` must be at or before `known_until`, so every label is
    read from rows before it (subscription_features at o + months)."""
    t = utc(known_until)
    ends = [utc(o) + pd.DateOffset(months=months) for o in origins]
    if any(e > t for e in ends):
        raise ValueError("every training origin + months must be at or before known_until")
    cache: dict[pd.Timestamp, pd.DataFrame] = {}

    def at(ts: pd.Timestamp) -> pd.DataFrame:
        if ts not in cache:
            cache[ts] = subscription_features(
                subscriptions, changes, events, as_of=ts, transactions=transactions
            )
        return cache[ts]

    frames = []
    for origin, end in zip(origins, ends, strict=True):
        feats = at(utc(origin))
        labels = expansion_labels(feats, at(end))
        rows = feats.loc[labels.index, [*INPUTS, "plan"]].join(labels)
        frames.append(rows.assign(origin=utc(origin)).reset_index(drop=True))
    return pd.concat(frames, ignore_index=True)


def fit_expansion(
    rows: pd.DataFrame, *, rounds: int = EXPANSION_ROUNDS, nthread: int = 2, seed: int = 0
) -> ExpansionModel:
    """P(expansion) on `expanded`, the growth factor on `mrr_ratio` (rows of expansion_rows)."""
    plans = tuple(sorted(rows["plan"].dropna().unique()))
    empty = ExpansionModel(xgb.Booster(), xgb.Booster(), plans, len(rows))
    dtrain = empty.matrix(rows)
    fitted = []
    for params, label in ((EXPANSION_PARAMS, "expanded"), (GROWTH_PARAMS, "mrr_ratio")):
        dtrain.set_label(rows[label].to_numpy(dtype=np.float64))
        run: BoosterParams = {**params, "nthread": nthread, "seed": seed}
        fitted.append(xgb.train(run, dtrain, num_boost_round=rounds))
    return ExpansionModel(fitted[0], fitted[1], plans, len(rows))


def expansion_gini(expanded: npt.ArrayLike, score: npt.ArrayLike) -> float:
    """Normalized Gini of a score against the realized expansion (1 perfect, 0 random)."""
    return normalized_gini(np.asarray(expanded, dtype=np.float64), score)
