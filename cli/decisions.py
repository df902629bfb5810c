"""`clv analyze`: cohorts and channels, scored by the served models (clv.decisions)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from clv.core.console import JsonOption, as_of_option, emit, progress, settings_of

if TYPE_CHECKING:
    from clv.decisions.analyze import ChannelRun, CohortRun, ExperimentRun, RetentionRun

app = typer.Typer(
    help="What the scores mean for the teams: cohorts, channels (CAC:CLV), experiments.",
    invoke_without_command=True,
)
decide_app = typer.Typer(help="Decisions within a budget, recorded so that they can be judged.")


def _values(ctx: typer.Context, as_of: str | None):  # type: ignore[no-untyped-def]
    from clv.core.time import parse_as_of
    from clv.decisions.analyze import load_values

    settings = settings_of(ctx)
    progress("scoring every customer with the served models")
    return settings, load_values(settings, as_of=parse_as_of(as_of) if as_of else None)


@app.callback()
def analyze(
    ctx: typer.Context, as_of: str | None = as_of_option(), as_json: bool = JsonOption
) -> None:
    """Every analysis the workspace has the data for (channels need acquisition_costs)."""
    if ctx.invoked_subcommand is not None:
        return
    from clv.core.store import has_table
    from clv.decisions.analyze import analyze_channels, analyze_cohorts, analyze_experiments
    from clv.decisions.dashboard import render_dashboard

    settings, values = _values(ctx, as_of)
    cohorts = analyze_cohorts(settings, values=values)
    payload: dict[str, object] = {"cohorts": _cohort_payload(cohorts)}
    lines = [_cohort_summary(cohorts)]
    if has_table(settings, "acquisition_costs"):
        channels = analyze_channels(settings, values=values)
        payload["channels"] = _channel_payload(channels)
        lines.append(_channel_summary(channels))
    if has_table(settings, "assignments"):
        experiments = analyze_experiments(settings, values=values)
        payload["experiments"] = _experiment_payload(experiments)
        lines.append(_experiment_summary(experiments))
    page = render_dashboard(settings)
    payload["dashboard"] = str(page)
    lines.append(f"dashboard -> {page}")
    emit("\n".join(lines), payload, as_json=as_json)


@app.command("cohorts")
def cohorts(
    ctx: typer.Context, as_of: str | None = as_of_option(), as_json: bool = JsonOption
) -> None:
    """Signup-month and early-adoption cohorts: realized triangle, active share, ARPU,
    predicted value (P10-P90); a cohort whose outlook fell since the last run is flagged."""
    from clv.decisions.analyze import analyze_cohorts

    settings, values = _values(ctx, as_of)
    run = analyze_cohorts(settings, values=values)
    emit(_cohort_summary(run), _cohort_payload(run), as_json=as_json)


@app.command("channels")
def channels(
    ctx: typer.Context, as_of: str | None = as_of_option(), as_json: bool = JsonOption
) -> None:
    """CAC, CLV per acquired customer, CLV:CAC (P10-P90) and payback by channel and month."""
    from clv.decisions.analyze import analyze_channels

    settings, values = _values(ctx, as_of)
    run = analyze_channels(settings, values=values)
    emit(_channel_summary(run), _channel_payload(run), as_json=as_json)


@app.command("experiments")
def experiments(
    ctx: typer.Context, as_of: str | None = as_of_option(), as_json: bool = JsonOption
) -> None:
    """Every experiment of the assignments table judged on realized value since assignment:
    uplift (Welch 95%, bootstrap check), CUPED, the surrogate read, sample-ratio check."""
    from clv.decisions.analyze import analyze_experiments

    settings, values = _values(ctx, as_of)
    run = analyze_experiments(settings, values=values)
    emit(_experiment_summary(run), _experiment_payload(run), as_json=as_json)


@decide_app.command("retention")
def retention(
    ctx: typer.Context,
    budget: float = typer.Option(..., "--budget", min=0.0, help="Most the offers may cost."),
    offer_cost: float = typer.Option(..., "--offer-cost", min=0.0, help="Cost of one offer."),
    save_rate: float | None = typer.Option(
        None, "--save-rate", min=0.0, max=1.0, help="Share of the value at risk an offer keeps."
    ),
    experiment: str | None = typer.Option(
        None, "--experiment", help="Use this experiment's measured uplift instead."
    ),
    name: str | None = typer.Option(None, "--name", help="The selection's experiment name."),
    as_json: bool = JsonOption,
) -> None:
    """Choose the at-risk customers whose offer saves the most margin within the budget; hold
    out a random control, record both in assignments, POST the treated to the webhook."""
    from clv.decisions.analyze import decide_retention
    from clv.decisions.dashboard import render_dashboard

    settings = settings_of(ctx)
    progress("scoring every customer with the served models")
    run = decide_retention(
        settings,
        budget=budget,
        offer_cost=offer_cost,
        save_rate=save_rate,
        experiment=experiment,
        name=name,
    )
    page = render_dashboard(settings)
    payload = {**_retention_payload(run), "dashboard": str(page)}
    emit(f"{_retention_summary(run)}\ndashboard -> {page}", payload, as_json=as_json)


def _experiment_payload(run: ExperimentRun) -> dict[str, object]:
    return {
        "as_of": run.as_of.isoformat(),
        "path": str(run.path),
        "experiments": [c.as_dict() for c in run.comparisons],
    }


def _experiment_summary(run: ExperimentRun) -> str:
    lines = [f"experiments as of {run.as_of.date()}: {len(run.comparisons)} -> {run.path}"]
    for c in run.comparisons:
        u = c.uplift
        state = "matured" if c.matured else f"matures {c.matures_at.date()}"
        if u.value != u.value:  # NaN: assigned after as_of
            lines.append(f"  {c.name}: {c.arms}, assigned after {run.as_of.date()}: no outcome yet")
            continue
        lines.append(
            f"  {c.name}: uplift {u.value:+,.2f} per customer (95% {u.low:+,.2f} to "
            f"{u.high:+,.2f}; CUPED {c.cuped.low:+,.2f} to {c.cuped.high:+,.2f}, variance "
            f"-{c.variance_reduction:.0%}); surrogate {c.surrogate.value:+,.2f}; {state}"
            + (f"; SAMPLE-RATIO MISMATCH p={c.srm_p:.2g}" if c.srm else "")
        )
    return "\n".join(lines)


def _retention_payload(run: RetentionRun) -> dict[str, object]:
    s = run.selection
    return {
        "experiment": s.name,
        "as_of": run.as_of.isoformat(),
        "path": str(run.path),
        "basis": run.basis,
        "budget_left": run.budget_left,
        "candidates": s.candidates,
        "excluded_recent": s.excluded_recent,
        "selected": len(s.chosen),
        "treated": len(s.treated),
        "holdout": len(s.holdout),
        "expected_saved": s.expected_saved,
        "expected_cost": s.expected_cost,
        "expected_roi": s.expected_roi,
        "webhook": None if run.webhook is None else run.webhook.__dict__,
        "past": run.past,
    }


def _retention_summary(run: RetentionRun) -> str:
    s = run.selection
    roi = "n/a" if s.expected_roi is None else f"{s.expected_roi:+.0%}"
    lines = [
        f"retention {s.name}: {len(s.treated):,} treated, {len(s.holdout):,} held out "
        f"(of {s.candidates:,} at risk, {s.excluded_recent:,} selected recently); expected "
        f"saved {s.expected_saved:,.2f} for {s.expected_cost:,.2f}: ROI {roi} -> {run.path}"
    ]
    if run.webhook is not None:
        state = "ok" if run.webhook.ok else f"failed ({run.webhook.error})"
        lines.append(f"  webhook {run.webhook.url}: {run.webhook.customers} customers, {state}")
    matured = [p for p in run.past if p["realized_roi"] is not None]
    for p in matured[:3]:
        lines.append(f"  {p['experiment']}: realized ROI {float(str(p['realized_roi'])):+.0%}")
    return "\n".join(lines)


def _cohort_payload(run: CohortRun) -> dict[str, object]:
    return {
        "as_of": run.as_of.isoformat(),
        "path": str(run.path),
        "triangle": str(run.triangle_path),
        "previous_run": run.previous_run,
        "cohorts": [c.as_dict() for c in run.signup + run.adoption],
    }


def _cohort_summary(run: CohortRun) -> str:
    lines = [
        f"cohorts as of {run.as_of.date()}: {len(run.signup)} signup months, "
        f"{len(run.adoption)} adoption cohorts -> {run.path}"
    ]
    if run.signup:
        best = max(run.signup, key=lambda c: c.outlook_per_customer.value)
        lines.append(
            f"  most valuable signup month: {best.name} "
            f"({best.outlook_per_customer.value:,.2f} per customer)"
        )
    pairs = [run.adoption[i : i + 2] for i in range(0, len(run.adoption), 2)]
    for pair in pairs:
        if len(pair) == 2:
            yes, no = pair
            lines.append(
                f"  {yes.name}: {yes.outlook_per_customer.value:,.2f} per customer "
                f"({yes.customers:,}) vs {no.outlook_per_customer.value:,.2f} ({no.customers:,})"
            )
    drop = run.largest_drop
    if drop is not None and drop.change is not None:
        lines.append(
            f"  largest drop since the last run: {drop.name} {drop.change:+.1%}"
            + (" (flagged: below the last run's P10)" if drop.flagged else "")
        )
    elif run.previous_run is None:
        lines.append("  no earlier run to compare with")
    return "\n".join(lines)


def _channel_payload(run: ChannelRun) -> dict[str, object]:
    return {
        "as_of": run.as_of.isoformat(),
        "path": str(run.path),
        "channels": [r.as_dict() for r in run.channels],
        "months": [r.as_dict() for r in run.months],
    }


def _channel_summary(run: ChannelRun) -> str:
    lines = [f"channels as of {run.as_of.date()} -> {run.path}"]
    for r in run.ranked:
        assert r.clv_cac is not None and r.cac is not None
        payback = (
            f"payback {r.payback_months} months ({r.payback})"
            if r.payback_months is not None
            else "no payback within the horizon"
        )
        lines.append(
            f"  {r.channel}: CLV:CAC {r.clv_cac.value:.2f} "
            f"(P10-P90 {r.clv_cac.p10:.2f}-{r.clv_cac.p90:.2f}), CAC {r.cac:,.2f}, {payback}"
            + (" FLAGGED: does not pay back" if r.flagged else "")
        )
    return "\n".join(lines)
