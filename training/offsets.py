"""The boosters' offset: BG/NBD + Gamma-Gamma fitted on each snapshot (clv.model.baseline),
as a per-row log baseline and as the parameters a card freezes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from clv.core.settings import Settings
from clv.model.baseline import SnapshotBaselines, fit_snapshot_baselines
from clv.training.refit import BaselineOffset

if TYPE_CHECKING:
    from clv.training.dataset import TrainingData


def fit_offsets(data: TrainingData, *, margin_rate: float, seed: int) -> SnapshotBaselines | None:
    """The baseline fitted on each snapshot of the frame, each on that snapshot's features
    only (no labels, so a fit is the same whichever origin uses it); None when the feature
    service lacks the RFM columns."""
    from clv.model.baseline import OFFSET_COLUMNS

    if any(c not in data.feature_names for c in OFFSET_COLUMNS):
        return None
    return fit_snapshot_baselines(data.frame, margin_rate=margin_rate, seed=seed)


def offset_fn(settings: Settings, offsets: SnapshotBaselines | None) -> BaselineOffset | None:
    """Per row, the log baseline under the row's own snapshot's fit (the boosters' offset)."""
    if offsets is None:
        return None
    m = settings.model
    return BaselineOffset(
        offsets, horizon_days=m.horizon_days, annual_discount_rate=m.annual_discount_rate
    )


def offset_card(
    offsets: SnapshotBaselines | None, t: pd.Timestamp, settings: Settings
) -> dict[str, float] | None:
    """The card's `value_offset`: snapshot t's baseline parameters and the discount rate."""
    if offsets is None:
        return None
    return {
        **offsets.for_time(t).as_dict(),
        "annual_discount_rate": settings.model.annual_discount_rate,
    }
