"""`clv analyze`: cohorts and channels, scored by the served models (clv.decisions)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from clv.core.console import JsonOption, as_of_option, emit, progress, settings_of

if TYPE_CHECKING:
    from clv.decisions.analyze import ChannelRun, CohortRun

app = typer.Typer(
    help="What the scores mean for the teams: cohorts, channels (CAC:CLV).",
    invoke_without_command=True,
)


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
    from clv.decisions.analyze import analyze_channels, analyze_cohorts

    settings, values = _values(ctx, as_of)
    cohorts = analyze_cohorts(settings, values=values)
    payload: dict[str, object] = {"cohorts": _cohort_payload(cohorts)}
    lines = [_cohort_summary(cohorts)]
    if has_table(settings, "acquisition_costs"):
        channels = analyze_channels(settings, values=values)
        payload["channels"] = _channel_payload(channels)
        lines.append(_channel_summary(channels))
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
