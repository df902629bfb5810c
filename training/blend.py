"""How much the served value trusts the trees against the BG/NBD + Gamma-Gamma baseline, and
where its level comes from: chosen per fit on the validation snapshot, with the evidence.

The served value is clv = c x baseline x (1 - w + w exp(t)) (clv.model.bundle): t is the trees'
log correction to the baseline, w the blend weight, c the level. Every (w, level) candidate is
scored on the validation snapshot with the value trees fitted on the train rows only, so the
choice is out of time: validation's labels start after every train label window closed.

- w runs over BLEND_GRID (0 = the baseline alone, 1 = the trees alone).
- The level is "anchor" (c makes the model's total over one snapshot's customers equal the
  baseline's total there, clv.model.bundle.level_scale; no labels are used) or "none" (c = 1).
- The candidate with the lowest validation RMSE (the tuning's selection metric) is served;
  within TIE_PCT of the best, the one nearest the trees alone without a level is taken,
  so that a choice needs evidence to move away from the fitted model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from clv.evaluation.metrics import value_metrics
from clv.model.bundle import anchor_scale, blend_log

FloatArray = npt.NDArray[np.float64]
BLEND_GRID: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
LEVELS: tuple[str, ...] = ("none", "anchor")
TIE_PCT = 0.1
"""Validation RMSE differences within this percentage of the best are ties (set a priori: a
tenth of a percent is below what one snapshot of a few thousand customers can tell apart)."""


@dataclass(frozen=True)
class BlendChoice:
    """The served (weight, level) and every candidate's validation scores."""

    weight: float
    level: str
    reason: str
    candidates: list[dict[str, float | str]] = field(default_factory=list)

    def as_evidence(self) -> dict[str, object]:
        return {
            "weight": self.weight,
            "level": self.level,
            "reason": self.reason,
            "rule": f"lowest validation RMSE; within {TIE_PCT}% the nearest to w = 1, no level",
            "candidates": self.candidates,
        }


FIXED = BlendChoice(1.0, "none", "no baseline offset: the trees alone")
"""The choice for a model without an offset (nothing to blend with)."""


def blended_margin(offset: FloatArray, margin: FloatArray, weight: float) -> FloatArray:
    """log clv of the blend at `weight` for the trees' log clv `margin` (offset included)."""
    if weight == 1.0:
        return margin
    return offset + blend_log(margin - offset, weight)


def choose_blend(y: FloatArray, offset: FloatArray, margin: FloatArray) -> BlendChoice:
    """The (weight, level) served, from the validation labels `y`, the baseline's log clv
    `offset` and the train-only trees' log clv `margin` on the validation snapshot."""
    y = np.asarray(y, dtype=np.float64)
    if y.size == 0 or not np.isfinite(offset).all():
        return BlendChoice(1.0, "none", "no validation rows with a finite baseline: trees alone")
    rows: list[dict[str, float | str]] = []
    for w in BLEND_GRID:
        m = blended_margin(offset, margin, w)
        for level in LEVELS:
            c = anchor_scale(offset, m) if level == "anchor" else 1.0
            scores = value_metrics(y, c * np.exp(m))
            rows.append(
                {
                    "weight": w,
                    "level": level,
                    "scale": c,
                    "rmse": scores.rmse,
                    "gini": scores.gini,
                    "bias_pct": scores.bias_pct,
                }
            )
    best = min(float(r["rmse"]) for r in rows)
    ties = [r for r in rows if float(r["rmse"]) <= best * (1.0 + TIE_PCT / 100.0)]
    pick = min(ties, key=lambda r: (1.0 - float(r["weight"]), r["level"] != "none"))
    fixed = next(r for r in rows if r["weight"] == 1.0 and r["level"] == "none")
    reason = (
        f"w {pick['weight']:.1f}, level {pick['level']}: validation RMSE {pick['rmse']:.2f} "
        f"(gini {pick['gini']:.4f}, bias {pick['bias_pct']:+.1f}%) vs trees alone "
        f"{fixed['rmse']:.2f}, best of {len(rows)} candidates"
    )
    return BlendChoice(float(pick["weight"]), str(pick["level"]), reason, rows)
