"""Modelling choices, measured on the DEVELOPMENT worlds only (issue 13).

`python -m benchmarks.development blend` decides the value blend and the level anchoring:
per development world, the recipe is fitted twice under the default settings (horizon aside):
once as served today (VALUE_BLEND 0.5, ANCHOR_LEVEL on) and once with the trees alone
(blend 1, no anchoring). The unanchored blends (1 - w) x BG/NBD + w x trees for w on a grid
are then scored on the same rows: the test origin and every embargoed backtest origin (all
out of time; these are development worlds, so their test origin may choose). Written to
`benchmarks/results/development-blend.json`; the decision is in
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

from benchmarks.worlds import DEVELOPMENT, world_training_data

WORK = Path(__file__).resolve().parent / "work" / "development"
RESULTS = Path(__file__).resolve().parent / "results"
BLENDS = (0.0, 0.25, 0.5, 0.75, 1.0)
Figures = dict[str, object]


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _figures(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from training.metrics import bias_pct, normalized_gini, rmse

    return {
        "gini": round(float(normalized_gini(y, pred)), 4),
        "rmse": round(float(rmse(y, pred)), 2),
        "abs_bias_pct": round(abs(float(bias_pct(y, pred))), 2),
    }


Arrays = dict[str, np.ndarray]


def _fit(root: Path, name: str, *, blend: float, anchor: bool) -> list[tuple[str, Arrays]]:
    """One fit_and_log with the blend and anchoring patched; every origin's arrays."""
    import training.train as train

    settings, data = world_training_data(root, name)
    saved = train.VALUE_BLEND, train.ANCHOR_LEVEL
    train.VALUE_BLEND, train.ANCHOR_LEVEL = blend, anchor
    try:
        result = train.fit_and_log(settings, data, progress=lambda m: _say(f"  {name}: {m}"))
    finally:
        train.VALUE_BLEND, train.ANCHOR_LEVEL = saved
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
        served = _fit(WORK / w.name / "served", w.name, blend=0.5, anchor=True)
        trees = _fit(WORK / w.name / "trees", w.name, blend=1.0, anchor=False)
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
    """The served recipe as it is in the working tree, on every development world and origin
    (`development-<tag>.json`): compare a change with `development-blend.json`'s "served"."""
    import training.train as train

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
        fitted = _fit(root / w.name, w.name, blend=train.VALUE_BLEND, anchor=train.ANCHOR_LEVEL)
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
