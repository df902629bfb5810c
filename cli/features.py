"""`clv features`: build snapshots, register them in Feast, load the online store, look one up."""

from __future__ import annotations

import math

import typer

from clv.core.console import JsonOption, as_of_option, emit, progress, settings_of

app = typer.Typer(
    help="Features: build snapshots (DuckDB), apply the Feast repo, materialize, get.",
    no_args_is_help=True,
)


@app.command()
def apply(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Register entities, feature views and the FeatureService in the workspace's registry."""
    from clv.features import feast_io

    settings = settings_of(ctx)
    progress("applying the Feast declarations")
    result = feast_io.apply(settings)
    emit(
        f"applied {len(result.feature_views)} feature views "
        f"({', '.join(result.feature_views)}) and service {', '.join(result.feature_services)} "
        f"to {result.registry}",
        {
            "project": result.project,
            "registry": result.registry,
            "entities": result.entities,
            "feature_views": result.feature_views,
            "feature_services": result.feature_services,
        },
        as_json=as_json,
    )


@app.command()
def build(
    ctx: typer.Context,
    start: str | None = typer.Option(None, "--start", help="First snapshot date (YYYY-MM-DD)."),
    end: str | None = typer.Option(None, "--end", help="Last snapshot date, inclusive."),
    every: str | None = typer.Option(
        None, "--every", help="Snapshot spacing: Nd, Nw or NM (default: features.snapshot_every)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Compute every customer's features at each snapshot date from the ingested log (and
    register the Feast declarations when the workspace has none yet)."""
    from clv.features import feast_io
    from clv.features.build import build_features

    settings = settings_of(ctx)
    progress("building feature snapshots")
    result = build_features(settings, start=start, end=end, every=every)
    applied = feast_io.ensure_applied(settings)
    if applied is not None:
        progress(f"registered the Feast declarations ({', '.join(applied.feature_services)})")
    first, last = result.snapshots[0], result.snapshots[-1]
    plural = "s" if result.chunks != 1 else ""
    emit(
        f"built {result.rows:,} rows: {result.customers:,} customers x {len(result.snapshots)} "
        f"snapshots ({first.date()} .. {last.date()}) in {result.chunks} chunk{plural} "
        f"(estimate {result.estimate.mb:,.0f} MiB, budget {result.memory_budget_mb:,} MiB) "
        f"in {result.seconds:.1f}s -> {result.path}",
        {
            "path": result.path,
            "rows": result.rows,
            "customers": result.customers,
            "snapshots": [t.isoformat() for t in result.snapshots],
            "seconds": round(result.seconds, 3),
            "chunks": result.chunks,
            "estimate_mb": round(result.estimate.mb, 1),
            "memory_budget_mb": result.memory_budget_mb,
            "applied": applied is not None,
        },
        as_json=as_json,
    )


@app.command()
def materialize(
    ctx: typer.Context,
    end: str | None = typer.Option(
        None, "--end", help="Load snapshots before this date (default: the whole build)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Load each customer's latest snapshot into the online store."""
    from clv.features import feast_io

    settings = settings_of(ctx)
    progress("materializing the latest snapshots into the online store")
    result = feast_io.materialize(settings, end=end)
    latest = result.latest_snapshot.date() if result.latest_snapshot is not None else None
    emit(
        f"materialized {result.customers:,} customers (latest snapshot {latest}) "
        f"into {settings.feast.online_store}",
        {
            "start": result.start.isoformat(),
            "end": result.end.isoformat(),
            "feature_views": result.feature_views,
            "customers": result.customers,
            "latest_snapshot": result.latest_snapshot,
        },
        as_json=as_json,
    )


def _plain(value: object) -> object:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat() if str(value) != "NaT" else None
    if hasattr(value, "item"):
        return value.item()
    return value


@app.command()
def get(
    ctx: typer.Context,
    customer_id: str = typer.Argument(..., help="The customer's id."),
    as_of: str | None = as_of_option(
        "Point-in-time features from the offline store (else online)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Show one customer's features: online, or as of a date (point in time, offline)."""
    import pandas as pd

    from clv.core.errors import DataError
    from clv.core.time import to_utc
    from clv.features import feast_io
    from clv.inputs.identities import canonical_ids, read_identities

    settings = settings_of(ctx)
    when = to_utc(as_of) if as_of is not None else pd.Timestamp.now(tz="UTC")
    # an alias shows its customer's features (clv.inputs.identities, as of the date)
    (canonical,) = canonical_ids([customer_id], read_identities(settings), when)
    if as_of is not None:
        entities = pd.DataFrame({"customer_id": [canonical], "event_timestamp": [when]})
        frame = feast_io.historical_features(settings, entities)
        source = f"offline as of {when.isoformat()}"
    else:
        frame = feast_io.online_features(settings, [canonical])
        source = "online"
    row = {k: _plain(v) for k, v in frame.iloc[0].to_dict().items()}
    names = feast_io.feature_names(settings)
    if all(row[n] is None for n in names):
        raise DataError(f"no features for customer {customer_id!r} ({source})")
    title = customer_id if canonical == customer_id else f"{customer_id} -> {canonical}"
    lines = [f"{title} ({source})"]
    if row.get("feature_timestamp") is not None:
        lines.append(f"  {'snapshot':<26} {row['feature_timestamp']}")
    lines += [f"  {n:<26} {row[n]}" for n in names]
    emit("\n".join(lines), {"source": source, **row}, as_json=as_json)
