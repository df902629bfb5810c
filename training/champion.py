"""The live champion scored on the new version's test rows, so that the gates compare the two
on the same snapshot (`eval.champion.*` version tags; docs/decisions/noise-margin.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from clv.core.tags import CHAMPION_ERROR, CHAMPION_VERSION_TAG, champion_tag
from clv.evaluation.metrics import churn_metrics, paired_bootstrap, value_metrics
from clv.model.bundle import ClvModel
from clv.model.intervals import interval_metrics
from clv.training.dataset import value_target

if TYPE_CHECKING:
    from clv.training.backtest import OriginEvaluation


@dataclass(frozen=True)
class ChampionModel:
    """The live champion's held-out (evaluated) bundle, scored on the new version's test rows
    so that the gates compare the two on the same snapshot (`eval.champion.*` tags)."""

    version: str
    model: ClvModel


def champion_tags(
    champion: ChampionModel, test: OriginEvaluation, *, samples: int, level: float, seed: int
) -> dict[str, str]:
    """`eval.champion.*`: the champion scored on `test`'s rows (labels after its origin), and
    the paired bootstrap of the candidate minus the champion there (none when `level` is 0)."""
    rows = test.rows
    try:
        pred = champion.model.predict(rows)
    except (KeyError, ValueError) as exc:  # another feature contract: no same-rows evidence
        return {CHAMPION_ERROR: f"v{champion.version} could not score: {exc}"[:500]}
    y = value_target(rows)
    theirs = pred["clv"].to_numpy(np.float64)
    value = value_metrics(y, theirs)
    prob = pred["churn_probability"].to_numpy(np.float64)
    has_churn = rows["churn_label"].notna().to_numpy() & np.isfinite(prob)
    churn = churn_metrics(rows["churn_label"].to_numpy(np.float64)[has_churn], prob[has_churn])
    cover = interval_metrics(
        y, pred["clv_p10"].to_numpy(np.float64), pred["clv_p90"].to_numpy(np.float64)
    )
    noise = (
        paired_bootstrap(
            y, test.predictions["model"], theirs, samples=samples, level=level, seed=seed
        ).as_dict()
        if level > 0
        else {}
    )
    return {
        CHAMPION_VERSION_TAG: champion.version,
        champion_tag("gini"): repr(value.gini),
        champion_tag("rmse"): repr(value.rmse),
        champion_tag("bias_pct"): repr(value.bias_pct),
        champion_tag("churn_ece"): repr(churn.ece),
        champion_tag("coverage_p10_p90"): repr(cover.coverage_p10_p90),
    } | {champion_tag(key): repr(v) for key, v in noise.items()}
