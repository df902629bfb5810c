"""The recipe's final fits, the form it serves: every booster refitted with the rounds found
on validation on every row known at the origin (clv.training.refit: in process or on Dask), with
the calibration and scales chosen there, the baseline parameters and the level frozen at the
anchor snapshot."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from clv.core.settings import Settings
from clv.core.time import utc
from clv.evaluation.protocol import RecipeSplit
from clv.model.baseline import SnapshotBaselines
from clv.model.bundle import ClvModel, ModelCard
from clv.model.intervals import QUANTILES
from clv.training.card import anchored, card_for, encoder
from clv.training.offsets import offset_card, offset_fn
from clv.training.quantiles import quantile_params
from clv.training.refit import BoosterJob, InMemoryRefit, RefitBackend, refit_jobs

if TYPE_CHECKING:
    import pandas as pd

    from clv.training.choices import ValidationChoices
    from clv.training.dataset import TrainingData
    from clv.training.study import TunedValue


def final_model(
    settings: Settings,
    data: TrainingData,
    split: RecipeSplit,
    offsets: SnapshotBaselines | None,
    tuned: TunedValue,
    chosen: ValidationChoices,
    *,
    backend: RefitBackend | None,
) -> tuple[ClvModel, dict[str, str | int | float]]:
    """The served model at `split.origin` and the refit's report (backend, rows, seconds)."""
    known = split.known
    card = served_card(
        card_for(settings, data, known.loc[known["clv_label"].notna()]),
        kind=tuned.choice.kind,
        chosen=chosen,
        value_offset=offset_card(offsets, split.anchor_time, settings),
        data_end=split.origin,
    )
    jobs = final_jobs(
        settings,
        tuned,
        chosen,
        churn_rows=known.loc[known["churn_label"].notna()],
        offset=offsets is not None,
    )
    full = encoder(card)
    fitter = backend if backend is not None else InMemoryRefit(known)
    refit = fitter.fit(jobs, encoder=full, offset=offset_fn(settings, offsets))
    fitted = refit.boosters
    model = anchored(
        ClvModel(
            card,
            value=fitted["value"],
            churn=fitted.get("churn"),
            quantiles={k: fitted[k] for k in chosen.quantiles},
            purchase=fitted.get("purchase"),
        ),
        full.matrix(split.anchor),
    )
    return model, refit.report


def served_card(
    base: ModelCard,
    *,
    kind: str,
    chosen: ValidationChoices,
    value_offset: dict[str, float] | None,
    data_end: pd.Timestamp | None = None,
) -> ModelCard:
    """`base` (the card of the value rows known at the origin) as served: the value model's
    kind, blend and level, the churn calibration, the interval scales and `value_offset`, the
    anchor snapshot's baseline parameters, and `data_end`, where its training data ends."""
    calibration = chosen.calibration
    return replace(
        base,
        value_model=kind,
        value_blend=chosen.blend.weight,
        value_level=chosen.blend.level,
        churn_calibration=calibration.platt.as_dict() if calibration.platt else None,
        churn_isotonic=calibration.isotonic.as_dict() if calibration.isotonic else None,
        interval_scale=list(chosen.scale),
        interval_bands=chosen.bands.as_dict(),
        value_offset=value_offset,
        data_end=None if data_end is None else utc(data_end).isoformat(),
    )


def final_jobs(
    settings: Settings,
    tuned: TunedValue,
    chosen: ValidationChoices,
    *,
    churn_rows: pd.DataFrame,
    offset: bool,
) -> list[BoosterJob]:
    """The boosters to refit, with the tuned parameters (`tuned`: the value booster and the
    hurdle's purchase rounds) and the early-stopped rounds of the train-only fits (`chosen`)."""
    from clv.training.churn import churn_params

    nthread, seed = settings.tuning.nthread, settings.tuning.seed
    params = tuned.final_params
    churn = chosen.churn
    return refit_jobs(
        value=(
            params.booster_params(nthread=nthread, seed=seed, offset=offset),
            params.num_boost_round,
        ),
        purchase=(
            (churn_params(nthread=nthread, seed=seed), tuned.comparison.purchase_rounds)
            if tuned.choice.kind == "hurdle"
            else None
        ),
        quantiles={
            k: (quantile_params(QUANTILES[k], nthread=nthread, seed=seed), b.num_boosted_rounds())
            for k, b in chosen.quantiles.items()
        },
        churn=(
            (churn_params(nthread=nthread, seed=seed), churn.num_boosted_rounds())
            if churn is not None and churn_rows["churn_label"].nunique() == 2
            else None
        ),
        offset=offset,
    )
