"""Feature services: `clv_v1` is the one contract between training and serving.

`clv_profile` is a leaner contract without purchase history (profile and engagement only),
for a team that wants to see what the history buys: trained on it, a model ranks customers
worse than the naive rules, and the `baselines` gate refuses it (tests/e2e).
"""

from __future__ import annotations

from feast import FeatureService

from .features import behaviour, calendar, customer_profile, rfm, spend_windows

clv_v1 = FeatureService(
    name="clv_v1",
    features=[rfm, spend_windows, customer_profile, behaviour, calendar],
    description="Every clv feature: RFM, spend windows, profile, behaviour and calendar.",
)

clv_profile = FeatureService(
    name="clv_profile",
    features=[customer_profile, behaviour],
    description="Profile and engagement only: no purchase history.",
)
