"""Shared test data for the offset (BG/NBD + Gamma-Gamma) models: the published CDNOW
parameters (Fader, Hardie and Lee 2005) and a small random frame of RFM-like features."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clv.model.baseline import Baseline, BgNbdParams, GammaGammaParams
from clv.model.bundle import ModelCard

BASE = Baseline(
    BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426),
    GammaGammaParams(p=6.25, q=3.74, gamma=15.44),
    margin_ratio=0.3,
    fitted_rows=100,
)
NAMES = ["frequency", "recency", "T", "monetary_value", "tenure_days", "spend"]


def frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    T = rng.uniform(30, 700, n)
    return pd.DataFrame(
        {
            "frequency": rng.poisson(3, n).astype(float),
            "recency": T * rng.uniform(0, 1, n),
            "T": T,
            "monetary_value": rng.gamma(2, 20, n),
            "tenure_days": T + 5,
            "spend": rng.gamma(2, 50, n),
        }
    )


def card(kind: str = "tweedie") -> ModelCard:
    return ModelCard(
        feature_service="clv_v1",
        feature_names=NAMES,
        value_model=kind,
        value_offset={**BASE.as_dict(), "annual_discount_rate": 0.1},
    )
