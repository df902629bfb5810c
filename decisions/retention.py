"""Retention within a budget: whom to make an offer this week, and how we will know it paid.

Candidates: the scored customers at risk (churn probability at or above the champion's churn
threshold, not cold starts), less those in a retention experiment assigned within
`decisions.retention_cooldown_days` (treated or held out: a held-out customer offered now would
spoil the earlier experiment's control).

Expected saved margin of an offer to customer i:
- with a save rate R: churn_i x R x clv_i (the share R of the value at risk is kept);
- with a measured experiment: u x clv_i, u its relative uplift (uplift over the control's mean
  outcome, `clv.decisions.experiments.relative_uplift`).
Net value = saved - offer cost. The selection takes the customers of positive net value, best
first, as many as the budget pays for once a random holdout (`decisions.retention_holdout`,
seeded by the selection's name) is set aside untreated: k = floor(budget / cost / (1 - h))
customers are chosen, h of them at random are the control, and the rest are treated. The
budget is also capped by `decisions.retention_max_spend` per `decisions.retention_period_days`
(spend of earlier selections in the period counted). The expected ROI is (saved - cost) / cost
over the treated.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True, eq=False)
class Selection:
    name: str
    chosen: pd.DataFrame
    """customer_id, clv, churn_probability, expected_saved, net, arm (treatment | control),
    best first."""
    budget: float
    offer_cost: float
    candidates: int
    excluded_recent: int

    @property
    def treated(self) -> pd.DataFrame:
        return self.chosen.loc[self.chosen["arm"] == "treatment"]

    @property
    def holdout(self) -> pd.DataFrame:
        return self.chosen.loc[self.chosen["arm"] == "control"]

    @property
    def expected_saved(self) -> float:
        return float(self.treated["expected_saved"].sum())

    @property
    def expected_cost(self) -> float:
        return self.offer_cost * len(self.treated)

    @property
    def expected_roi(self) -> float | None:
        cost = self.expected_cost
        return (self.expected_saved - cost) / cost if cost > 0 else None


def expected_saved(
    scores: pd.DataFrame, *, save_rate: float | None = None, uplift: float | None = None
) -> pd.Series:
    """Each customer's expected saved margin (see the module): exactly one of the two."""
    if (save_rate is None) == (uplift is None):
        raise ValueError("give a save rate or a measured uplift, not both")
    clv = scores["clv"].astype(float).clip(lower=0.0)
    if save_rate is not None:
        return scores["churn_probability"].astype(float) * save_rate * clv
    return float(uplift) * clv  # type: ignore[arg-type]


def _holdout_mask(ids: pd.Series, share: float, name: str) -> np.ndarray:
    """A random `share` of `ids` (round(share x n), at least one of two or more: a selection
    without a control could never be measured), seeded by the selection's name."""
    n = len(ids)
    k = max(round(share * n), 1 if n >= 2 else 0)
    seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
    picked = np.random.default_rng(seed).permutation(n)[:k]
    mask = np.zeros(n, dtype=bool)
    mask[picked] = True
    return mask


def select(
    scores: pd.DataFrame,
    *,
    name: str,
    budget: float,
    offer_cost: float,
    min_churn: float,
    holdout: float,
    save_rate: float | None = None,
    uplift: float | None = None,
    recent: set[str] | frozenset[str] = frozenset(),
) -> Selection:
    """The retention selection (see the module). `scores`: customer_id, clv, churn_probability,
    cold_start; `recent`: customers in a retention experiment within the cooldown."""
    if offer_cost <= 0:
        raise ValueError("the offer cost must be positive")
    at_risk = scores.loc[
        (scores["churn_probability"].astype(float) >= min_churn)
        & ~scores["cold_start"].astype(bool)
    ]
    fresh = at_risk.loc[~at_risk["customer_id"].astype(str).isin(recent)]
    saved = expected_saved(fresh, save_rate=save_rate, uplift=uplift)
    pool = fresh.assign(expected_saved=saved, net=saved - offer_cost)
    pool = pool.loc[pool["net"] > 0].sort_values(
        ["net", "customer_id"], ascending=[False, True], kind="stable"
    )
    affordable = math.floor(budget / offer_cost / (1.0 - holdout)) if budget > 0 else 0
    chosen = pool.head(affordable).reset_index(drop=True)
    control = _holdout_mask(chosen["customer_id"], holdout, name)
    while (~control).sum() * offer_cost > budget + 1e-9:  # rounding: never over budget
        chosen = chosen.iloc[:-1].reset_index(drop=True)
        control = _holdout_mask(chosen["customer_id"], holdout, name)
    chosen = chosen.assign(arm=np.where(control, "control", "treatment"))
    columns = ["customer_id", "clv", "churn_probability", "expected_saved", "net", "arm"]
    return Selection(
        name=name,
        chosen=chosen[columns],
        budget=budget,
        offer_cost=offer_cost,
        candidates=len(at_risk),
        excluded_recent=len(at_risk) - len(fresh),
    )


def realized_roi(uplift_per_customer: float, treated: int, offer_cost: float) -> float | None:
    """What a matured selection returned: (uplift x treated - cost) / cost."""
    cost = offer_cost * treated
    return (uplift_per_customer * treated - cost) / cost if cost > 0 else None
