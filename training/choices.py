"""What the recipe chooses on validation, from boosters fitted on train only: the churn
calibration (raw, Platt or isotonic), the interval scales per predicted-value band, and the
value blend and level (clv.training.blend). The run logs every choice's evidence (choices.json)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from clv.core.settings import Settings
from clv.evaluation.calibration import CalibrationChoice, choose_calibration
from clv.evaluation.protocol import RecipeSplit
from clv.model.baseline import SnapshotBaselines
from clv.model.bundle import ClvModel
from clv.model.intervals import (
    QUANTILES,
    BandCoverage,
    BandedScale,
    IntervalMetrics,
    band_coverage,
    banded_interval,
    banded_interval_scale,
    interval_metrics,
    interval_scale,
)
from clv.training.blend import FIXED, BlendChoice, choose_blend
from clv.training.card import anchored
from clv.training.dataset import Progress, value_target
from clv.training.offsets import offset_card
from clv.training.quantiles import fit_quantile

if TYPE_CHECKING:
    import xgboost as xgb

    from clv.training.objective import ValueRows
    from clv.training.study import TunedValue

FIXED_BLEND: BlendChoice | None = None
"""None: every fit chooses its blend weight and level on validation (clv.training.blend); a
BlendChoice here serves that one instead (benchmarks.development compares the two)."""


@dataclass(frozen=True)
class ValidationChoices:
    """The train-only churn and quantile boosters (their rounds are refitted) and what was
    chosen with them on validation."""

    churn: xgb.Booster | None
    quantiles: dict[str, xgb.Booster]
    calibration: CalibrationChoice
    blend: BlendChoice
    scale: tuple[float, float]
    """One pair of interval scales over all rows (for readers of `interval_scale`)."""
    valid_interval: IntervalMetrics
    bands: BandedScale
    valid_bands: BandCoverage


def choose_on_validation(
    settings: Settings,
    split: RecipeSplit,
    offsets: SnapshotBaselines | None,
    enc: ClvModel,
    train: ValueRows,
    tuned: TunedValue,
    *,
    say: Progress,
) -> ValidationChoices:
    """The churn and quantile boosters on train, early-stopped on validation; the tuned value
    model on train; then the calibration, the blend and level and the interval scales that
    these train-only fits earn on validation."""
    from clv.training.objective import fit_value_model

    nthread, seed = settings.tuning.nthread, settings.tuning.seed
    names = enc.feature_names
    kind = tuned.choice.kind
    churn = fit_churn_eval(split, enc, names, nthread=nthread, seed=seed)
    calibration = churn_calibration(split, enc, churn, seed=seed)
    quantiles = fit_quantiles(split, enc, names, nthread=nthread, seed=seed)
    # The tuned value model on the train rows only: validation is out of time for it.
    value_tv, purchase_tv = fit_value_model(
        kind,
        tuned.final_params,
        train,
        names,
        purchase_rounds=tuned.comparison.purchase_rounds,
        nthread=nthread,
        seed=seed,
    )
    on_valid = ClvModel(
        replace(
            enc.card,
            value_model=kind,
            value_offset=offset_card(offsets, split.validation_time, settings),
        ),
        value=value_tv,
        quantiles=quantiles,
        purchase=purchase_tv,
    )
    blend = blend_choice(split, on_valid)
    say(f"blend: {blend.reason}")
    scale, valid_interval, bands, valid_bands = interval_choice(
        split,
        ClvModel(
            replace(on_valid.card, value_blend=blend.weight, value_level=blend.level),
            value=value_tv,
            quantiles=quantiles,
            purchase=purchase_tv,
        ),
    )
    say(
        f"intervals: scales per predicted-value band ({len(bands.scales)}) cover "
        f"{valid_interval.coverage_p10_p90:.3f} of validation, per decile "
        f"{valid_bands.describe()}; one band: {scale[0]:.3f} / {scale[1]:.3f} around P50"
    )
    return ValidationChoices(
        churn, quantiles, calibration, blend, scale, valid_interval, bands, valid_bands
    )


def fit_churn_eval(
    split: RecipeSplit, enc: ClvModel, names: list[str], *, nthread: int, seed: int
) -> xgb.Booster | None:
    """Churn booster on train, early-stopped on validation; None without two classes."""
    import xgboost as xgb

    from clv.training.churn import fit_churn

    train = split.train.loc[split.train["churn_label"].notna()]
    valid = split.validation.loc[split.validation["churn_label"].notna()]
    y = train["churn_label"].to_numpy(dtype=np.float64)
    if len(valid) == 0 or len(np.unique(y)) < 2:
        return None
    dtrain = xgb.QuantileDMatrix(enc.matrix(train), label=y, feature_names=names, nthread=nthread)
    dvalid = xgb.QuantileDMatrix(
        enc.matrix(valid),
        label=valid["churn_label"].to_numpy(dtype=np.float64),
        feature_names=names,
        ref=dtrain,
        nthread=nthread,
    )
    return fit_churn(dtrain, dvalid, nthread=nthread, seed=seed)


def churn_calibration(
    split: RecipeSplit, enc: ClvModel, churn: xgb.Booster | None, *, seed: int
) -> CalibrationChoice:
    """Raw, Platt or isotonic calibration of the churn margin, chosen on validation by
    cross-fitted ECE (clv.evaluation.calibration.choose_calibration)."""
    valid = split.validation.loc[split.validation["churn_label"].notna()]
    if churn is None or valid.empty:
        return CalibrationChoice.uncalibrated("no churn model")
    margin = churn.inplace_predict(enc.matrix(valid), predict_type="margin")
    return choose_calibration(
        np.asarray(margin, dtype=np.float64),
        valid["churn_label"].to_numpy(dtype=np.float64),
        seed=seed,
    )


def fit_quantiles(
    split: RecipeSplit, enc: ClvModel, names: list[str], *, nthread: int, seed: int
) -> dict[str, xgb.Booster]:
    """P10, P50, P90 boosters on train, early-stopped on validation (which CQR then uses)."""
    import xgboost as xgb

    dtrain = xgb.QuantileDMatrix(
        enc.matrix(split.train),
        label=value_target(split.train),
        feature_names=names,
        nthread=nthread,
    )
    dvalid = xgb.QuantileDMatrix(
        enc.matrix(split.validation),
        label=value_target(split.validation),
        feature_names=names,
        ref=dtrain,
        nthread=nthread,
    )
    return {
        key: fit_quantile(dtrain, alpha, nthread=nthread, seed=seed, dvalid=dvalid)
        for key, alpha in QUANTILES.items()
    }


def blend_choice(split: RecipeSplit, on_valid: ClvModel) -> BlendChoice:
    """The blend weight and level (clv.training.blend) of `on_valid` (the train-only boosters with
    the validation snapshot's own offset parameters) on the validation snapshot."""
    if FIXED_BLEND is not None and on_valid.card.value_offset is not None:
        return FIXED_BLEND
    x_va = on_valid.matrix(split.validation)
    offset = on_valid.value_offset(x_va)
    if offset is None:
        return FIXED
    unblended = ClvModel(
        replace(on_valid.card, value_blend=1.0, value_scale=1.0),
        value=on_valid.value,
        purchase=on_valid.purchase,
    )
    return choose_blend(value_target(split.validation), offset, unblended.value_margin(x_va))


def interval_choice(
    split: RecipeSplit, on_valid: ClvModel
) -> tuple[tuple[float, float], IntervalMetrics, BandedScale, BandCoverage]:
    """The conformal scales that make [P10, P90] cover 80% of validation for `on_valid` (the
    train-only boosters as served, with the validation snapshot's own offset parameters): one
    pair over all rows (for readers of `interval_scale`) and the served pairs per
    predicted-value band; the coverage the banded scales reach there, overall and per
    predicted-value decile."""
    x_va, y_va = on_valid.matrix(split.validation), value_target(split.validation)
    on_valid = anchored(on_valid, x_va)
    quantiles = on_valid.quantiles
    point = on_valid.predict_matrix(x_va)["clv"]
    raw = {k: np.asarray(b.inplace_predict(x_va), dtype=np.float64) for k, b in quantiles.items()}
    lo, mid, hi = raw["clv_p10"], raw["clv_p50"], raw["clv_p90"]
    scale = interval_scale(y_va, lo, mid, hi, point)
    bands = banded_interval_scale(y_va, lo, mid, hi, point)
    served = banded_interval(lo, mid, hi, point, bands)
    return scale, interval_metrics(y_va, *served), bands, band_coverage(y_va, *served, point)
