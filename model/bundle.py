"""The model bundle that training writes and serving loads: native XGBoost boosters plus a card.

A `ClvModel` turns a frame of `clv_v1` features into predictions. It owns the feature order and
the encoding of categorical features, so that training, batch scoring and online scoring build
the same matrix from the same features.

Value model kinds (`ModelCard.value_model`, chosen on validation by clv.training.objective):
- "tweedie": clv = exp(offset + value trees) (one `reg:tweedie` booster, log link);
- "hurdle": clv = P(purchase) x exp(offset + value trees), P(purchase) = sigmoid(purchase
  trees) from a `binary:logistic` booster, the value booster fitted on buyers only.

Offset (`ModelCard.value_offset`): the BG/NBD + Gamma-Gamma expected discounted CLV of the row
(clv.model.baseline, parameters on the card) computed from the row's own RFM features; its log
is the value booster's `base_margin`, so the trees learn a multiplicative correction to the
classical model (which extrapolates to older customers than the training snapshots hold).
`contributions` folds the offset (and, for a hurdle, log P(purchase) at the purchase booster's
bias) into "bias" per row, so that bias + sum(contributions) == `value_margin` == log(clv).

Blend (`ModelCard.value_blend` = w, only with an offset): clv = (1 - w) x baseline + w x
model, i.e. log clv = offset + log(1 - w + w exp(t)) where t = the trees' log correction
(value trees, + log P(purchase) for a hurdle). w = 1 is the model alone, w = 0 the baseline.

Level (`ModelCard.value_scale` = c): clv is finally multiplied by c, which training sets so that
the model's total over the card's snapshot equals the baseline's total there (`level_scale`):
the trees re-rank customers, the classical model sets the level.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb

from clv.model.baseline import OFFSET_COLUMNS, Baseline, log_offset, one_log_offset, rfm_arrays
from clv.model.forest import FOREST_ROWS, Forest, Unsupported
from clv.model.intervals import BandedScale, BandedScaleDict, banded_interval, scaled_interval
from clv.model.xgboost_private import InplacePredictor, private_unavailable

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
    """Platt scaling of the churn margin, {"a": ..., "b": ...}, when it was chosen
    (clv.evaluation.calibration)."""
    churn_isotonic: dict[str, list[float]] | None = None
    """Isotonic calibration of the churn margin, when it was chosen: breakpoints {"x": margins
    (increasing), "y": probabilities}, P(churn) = np.interp(margin, x, y) (flat beyond the
    ends). At most one of it and `churn_calibration`; None in bundles written before it."""
    excluded_features: list[str] = field(default_factory=list)
    """Features of the service the boosters do not use (their column is NaN in `matrix`):
    calendar-time features such as `signup_cohort`, whose newest levels no past snapshot has."""
    interval_adjustment: float = 0.0
    """Conformal widening Q of [P10, P90] (clv.model.intervals): [max(P10 - Q, 0), P90 + Q].
    Used only by bundles without `interval_scale` (written before it existed)."""
    value_model: str = "tweedie"
    """"tweedie" or "hurdle" (see the module docstring)."""
    value_offset: dict[str, float] | None = None
    """Baseline parameters (clv.model.baseline.Baseline.as_dict) plus `annual_discount_rate`;
    None = no offset (the feature service lacks the RFM columns, or an older bundle)."""
    interval_scale: list[float] | None = None
    """Conformal [lower, upper] scales of [P10, P90] around P50 in log1p space
    (clv.model.intervals.scaled_interval), one pair for all rows. Used only by bundles without
    `interval_bands`; kept beside them (the same fit on one band) for older readers."""
    value_blend: float = 1.0
    """Weight w of the trees' prediction against the offset's baseline (module docstring);
    ignored without `value_offset`. 1.0 in bundles written before it existed."""
    value_scale: float = 1.0
    """Multiplier c of clv (module docstring, `level_scale`); 1.0 = none."""
    interval_bands: BandedScaleDict | None = None
    """Conformal scales per band of the predicted clv (clv.model.intervals.BandedScale:
    {"edges": inner edges, ascending; "scales": [[lower, upper], ...], one per band});
    None in bundles written before it existed."""
    data_end: str | None = None
    """The end of the training data (ISO, UTC): the served fit saw the log up to it; the
    model's age in serving counts from it. None in bundles written before it existed."""
    value_level: str = "anchor"
    """How `value_scale` was set (clv.training.blend): "anchor" (`level_scale` at the anchor
    snapshot) or "none" (1.0). "anchor" in bundles written before the choice existed."""


class ClvModel:
    """Value, churn and interval boosters over one feature contract.

    Boosters predict through XGBoost's private fast path where it was verified
    (clv.model.xgboost_private), and up to `FOREST_ROWS` rows through every predict-path
    booster's trees at once in numpy (clv.model.forest); `public_predict=True` uses
    `Booster.inplace_predict` only (the same numbers), e.g. to measure what the fast paths save.
    """

    def __init__(
        self,
        card: ModelCard,
        *,
        value: xgb.Booster,
        churn: xgb.Booster | None = None,
        quantiles: dict[str, xgb.Booster] | None = None,
        purchase: xgb.Booster | None = None,
        public_predict: bool = False,
    ) -> None:
        if card.value_model not in ("tweedie", "hurdle"):
            raise ValueError(f"unknown value model {card.value_model!r}")
        if card.value_model == "hurdle" and purchase is None:
            raise ValueError("a hurdle value model needs its purchase booster")
        self._isotonic = _isotonic_breakpoints(card)
        self.card = card
        self.value = value
        self.churn = churn
        self.purchase = purchase
        self.quantiles = dict(quantiles or {})
        self._offset: Baseline | None = None
        self._offset_columns: list[int] = []
        self._bands = (
            BandedScale.from_dict(card.interval_bands) if card.interval_bands is not None else None
        )
        self._intercept: float | None = None  # measured on first use (see _booster_intercept)
        if card.value_offset is not None:
            self._offset = Baseline.from_dict(card.value_offset)
            self._offset_columns = [card.feature_names.index(c) for c in OFFSET_COLUMNS]
        for booster in self._boosters().values():
            booster.set_param({"nthread": 1})
        self._public = public_predict
        self._fast: dict[tuple[int, bool], InplacePredictor] = {}
        self._forest: tuple[tuple[xgb.Booster, ...], Forest | None] | None = None
        self.forest_reason: str | None = None
        """Why a few rows do not predict through a `Forest` (None: they do, or not tried yet)."""
        self._codes = {
            name: {level: float(i) for i, level in enumerate(levels)}
            for name, levels in card.categories.items()
        }

    def with_public_predict(self, public_predict: bool = True) -> ClvModel:
        """The same card and boosters, predicting through the public API only (or, False, the
        fast path where it was verified): the two paths side by side give the same numbers."""
        twin = copy.copy(self)  # shares the boosters, as a second ClvModel over them would
        twin._public, twin._fast, twin._forest = public_predict, {}, None
        return twin

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

    def value_offset(self, x: np.ndarray) -> np.ndarray | None:
        """log of the baseline CLV per row of a prepared matrix (the value booster's base_margin),
        or None for a model without an offset."""
        if self._offset is None:
            return None
        cols = x[:, self._offset_columns].astype(np.float64)
        offset = self.card.value_offset or {}
        rate = float(offset.get("annual_discount_rate", 0.0))
        if x.shape[0] == 1:  # one customer (serving): the same number, fewer numpy calls
            f, r, t, m, tenure = cols[0].tolist()
            return one_log_offset(
                self._offset,
                (f, r, t, m, tenure),
                horizon_days=self.card.horizon_days,
                annual_discount_rate=rate,
            )
        rfm = rfm_arrays(cols[:, 0], cols[:, 1], cols[:, 2], cols[:, 3], cols[:, 4])
        return log_offset(
            self._offset, rfm, horizon_days=self.card.horizon_days, annual_discount_rate=rate
        )

    def _booster_intercept(self) -> float:
        """The value booster's intercept margin (its base_score through the link), which XGBoost
        adds only when no base_margin is given: measured on one all-missing row."""
        row = np.full((1, len(self.card.feature_names)), np.nan, dtype=np.float32)
        plain = self.value.inplace_predict(row, predict_type="margin")
        zero = xgb.DMatrix(row, base_margin=np.zeros(1), feature_names=self.card.feature_names)
        return float(
            np.asarray(plain)[0] - np.asarray(self.value.predict(zero, output_margin=True))[0]
        )

    def _value_margins(
        self, x: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """The value booster's margin with the offset, the purchase margin (hurdle) and the
        offset itself.

        trees + offset, computed as the plain margin minus the intercept plus the offset:
        `inplace_predict(..., base_margin=...)` leaves XGBoost's fast path (3-16 ms a row
        against 0.25 ms, measured on the demo bundle)."""
        x = _dense(x)
        return self._margins_of(x, self._outputs(x, ("value", "purchase")))

    def _margins_of(
        self, x: np.ndarray, outputs: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """`_value_margins` from the boosters' outputs (`_outputs`)."""
        value = outputs["value"]
        offset = self.value_offset(x)
        if offset is not None:
            if self._intercept is None:
                self._intercept = self._booster_intercept()
            value = value - self._intercept + offset
        if self.card.value_model != "hurdle" or self.purchase is None:
            return value, None, offset
        return value, outputs["purchase"], offset

    @property
    def _blend(self) -> float | None:
        """The blend weight w when it changes anything (an offset and w != 1), else None."""
        w = float(self.card.value_blend)
        return w if self._offset is not None and w != 1.0 else None

    def value_margin(self, x: np.ndarray) -> np.ndarray:
        """log(clv) per row: offset + value trees (+ log P(purchase) for a hurdle), blended
        with the baseline by `value_blend`."""
        return self._value_margin_of(*self._value_margins(x))

    def _value_margin_of(
        self, value: np.ndarray, purchase: np.ndarray | None, offset: np.ndarray | None
    ) -> np.ndarray:
        if purchase is not None:
            value = value - np.logaddexp(0.0, -purchase)
        w = self._blend
        if w is not None and offset is not None:
            value = offset + blend_log(value - offset, w)
        return value + np.log(self.card.value_scale) if self.card.value_scale != 1.0 else value

    def predict_matrix(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Predictions for a prepared matrix, keyed by PREDICTION_COLUMNS (plus `clv_p50`)."""
        n = x.shape[0]
        x = _dense(x)
        outputs = self._outputs(x, tuple(self._predicted()))
        clv = np.exp(self._value_margin_of(*self._margins_of(x, outputs)))
        out = {"clv": clv}
        for key in ("clv_p10", "clv_p50", "clv_p90"):
            out[key] = outputs[key] if key in outputs else np.full(n, np.nan)
        if self.churn is not None:
            margin = outputs["churn"]
            cal = self.card.churn_calibration
            if self._isotonic is not None:
                out["churn_probability"] = np.interp(margin, *self._isotonic)
            else:  # Platt or raw, as in every bundle written before isotonic
                if cal is not None:
                    margin = cal["a"] * margin + cal["b"]
                out["churn_probability"] = 1.0 / (1.0 + np.exp(-margin))
        else:
            out["churn_probability"] = np.full(n, np.nan)
        # Quantiles are fitted separately; keep the interval ordered and around the point.
        lo, hi = out["clv_p10"], out["clv_p90"]
        if np.isnan(lo).all():
            return out
        if self._bands is not None:
            out["clv_p10"], out["clv_p90"] = banded_interval(
                lo, out["clv_p50"], hi, clv, self._bands
            )
            return out
        if self.card.interval_scale is not None:
            s_lo, s_hi = self.card.interval_scale
            out["clv_p10"], out["clv_p90"] = scaled_interval(
                lo, out["clv_p50"], hi, clv, (s_lo, s_hi)
            )
            return out
        q = self.card.interval_adjustment
        if q:
            lo, hi = np.maximum(lo - q, 0.0), hi + q
        out["clv_p10"] = np.minimum(lo, np.minimum(hi, clv))
        out["clv_p90"] = np.maximum(hi, np.maximum(lo, clv))
        return out

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Predictions for a frame of features, one row per input row, same index."""
        preds = self.predict_matrix(self.matrix(frame))
        return pd.DataFrame(preds, index=frame.index, columns=list(PREDICTION_COLUMNS))

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per-feature SHAP contributions to log(clv) (XGBoost's own TreeSHAP), plus "bias".

        bias + sum(features) == `value_margin` == log(clv) per row. The offset is folded into
        "bias" (XGBoost adds the base_margin to the bias term). A blend (w < 1) maps the trees'
        log correction t onto log(1 - w + w exp(t)) by the same rescale rule; log(value_scale)
        joins "bias". For a hurdle, the purchase
        booster's contributions phi (to its logit m, bias b) are rescaled onto log P(purchase):
        phi x (log sigmoid(m) - log sigmoid(b)) / (m - b), the rescale rule of DeepLIFT
        (Shrikumar et al. 2017), and log sigmoid(b) joins "bias".
        """
        x = self.matrix(frame)
        names = self.card.feature_names
        dm = xgb.DMatrix(x, feature_names=names, base_margin=self.value_offset(x))
        contrib = np.asarray(self.value.predict(dm, pred_contribs=True), dtype=np.float64)
        if self.card.value_model == "hurdle" and self.purchase is not None:
            phi = np.asarray(
                self.purchase.predict(xgb.DMatrix(x, feature_names=names), pred_contribs=True),
                dtype=np.float64,
            )
            bias = phi[:, -1]
            margin = phi.sum(axis=1)
            log_p, log_p0 = -np.logaddexp(0.0, -margin), -np.logaddexp(0.0, -bias)
            delta = margin - bias
            # the derivative of log sigmoid at b when m == b (the ratio's limit)
            ratio = np.where(
                np.abs(delta) > 1e-9,
                (log_p - log_p0) / np.where(np.abs(delta) > 1e-9, delta, 1.0),
                1.0 / (1.0 + np.exp(bias)),
            )
            contrib[:, :-1] += phi[:, :-1] * ratio[:, None]
            contrib[:, -1] += log_p0
        w = self._blend
        if w is not None:
            contrib = _blend_contributions(contrib, self.value_offset(x), w)
        if self.card.value_scale != 1.0:
            contrib[:, -1] += np.log(self.card.value_scale)
        return pd.DataFrame(contrib, index=frame.index, columns=[*names, "bias"])

    def _predicted(self) -> dict[str, tuple[xgb.Booster, bool]]:
        """The boosters `predict_matrix` reads and whether it reads their margin: value,
        purchase (a hurdle's), the quantiles and churn."""
        boosters = {"value": (self.value, True)}
        if self.card.value_model == "hurdle" and self.purchase is not None:
            boosters["purchase"] = (self.purchase, True)
        for key in ("clv_p10", "clv_p50", "clv_p90"):
            if key in self.quantiles:
                boosters[key] = (self.quantiles[key], False)
        if self.churn is not None:
            boosters["churn"] = (self.churn, True)
        return boosters

    def _outputs(self, x: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        """The named predict-path boosters' outputs (`_predicted`) for a dense matrix: every
        one of them from one `Forest` walk for a few rows, else each through `_predict`."""
        boosters = self._predicted()
        forest = self._small_forest(x, boosters)
        if forest is not None:
            return dict(zip(boosters, forest(x), strict=True))
        return {
            name: self._predict(booster, x, margin=margin)
            for name, (booster, margin) in boosters.items()
            if name in names
        }

    def _small_forest(
        self, x: np.ndarray, boosters: dict[str, tuple[xgb.Booster, bool]]
    ) -> Forest | None:
        """The forest of the predict-path boosters for `x` (built on first use), or None: too
        many rows, the public path asked for, XGBoost unverified, or boosters it cannot walk."""
        if x.shape[0] > FOREST_ROWS or self._public:
            return None
        key = tuple(b for b, _ in boosters.values())
        built = self._forest
        if (
            built is None
            or len(built[0]) != len(key)
            or any(a is not b for a, b in zip(built[0], key, strict=True))
        ):  # first use, or a booster replaced (they are public attributes)
            forest: Forest | None = None
            self.forest_reason = private_unavailable()
            if self.forest_reason is None:
                try:
                    forest = Forest.build(list(boosters.values()))
                except Unsupported as exc:
                    self.forest_reason = str(exc)
            built = self._forest = (key, forest)
        forest = built[1]
        return forest if forest is not None and x.shape[1] == forest.n_features else None

    def warm(self) -> None:
        """Prepare what predicting one row needs (the forest, the intercept), so that the first
        request does not pay for it. A model that cannot predict (a card narrower than its
        boosters) is left to fail where it predicts, as before."""
        with contextlib.suppress(Exception):  # a warm-up: predicting says what is wrong
            self.predict_matrix(np.full((1, len(self.card.feature_names)), np.nan, np.float32))

    def _predict(self, booster: xgb.Booster, x: np.ndarray, *, margin: bool) -> np.ndarray:
        """`booster.inplace_predict(x)` as float64 (margin or transformed), through a
        per-booster `InplacePredictor` (the boosters are public attributes: keyed by identity)."""
        key = (id(booster), margin)
        fast = self._fast.get(key)
        if fast is None or fast.booster is not booster:
            fast = InplacePredictor(booster, margin=margin, public=self._public)
            self._fast[key] = fast
        return fast(x)

    def _boosters(self) -> dict[str, xgb.Booster]:
        boosters = {"value": self.value, **self.quantiles}
        if self.purchase is not None:
            boosters["purchase"] = self.purchase
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
        return cls(
            card,
            value=value,
            churn=booster("churn"),
            quantiles=quantiles,
            purchase=booster("purchase"),
        )


def _isotonic_breakpoints(card: ModelCard) -> tuple[np.ndarray, np.ndarray] | None:
    """The card's isotonic churn breakpoints as arrays for np.interp, checked; None without."""
    iso = card.churn_isotonic
    if iso is None:
        return None
    if card.churn_calibration is not None:
        raise ValueError("a card has both Platt and isotonic churn calibration")
    x = np.asarray(iso["x"], dtype=np.float64)
    y = np.asarray(iso["y"], dtype=np.float64)
    if x.size == 0 or x.shape != y.shape or (np.diff(x) < 0).any():
        raise ValueError("isotonic churn breakpoints need equal, non-empty x and y, x sorted")
    return x, y


def _dense(x: np.ndarray) -> np.ndarray:
    """x as a C-contiguous float32 matrix (what `matrix` returns; a no-op then)."""
    if x.dtype == np.float32 and x.flags.c_contiguous:
        return x
    return np.ascontiguousarray(x, dtype=np.float32)


def blend_log(t: np.ndarray, w: float) -> np.ndarray:
    """log(1 - w + w exp(t)): the log correction to the offset of the blend (1 - w) x
    baseline + w x baseline x exp(t)."""
    return np.asarray(np.log1p(w * np.expm1(t)), dtype=np.float64)


def _blend_contributions(contrib: np.ndarray, offset: np.ndarray | None, w: float) -> np.ndarray:
    """Contributions (features..., bias incl. the offset) to offset + t, rescaled onto
    offset + blend_log(t, w): phi x (g(t) - g(b)) / (t - b) with g = blend_log and b the trees'
    bias, the DeepLIFT rescale rule as for the hurdle; the bias becomes offset + g(b)."""
    if offset is None:
        return contrib
    out = contrib.copy()
    b = contrib[:, -1] - offset
    t = contrib.sum(axis=1) - offset
    delta = t - b
    near = np.abs(delta) <= 1e-9
    # the derivative of g at b when t == b (the ratio's limit)
    slope = w * np.exp(b) / (1.0 - w + w * np.exp(b))
    ratio = np.where(near, slope, (blend_log(t, w) - blend_log(b, w)) / np.where(near, 1.0, delta))
    out[:, :-1] *= ratio[:, None]
    out[:, -1] = offset + blend_log(b, w)
    return out


def level_scale(model: ClvModel, x: np.ndarray) -> float:
    """The `value_scale` c that makes the model's total over the rows of `x` (one snapshot's
    customers, features only) equal the offset baseline's total: sum(baseline) / sum(model at
    c = 1). 1.0 for a model without an offset or with nothing to scale."""
    offset = model.value_offset(x)
    if offset is None or x.shape[0] == 0:
        return 1.0
    unscaled = ClvModel(
        replace(model.card, value_scale=1.0),
        value=model.value,
        purchase=model.purchase,
        public_predict=model._public,
    )
    return anchor_scale(offset, unscaled.value_margin(x))


def anchor_scale(offset: np.ndarray, margin: np.ndarray) -> float:
    """c with sum(c exp(margin)) = sum(exp(offset)) over one snapshot (1.0 when undefined)."""
    total = float(np.exp(margin).sum())
    base = float(np.exp(offset).sum())
    return base / total if total > 0 and np.isfinite(total) and np.isfinite(base) else 1.0
