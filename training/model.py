"""The model bundle that training writes and serving loads: native XGBoost boosters plus a card.

A `ClvModel` turns a frame of `clv_v1` features into predictions. It owns the feature order and
the encoding of categorical features, so that training, batch scoring and online scoring build
the same matrix from the same features.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb

CARD_FILE = "model.json"
PREDICTION_COLUMNS = ("clv", "clv_p10", "clv_p90", "churn_probability")


@dataclass(frozen=True)
class ModelCard:
    """What a bundle needs besides its boosters, stored as JSON beside them."""

    feature_service: str
    feature_names: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)
    """Categorical features and their known levels; a level's code is its index."""
    horizon_days: int = 365
    churn_window_days: int = 90
    value_objective: str = "reg:tweedie"
    churn_calibration: dict[str, float] | None = None
    """Platt scaling of the churn margin, {"a": ..., "b": ...}, when it lowered the ECE."""
    excluded_features: list[str] = field(default_factory=list)
    """Features of the service the boosters do not use (their column is NaN in `matrix`):
    calendar-time features such as `signup_cohort`, whose newest levels no past snapshot has."""
    interval_adjustment: float = 0.0
    """Conformal widening Q of [P10, P90] (training.intervals): [max(P10 - Q, 0), P90 + Q]."""


class ClvModel:
    """Value, churn and interval boosters over one feature contract."""

    def __init__(
        self,
        card: ModelCard,
        *,
        value: xgb.Booster,
        churn: xgb.Booster | None = None,
        quantiles: dict[str, xgb.Booster] | None = None,
    ) -> None:
        self.card = card
        self.value = value
        self.churn = churn
        self.quantiles = dict(quantiles or {})
        for booster in self._boosters().values():
            booster.set_param({"nthread": 1})
        self._codes = {
            name: {level: float(i) for i, level in enumerate(levels)}
            for name, levels in card.categories.items()
        }

    @property
    def feature_names(self) -> list[str]:
        return list(self.card.feature_names)

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """Features in contract order as float32; unknown categories and missing values -> NaN."""
        missing = [c for c in self.card.feature_names if c not in frame.columns]
        if missing:
            raise KeyError(f"features missing from the frame: {missing}")
        cols = []
        excluded = set(self.card.excluded_features)
        for name in self.card.feature_names:
            col = frame[name]
            if name in excluded:
                cols.append(np.full(len(frame), np.nan, dtype=np.float32))
            elif name in self._codes:
                # Levels are stored as text: compare as text whatever the frame's dtype.
                codes = col.astype("string").map(self._codes[name])
                cols.append(codes.to_numpy(dtype=np.float32, na_value=np.nan))
            else:
                cols.append(
                    pd.to_numeric(col, errors="coerce").to_numpy(np.float32, na_value=np.nan)
                )
        if not cols:
            return np.empty((len(frame), 0), dtype=np.float32)
        return np.column_stack(cols).astype(np.float32, copy=False)

    def predict_matrix(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Predictions for a prepared matrix, keyed by PREDICTION_COLUMNS (plus `clv_p50`)."""
        n = x.shape[0]
        clv = np.asarray(self.value.inplace_predict(x), dtype=np.float64)
        out = {"clv": clv}
        for key in ("clv_p10", "clv_p50", "clv_p90"):
            booster = self.quantiles.get(key)
            out[key] = (
                np.asarray(booster.inplace_predict(x), dtype=np.float64)
                if booster is not None
                else np.full(n, np.nan)
            )
        if self.churn is not None:
            margin = np.asarray(
                self.churn.inplace_predict(x, predict_type="margin"), dtype=np.float64
            )
            cal = self.card.churn_calibration
            if cal is not None:
                margin = cal["a"] * margin + cal["b"]
            out["churn_probability"] = 1.0 / (1.0 + np.exp(-margin))
        else:
            out["churn_probability"] = np.full(n, np.nan)
        # Quantiles are fitted separately; keep the interval ordered and around the point.
        lo, hi = out["clv_p10"], out["clv_p90"]
        q = self.card.interval_adjustment
        if q:
            lo, hi = np.maximum(lo - q, 0.0), hi + q
        if not np.isnan(lo).all():
            out["clv_p10"] = np.minimum(lo, np.minimum(hi, clv))
            out["clv_p90"] = np.maximum(hi, np.maximum(lo, clv))
        return out

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Predictions for a frame of features, one row per input row, same index."""
        preds = self.predict_matrix(self.matrix(frame))
        return pd.DataFrame(preds, index=frame.index, columns=list(PREDICTION_COLUMNS))

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per-feature SHAP contributions to the value prediction (XGBoost's own TreeSHAP)."""
        dm = xgb.DMatrix(self.matrix(frame), feature_names=self.card.feature_names)
        contrib = self.value.predict(dm, pred_contribs=True)
        return pd.DataFrame(contrib, index=frame.index, columns=[*self.card.feature_names, "bias"])

    def _boosters(self) -> dict[str, xgb.Booster]:
        boosters = {"value": self.value, **self.quantiles}
        if self.churn is not None:
            boosters["churn"] = self.churn
        return boosters

    def save(self, directory: Path) -> Path:
        """Write the boosters in XGBoost's native UBJSON format and the card as JSON."""
        directory.mkdir(parents=True, exist_ok=True)
        for name, booster in self._boosters().items():
            booster.save_model(directory / f"{name}.ubj")
        (directory / CARD_FILE).write_text(json.dumps(asdict(self.card), indent=2))
        return directory

    @classmethod
    def load(cls, directory: Path) -> ClvModel:
        card = ModelCard(**json.loads((directory / CARD_FILE).read_text()))

        def booster(name: str) -> xgb.Booster | None:
            path = directory / f"{name}.ubj"
            if not path.exists():
                return None
            b = xgb.Booster()
            b.load_model(path)
            return b

        value = booster("value")
        if value is None:
            raise FileNotFoundError(f"no value.ubj in {directory}")
        quantiles = {
            k: b for k in ("clv_p10", "clv_p50", "clv_p90") if (b := booster(k)) is not None
        }
        return cls(card, value=value, churn=booster("churn"), quantiles=quantiles)
