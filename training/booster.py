"""What every booster clv fits shares: the histogram bins and the parameters' type."""

from __future__ import annotations

MAX_BIN = 256
"""Histogram bins of every booster's quantized matrix (value, churn, quantiles, refits)."""

BoosterParams = dict[str, float | int | str]
