"""Modelling choices, measured on the DEVELOPMENT worlds only (issue 13).

`python -m benchmarks.development blend` measures fixed value blends and the level anchoring:
per development world, the recipe is fitted twice under the default settings (horizon aside):
once with the former fixed choice (w 0.5, anchored) and once with the trees alone (w 1, no
level), through clv.training.choices.FIXED_BLEND. The unanchored blends (1 - w) x BG/NBD + w x
trees for w on a grid are then scored on the same rows: the test origin and every embargoed
backtest origin (all out of time; these are development worlds, so their test origin may
choose). Written to `benchmarks/results/development-blend.json`; the decision is in
docs/decisions/modelling-constants.md. Judgement worlds are never read here.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from benchmarks import case
from benchmarks.case import Figures
from benchmarks.worlds import DEVELOPMENT, world_training_data
from clv.training.blend import BlendChoice

WORK = case.WORK / "development"
RESULTS = Path(__file__).resolve().parent / "results"
BLENDS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _figures(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from clv.evaluation.metrics import bias_pct, normalized_gini, rmse

    return {
        "gini": round(float(normalized_gini(y, pred)), 4),
        "rmse": round(float(rmse(y, pred)), 2),
        "abs_bias_pct": round(abs(float(bias_pct(y, pred))), 2),
    }


Arrays = dict[str, np.ndarray]


def _fixed(weight: float, level: str) -> BlendChoice:
    return BlendChoice(weight, level, f"fixed by benchmarks.development: w {weight}, {level}")


def _fit(root: Path, name: str, *, fixed: BlendChoice | None) -> list[tuple[str, Arrays]]:
    """One fit_and_log with `clv.training.choices.FIXED_BLEND` patched (None: the blend is chosen
    per fit on validation, as served); every origin's arrays."""
    import clv.training.choices as choices
    import clv.training.train as train

    settings, data = world_training_data(root, name)
    saved = choices.FIXED_BLEND
    choices.FIXED_BLEND = fixed
    try:
        result = train.fit_and_log(settings, data, progress=lambda m: _say(f"  {name}: {m}"))
    finally:
        choices.FIXED_BLEND = saved
    out = []
    for ev in (result.evaluation, *result.backtests):
        if not ev.embargoed:
            continue
        arrays = {k: np.asarray(v, dtype=np.float64) for k, v in ev.predictions.items()}
        arrays["y"] = np.clip(ev.rows["clv_label"].to_numpy(dtype=np.float64), 0.0, None)
        out.append((ev.origin.date().isoformat(), arrays))
    return out


def blend() -> Figures:
    """Served recipe vs unanchored blends on every development world and origin."""
    figures: Figures = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "blends": list(BLENDS),
        "worlds": {},
    }
    worlds: dict[str, object] = {}
    shutil.rmtree(WORK, ignore_errors=True)  # one folder per world: MLflow keeps its engines
    for w in DEVELOPMENT:
        _say(f"development blend: {w.name}")
        served = _fit(WORK / w.name / "served", w.name, fixed=_fixed(0.5, "anchor"))
        trees = _fit(WORK / w.name / "trees", w.name, fixed=_fixed(1.0, "none"))
        origins = []
        for (origin, s), (again, t) in zip(served, trees, strict=True):
            assert origin == again
            y, base, boosted = t["y"], t["baseline"], t["model"]
            row: dict[str, object] = {
                "origin": origin,
                "served": _figures(s["y"], s["model"]),
                **{who: _figures(y, t[who]) for who in ("baseline", "last_horizon", "run_rate")},
            }
            for b in BLENDS:
                row[f"blend_{b}"] = _figures(y, (1 - b) * base + b * boosted)
            origins.append(row)
        worlds[w.name] = origins
        figures["worlds"] = worlds
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "development-blend.json").write_text(json.dumps(figures, indent=2) + "\n")
    shutil.rmtree(WORK, ignore_errors=True)
    figures["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    figures["date_end"] = datetime.now(UTC).isoformat(timespec="seconds")
    (RESULTS / "development-blend.json").write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def served(tag: str) -> Figures:
    """The served recipe as it is in the working tree (the blend chosen per fit), on every
    development world and origin (`development-<tag>.json`): compare a change with an earlier
    tag's "served" (e.g. `development-calendar.json`, the fixed w 0.5 anchored recipe)."""

    figures: Figures = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "worlds": {},
    }
    worlds: dict[str, object] = {}
    root = WORK.with_name(f"development-{tag}")
    shutil.rmtree(root, ignore_errors=True)
    for w in DEVELOPMENT:
        _say(f"development {tag}: {w.name}")
        fitted = _fit(root / w.name, w.name, fixed=None)
        worlds[w.name] = [
            {
                "origin": origin,
                "served": _figures(a["y"], a["model"]),
                **{
                    who: _figures(a["y"], a[who])
                    for who in ("baseline", "last_horizon", "run_rate")
                },
            }
            for origin, a in fitted
        ]
        figures["worlds"] = worlds
        (RESULTS / f"development-{tag}.json").write_text(json.dumps(figures, indent=2) + "\n")
    shutil.rmtree(root, ignore_errors=True)
    figures["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    figures["date_end"] = datetime.now(UTC).isoformat(timespec="seconds")
    (RESULTS / f"development-{tag}.json").write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    args = sys.argv[1:]
    if args == ["blend"]:
        blend()
    elif len(args) == 2 and args[0] == "served":
        served(args[1])
    else:
        raise SystemExit("usage: python -m benchmarks.development blend | served TAG")
