"""The readiness report's adapter: profile the offline store, write the HTML and JSON files,
and the one gate `clv train` and `clv retrain` run before training (`require_ready`)."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from pathlib import Path

from clv.core.errors import NotReadyError, ReadinessError
from clv.core.settings import Settings
from clv.core.store import duckdb_connection
from clv.training.readiness import Readiness, aggregate, judge

HTML_FILE = "readiness.html"
JSON_FILE = "readiness.json"


@dataclass(frozen=True)
class ReadinessReport:
    readiness: Readiness
    html: Path
    json: Path

    def payload(self) -> dict[str, object]:
        return {**self.readiness.as_dict(), "report": str(self.html), "json": str(self.json)}


def profile_store(settings: Settings) -> Readiness:
    """The readiness of the ingested transactions: DuckDB reads only the columns it needs
    straight from the offline store's Parquet file, within `compute.memory_budget_mb` (it
    spills to a temporary folder in the workspace above it)."""
    import pyarrow.parquet as pq

    from clv.core.store import table_path

    path = table_path(settings, "transactions")
    if not path.exists():
        raise NotReadyError(
            f"no transactions in {settings.offline_dir}: run `clv data ingest PATH`"
        )
    columns = pq.read_schema(path).names
    literal = "'" + str(path).replace("'", "''") + "'"
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    spill = Path(tempfile.mkdtemp(prefix="readiness-", dir=settings.state_dir))
    con = duckdb_connection(memory_limit_mb=settings.compute.memory_budget_mb, temp_directory=spill)
    try:
        agg = aggregate(con, f"read_parquet({literal})", columns=columns)
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    return judge(agg, settings=settings)


def write_report(settings: Settings, readiness: Readiness) -> ReadinessReport:
    """`<reports_dir>/readiness.html` (self-contained) and `readiness.json` beside it."""
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    html_path = settings.reports_dir / HTML_FILE
    json_path = settings.reports_dir / JSON_FILE
    report = ReadinessReport(readiness, html_path, json_path)
    _atomic(html_path, render_html(readiness))
    _atomic(json_path, json.dumps(readiness.as_dict(), indent=2, default=str) + "\n")
    return report


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def profile_and_report(settings: Settings) -> ReadinessReport:
    """Profile the store and write the report (what `clv data profile` runs)."""
    return write_report(settings, profile_store(settings))


def require_ready(
    settings: Settings,
    *,
    skip: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Readiness | None:
    """The gate before training: profile, write the report, say the warnings, and raise
    ReadinessError below a minimum unless `skip` (no check at all: None) or
    `readiness.enforce` is false (the refusals are said as warnings)."""
    say = progress or (lambda _m: None)
    if skip:
        say("readiness: skipped (--skip-readiness)")
        return None
    report = profile_and_report(settings)
    r = report.readiness
    if r.refused and settings.readiness.enforce:
        raise ReadinessError(f"{r.refusal()} (report: {report.html})")
    for f in r.findings:
        if f.level != "ok":
            say(f"readiness: {f.level}: {f.message}")
    if r.refused:
        say("readiness: not enforced (readiness.enforce: false): training anyway")
    say(f"readiness: {r.status} (report: {report.html})")
    return r


# --- the page --------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem;color:#222}
h1{font-size:1.5rem} h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0} td,th{border:1px solid #ccc;padding:.3rem .6rem;
text-align:left;vertical-align:top} th{background:#f4f4f4}
.status{display:inline-block;padding:.3rem .8rem;border-radius:.3rem;font-weight:600}
.ready,.ok{background:#dff3e0} .warnings,.warn{background:#fff1cc}
.refused,.refuse{background:#fbd5d5}
svg rect{fill:#4a7bb7} svg text{font-size:9px;fill:#555}
"""


def _rows(pairs: list[tuple[str, str]]) -> str:
    return "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in pairs)


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _chart(months: tuple[tuple[str, float], ...]) -> str:
    """Monthly gross sales as an inline SVG bar chart (no script, no network)."""
    if not months:
        return "<p>no months</p>"
    width, height, pad = 760, 160, 20
    top = max(v for _, v in months) or 1.0
    bar = (width - 2 * pad) / len(months)
    parts = [f'<svg width="{width}" height="{height + 30}" role="img">']
    for i, (month, value) in enumerate(months):
        h = (height - pad) * value / top
        x = pad + i * bar
        parts.append(
            f'<rect x="{x:.1f}" y="{height - h:.1f}" width="{max(bar - 1, 1):.1f}" '
            f'height="{h:.1f}"><title>{escape(month)}: {value:,.0f}</title></rect>'
        )
        if i % 6 == 0:
            parts.append(f'<text x="{x:.1f}" y="{height + 14}">{escape(month)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(r: Readiness) -> str:
    """One self-contained page: status, findings, figures, horizon fit, gaps, monthly sales."""
    h, s = r.horizon, r.seasonality
    findings = "".join(
        f'<tr class="{f.level}"><td>{f.level}</td><td>{escape(f.check)}</td>'
        f"<td>{escape(f.message)}</td><td>{escape(f.override or '')}</td></tr>"
        for f in r.findings
    )
    figures = _rows(
        [
            ("history", f"{r.start.date()} .. {r.end.date()} ({r.history_days:.0f} days)"),
            ("rows / customers / orders", f"{r.rows:,} / {r.customers:,} / {r.orders:,}"),
            ("buyers / repeat buyers", f"{r.buyers:,} / {r.repeat_buyers:,}"),
            ("repeat-buyer share", _share(r.repeat_buyer_share)),
            (
                "purchases per buyer (mean / median)",
                f"{r.orders_per_customer_mean or 0:.2f} / {r.orders_per_customer_median or 0:g}",
            ),
            ("zero-value orders", _share(r.zero_value_share)),
            ("negative-value orders", _share(r.negative_value_share)),
            ("refunds / gross sales", _share(r.refund_share)),
            ("top 1% of customers' share of net revenue", _share(r.top1_revenue_share)),
            (
                "seasonality strength",
                ("n/a" if s.strength is None else f"{s.strength:.2f}") + f" ({s.reason})",
            ),
            ("empty days", f"{r.empty_days:,}"),
        ]
    )
    horizon = _rows(
        [
            ("configured horizon", f"{h.horizon_days} days (snapshots every {h.snapshot_every})"),
            ("history needed (minimum)", f"{h.required_days:.0f} days"),
            ("labelled snapshots", str(h.labelled_snapshots)),
            ("test origin", str(h.test_origin or "none")),
            ("embargoed", "yes" if h.embargoed else "no"),
            ("backtests", f"{h.backtests} of {h.wanted_backtests}"),
            (
                "suggested horizon",
                (f"{h.suggested_horizon_days} days" if h.suggested_horizon_days else "none")
                + f" ({h.suggestion})",
            ),
        ]
    )
    gaps = "".join(
        f"<tr><td>{g.start}</td><td>{g.end}</td><td>{g.days}</td></tr>" for g in r.longest_gaps
    )
    enforced = "" if r.enforced else " (not enforced: readiness.enforce is false)"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>clv readiness: {r.status}</title>
<style>{_CSS}</style></head><body>
<h1>Data readiness <span class="status {r.status}">{r.status}</span>{escape(enforced)}</h1>
<p>Is the transaction log long and rich enough to train on and evaluate out of time?
Definitions: <code>training/readiness.py</code>.</p>
<h2>Findings</h2>
<table><tr><th>level</th><th>check</th><th>finding</th><th>override / tune</th></tr>
{findings}</table>
<h2>Figures</h2><table>{figures}</table>
<h2>Horizon and evaluation</h2><table>{horizon}</table>
<h2>Longest gaps in the calendar</h2>
{
        "<table><tr><th>first empty day</th><th>last empty day</th><th>days</th></tr>"
        + gaps
        + "</table>"
        if gaps
        else "<p>none: every day has transactions</p>"
    }
<h2>Monthly gross sales</h2>{_chart(r.monthly_sales)}
</body></html>
"""
