"""The model_quality benchmark: the served recipe against every simple baseline, out of time,
on every judgement world (benchmarks.worlds.JUDGEMENT), under the default settings.

Per world: each predictor's test-origin value metrics, the recipe's churn ECE and P10-P90
coverage (overall and in its worst predicted-value decile), the same over the backtest
origins (mean and worst), whether the recipe beats the best simple baseline on Gini and RMSE,
and the seconds the world took. Workspaces go under `benchmarks/work/model-quality[-quick]/`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.case import WORK, Figures
from benchmarks.worlds import JUDGEMENT, World, world_training_data

if TYPE_CHECKING:
    from clv.core.settings import Settings
    from clv.training.backtest import OriginEvaluation
    from clv.training.train import TrainResult

QUICK_WORLDS = 2
QUICK_TRIALS = 3
NOMINAL_COVERAGE = 0.8
"""P10-P90: the share of labels an honest interval holds; "worst" is the farthest from it."""


def _num(value: float, digits: int = 4) -> float | None:
    """A JSON-safe rounded figure (None for NaN or infinite)."""
    return round(float(value), digits) if np.isfinite(value) else None


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _predictor_figures(ev: OriginEvaluation) -> dict[str, dict[str, float | None]]:
    """Each predictor's normalized Gini, RMSE, MAE, Spearman and |bias| % on one origin."""
    return {
        who: {
            "gini": _num(m.gini),
            "rmse": _num(m.rmse, 2),
            "mae": _num(m.mae, 2),
            "spearman": _num(m.spearman),
            "abs_bias_pct": _num(abs(m.bias_pct), 2),
        }
        for who, m in ev.value.items()
    }


def _versus_baselines(ev: OriginEvaluation) -> dict[str, object]:
    """The best simple baseline on Gini and on RMSE, and whether the recipe beats each."""
    from clv.training.backtest import BASELINES

    by_gini = ev.best_baseline
    by_rmse = min(
        BASELINES, key=lambda k: ev.value[k].rmse if np.isfinite(ev.value[k].rmse) else np.inf
    )
    model = ev.value["model"]
    return {
        "best_baseline_gini": by_gini,
        "best_baseline_rmse": by_rmse,
        "gini_margin": _num(model.gini - ev.value[by_gini].gini),
        "rmse_margin": _num(model.rmse - ev.value[by_rmse].rmse, 2),
        "beats_best_baseline_gini": bool(model.gini > ev.value[by_gini].gini),
        "beats_best_baseline_rmse": bool(model.rmse < ev.value[by_rmse].rmse),
    }


def _worst_coverage(values: list[float]) -> float | None:
    finite = [v for v in values if np.isfinite(v)]
    if not finite:
        return None
    return _num(max(finite, key=lambda v: abs(v - NOMINAL_COVERAGE)))


def _backtest_figures(backtests: tuple[OriginEvaluation, ...]) -> dict[str, object]:
    """Over the backtest origins: every predictor's mean and worst metric (worst = lowest Gini
    and Spearman, highest RMSE, MAE and |bias| %), the recipe's ECE and coverage, its wins."""
    if not backtests:
        return {"origins": []}
    worst_is_low = {"gini": True, "spearman": True, "rmse": False, "mae": False}
    per_origin = [_predictor_figures(ev) for ev in backtests]
    predictors: dict[str, dict[str, float | None]] = {}
    for who in per_origin[0]:
        out: dict[str, float | None] = {}
        for metric in (*worst_is_low, "abs_bias_pct"):
            vals = [v for o in per_origin if (v := o[who][metric]) is not None]
            low = worst_is_low.get(metric, False)
            digits = 4 if metric in ("gini", "spearman") else 2
            out[f"{metric}_mean"] = _num(float(np.mean(vals)), digits) if vals else None
            out[f"{metric}_worst"] = (min(vals) if low else max(vals)) if vals else None
        predictors[who] = out
    versus = [_versus_baselines(ev) for ev in backtests]
    eces = [ev.churn.ece for ev in backtests if np.isfinite(ev.churn.ece)]
    coverages = [ev.interval.coverage_p10_p90 for ev in backtests]
    finite_cov = [c for c in coverages if np.isfinite(c)]
    return {
        "origins": [ev.origin.date().isoformat() for ev in backtests],
        "embargoed": [ev.embargoed for ev in backtests],
        "predictors": predictors,
        "model_churn_ece_mean": _num(float(np.mean(eces))) if eces else None,
        "model_churn_ece_worst": _num(max(eces)) if eces else None,
        "model_coverage_p10_p90_mean": _num(float(np.mean(finite_cov))) if finite_cov else None,
        "model_coverage_p10_p90_worst": _worst_coverage(coverages),
        "model_beats_best_baseline_gini": sum(bool(v["beats_best_baseline_gini"]) for v in versus),
        "model_beats_best_baseline_rmse": sum(bool(v["beats_best_baseline_rmse"]) for v in versus),
    }


def _decile_coverage(settings: Settings, result: TrainResult) -> dict[str, object]:
    """P10-P90 coverage within each predicted-value decile of the recipe at the test origin
    (decile 1 = highest predicted, as clv.evaluation.metrics.decile_table), re-scored with the
    version's evaluated (held-out) bundle."""
    from clv.model.intervals import interval_metrics
    from clv.registry.mlflow_io import load_version

    ev = result.evaluation
    rows = ev.rows
    pred = load_version(settings, result.version, evaluated=True).model.predict(rows)
    clv = pred["clv"].to_numpy(np.float64)
    y = np.clip(rows["clv_label"].to_numpy(np.float64), 0.0, None)
    order = np.argsort(-clv, kind="stable")
    decile = np.empty(len(clv), dtype=np.int64)
    decile[order] = np.arange(len(clv)) * 10 // max(len(clv), 1) + 1
    lo, hi = pred["clv_p10"].to_numpy(np.float64), pred["clv_p90"].to_numpy(np.float64)
    by_decile = [
        interval_metrics(y[decile == d], lo[decile == d], hi[decile == d]) for d in range(1, 11)
    ]
    coverages = [m.coverage_p10_p90 for m in by_decile]
    gaps = [abs(c - NOMINAL_COVERAGE) if np.isfinite(c) else -1.0 for c in coverages]
    return {
        "coverage_p10_p90_by_decile": [_num(c) for c in coverages],
        "coverage_p10_p90_worst_decile": _worst_coverage(coverages),
        "worst_decile": 1 + int(np.argmax(gaps)),
        "evaluated_bundle_matches_evaluation": bool(
            np.allclose(clv, ev.predictions["model"], rtol=1e-5, atol=1e-6)
        ),
    }


def _world_figures(w: World, root: Path, *, trials: int | None) -> Figures:
    """Generate, ingest, build, fit_and_log and score one world (default settings bar its
    horizon; `trials` None = `tuning.n_trials`)."""
    from clv.training.train import fit_and_log

    started = time.perf_counter()
    settings, data = world_training_data(root, w.name)
    prepared = time.perf_counter() - started
    result = fit_and_log(
        settings, data, n_trials=trials, progress=lambda msg: _say(f"  {w.name}: {msg}")
    )
    ev = result.evaluation
    return {
        "family": w.family,
        "seed": w.seed,
        "customers": w.customers,
        "months": w.months,
        "horizon_days": w.horizon_days,
        "trials": trials if trials is not None else settings.tuning.n_trials,
        "backtest_origins_setting": settings.evaluation.backtest_origins,
        "embargoed": result.embargoed,
        "test_origin": ev.origin.date().isoformat(),
        "test_rows": len(ev.rows),
        "value_model": result.objective.kind if result.objective is not None else None,
        "test": _predictor_figures(ev),
        **_versus_baselines(ev),
        "model_churn_ece": _num(ev.churn.ece),
        "model_coverage_p10_p90": _num(ev.interval.coverage_p10_p90),
        **_decile_coverage(settings, result),
        "backtests": _backtest_figures(result.backtests),
        "prepare_seconds": round(prepared, 1),
        "fit_and_log_seconds": round(result.seconds, 1),
        "seconds": round(time.perf_counter() - started, 1),
    }


def model_quality(*, quick: bool) -> Figures:
    """Every judgement world (quick: the two smallest, 3 trials), default settings otherwise."""
    worlds = (
        sorted(JUDGEMENT, key=lambda w: (w.customers * w.months, w.name))[:QUICK_WORLDS]
        if quick
        else list(JUDGEMENT)
    )
    trials = QUICK_TRIALS if quick else None
    work = WORK / ("model-quality-quick" if quick else "model-quality")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    figures: Figures = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_start": _load(),
        "cpus": os.cpu_count(),
        "worlds_run": [w.name for w in worlds],
    }
    per_world: dict[str, Figures] = {}
    for i, w in enumerate(worlds, 1):
        _say(f"model_quality: world {i}/{len(worlds)} {w.name}")
        per_world[w.name] = _world_figures(w, work / w.name, trials=trials)
        _say(f"model_quality: {w.name} done in {per_world[w.name]['seconds']} s")
        partial = {**figures, "worlds": per_world}  # kept if a later world fails
        (work / "partial.json").write_text(json.dumps(partial, indent=2) + "\n")
    margins = {n: f["gini_margin"] for n, f in per_world.items()}
    ranked = [n for n in margins if margins[n] is not None]
    worst = min(ranked, key=lambda n: float(margins[n])) if ranked else None  # type: ignore[arg-type]
    figures.update(
        {
            "worlds": per_world,
            "world_count": len(per_world),
            "model_beats_best_baseline_gini": sum(
                bool(f["beats_best_baseline_gini"]) for f in per_world.values()
            ),
            "model_beats_best_baseline_rmse": sum(
                bool(f["beats_best_baseline_rmse"]) for f in per_world.values()
            ),
            "worst_world": worst,
            "worst_world_gini_margin": margins[worst] if worst is not None else None,
            "load_average_end": _load(),
            "date_end": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    return figures


TABLE_PREDICTORS = ("model", "baseline", "last_horizon", "run_rate")
TABLE_LABELS = {
    "model": "clv (served recipe)",
    "baseline": "BG/NBD + Gamma-Gamma",
    "last_horizon": "last-horizon margin",
    "run_rate": "lifetime run-rate",
}


def readme_table(figures: Figures) -> str:
    """The README's model table from a model_quality result: every judgement world, worst
    Gini margin first; per predictor Gini, RMSE, MAE, Spearman and |bias| at the test origin,
    and the served recipe's churn ECE and P10-P90 coverage (overall / worst decile)."""
    inner = figures.get("figures", figures)  # a results file wraps the figures
    assert isinstance(inner, dict)
    worlds = inner["worlds"]
    assert isinstance(worlds, dict)
    order = sorted(worlds, key=lambda n: float(worlds[n]["gini_margin"]))
    head = (
        "| world (family, customers, months, horizon) | predictor | Gini | RMSE | MAE | "
        "Spearman | abs bias % | churn ECE | P10-P90 coverage (worst decile) |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for name in order:
        f = worlds[name]
        title = (
            f"{name} ({f['family']}, {f['customers']:,}, {f['months']} mo, {f['horizon_days']} d)"
        )
        for i, who in enumerate(TABLE_PREDICTORS):
            m = f["test"][who]
            extra = (
                f"{f['model_churn_ece']:.3f} | {f['model_coverage_p10_p90']:.3f} "
                f"({f['coverage_p10_p90_worst_decile']:.3f})"
                if who == "model"
                else " | "
            )
            lines.append(
                f"| {title if i == 0 else ''} | {TABLE_LABELS[who]} | {m['gini']:.3f} | "
                f"{m['rmse']:.1f} | {m['mae']:.1f} | {m['spearman']:.3f} | "
                f"{m['abs_bias_pct']:.1f} | {extra} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":  # python -m benchmarks.quality RESULT.json: the README table
    print(readme_table(json.loads(Path(sys.argv[1]).read_text())))
