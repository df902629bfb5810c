"""`clv serve` and `clv score`: thin commands over clv.serving.app and clv.serving.batch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from clv.core.console import JsonOption, as_of_option, emit, progress, settings_of
from clv.core.errors import ClvError

if TYPE_CHECKING:
    import pandas as pd

    from clv.core.settings import Settings


def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="Bind address (default serving.host)."),
    port: int | None = typer.Option(
        None, "--port", help="Port, 1-65535 or 0 for any free one (default serving.port)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Serve POST /score (champion + canary, online features), /healthz, /readyz, /metrics."""
    from clv.core.services import require_feast_registry, require_online_store, require_tracking
    from clv.serving import listen
    from clv.serving.app import bearer_token, create_app

    settings = settings_of(ctx)
    auth = bearer_token(settings) is not None  # an empty token stops here, before the bind
    # What the start-up load reads: a service that does not answer stops here in one line
    # (a running server rides out an outage instead: clv.serving.state keeps its models).
    require_tracking(settings)
    require_feast_registry(settings)
    require_online_store(settings)
    sock = listen.bind(
        host or settings.serving.host, settings.serving.port if port is None else port
    )
    app = create_app(settings, freeze_gc=True)
    bound_host, bound_port, url = listen.bound_url(sock)
    emit(
        f"serving {settings.mlflow.model_name}@champion (+ canary when set) on {url} "
        f"(POST /score{' with bearer auth' if auth else ''}, GET /readyz, GET /metrics)",
        {"url": url, "host": bound_host, "port": bound_port, "alias": "champion", "auth": auth},
        as_json=as_json,
    )
    listen.run(app, sock)


def score(
    ctx: typer.Context,
    customer_ids: list[str] | None = typer.Argument(
        None, help="Customer ids or aliases to score (instead of --all); nothing is written."
    ),
    all_: bool = typer.Option(False, "--all", help="Score every customer in the offline store."),
    as_of: str | None = as_of_option(),
    out: Path = typer.Option(
        Path("scores.parquet"), "--out", help="Output Parquet; relative paths are in the workspace."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Batch-score customers point-in-time; writes scores.parquet and at_risk.csv beside it.

    With ids instead of --all: those customers' scores (an alias answers for its customer)."""
    from clv.core.time import parse_as_of
    from clv.serving.batch import score_all

    if all_ == bool(customer_ids):
        raise ClvError(
            "pass --all to score every customer, or the customer ids (or aliases) to score"
        )
    settings = settings_of(ctx)
    when = parse_as_of(as_of) if as_of else None
    if customer_ids:
        _score_ids(settings, customer_ids, when=when, as_json=as_json)
        return
    target = out if out.is_absolute() else settings.workspace / out
    label = str(when.date()) if when is not None else "the latest snapshot"
    progress(f"scoring all customers as of {label}")
    result = score_all(settings, as_of=when, out=target)
    canary = (
        f", canary version {result.canary_version} scored {result.canary_rows}"
        if result.canary_version
        else ""
    )
    hook = result.webhook
    record = result.record
    share = record.coverage if record is not None else None
    covered = (
        f"\ncoverage: {record.active_scored:,} of {record.active:,} active customers scored "
        f"({share:.1%})"
        if record is not None and share is not None
        else ""
    )
    summary = (
        f"scored {result.rows} customers as of {result.as_of.date()} with version "
        f"{result.model_version}{canary} ({result.cold_start} cold start) -> {result.path}\n"
        f"{result.at_risk} high value / at risk -> {result.at_risk_path}{covered}"
    )
    if hook is not None:
        summary += f"\nwebhook {hook.url}: " + (
            f"posted {hook.customers} (HTTP {hook.status})" if hook.ok else f"FAILED ({hook.error})"
        )
    emit(
        summary,
        {
            "path": result.path,
            "at_risk_path": result.at_risk_path,
            "rows": result.rows,
            "at_risk": result.at_risk,
            "cold_start": result.cold_start,
            "model_version": result.model_version,
            "alias": result.alias,
            "as_of": result.as_of.isoformat(),
            "segments": result.segments,
            "value_thresholds": list(result.thresholds),
            "thresholds_source": result.thresholds_source,
            "canary_version": result.canary_version,
            "canary_rows": result.canary_rows,
            "coverage": None
            if record is None
            else {"active": record.active, "active_scored": record.active_scored, "share": share},
            "webhook": None
            if hook is None
            else {"url": hook.url, "status": hook.status, "error": hook.error, "ok": hook.ok},
        },
        as_json=as_json,
    )
    if hook is not None and not hook.ok:
        raise ClvError(f"scores written, but the webhook {hook.url} failed: {hook.error}")


def _score_ids(
    settings: Settings, customer_ids: list[str], *, when: pd.Timestamp | None, as_json: bool
) -> None:
    from clv.serving.batch import score_ids

    scores = score_ids(settings, customer_ids, as_of=when)
    lines = []
    for row in scores.itertuples(index=False):
        who = (
            row.customer_id
            if row.requested_id == row.customer_id
            else f"{row.requested_id} -> {row.customer_id}"
        )
        cold = " (cold start)" if row.cold_start else ""
        lines.append(
            f"{who}: clv {row.clv:.2f} [{row.clv_p10:.2f}, {row.clv_p90:.2f}], "
            f"churn {row.churn_probability:.2f}, {row.segment}, v{row.model_version}{cold}"
        )
    records = scores.assign(as_of=scores["as_of"].map(lambda t: t.isoformat()))
    emit("\n".join(lines), {"scores": records.to_dict(orient="records")}, as_json=as_json)
