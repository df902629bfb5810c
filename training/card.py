"""The model card a fit serves (features, category levels, the anchor level) and the encoder
that turns a frame into its feature matrix."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from clv.core.settings import Settings
from clv.model.bundle import ClvModel, ModelCard, level_scale

if TYPE_CHECKING:
    from clv.training.dataset import TrainingData

EXCLUDED_FEATURES = ("signup_cohort",)
"""Calendar-time features the boosters do not use (an unseen newest cohort is a NaN level);
the column stays in the contract for the evaluation slices. Chosen on the old protocol: see
docs/decisions/modelling-constants.md."""


def card_for(settings: Settings, data: TrainingData, fitted_on: pd.DataFrame) -> ModelCard:
    """The model card; category levels are those seen in the rows the model is fitted on."""
    return ModelCard(
        feature_service=data.feature_service,
        feature_names=list(data.feature_names),
        categories={
            name: sorted(str(v) for v in fitted_on[name].dropna().astype("string").unique())
            for name in data.categorical
        },
        horizon_days=settings.model.horizon_days,
        churn_window_days=settings.model.churn_window_days,
        excluded_features=[n for n in EXCLUDED_FEATURES if n in data.feature_names],
    )


def encoder(card: ModelCard) -> ClvModel:
    """A ClvModel used only for `matrix` (feature order and category codes)."""
    import xgboost as xgb

    return ClvModel(replace(card, value_model="tweedie", value_offset=None), value=xgb.Booster())


def anchored(model: ClvModel, x: np.ndarray) -> ClvModel:
    """The model with `value_scale` set on one snapshot's feature rows (clv.model.bundle.
    level_scale: no labels are used, so the test snapshot's own rows are fair game) when its
    card's level is "anchor"; else the model as it is."""
    if model.card.value_level != "anchor":
        return model
    card = replace(model.card, value_scale=level_scale(model, x))
    return ClvModel(
        card,
        value=model.value,
        churn=model.churn,
        quantiles=model.quantiles,
        purchase=model.purchase,
    )
