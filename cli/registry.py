"""`clv registry`: versions, gated canary and promotion, rollback, live status and history."""

from __future__ import annotations

import typer

from clv.core.console import JsonOption, emit, settings_of
from clv.core.tags import EMBARGOED_TAG, MODEL_GINI, STATUS_INCOMPLETE, STATUS_TAG, eval_tag

app = typer.Typer(
    help="Registered model versions, their aliases and promotion.", no_args_is_help=True
)

ForceOption = typer.Option(False, "--force", help="Override failed gates (recorded as forced).")


@app.command("list")
def list_(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Every registered version, newest first, with headline test metrics."""
    from clv.registry.mlflow_io import list_versions

    settings = settings_of(ctx)
    versions = list_versions(settings)
    lines = [f"model {settings.mlflow.model_name}: {len(versions)} version(s)"]
    for v in versions:
        raw = v.version_tags.get(MODEL_GINI)
        gini = float(raw) if raw is not None else v.metrics.get("test_gini", float("nan"))
        tag = f" [{', '.join(v.aliases)}]" if v.aliases else ""
        gate = v.version_tags.get("gate.passed")
        gated = f"  gates {'passed' if gate == 'true' else 'failed'}" if gate else ""
        best = _best_baseline_gini(v.version_tags)
        versus = f" (best baseline {best:.3f})" if best is not None else ""
        embargo = {"true": "embargoed", "false": "NOT EMBARGOED"}.get(
            v.version_tags.get(EMBARGOED_TAG, ""), "embargo unknown"
        )
        incomplete = v.version_tags.get(STATUS_TAG) == STATUS_INCOMPLETE
        lines.append(
            f"  v{v.version}{tag}  {v.created:%Y-%m-%d %H:%M}"
            + ("  INCOMPLETE (registration did not complete)" if incomplete else "")
            + f"  gini {gini:.3f}{versus}  {embargo}{gated}  run {v.run_id}"
        )
    emit(
        "\n".join(lines),
        {"model": settings.mlflow.model_name, "versions": [v.as_dict() for v in versions]},
        as_json=as_json,
    )


def _best_baseline_gini(tags: dict[str, str]) -> float | None:
    """The highest test Gini among the simple baselines tagged on a version."""
    values = []
    for who in ("baseline", "last_horizon", "run_rate"):
        try:
            values.append(float(tags[eval_tag(who, "gini")]))
        except (KeyError, ValueError):
            continue
    finite = [x for x in values if x == x]
    return max(finite) if finite else None


@app.command("show")
def show(
    ctx: typer.Context, version: str = typer.Argument(...), as_json: bool = JsonOption
) -> None:
    """One version: its run, aliases, evaluation and gate tags, metrics."""
    from clv.registry.mlflow_io import version_info

    info = version_info(settings_of(ctx), version)
    lines = [
        f"version {info.version}  run {info.run_id}  aliases: {', '.join(info.aliases) or '-'}",
        f"created {info.created:%Y-%m-%d %H:%M} UTC  status {info.status}",
        *(f"  {k} = {v}" for k, v in sorted(info.version_tags.items())),
        *(f"  {k} = {v:.4g}" for k, v in sorted(info.metrics.items())),
    ]
    emit("\n".join(lines), info.as_dict(detail=True), as_json=as_json)


@app.command("canary")
def canary(
    ctx: typer.Context,
    version: str = typer.Argument(...),
    share: float | None = typer.Option(
        None, "--share", help="Share of customers the canary scores (default registry setting)."
    ),
    shadow: bool = typer.Option(
        False, "--shadow", help="Both score the share; the champion answers."
    ),
    force: bool = ForceOption,
    as_json: bool = JsonOption,
) -> None:
    """Gate VERSION against the champion, then route a share of customers to it."""
    from clv.registry.promotion import start_canary

    settings = settings_of(ctx)
    chosen = settings.registry.canary_share if share is None else share
    result = start_canary(settings, version, share=chosen, shadow=shadow, force=force)
    emit(_change_summary(result.message, result), result.as_dict(), as_json=as_json)


@app.command("promote")
def promote(
    ctx: typer.Context,
    version: str = typer.Argument(...),
    force: bool = ForceOption,
    as_json: bool = JsonOption,
) -> None:
    """Gate VERSION, make it champion (finalizes its canary)."""
    from clv.registry.promotion import promote as promote_version

    result = promote_version(settings_of(ctx), version, force=force)
    emit(_change_summary(result.message, result), result.as_dict(), as_json=as_json)


@app.command("rollback")
def rollback(
    ctx: typer.Context,
    reason: str | None = typer.Option(None, "--reason", help="Why (kept in the history)."),
    as_json: bool = JsonOption,
) -> None:
    """End the running canary; without one, give the champion back to its predecessor."""
    from clv.registry.promotion import rollback as roll_back

    result = roll_back(settings_of(ctx), reason=reason)
    emit(result.message, result.as_dict(), as_json=as_json)


@app.command("status")
def status(
    ctx: typer.Context,
    enforce: bool = typer.Option(
        False,
        "--enforce",
        help="Roll back a canary that breaches a guardrail (the scheduled judge: cron or a "
        "systemd timer, every minute).",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Aliases; canary vs champion on the live traffic of every replica (Prometheus, else the
    local server); with --enforce, rolls back a canary that breaches a guardrail."""
    from clv.registry.status import status as registry_status

    settings = settings_of(ctx)
    report = registry_status(settings, enforce=enforce)
    name = settings.mlflow.model_name
    lines = (
        [f"{alias}: version {v}" for alias, v in report.aliases.items()]
        if report.aliases
        else [f"model {name}: no aliases yet (run `clv train`)"]
    )
    if "canary" in report.aliases:
        mode = "shadow" if report.shadow else f"share {report.share:.0%}"
        lines.append(f"canary mode: {mode}")
    live = report.live
    if live is not None and live.canary is not None and live.champion is not None:
        replicas = f", {live.replicas} replica(s) serve the canary" if live.replicas else ""
        lines.append(f"live traffic from the {live.source}{replicas}")
        lines.append(f"{'live':<10}{'version':>8}{'requests':>10}{'errors':>9}{'p95 ms':>9}")
        for label, s in (("champion", live.champion), ("canary", live.canary)):
            lines.append(
                f"{label:<10}{s.version:>8}{s.requests:>10}{s.error_rate:>9.2%}"
                f"{s.latency_p95_ms:>9.2f}"
            )
        drift = live.prediction_psi
        lines.append(
            f"prediction PSI (canary vs champion): {'n/a' if drift is None else f'{drift:.3f}'}"
        )
    if report.verdict is not None:
        lines.append(f"verdict: {report.verdict.action}: {report.verdict.reason}")
    if report.rolled_back is not None:
        lines.append(report.rolled_back.message)
    lines.extend(report.notes)
    emit("\n".join(lines), {"model": name, **report.as_dict()}, as_json=as_json)


@app.command("history")
def history(
    ctx: typer.Context,
    limit: int = typer.Option(20, "--limit", min=1, help="Newest rows to show."),
    as_json: bool = JsonOption,
) -> None:
    """Every alias change: when, who, from which version to which, why, gate results."""
    from clv.registry.moves import history as history_of

    settings = settings_of(ctx)
    rows = history_of(settings).rows(settings.mlflow.model_name, limit=limit)
    lines = [f"model {settings.mlflow.model_name}: {len(rows)} change(s), newest first"]
    for r in rows:
        moved = f"{r.from_version or '-'} -> {r.to_version or '-'}"
        forced = " FORCED" if r.forced else ""
        lines.append(
            f"  #{r.id} {r.at[:19]} {r.actor}  {r.alias} {moved}  {r.action}{forced}"
            f" [{r.status}]  {r.reason}"
        )
    emit("\n".join(lines), {"history": [r.as_dict() for r in rows]}, as_json=as_json)


def _change_summary(message: str, result: object) -> str:
    from clv.registry.promotion import ChangeResult

    assert isinstance(result, ChangeResult)
    lines = [message]
    if result.gates is not None:
        for c in result.gates.checks:
            lines.append(f"  {c.outcome:<4} {c.name}: {c.reason}")
        if result.gates.forced and not result.gates.passed:
            lines.append("  (forced past failed gates; recorded in the history)")
    return "\n".join(lines)
