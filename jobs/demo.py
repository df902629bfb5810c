"""`clv demo`: the whole lifecycle, in order, on generated customers in one workspace.

generate -> ingest -> features (apply, build, materialize) -> train (Optuna + MLflow, register,
champion) -> monitor (Evidently) -> serve (a real HTTP server in a child process) -> score a few
customers over HTTP -> stop the server -> decisions (cohorts, channels, a retention selection,
the dashboard) -> say what was made and where to look.

The world carries acquisition costs per channel (a planted CAC, `clv.inputs.planted`), which do
not touch its customers' behaviour: the model table is the one without them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import partial

import httpx
import typer

from clv.core.console import JsonOption, emit, progress, settings_of
from clv.core.errors import ClvError
from clv.core.processes import free_port, stop_process, wait_for_http
from clv.core.settings import Settings

DEMO_WORLD = "mixed"
DEMO_END = "2026-01-01"
"""The demo's history ends here, whatever its length: fixed (the data are reproducible) and
before today (later rows would be quarantined as future timestamps)."""


@dataclass
class DemoReport:
    """What the demo made, step by step, for the summary and `--json`."""

    steps: dict[str, dict[str, object]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def score_over_http(settings: Settings, customer_ids: list[str]) -> dict[str, object]:
    """Start `clv serve` in a child process, POST /score, stop it; return the JSON answer."""
    host = settings.serving.host
    port = free_port(host)
    url = f"http://{host}:{port}"
    cmd = [sys.executable, "-m", "clv", "--workspace", str(settings.workspace)]
    cmd += ["serve", "--host", host, "--port", str(port)]
    log_path = settings.state_dir / "demo-server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_http(f"{url}/readyz", proc, timeout=120)
            resp = httpx.post(f"{url}/score", json={"customer_ids": customer_ids}, timeout=30)
            if resp.status_code != 200:
                raise ClvError(f"POST /score answered {resp.status_code}: {resp.text[:200]}")
            answer: dict[str, object] = resp.json()
            return answer
        finally:
            stop_process(proc)


def run_demo(
    settings: Settings,
    *,
    customers: int,
    months: int,
    seed: int,
    trials: int | None,
    world: str = DEMO_WORLD,
) -> DemoReport:
    """Run every stage of the lifecycle; each stage is the same function its command calls.
    `world` is the generator's (clv.inputs.worlds) or a subscription business's
    (clv.inputs.saas: SAAS_FAMILIES), whose training also fits the contractual part."""
    from clv.features import feast_io
    from clv.features.build import build_features
    from clv.inputs.generator import generate, write_raw
    from clv.inputs.ingest import INGEST_ORDER, ingest
    from clv.inputs.planted import CostPlan
    from clv.inputs.saas import SAAS_FAMILIES, generate_saas, write_saas_raw
    from clv.monitoring.run import run_monitor
    from clv.registry.aliases import ensure_champion
    from clv.registry.mlflow_io import aliases
    from clv.training.readiness_io import require_ready
    from clv.training.train import run as train_run

    report = DemoReport()
    settings.ensure_dirs()
    last = [time.perf_counter()]

    def timed(step: str) -> None:
        now = time.perf_counter()
        report.seconds[step] = round(now - last[0], 1)
        last[0] = now

    progress(
        f"[1/8] generating {customers:,} customers over {months} months "
        f"(world {world}, seed {seed}, ending {DEMO_END})"
    )
    import pandas as pd

    start = pd.Timestamp(DEMO_END, tz="UTC") - pd.DateOffset(months=months)
    if world in SAAS_FAMILIES:
        saas = generate_saas(
            customers=customers,
            months=months,
            seed=seed,
            world=world,
            start=start,
        )
        customer_ids = saas.customers["customer_id"].drop_duplicates()
        found = write_saas_raw(saas, settings.raw_dir, fmt="parquet")
    else:
        data = generate(
            customers=customers,
            months=months,
            seed=seed,
            start=start,
            costs=CostPlan(),
            world=world,  # type: ignore[arg-type]
        )
        customer_ids = data.customers["customer_id"].drop_duplicates()
        found = write_raw(data, settings.raw_dir, fmt="parquet")
    paths = {t: found[t] for t in INGEST_ORDER if t in found}
    timed("generate")

    progress("[2/8] ingesting into the offline store")
    ingested: dict[str, object] = {}
    for table, path in paths.items():
        res = ingest(settings, path, table=table)
        ingested[table] = {
            "read": res.read,
            "inserted": res.inserted,
            "replaced": res.replaced,
            "unchanged": res.unchanged,
            "quarantined": sum(res.quarantined.values()),
            "stored": res.stored_rows,
        }
    report.steps["data"] = ingested
    timed("ingest")

    progress("[3/8] features: apply, build snapshots, materialize")
    built = build_features(settings)
    feast_io.apply(settings)
    feast_io.materialize(settings)
    report.steps["features"] = {
        "rows": built.rows,
        "snapshots": len(built.snapshots),
        "service": settings.features.service,
    }
    timed("features")

    progress("[4/8] training: Optuna-tuned XGBoost, logged to MLflow")
    trained = train_run(
        settings,
        n_trials=trials,
        readiness=partial(require_ready, skip=False, progress=progress),
    )
    ensure_champion(settings, trained.version)
    report.steps["train"] = {
        "run_id": trained.run_id,
        "version": trained.version,
        "readiness": trained.readiness.summary() if trained.readiness is not None else None,
        "aliases": [a for a, v in aliases(settings).items() if v == trained.version],
        "contractual": trained.contractual.as_dict() if trained.contractual else None,
        "best_trial": trained.best_trial,
        "test_metrics": trained.metrics,
        "evaluation": {
            "embargoed": trained.embargoed,
            "test_origin": trained.evaluation.origin.date().isoformat(),
            "backtest_origins": [b.origin.date().isoformat() for b in trained.backtests],
        },
    }
    timed("train")

    progress("[5/8] monitoring: Evidently drift report against the training reference")
    monitored = run_monitor(settings)
    report.steps["monitor"] = {
        "verdict": str(monitored.verdict),
        "report": str(monitored.report_dir),
        "page": str(monitored.report_dir / "index.html"),
    }
    timed("monitor")

    progress("[6/8] serving: start `clv serve`, score customers over HTTP")
    ids = [*customer_ids.head(3).tolist(), "C_NEW_CUSTOMER"]
    report.steps["score"] = score_over_http(settings, ids)
    timed("serve")

    progress("[8/8] decisions: cohorts, channels (CAC:CLV), a retention selection, dashboard")
    report.steps["decisions"] = _decisions(settings)
    timed("decisions")
    return report


RETENTION_BUDGET, OFFER_COST, SAVE_RATE = 5_000.0, 10.0, 0.25
"""The demo's retention question: 5,000 to spend on offers of 10 each, assuming an offer keeps
a quarter of the value at risk (a real team measures it: `clv decide retention --experiment`)."""


def _decisions(settings: Settings) -> dict[str, object]:
    """Cohorts one snapshot back and now (so that a drop can show), channels, retention."""
    from clv.decisions.analyze import (
        analyze_channels,
        analyze_cohorts,
        decide_retention,
        load_values,
    )
    from clv.decisions.dashboard import render_dashboard
    from clv.features.snapshots import snapshot_times

    times = snapshot_times(settings)
    if len(times) > 1:
        analyze_cohorts(settings, values=load_values(settings, as_of=times[-2]))
    values = load_values(settings)
    cohorts = analyze_cohorts(settings, values=values)
    from clv.core.store import has_table

    channels = (
        analyze_channels(settings, values=values)
        if has_table(settings, "acquisition_costs")
        else None
    )
    retention = decide_retention(
        settings, budget=RETENTION_BUDGET, offer_cost=OFFER_COST, save_rate=SAVE_RATE
    )
    ranked = channels.ranked if channels is not None else []
    drop = cohorts.largest_drop

    def channel(row: object) -> dict[str, object] | None:
        return None if row is None else row.as_dict()  # type: ignore[attr-defined]

    selection = retention.selection
    return {
        "best_channel": channel(ranked[0] if ranked else None),
        "worst_channel": channel(ranked[-1] if ranked else None),
        "largest_drop": None
        if drop is None
        else {"cohort": drop.name, "change": drop.change, "flagged": drop.flagged},
        "retention": {
            "treated": len(selection.treated),
            "holdout": len(selection.holdout),
            "expected_roi": selection.expected_roi,
            "budget": RETENTION_BUDGET,
            "offer_cost": OFFER_COST,
            "save_rate": SAVE_RATE,
        },
        "dashboard": str(render_dashboard(settings)),
    }


def _summary(settings: Settings, report: DemoReport) -> str:
    data = report.steps["data"]
    train = report.steps["train"]
    monitor = report.steps["monitor"]
    lines = ["", "clv demo: the whole lifecycle ran.", ""]
    lines.append(f"data{'read':>20} {'new':>10} {'quarantined':>12} {'stored':>10}")
    for table, c in data.items():
        assert isinstance(c, dict)
        lines.append(
            f"  {table:<13}{c['read']:>9,} {c['inserted']:>10,} {c['quarantined']:>12,}"
            f" {c['stored']:>10,}"
        )
    feats = report.steps["features"]
    lines.append(
        f"features: {feats['rows']:,} rows over {feats['snapshots']} snapshots "
        f"(FeatureService {feats['service']})"
    )
    ready = train["readiness"]
    if isinstance(ready, dict):
        lines.append(
            f"readiness: {ready['status']} ({ready['repeat_buyers']:,} repeat buyers, "
            f"{ready['history_days']:,.0f} days of history; reports/readiness.html)"
        )
    lines.append(f"best trial: {train['best_trial']}")
    evaluation = train["evaluation"]
    assert isinstance(evaluation, dict)
    lines.append(
        f"test-origin metrics ({evaluation['test_origin']}, out of time, "
        + ("embargoed" if evaluation["embargoed"] else "NOT EMBARGOED")
        + f"; {len(evaluation['backtest_origins'])} backtest origins in the MLflow run):"
    )
    metrics = train["test_metrics"]
    assert isinstance(metrics, dict)
    for who, table in metrics.items():
        assert isinstance(table, dict)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in table.items() if isinstance(v, float))
        lines.append(f"  {who:<12} {shown}")
    held_aliases = train["aliases"]
    assert isinstance(held_aliases, list)
    held = ", ".join(held_aliases) or "none (champion unchanged)"
    lines.append(
        f"registered: model '{settings.mlflow.model_name}' version {train['version']}, "
        f"aliases: {held}"
    )
    contract = train.get("contractual")
    if isinstance(contract, dict):
        ev = contract["evaluation"]
        assert isinstance(ev, dict)
        m, sbg, km = (ev[k] for k in ("model", "sbg", "kaplan_meier"))
        lines.append(
            f"contractual ({contract['subscribers']:,} subscribers; test origin "
            f"{ev['test_origin']}, H = {ev['horizon_months']} months, out of time): "
            f"c-index {m['c_index']} (sBG {sbg['c_index']}, KM {km['c_index']}), "
            f"IBS {m['ibs']} (sBG {sbg['ibs']}, KM {km['ibs']}), renewal ECE "
            f"{m['renewal_ece']}, CLV bias {m['clv_bias_pct']}%; `clv score` adds it"
        )
    lines.append(f"monitor verdict: {monitor['verdict']}")
    lines += _decision_lines(report.steps["decisions"])
    lines.append("score from the running server (POST /score):")
    lines.append(json.dumps(report.steps["score"], indent=2))
    lines.append("")
    lines.append("where to look:")
    lines.append(f"  report:       {monitor['page']}")
    lines.append(f"  dashboard:    {settings.reports_dir / 'dashboard.html'}")
    lines.append(f"  MLflow UI:    .venv/bin/mlflow ui --backend-store-uri {settings.tracking_uri}")
    lines.append(f"  workspace:    {settings.workspace}")
    secs = ", ".join(f"{k} {v:.0f}s" for k, v in report.seconds.items())
    lines.append(f"time: {sum(report.seconds.values()):.0f} s ({secs})")
    return "\n".join(lines)


def _decision_lines(d: dict[str, object]) -> list[str]:
    """One line each: the best and worst channel by CLV:CAC, the cohort with the largest drop,
    the retention selection, the dashboard."""

    def channel(row: object) -> str:
        if not isinstance(row, dict) or row.get("clv_cac") is None:
            return "none"
        ratio = row["clv_cac"]
        assert isinstance(ratio, dict)
        return (
            f"{row['channel']} {ratio['value']:.2f} (P10-P90 {ratio['p10']:.2f}-{ratio['p90']:.2f}"
            f", CAC {float(row['cac']):,.2f})" + (", flagged" if row.get("flagged") else "")
        )

    lines = [
        f"best channel by CLV:CAC: {channel(d['best_channel'])}",
        f"worst channel by CLV:CAC: {channel(d['worst_channel'])}",
    ]
    drop = d["largest_drop"]
    if isinstance(drop, dict) and drop["change"] is not None:
        flag = " (flagged: below the last run's P10)" if drop["flagged"] else ""
        lines.append(
            f"largest cohort drop since the last snapshot: {drop['cohort']} "
            f"{float(drop['change']):+.1%}{flag}"
        )
    else:
        lines.append("largest cohort drop since the last snapshot: none to compare")
    r = d["retention"]
    assert isinstance(r, dict)
    roi = "n/a" if r["expected_roi"] is None else f"{float(r['expected_roi']):+.0%}"
    lines.append(
        f"retention: {r['treated']:,} offers ({r['holdout']:,} held out as control), expected "
        f"ROI {roi} (budget {float(r['budget']):,.0f}, offer {float(r['offer_cost']):,.0f}, "
        f"save rate {float(r['save_rate']):.0%} assumed)"
    )
    lines.append(f"dashboard: {d['dashboard']}")
    return lines


def demo(
    ctx: typer.Context,
    customers: int = typer.Option(20_000, "--customers", min=100, help="Customers to generate."),
    months: int = typer.Option(
        48,
        "--months",
        min=18,
        help="Months of history (a 365-day horizon needs about 40 for an embargoed evaluation).",
    ),
    seed: int = typer.Option(7, "--seed", help="Generator seed."),
    trials: int | None = typer.Option(None, "--trials", min=1, help="Optuna trials."),
    world: str = typer.Option(
        DEMO_WORLD,
        "--world",
        help="The generated world: mixed (default), another clv data generate world, or a "
        "subscription business (saas, saas_mixed, saas_price_change, saas_wear).",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Run the whole lifecycle on generated customers, then score a few over HTTP."""
    from clv.inputs.saas import SAAS_FAMILIES
    from clv.inputs.worlds import WORLDS

    if world not in (*WORLDS, *SAAS_FAMILIES):
        raise ClvError(f"--world {world!r}: choose one of {', '.join((*WORLDS, *SAAS_FAMILIES))}")
    settings = settings_of(ctx)
    report = run_demo(
        settings, customers=customers, months=months, seed=seed, trials=trials, world=world
    )
    payload = {"steps": report.steps, "seconds": report.seconds, "workspace": settings.workspace}
    emit(_summary(settings, report), payload, as_json=as_json)
