"""The one scoring code path shared by `/score` and `clv score --all`.

`score_features(champion, features)` turns a frame of `clv_v1` features into CLV, interval,
churn probability, segment and a cold-start flag. Online and batch scoring both call it, so
the numbers they produce for the same feature rows are identical (a tested property).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, TypeAlias

import numpy as np
import pandas as pd
import xgboost as xgb

from clv.core.errors import NotReadyError
from clv.core.settings import ServingSettings, Settings
from clv.features.online_read import OnlineBatch
from clv.model.bundle import PREDICTION_COLUMNS, ClvModel
from clv.serving.segments import segment, tercile_thresholds

TENURE_COLUMNS = ("tenure_days", "T")
"""Reference columns that measure how long a customer has been known (first found wins)."""
MIN_PRIOR_ROWS = 20

SCORE_COLUMNS = ("customer_id", *PREDICTION_COLUMNS, "segment", "cold_start")
ColumnKind: TypeAlias = Literal["excluded", "numeric"] | dict[str, float]
"""How `batch_matrix` reads a feature: excluded (NaN), a number, or a category's code."""
Column: TypeAlias = tuple[str, ColumnKind]


class LoadedModelLike(Protocol):
    """What serving needs from `clv.registry.mlflow_io.LoadedModel` (structural, not imported)."""

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
    cold_prior: dict[str, float] | None = None
    """Predictions served to a customer the store does not know (None: the model's own)."""
    prior_source: str = "model default branches"

    def __post_init__(self) -> None:
        codes = {
            name: {level: float(i) for i, level in enumerate(levels)}
            for name, levels in self.model.card.categories.items()
        }
        object.__setattr__(self, "_codes", codes)
        excluded = set(getattr(self.model.card, "excluded_features", ()) or ())
        columns: list[Column] = [
            (name, "excluded" if name in excluded else codes.get(name, "numeric"))
            for name in self.model.feature_names
        ]
        object.__setattr__(self, "_columns", tuple(columns))

    @property
    def codes(self) -> dict[str, dict[str, float]]:
        codes: dict[str, dict[str, float]] = getattr(self, "_codes")  # noqa: B009
        return codes

    @property
    def columns(self) -> tuple[Column, ...]:
        """The model's features in order, each excluded, numeric, or its category codes."""
        columns: tuple[Column, ...] = getattr(self, "_columns")  # noqa: B009
        return columns


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
    """Bind a loaded model to its segment thresholds and cold-start prior.

    Thresholds: config, else the terciles of the reference sample's CLV. Cold-start prior:
    the median predictions, on the training reference sample, of customers known for fewer
    than `serving.cold_start_tenure_days` (a brand-new customer is the best analogue of an
    unknown one); with fewer than 20 such rows, the median over the whole sample; with no
    reference, the model's own answer for an all-missing row.
    """
    reference: pd.DataFrame | None = None
    if reference_source is not None:
        try:
            reference = reference_source(loaded.run_id)
        except Exception:
            if serving.value_thresholds is None:
                raise
    if serving.value_thresholds is not None:
        thresholds = (float(serving.value_thresholds[0]), float(serving.value_thresholds[1]))
        source = "config"
    else:
        if reference is None:
            raise NotReadyError("no value thresholds: set serving.value_thresholds in clv.yaml")
        clv = (
            reference["clv"]
            if "clv" in reference.columns
            else loaded.model.predict(reference)["clv"]
        )
        try:
            thresholds = tercile_thresholds(clv.to_numpy(dtype=np.float64, na_value=np.nan))
        except ValueError as exc:
            raise NotReadyError(
                f"run {loaded.run_id} has an empty reference sample; "
                "set serving.value_thresholds in clv.yaml"
            ) from exc
        source = "reference terciles"
    prior, prior_source = (
        cold_start_prior(loaded.model, reference, tenure_days=serving.cold_start_tenure_days)
        if reference is not None
        else (None, "model default branches")
    )
    loaded.model.warm()  # here, off the request path: the one-row predict path's set-up
    return Champion(
        model=loaded.model,
        version=str(loaded.version),
        alias=str(loaded.alias),
        run_id=str(loaded.run_id),
        value_thresholds=thresholds,
        churn_threshold=serving.churn_threshold,
        thresholds_source=source,
        cold_prior=prior,
        prior_source=prior_source,
    )


def cold_start_prior(
    model: ClvModel, reference: pd.DataFrame, *, tenure_days: float
) -> tuple[dict[str, float] | None, str]:
    """Median predictions of the reference's newest customers (see `load_champion`)."""
    if reference.empty or any(c not in reference.columns for c in model.feature_names):
        return None, "model default branches"
    rows = reference
    source = "median over the reference sample"
    for column in TENURE_COLUMNS:
        if column in reference.columns:
            tenure = pd.to_numeric(reference[column], errors="coerce")
            young = reference.loc[tenure < tenure_days]
            if len(young) >= MIN_PRIOR_ROWS:
                rows = young
                source = (
                    f"median over {len(young)} reference customers with {column} < {tenure_days:g}"
                )
            break
    try:
        preds = model.predict(rows)
    except Exception as exc:  # a model that cannot score its reference keeps its own answer
        return None, f"model default branches (reference not scorable: {type(exc).__name__})"
    prior = {c: _median(preds[c].to_numpy(dtype=np.float64)) for c in preds.columns}
    return prior, source


def _median(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(np.median(finite)) if finite.size else float("nan")


def batch_matrix(champion: Champion, batch: OnlineBatch) -> np.ndarray:
    """The model's matrix for an online batch: the same numbers as `ClvModel.matrix(frame)`
    (every value as a float64, then the whole matrix rounded to float32 at once)."""
    n = len(batch.customer_ids)
    nan = math.nan
    if n == 1:  # the online case: one row, one list
        row = [_value(batch.values[name][0], kind) for name, kind in champion.columns]
        return np.array([row], dtype=np.float64).astype(np.float32)
    columns: list[list[float]] = []
    for name, kind in champion.columns:
        column = batch.values[name]
        if kind == "excluded":
            columns.append([nan] * n)
        elif kind == "numeric":
            columns.append([nan if v is None else _number(v) for v in column])
        else:
            columns.append([nan if v is None else kind.get(str(v), nan) for v in column])
    if not columns:
        return np.empty((n, 0), dtype=np.float32)
    return np.ascontiguousarray(np.array(columns, dtype=np.float64).T, dtype=np.float32)


def _value(v: float | str | None, kind: ColumnKind) -> float:
    """One value as `batch_matrix` reads it (before float32)."""
    if v is None or kind == "excluded":
        return math.nan
    if kind == "numeric":
        return _number(v)
    return kind.get(str(v), math.nan)


def _number(v: float | str) -> float:
    if v.__class__ is float:
        return v
    try:
        return float(v)
    except ValueError:
        return math.nan


def score_matrix(champion: Champion, x: np.ndarray) -> dict[str, np.ndarray]:
    """Predictions, segment and cold-start flag for a prepared feature matrix."""
    preds = champion.model.predict_matrix(x)
    # A customer the feature store does not know has every feature missing.
    cold = np.isnan(x).all(axis=1) if x.shape[1] else np.ones(x.shape[0], dtype=bool)
    prior = champion.cold_prior
    if prior is not None and cold.any():
        for key, value in prior.items():
            if key in preds:
                preds[key] = np.where(cold, value, preds[key])
    preds["segment"] = segment(
        preds["clv"],
        preds["churn_probability"],
        value_thresholds=champion.value_thresholds,
        churn_threshold=champion.churn_threshold,
    )
    preds["cold_start"] = cold
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
    value_margin = getattr(model, "value_margin", None)  # log(clv), offset included
    margins = (
        np.asarray(value_margin(x), dtype=np.float64)
        if callable(value_margin)
        else np.asarray(
            model.value.predict(xgb.DMatrix(x, feature_names=names), output_margin=True),
            dtype=np.float64,
        )
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
        from clv.registry.mlflow_io import load_alias

        loaded: LoadedModelLike = load_alias(settings, alias=alias)
        return loaded

    return load


def registry_reference(settings: Settings) -> ReferenceSource:
    """A reference source: the training reference sample logged with a run."""

    def load(run_id: str) -> pd.DataFrame:
        from clv.registry.mlflow_io import reference_frame

        frame: pd.DataFrame = reference_frame(settings, run_id)
        return frame

    return load
