"""`clv train`: tune, fit, evaluate and register a model version (wiring only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from clv.core.console import JsonOption, emit, progress, settings_of

if TYPE_CHECKING:
    from clv.training.train import TrainResult


def skip_readiness_option(verb: str) -> bool:
    """`--skip-readiness` of `clv train` and `clv retrain` (`verb`: what is done anyway)."""
    return typer.Option(
        False,
        "--skip-readiness",
        help=f"{verb} without the readiness check (clv data profile), even below its minimums.",
    )


def train(
    ctx: typer.Context,
    trials: int | None = typer.Option(
        None, "--trials", min=1, help="Optuna trials (default: settings)."
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=1,
        help="Processes tuning each Optuna study (default: tuning.workers); "
        "more than 1 makes the trial sequence non-reproducible.",
    ),
    skip_readiness: bool = skip_readiness_option("Train"),
    as_json: bool = JsonOption,
) -> None:
    """Train the value and churn models on the feature snapshots and register a version."""
    from functools import partial

    from clv.registry.aliases import ensure_champion
    from clv.registry.mlflow_io import live_champion
    from clv.training.readiness_io import require_ready
    from clv.training.train import run

    settings = settings_of(ctx)
    result = run(
        settings,
        n_trials=trials,
        workers=workers,
        progress=progress,
        champion=live_champion,
        readiness=partial(require_ready, skip=skip_readiness, progress=progress),
    )
    became_champion = ensure_champion(settings, result.version)
    alias = "champion" if became_champion else None
    emit(
        summary(result, became_champion=became_champion),
        {
            "run_id": result.run_id,
            "version": result.version,
            "alias": alias,
            "metrics": result.metrics,
            "evaluation": result.evaluation_summary(),
            "readiness": result.readiness.summary() if result.readiness is not None else None,
            "contractual": result.contractual.as_dict() if result.contractual else None,
        },
        as_json=as_json,
    )


PREDICTOR_LABELS = {
    "model": "clv",
    "baseline": "BG/NBD+GG",
    "last_horizon": "last-H",
    "run_rate": "run-rate",
    "default": "default",
}


def _or_inf(value: float) -> float:
    return value if value == value else float("inf")


def summary(result: TrainResult, *, became_champion: bool) -> str:
    """The human summary: version, embargo status, every predictor on the test origin, the
    backtests' worst case, and the served recipe's churn and interval figures."""
    from clv.training.backtest import BASELINES

    ev = result.evaluation
    who = [k for k in PREDICTOR_LABELS if k in ev.value]
    head = "  ".join(f"{PREDICTOR_LABELS[k]:>10}" for k in who)

    def row(name: str, metric: str, fmt: str) -> str:
        cells = "  ".join(f"{getattr(ev.value[k], metric):>10{fmt}}" for k in who)
        return f"  {name:<17}{cells}"

    lines = [
        f"registered {result.model_name} version {result.version}"
        + (
            " (champion)"
            if became_champion
            else " (challenger: a champion exists)"
            if result.embargoed
            else " (challenger: not embargoed, not promoted)"
        )
        + f"  run {result.run_id}",
        f"best trial {result.best_trial} of {sum(result.trials.values())} "
        f"({result.trials.get('pruned', 0)} pruned), {result.seconds:.0f}s",
        "evaluation: embargoed"
        if result.embargoed
        else f"evaluation: NOT EMBARGOED ({result.evaluation_reason}); "
        "the gates refuse to promote on it without --force",
        f"test origin {ev.origin.date()} ({len(ev.rows):,} rows, out of time)",
        f"  {'':<17}{head}",
        row("normalized gini", "gini", ".3f"),
        row("spearman", "spearman", ".3f"),
        row("top-decile share", "top_decile_share", ".3f"),
        row("rmse", "rmse", ".1f"),
        row("mae", "mae", ".1f"),
        row("bias %", "bias_pct", ".1f"),
    ]
    for bt in result.backtests:
        m = bt.value["model"]
        by_gini = bt.best_baseline
        by_rmse = min(BASELINES, key=lambda k: _or_inf(bt.value[k].rmse))
        lines.append(
            f"backtest {bt.origin.date()}: gini {m.gini:.3f} vs {bt.value[by_gini].gini:.3f} "
            f"({PREDICTOR_LABELS[by_gini]}), rmse {m.rmse:.1f} vs {bt.value[by_rmse].rmse:.1f} "
            f"({PREDICTOR_LABELS[by_rmse]}), bias {m.bias_pct:+.1f}%"
        )
    c, iv = result.churn_metrics, result.interval_metrics
    lines += [
        _readiness_line(result),
        f"served recipe, churn: roc auc {c.roc_auc:.3f}  pr auc {c.pr_auc:.3f}  "
        f"brier {c.brier:.3f}  ece {c.ece:.3f}",
        f"served recipe, P10-P90: coverage {iv.coverage_p10_p90:.3f}  "
        f"mean width {iv.mean_width:.1f}",
        *_contractual_lines(result),
    ]
    return "\n".join(lines)


CONTRACTUAL_LABELS = {"model": "hazard", "sbg": "sBG", "kaplan_meier": "KM/plan"}


def _contractual_lines(result: TrainResult) -> list[str]:
    """The subscribers' part: the hazard against the sBG and Kaplan-Meier at its test origin."""
    part = result.contractual
    if part is None:
        return []
    ev = part.evaluation
    blocks = {k: ev[k] for k in CONTRACTUAL_LABELS if isinstance(ev.get(k), dict)}

    def cell(block: object, key: str, fmt: str) -> str:
        v = block.get(key) if isinstance(block, dict) else None
        return f"{v:>10{fmt}}" if isinstance(v, int | float) else f"{'-':>10}"

    def row(name: str, key: str, fmt: str) -> str:
        return f"  {name:<17}" + "  ".join(cell(b, key, fmt) for b in blocks.values())

    one_off = ev.get("one_off")
    bias = one_off.get("bias_pct") if isinstance(one_off, dict) else None
    return [
        f"contractual: {part.subscribers:,} subscribers scored from {part.trained_at}; "
        f"test origin {ev['test_origin']} ({ev['subscriptions']:,} subscriptions, "
        f"H = {ev['horizon_months']} months, out of time), {part.seconds:.0f}s",
        f"  {'':<17}" + "  ".join(f"{CONTRACTUAL_LABELS[k]:>10}" for k in blocks),
        row("c-index", "c_index", ".3f"),
        row("integrated brier", "ibs", ".4f"),
        row("renewal ece", "renewal_ece", ".3f"),
        row("clv bias %", "clv_bias_pct", ".1f"),
        "  one-off purchases: bias "
        + (f"{bias:+.1f}%" if isinstance(bias, int | float) else "n/a")
        + (f" ({one_off.get('method')})" if isinstance(one_off, dict) else ""),
    ]


def _readiness_line(result: TrainResult) -> str:
    r = result.readiness
    if r is None:
        return "readiness: not checked (--skip-readiness)"
    warned = len(r.of_level("warn")) + (len(r.of_level("refuse")) if not r.enforced else 0)
    return f"readiness: {r.status}" + (
        f", {warned} warning(s) (clv data profile)" if warned else ""
    )
