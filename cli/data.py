"""`clv data`: generate a seeded demo world, ingest raw files, show what is stored."""

from __future__ import annotations

import time
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from clv.core.console import JsonOption, emit, progress, settings_of
from clv.core.contracts import TableName
from clv.core.errors import ClvError

if TYPE_CHECKING:
    import pandas as pd

app = typer.Typer(
    help="Raw data: generate seeded customers, ingest CSV/Parquet into the offline store, status.",
    no_args_is_help=True,
)


class ScenarioChoice(StrEnum):
    baseline = "baseline"
    price_increase = "price_increase"
    channel_shift = "channel_shift"
    engagement_drop = "engagement_drop"


class WorldChoice(StrEnum):
    """The generator's world families (inputs/worlds.py says what each switches on), then the
    subscription worlds (inputs/saas.py)."""

    btyd = "btyd"
    seasonal = "seasonal"
    growth = "growth"
    decline = "decline"
    tenure = "tenure"
    comeback = "comeback"
    behaviour = "behaviour"
    lines = "lines"
    mixed = "mixed"
    retail = "retail"
    saas = "saas"
    saas_mixed = "saas_mixed"
    saas_price_change = "saas_price_change"
    saas_wear = "saas_wear"


class FormatChoice(StrEnum):
    csv = "csv"
    parquet = "parquet"


class TableChoice(StrEnum):
    transactions = "transactions"
    customers = "customers"
    events = "events"
    identities = "identities"
    acquisition_costs = "acquisition_costs"
    assignments = "assignments"
    subscriptions = "subscriptions"
    subscription_changes = "subscription_changes"


@app.command()
def generate(
    ctx: typer.Context,
    customers: int = typer.Option(20_000, "--customers", min=1, help="Customers to generate."),
    months: int = typer.Option(36, "--months", min=1, help="Length of the period in months."),
    seed: int = typer.Option(42, "--seed", help="Random seed (same seed, same data)."),
    scenario: ScenarioChoice = typer.Option(
        ScenarioChoice.baseline, "--scenario", help="What changes after the change date."
    ),
    world: WorldChoice = typer.Option(
        WorldChoice.mixed, "--world", help="World family: the mechanisms behind the data."
    ),
    start: str = typer.Option("2023-01-01", "--start", help="First day of the period (UTC)."),
    change_date: str | None = typer.Option(
        None, "--change-date", help="When the scenario starts (default: 2/3 through the period)."
    ),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: data/raw)."),
    fmt: FormatChoice = typer.Option(FormatChoice.csv, "--format", help="File format."),
    decisions: bool = typer.Option(
        False,
        "--decisions",
        help="Also plant the decisions' truths: acquisition costs per channel and month "
        "(acquisition_costs), an early-adoption lift and a retention experiment (assignments).",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Write transactions, customers and events files (retail: and identities) from a seeded
    generator; with --decisions also acquisition_costs and assignments; a subscription world
    (saas...) writes subscriptions and subscription_changes too."""
    from clv.inputs.generator import generate as run_generate
    from clv.inputs.generator import ingest_block, ingest_overrides, write_raw
    from clv.inputs.planted import AdoptionPlan, CostPlan, ExperimentPlan
    from clv.inputs.worlds import WORLDS

    settings = settings_of(ctx)
    out_dir = out or settings.raw_dir
    saas = world.value.startswith("saas")
    if saas and (scenario is not ScenarioChoice.baseline or decisions):
        raise ClvError(
            "a subscription world has no --scenario or --decisions: "
            "saas_price_change is its price change (--change-date sets when)"
        )
    progress(
        f"generating {customers:,} customers over {months} months "
        f"(world {world.value}, seed {seed})"
    )
    if saas:
        _generate_saas(
            world.value, customers, months, seed, start, change_date, out_dir, fmt, as_json=as_json
        )
        return
    family = next(w for w in WORLDS if w == world.value)
    t = time.perf_counter()
    data = run_generate(
        seed=seed,
        world=family,
        customers=customers,
        months=months,
        start=start,
        scenario=scenario.value,
        change_date=change_date,
        costs=CostPlan() if decisions else None,
        adoption=AdoptionPlan() if decisions else None,
        experiment=ExperimentPlan() if decisions else None,
    )
    rows, payload = _written(
        out_dir,
        fmt,
        data.tables(),
        write_raw(data, out_dir, fmt=fmt.value),
        started=t,
        customers=customers,
        months=months,
        seed=seed,
    )
    seconds = payload["seconds"]
    payload.update(
        world=data.world,
        scenario=scenario.value,
        start=data.start.isoformat(),
        end=data.end.isoformat(),
        change_date=data.change_date.isoformat(),
    )
    if decisions:
        payload["truths"] = data.truths.as_dict()
    identities = f", {rows['identities']:,} aliases" if "identities" in rows else ""
    planted = "".join(
        f", {rows[t]:,} {t.replace('_', ' ')} rows"
        for t in ("acquisition_costs", "assignments")
        if t in rows
    )
    summary = (
        f"wrote {rows['transactions']:,} transactions, {rows['customers']:,} customer rows"
        f"{identities}{planted} and {rows['events']:,} events to {out_dir} "
        f"({fmt.value}, {seconds} s)\n"
        f"period {data.start.date()} .. {data.end.date()}, world {data.world}, "
        f"scenario {scenario.value}"
        f" from {data.change_date.date()}\n"
    )
    summary += "".join(f"planted: {line}\n" for line in data.truths.describe())
    if data.ingest_settings is not None:
        block = ingest_block(data.ingest_settings)
        payload["ingest_settings"] = ingest_overrides(data.ingest_settings)
        summary += (
            "this export's conventions, for clv.yaml (personal columns are hashed with the key "
            f"in ${data.ingest_settings.personal_key_env}):\n{block}"
        )
    emit(summary + f"next: clv data ingest {out_dir}", payload, as_json=as_json)


def _written(
    out_dir: Path,
    fmt: FormatChoice,
    tables: Mapping[TableName, pd.DataFrame],
    paths: Mapping[TableName, Path],
    *,
    started: float,
    customers: int,
    months: int,
    seed: int,
) -> tuple[dict[TableName, int], dict[str, object]]:
    """The rows written per table, and what `clv data generate --json` says of any world:
    where, what size, how many rows, how long since `started`."""
    rows = {table: len(frame) for table, frame in tables.items()}
    return rows, {
        "out_dir": str(out_dir),
        "format": fmt.value,
        "customers": customers,
        "months": months,
        "seed": seed,
        "rows": rows,
        "files": {table: str(p) for table, p in paths.items()},
        "seconds": round(time.perf_counter() - started, 2),
    }


def _generate_saas(
    world: str,
    customers: int,
    months: int,
    seed: int,
    start: str,
    change_date: str | None,
    out_dir: Path,
    fmt: FormatChoice,
    *,
    as_json: bool = False,
) -> None:
    """`clv data generate --world saas...`: a subscription world's raw tables."""
    from clv.inputs.saas import SAAS_FAMILIES, generate_saas, write_saas_raw

    family = next(f for f in SAAS_FAMILIES if f == world)
    t = time.perf_counter()
    data = generate_saas(
        customers=customers,
        months=months,
        seed=seed,
        world=family,
        start=start,
        price_change_date=change_date,
    )
    rows, payload = _written(
        out_dir,
        fmt,
        data.tables(),
        write_saas_raw(data, out_dir, fmt=fmt.value),
        started=t,
        customers=customers,
        months=months,
        seed=seed,
    )
    seconds = payload["seconds"]
    payload.update(
        world=data.world,
        start=data.start.isoformat(),
        end=data.end.isoformat(),
        price_change=data.price_change.isoformat() if data.price_change is not None else None,
    )
    change = f", a price change from {data.price_change.date()}" if data.price_change else ""
    summary = (
        f"wrote {rows['subscriptions']:,} subscriptions, {rows['subscription_changes']:,} "
        f"plan and seat changes, {rows['transactions']:,} transactions, "
        f"{rows['customers']:,} customer rows and {rows['events']:,} events to {out_dir} "
        f"({fmt.value}, {seconds} s)\n"
        f"period {data.start.date()} .. {data.end.date()}, world {data.world}{change}\n"
    )
    emit(summary + f"next: clv data ingest {out_dir}", payload, as_json=as_json)


@app.command()
def ingest(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="A CSV/Parquet file, or a folder holding them."),
    table: TableChoice | None = typer.Option(
        None, "--table", help="The table the file holds (default: from the file name)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Validate raw files into the offline store; bad rows go to .clv/quarantine/."""
    from clv.core.errors import DataError
    from clv.inputs.ingest import HINTS, IngestFailed, ingest_all

    settings = settings_of(ctx)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    progress(f"ingesting {path}")
    try:
        run = ingest_all(settings, path, table=table.value if table else None, on_wait=progress)
    except IngestFailed as failed:
        for f in failed.files:  # what became of every file, then the one-line error
            progress(f"  {f.describe()}")
        raise
    lines = []
    for r in run.results:
        bad = sum(r.quarantined.values())
        line = (
            f"{r.table}: read {r.read:,}, inserted {r.inserted:,}, replaced {r.replaced:,}, "
            f"unchanged {r.unchanged:,}, quarantined {bad:,}"
        )
        if r.superseded:
            line += f", superseded {r.superseded:,}"
        if r.lines.lines_summed:
            line += f", identical order lines summed {r.lines.lines_summed:,}"
        if r.lines.refunds:
            line += f", refunds {r.lines.refunds:,} ({r.lines.refunds_linked:,} linked to orders)"
        if r.lines.converted:
            line += f", converted to {r.lines.currency} {r.lines.converted:,}"
        if bad:
            reasons = ", ".join(f"{k} {v:,}" for k, v in r.quarantined.items())
            line += f" ({reasons}) -> {r.quarantine_path}"
        line += f"; stored {r.stored_rows:,} rows"
        if r.unmatched:
            line += f"; {r.unmatched:,} of subscriptions not ingested yet (kept, span unchecked)"
        lines.append(line + "".join(f"\n  {k}: {HINTS[k]}" for k in r.quarantined if k in HINTS))
    if len(run.files) > 1 or run.skipped:
        stored = sum(f.outcome == "stored" for f in run.files)
        lines.append(f"files: {stored:,} stored, {len(run.skipped):,} skipped")
        lines += [f"  skipped {f.path}: {f.reason}" for f in run.skipped]
    payload = {
        "results": [r.as_dict() for r in run.results],
        "files": [f.as_dict() for f in run.files],
    }
    emit("\n".join(lines), payload, as_json=as_json)


@app.command()
def status(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Rows and time range of each stored table."""
    from clv.inputs.ingest import status as store_status

    settings = settings_of(ctx)
    tables = store_status(settings)
    lines = []
    for s in tables:
        if not s.stored:
            lines.append(f"{s.table}: not ingested (run `clv data ingest PATH`)")
        else:
            span = f"{s.start} .. {s.end}" if s.start is not None else "no timestamps"
            lines.append(f"{s.table}: {s.rows:,} rows, {span}")
    payload = {
        "offline_dir": str(settings.offline_dir),
        "tables": {s.table: s.as_dict() for s in tables},
    }
    emit("\n".join(lines), payload, as_json=as_json)


@app.command()
def profile(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Readiness report of the stored transactions: figures, warnings, and the minimums below
    which `clv train` refuses; writes reports/readiness.html and .json; exit 1 when refused."""
    from clv.core.errors import ReadinessError
    from clv.training.readiness_io import profile_and_report

    settings = settings_of(ctx)
    progress(f"profiling the transactions in {settings.offline_dir}")
    report = profile_and_report(settings)
    r = report.readiness
    lines = [f"readiness: {r.status}", *r.describe(), f"report: {report.html}"]
    emit("\n".join(lines), report.payload(), as_json=as_json)
    if r.refused and settings.readiness.enforce:
        raise ReadinessError(r.refusal())
