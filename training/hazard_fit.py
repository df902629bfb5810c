"""The served retention hazard: boosted from the sBG, its rounds chosen out of time.

1. The sBG per billing kind is fitted on the lifetimes known at the fit's origin T; the
   booster starts from the logit of its hazard for each person-period row (HazardModel.sbg),
   so the trees learn a correction to the sBG, as the value model boosts from BG/NBD.
2. The number of rounds is chosen on a time split of the training origins
   (training/survival_calibration.calibration_rows: origins before T - SPLIT_MONTHS with
   labels known then, and the later origins with labels known at T; the sBG of both sides the
   one known at the cut): the round of the lowest held-out logloss, at most MAX_ROUNDS.
3. The booster is refitted on every origin with that many rounds.

Chosen on SAAS_DEVELOPMENT only (docs/decisions/contractual-model.md, "sBG offset"): the
offset with the rounds so chosen put the IBS below both baselines on 4 of 4 development worlds
(2 of 4 before) and raised the c-index on all four; the held-out logloss bottomed out after 24
to 58 rounds on every world, so the 300 fixed rounds had overfitted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from clv.core.time import utc
from clv.model.subscription import HazardModel
from clv.training.survival import fit_hazard, fit_sbg_by_period, lifetimes, training_rows
from clv.training.survival_calibration import calibration_rows

SPLIT_MONTHS = 3
MAX_ROUNDS = 600
FALLBACK_ROUNDS = 40
"""Rounds when the origins do not span a split (the development worlds chose 24 to 58)."""


@dataclass(frozen=True)
class RoundsChoice:
    """How many rounds the served hazard has, and why."""

    rounds: int
    held_out_logloss: float | None
    reason: str


def fit_served_hazard(
    subscriptions: pd.DataFrame,
    changes: pd.DataFrame,
    events: pd.DataFrame,
    transactions: pd.DataFrame,
    *,
    origins: Sequence[pd.Timestamp],
    known_until: pd.Timestamp,
    horizon_months: int,
    nthread: int = 2,
    seed: int = 0,
    rows: pd.DataFrame | None = None,
) -> tuple[HazardModel, RoundsChoice]:
    """The hazard of the module docstring, fitted on `origins` with labels known at
    `known_until`, to forecast from `known_until` (`rows`: their training_rows, if made)."""
    t = utc(known_until)
    tables = (subscriptions, changes, events, transactions)
    if rows is None:
        rows = training_rows(*tables, origins=origins, known_until=t, horizon_months=horizon_months)
    sbg = fit_sbg_by_period(lifetimes(subscriptions, transactions, known_until=t))
    try:
        split = calibration_rows(
            *tables,
            origins=origins,
            known_until=t,
            horizon_months=horizon_months,
            months=SPLIT_MONTHS,
        )
    except ValueError as exc:
        choice = RoundsChoice(FALLBACK_ROUNDS, None, f"{exc}: {FALLBACK_ROUNDS} rounds")
    else:
        sbg_cut = fit_sbg_by_period(lifetimes(subscriptions, transactions, known_until=split.cut))
        _early, curve = fit_hazard(
            split.fit,
            rounds=MAX_ROUNDS,
            nthread=nthread,
            seed=seed,
            sbg=sbg_cut,
            valid=(split.held_out, sbg_cut),
        )
        best = int(np.argmin(curve))
        choice = RoundsChoice(
            best + 1,
            float(curve[best]),
            f"lowest logloss on the origins after {split.cut.date()} "
            f"({len(split.held_out):,} held-out rows)",
        )
    model, _ = fit_hazard(rows, rounds=choice.rounds, nthread=nthread, seed=seed, sbg=sbg)
    return model, choice
