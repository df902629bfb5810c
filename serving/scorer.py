"""The one scoring code path shared by `/score` and `clv score --all`.

`score_features(champion, features)` turns a frame of `clv_v1` features into CLV, interval,
churn probability, segment and a cold-start flag. Online and batch scoring both call it, so
the numbers they produce for the same feature rows are identical (a tested property).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeAlias

import numpy as np
import pandas as pd
import xgboost as xgb

from clv.errors import NotReadyError
from clv.settings import ServingSettings, Settings
from serving.segments import segment, tercile_thresholds
from training.model import PREDICTION_COLUMNS, ClvModel

SCORE_COLUMNS = ("customer_id", *PREDICTION_COLUMNS, "segment", "cold_start")


class LoadedModelLike(Protocol):
    """What serving needs from `registry.mlflow_io.LoadedModel` (structural, not imported)."""

    @property
    def model(self) -> ClvModel: ...
    @property
    def version(self) -> str: ...
    @property
    def alias(self) -> str: ...
    @property
    def run_id(self) -> str: ...


ModelSource: TypeAlias = Callable[[], LoadedModelLike]
ReferenceSource: TypeAlias = Callable[[str], pd.DataFrame]


@dataclass(frozen=True)
class Champion:
    """A loaded model plus everything needed to turn its predictions into segments."""

    model: ClvModel
    version: str
    alias: str
    run_id: str
    value_thresholds: tuple[float, float]
    churn_threshold: float
    thresholds_source: str
    """"config" or "reference terciles"."""


@dataclass(frozen=True)
class Contribution:
    feature: str
    value: float | str | None
    """The feature as the store returned it (a category stays a string)."""
    contribution: float


@dataclass(frozen=True)
class Explanation:
    """Value-model contributions in margin (log-CLV) space: bias + top + other = margin."""

    bias: float
    top: tuple[Contribution, ...]
    other: float
    margin: float


def load_champion(
    loaded: LoadedModelLike,
    *,
    serving: ServingSettings,
    reference_source: Callable[[str], pd.DataFrame] | None,
) -> Champion:
    """Bind a loaded model to its segment thresholds (config, else reference terciles)."""
    if serving.value_thresholds is not None:
        thresholds = (float(serving.value_thresholds[0]), float(serving.value_thresholds[1]))
        source = "config"
    else:
        if reference_source is None:
            raise NotReadyError("no value thresholds: set serving.value_thresholds in clv.yaml")
        reference = reference_source(loaded.run_id)
        if "clv" in reference.columns:
            clv = reference["clv"]
        else:
            clv = loaded.model.predict(reference)["clv"]
        try:
            thresholds = tercile_thresholds(clv.to_numpy(dtype=np.float64, na_value=np.nan))
        except ValueError as exc:
            raise NotReadyError(
                f"run {loaded.run_id} has an empty reference sample; "
                "set serving.value_thresholds in clv.yaml"
            ) from exc
        source = "reference terciles"
    return Champion(
        model=loaded.model,
        version=str(loaded.version),
        alias=str(loaded.alias),
        run_id=str(loaded.run_id),
        value_thresholds=thresholds,
        churn_threshold=serving.churn_threshold,
        thresholds_source=source,
    )


def score_matrix(champion: Champion, x: np.ndarray) -> dict[str, np.ndarray]:
    """Predictions, segment and cold-start flag for a prepared feature matrix."""
    preds = champion.model.predict_matrix(x)
    preds["segment"] = segment(
        preds["clv"],
        preds["churn_probability"],
        value_thresholds=champion.value_thresholds,
        churn_threshold=champion.churn_threshold,
    )
    # A customer the feature store does not know has every feature missing; XGBoost still
    # scores that row (its default branches), which is the cold-start prior.
    preds["cold_start"] = np.isnan(x).all(axis=1) if x.shape[1] else np.ones(x.shape[0], dtype=bool)
    return preds


def score_features(champion: Champion, features: pd.DataFrame) -> pd.DataFrame:
    """Scores for a frame with `customer_id` and the model's features; one row per input row."""
    out = score_matrix(champion, champion.model.matrix(features))
    frame = pd.DataFrame(out, index=features.index)
    frame.insert(0, "customer_id", features["customer_id"].astype(str).to_numpy())
    return frame[list(SCORE_COLUMNS)]


def explain(model: ClvModel, features: pd.DataFrame, *, top: int = 5) -> list[Explanation]:
    """The `top` largest |TreeSHAP| contributions per row, the rest summed into `other`."""
    contrib = model.contributions(features)
    names = model.feature_names
    values = contrib[names].to_numpy(dtype=np.float64)
    bias = contrib["bias"].to_numpy(dtype=np.float64)
    x = model.matrix(features)  # for the margin only
    margins = np.asarray(
        model.value.predict(xgb.DMatrix(x, feature_names=names), output_margin=True),
        dtype=np.float64,
    )
    explanations = []
    for i in range(len(features)):
        order = np.argsort(-np.abs(values[i]), kind="stable")[:top]
        chosen = tuple(
            Contribution(
                feature=names[j],
                value=_plain(features[names[j]].iloc[i]),
                contribution=float(values[i, j]),
            )
            for j in order
        )
        other = float(values[i].sum() - values[i, order].sum())
        explanations.append(
            Explanation(bias=float(bias[i]), top=chosen, other=other, margin=float(margins[i]))
        )
    return explanations


def _plain(value: object) -> float | str | None:
    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return None
    if isinstance(value, str):
        return value
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)


def registry_champion(settings: Settings, *, alias: str = "champion") -> ModelSource:
    """A model source reading `alias` from the registry (imported when called, not before)."""

    def load() -> LoadedModelLike:
        from registry.mlflow_io import load_alias

        loaded: LoadedModelLike = load_alias(settings, alias=alias)
        return loaded

    return load


def registry_reference(settings: Settings) -> ReferenceSource:
    """A reference source: the training reference sample logged with a run."""

    def load(run_id: str) -> pd.DataFrame:
        from registry.mlflow_io import reference_frame

        frame: pd.DataFrame = reference_frame(settings, run_id)
        return frame

    return load
