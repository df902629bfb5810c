"""Calibration of the discrete-time hazard (training/survival.py) on out-of-time rows.

The training origins in [T - m months, T), T the evaluation origin, are held out: a hazard is
fitted on the earlier origins with labels known until T - m (so it has seen none of the held-out
renewals: origin o's k-th row and origin o + 1 month's (k - 1)-th can be the same renewal), and
the held-out person-period rows, labels known until T (the embargo), choose and fit a calibration
of its margin: clv.evaluation.calibration.choose_calibration (raw / Platt / isotonic on
cross-fitted ECE). The hazard fitted on every origin, the same procedure m months later, is
served through that calibration; survival stays prod (1 - h) of calibrated hazards. Why and
measured on what: docs/decisions/contractual-model.md ("Renewal calibration").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from clv.core.time import utc
from clv.evaluation.calibration import CalibrationChoice, choose_calibration
from clv.training.survival import HAZARD_ROUNDS, fit_hazard, training_rows

CALIBRATION_MONTHS = 3
"""The held-out window before the evaluation origin (docs/decisions/contractual-model.md)."""


@dataclass(frozen=True, eq=False)
class CalibrationRows:
    """Person-period rows (training_rows') to fit the hazard on and to calibrate it on."""

    fit: pd.DataFrame
    """Origins before `cut`, labels known until `cut`."""
    held_out: pd.DataFrame
    """Origins in [cut, known_until), labels known until known_until."""
    cut: pd.Timestamp


def calibration_rows(
    subscriptions: pd.DataFrame,
    changes: pd.DataFrame,
    events: pd.DataFrame,
    transactions: pd.DataFrame,
    *,
    origins: Sequence[pd.Timestamp],
    known_until: pd.Timestamp,
    horizon_months: int,
    months: int = CALIBRATION_MONTHS,
) -> CalibrationRows:
    """The training origins split at cut = known_until - `months`, each side's labels as seen
    at its own end (training_rows refuses an origin at or after it: the embargo)."""
    t = utc(known_until)
    cut = t - pd.DateOffset(months=months)
    earlier = [utc(o) for o in origins if utc(o) < cut]
    held = [utc(o) for o in origins if utc(o) >= cut]
    if not earlier or not held:
        raise ValueError(f"no training origin on one side of the calibration cut {cut}")
    tables = (subscriptions, changes, events, transactions)
    return CalibrationRows(
        fit=training_rows(*tables, origins=earlier, known_until=cut, horizon_months=horizon_months),
        held_out=training_rows(*tables, origins=held, known_until=t, horizon_months=horizon_months),
        cut=cut,
    )


def calibrate_hazard(
    rows: CalibrationRows, *, rounds: int = HAZARD_ROUNDS, nthread: int = 2, seed: int = 0
) -> CalibrationChoice:
    """Raw, Platt or isotonic for the hazard's margin, chosen and fitted on the held-out rows'
    margins under a hazard fitted on `rows.fit` (fit_hazard's configuration)."""
    early, _ = fit_hazard(rows.fit, rounds=rounds, nthread=nthread, seed=seed)
    churned = rows.held_out["churned"].to_numpy(dtype=np.float64)
    return choose_calibration(early.margin(rows.held_out), churned, seed=seed)
