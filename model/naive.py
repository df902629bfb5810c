"""The naive rules a user would write in an afternoon, scored beside the model everywhere.

Both read the customer's margin from the log strictly before the snapshot t
(clv.training.labels.past_margins) and discount like the labels, with the margin spread evenly
over the horizon H: the mean factor of (1 + r)^(-s / 365) over s in (0, H] days,
(1 - (1 + r)^(-H/365)) / (ln(1 + r) H / 365).

- `last_horizon`: the margin of [t - H, t), repeated over (t, t + H].
- `run_rate`: lifetime margin / days since the first transaction x H. The days are floored at
  RUN_RATE_MIN_DAYS so that a customer who bought yesterday is not extrapolated from one day
  (the floor is the rule as a user writes it, not a fitted constant).
Customers with no transaction before t get 0 from both.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pandas as pd

FloatArray = npt.NDArray[np.float64]
RUN_RATE_MIN_DAYS = 30.0
"""Shortest history the run-rate rule divides by (one month)."""
NAIVE_RULES = ("last_horizon", "run_rate")


def mean_discount(horizon_days: float, annual_discount_rate: float) -> float:
    """Mean discount factor over (0, H] days at an annual rate r (module docstring)."""
    growth = math.log1p(annual_discount_rate)
    years = horizon_days / 365.0
    if growth == 0.0 or years == 0.0:
        return 1.0
    return (1.0 - math.exp(-growth * years)) / (growth * years)


def naive_predictions(
    frame: pd.DataFrame, *, horizon_days: float, annual_discount_rate: float
) -> dict[str, FloatArray]:
    """Both rules' predictions per row of a frame carrying clv.training.labels.PAST_COLUMNS."""
    d = mean_discount(horizon_days, annual_discount_rate)
    recent = frame["past_margin_horizon"].to_numpy(dtype=np.float64)
    lifetime = frame["past_margin_lifetime"].to_numpy(dtype=np.float64)
    days = frame["past_days"].to_numpy(dtype=np.float64)
    span = np.maximum(np.nan_to_num(days, nan=RUN_RATE_MIN_DAYS), RUN_RATE_MIN_DAYS)
    return {
        "last_horizon": np.clip(np.nan_to_num(recent) * d, 0.0, None),
        "run_rate": np.clip(np.nan_to_num(lifetime) / span * horizon_days * d, 0.0, None),
    }
