"""Test data: a real, small ClvModel trained with XGBoost on a seeded synthetic frame."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xgboost as xgb

from clv.model.bundle import ClvModel, ModelCard
from clv.serving.routing import RoutingPlan

NUMERIC = [
    "frequency",
    "recency",
    "T",
    "monetary_value",
    "orders_90d",
    "sessions_30d",
    "avg_basket",
]
CHANNELS = ["organic", "paid", "referral"]
FEATURES = [*NUMERIC, "acquisition_channel"]
SNAPSHOT = pd.Timestamp("2024-06-01", tz="UTC")
DATA_END = pd.Timestamp("2024-09-01", tz="UTC")
"""Where the models' training data ends (their card's `data_end`)."""


@dataclass(frozen=True)
class Loaded:
    """Shaped like clv.registry.mlflow_io.LoadedModel."""

    model: ClvModel
    version: str
    alias: str
    run_id: str


def synthetic_features(n: int = 300, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frequency = rng.poisson(3.0, n).astype(float)
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{i:04d}" for i in range(n)],
            "event_timestamp": SNAPSHOT,
            "frequency": frequency,
            "recency": rng.uniform(0, 300, n),
            "T": rng.uniform(300, 400, n),
            "monetary_value": rng.gamma(2.0, 40.0, n),
            "orders_90d": rng.poisson(1.0, n).astype(float),
            "sessions_30d": rng.poisson(4.0, n).astype(float),
            "avg_basket": rng.gamma(2.0, 20.0, n),
            "acquisition_channel": rng.choice(CHANNELS, n),
        }
    )
    frame.loc[rng.choice(n, 20, replace=False), "sessions_30d"] = np.nan
    return frame


def _encode(frame: pd.DataFrame) -> np.ndarray:
    codes = {c: float(i) for i, c in enumerate(CHANNELS)}
    cols = [frame[c].to_numpy(np.float32) for c in NUMERIC]
    cols.append(frame["acquisition_channel"].map(codes).to_numpy(np.float32))
    return np.column_stack(cols)


def train_model(frame: pd.DataFrame, *, quantiles: bool = True, scale: float = 1.0) -> ClvModel:
    rng = np.random.default_rng(11)
    x = _encode(frame)
    n = len(frame)
    alive = 1.0 / (1.0 + np.exp((frame["T"] - frame["recency"] - 200.0).to_numpy() / 40.0))
    value = frame["frequency"].to_numpy() * frame["monetary_value"].to_numpy() * alive
    value = np.where(rng.uniform(size=n) < 0.2, 0.0, value * rng.gamma(5.0, 0.2, n)) * scale
    churned = (rng.uniform(size=n) > alive).astype(float)
    params = {"max_depth": 3, "eta": 0.3, "nthread": 1, "seed": 0}

    def fit(y: np.ndarray, **extra: object) -> xgb.Booster:
        d = xgb.DMatrix(x, label=y, feature_names=FEATURES)
        return xgb.train({**params, **extra}, d, num_boost_round=15)

    card = ModelCard(
        feature_service="clv_v1",
        feature_names=list(FEATURES),
        categories={"acquisition_channel": list(CHANNELS)},
        data_end=DATA_END.isoformat(),
    )
    qs = (
        {
            "clv_p10": fit(value, objective="reg:quantileerror", quantile_alpha=0.1),
            "clv_p90": fit(value, objective="reg:quantileerror", quantile_alpha=0.9),
        }
        if quantiles
        else None
    )
    return ClvModel(
        card,
        value=fit(value, objective="reg:tweedie", tweedie_variance_power=1.5),
        churn=fit(churned, objective="binary:logistic"),
        quantiles=qs,
    )


def online_rows(features: pd.DataFrame, ids: Sequence[str]) -> pd.DataFrame:
    """What clv.features.feast_io.online_features returns: one row per id; unknown ids all null."""
    known = features.set_index("customer_id")
    rows = known.reindex(list(ids))[FEATURES].reset_index()
    rows["feature_timestamp"] = known["event_timestamp"].reindex(list(ids)).to_numpy()
    return rows


@dataclass
class FakeRegistry:
    """A registry in memory: versions -> models and a routing plan (read only, as serving
    needs it)."""

    models: dict[str, ClvModel]
    plan_now: RoutingPlan
    loads: list[str] = field(default_factory=list)

    def plan(self) -> RoutingPlan:
        return self.plan_now

    def load(self, version: str, alias: str) -> Loaded:
        self.loads.append(version)
        return Loaded(self.models[version], version, alias, f"run-{version}")
