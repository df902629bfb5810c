"""Feature services: `clv_v1` is the one contract between training and serving."""

from __future__ import annotations

from feast import FeatureService

from feature_repo.features import behaviour, calendar, customer_profile, rfm, spend_windows

clv_v1 = FeatureService(
    name="clv_v1",
    features=[rfm, spend_windows, customer_profile, behaviour, calendar],
    description="Every clv feature: RFM, spend windows, profile, behaviour and calendar.",
)
