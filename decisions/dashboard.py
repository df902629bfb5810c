"""`reports/dashboard.html`: one page for every team, from what the decisions and the monitor
wrote (nothing is computed here that a JSON file does not already hold).

- executive: CLV by signup cohort and by channel, CLV:CAC, the total predicted value per run;
- product: the cohort curves (cumulative discounted margin per customer by month of age) and
  the adoption cohorts (adopters against the others);
- CRM: the at-risk high-value list, the current retention selection, past selections' ROI;
- experiments: uplift (Welch, bootstrap, CUPED), the surrogate early read, SRM;
- model health: champion, canary and its share, the last monitor verdict (linked).

Plots are inline SVG and the CSS is inline: the page needs no server and no network. An input
that is missing (or unreadable) renders as a sentence naming the command that writes it.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pandas as pd

from clv.core.settings import Settings
from clv.decisions.analyze import (
    CHANNELS_FILE,
    COHORTS_FILE,
    EXPERIMENTS_FILE,
    RETENTION_FILE,
    decisions_dir,
)
from clv.monitoring.report import CSS, INDEX_FILE, SUMMARY_FILE, run_rows
from clv.monitoring.report import _e as esc
from clv.monitoring.report import _num as num
from clv.monitoring.report import _pill as pill
from clv.monitoring.report import _table as table
from clv.serving.batch import AT_RISK_FILE

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from clv.registry.mlflow_io import RegistryState

DASHBOARD_FILE = "dashboard.html"
RUNS_DIR = "runs"
TOP = 20
"""Rows shown of the at-risk list and of the retention selection (the files hold them all)."""

LONG = 12
"""Tables longer than this are folded under their chart."""
WELL_OBSERVED = 0.5
"""A cohort curve stops before the months observed for fewer than this share of its customers
(the youngest members of a signup month reach a month of age first: one noisy point)."""

Json = Mapping[str, object]

# What writes each input: the sentence a missing one renders.
MAKES = {
    COHORTS_FILE: "run `clv analyze` (or `clv analyze cohorts`)",
    CHANNELS_FILE: "ingest channel spend with `clv data ingest PATH --table acquisition_costs`, "
    "then run `clv analyze` (or `clv analyze channels`)",
    EXPERIMENTS_FILE: "ingest assignments with `clv data ingest PATH --table assignments`, "
    "then run `clv analyze experiments`",
    RETENTION_FILE: "run `clv decide retention --budget B --offer-cost C --save-rate R` "
    "(or `--experiment NAME` for a measured uplift)",
    AT_RISK_FILE: "run `clv score --all` (its default `--out`: `at_risk.csv` in the workspace)",
    SUMMARY_FILE: "run `clv monitor run`",
}
EXTRA_CSS = """
nav{position:sticky;top:0;background:#fff;padding:.4rem 0;border-bottom:1px solid #ddd}
nav a{margin-right:1.1rem;color:#1f5f99;text-decoration:none;font-weight:600}
h3{margin:1.4rem 0 .3rem;font-size:1.1rem}svg.chart{max-width:100%;height:auto;display:block;
margin:.4rem 0}p.missing{color:#555;font-style:italic}.flag{background:#b3261e}
details{margin:.4rem 0}summary{cursor:pointer;color:#1f5f99}
"""
RED, GREY, ORANGE, BLUE = "#b3261e", "#7a8ca3", "#d9822b", "#1f5f99"


@dataclass(frozen=True)
class ModelHealth:
    """What the registry says is served: alias -> version, the canary's share and mode; or the
    reason it could not be read."""

    aliases: Mapping[str, str] = field(default_factory=dict)
    canary_share: float = 0.0
    canary_shadow: bool = False
    error: str | None = None

    @classmethod
    def of(cls, state: RegistryState) -> ModelHealth:
        return cls(dict(state.aliases), state.canary_share, state.canary_shadow)


@dataclass(frozen=True, eq=False)
class DashboardInputs:
    """Every document the page shows (None: not written yet); `problems`: the files that exist
    but could not be read, with why."""

    cohorts: Json | None
    runs: list[Json]
    channels: Json | None
    experiments: Json | None
    retention: Json | None
    at_risk: pd.DataFrame | None
    at_risk_written: datetime | None
    monitor: Json | None
    monitor_folder: str | None
    health: ModelHealth
    problems: dict[str, str] = field(default_factory=dict)


def render_dashboard(settings: Settings, *, health: ModelHealth | None = None) -> Path:
    """Write `reports/dashboard.html` (atomically) from the workspace's reports; `health`:
    the registry's state (default: read it, a failure becoming a sentence on the page)."""
    inputs = read_inputs(settings, health=health)
    page = dashboard_html(inputs, written_at=datetime.now(UTC))
    path = settings.reports_dir / DASHBOARD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------- reading


def read_model_health(settings: Settings) -> ModelHealth:
    """The registry's aliases and canary share. Any failure (a store that does not answer, a
    bad URI, a migration) is the page's sentence, not a failed page."""
    try:
        from clv.registry.mlflow_io import registry_state

        return ModelHealth.of(registry_state(settings))
    except Exception as exc:  # the page must render whatever the registry does
        return ModelHealth(error=f"{type(exc).__name__}: {exc}".strip())


def read_inputs(settings: Settings, *, health: ModelHealth | None = None) -> DashboardInputs:
    """Every input of the page that exists in the workspace (see the module docstring)."""
    folder = decisions_dir(settings)
    problems: dict[str, str] = {}

    def doc(path: Path) -> Json | None:
        if not path.exists():
            return None
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            problems[path.name] = str(exc)
            return None
        if not isinstance(loaded, dict):
            problems[path.name] = "not a JSON object"
            return None
        return loaded

    runs = [d for p in sorted((folder / RUNS_DIR).glob("cohorts-*.json")) if (d := doc(p))]
    at_risk, written = _read_at_risk(settings.workspace / AT_RISK_FILE, problems)
    monitored = run_rows(settings.reports_dir)
    last = str(monitored[-1]["folder"]) if monitored else None
    return DashboardInputs(
        cohorts=doc(folder / COHORTS_FILE),
        runs=runs,
        channels=doc(folder / CHANNELS_FILE),
        experiments=doc(folder / EXPERIMENTS_FILE),
        retention=doc(folder / RETENTION_FILE),
        at_risk=at_risk,
        at_risk_written=written,
        monitor=doc(settings.reports_dir / last / SUMMARY_FILE) if last else None,
        monitor_folder=last,
        health=health if health is not None else read_model_health(settings),
        problems=problems,
    )


def _read_at_risk(
    path: Path, problems: dict[str, str]
) -> tuple[pd.DataFrame | None, datetime | None]:
    if not path.exists():
        return None, None
    try:
        frame = pd.read_csv(path, dtype={"customer_id": str})
    except (OSError, ValueError) as exc:  # pandas' EmptyDataError and ParserError are ValueErrors
        problems[path.name] = str(exc)
        return None, None
    return frame, datetime.fromtimestamp(path.stat().st_mtime, UTC)


# --------------------------------------------------------------------------- the page


def dashboard_html(inputs: DashboardInputs, *, written_at: datetime) -> str:
    """The whole page (pure: the inputs in, HTML out)."""
    as_of = _s((inputs.cohorts or {}).get("as_of"))[:10] or "no analysis yet"
    sections = [
        ("executive", "Executive", _executive(inputs)),
        ("product", "Product", _product(inputs)),
        ("crm", "CRM", _crm(inputs)),
        ("experiments", "Experiments", _experiments(inputs)),
        ("model-health", "Model health", _model_health(inputs)),
    ]
    nav = "".join(f'<a href="#{key}">{esc(title)}</a>' for key, title, _ in sections)
    body = [
        f"<h1>CLV dashboard, as of {esc(as_of)}</h1>",
        f'<p class="muted">Written {written_at:%Y-%m-%d %H:%M} UTC from <code>reports/</code>. '
        "Values are discounted margin; intervals are the model's P10-P90 unless marked 95%.</p>",
        f"<nav>{nav}</nav>",
    ]
    for key, title, parts in sections:
        body.append(f'<section id="{key}"><h2>{esc(title)}</h2>\n' + "\n".join(parts))
        body.append("</section>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>CLV dashboard {esc(as_of)}</title><style>{CSS}{EXTRA_CSS}</style></head>"
        "<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _missing(inputs: DashboardInputs, name: str, what: str) -> str:
    """The sentence for an input not written yet (or unreadable): what is missing, and the
    command that writes it."""
    problem = inputs.problems.get(name)
    if problem is not None:
        return (
            f'<p class="missing">{esc(what)}: <code>{esc(name)}</code> could not be read '
            f"({esc(problem)}); {_md(MAKES[name])} again.</p>"
        )
    return f'<p class="missing">{esc(what)} yet: {_md(MAKES[name])}.</p>'


def _md(text: str) -> str:
    """Escape `text`, with `backticks` as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", esc(text))


# --------------------------------------------------------------------------- executive


def _cohorts(inputs: DashboardInputs, kind: str) -> list[Json]:
    return [c for c in _rows(inputs.cohorts, "cohorts") if c.get("kind") == kind]


def _executive(inputs: DashboardInputs) -> list[str]:
    out = ["<h3>CLV by signup cohort</h3>"]
    signup = _cohorts(inputs, "signup_month")
    if inputs.cohorts is None:
        out.append(_missing(inputs, COHORTS_FILE, "No cohorts"))
    elif not signup:
        out.append('<p class="missing">No signup-month cohort in the last analysis.</p>')
    else:
        out += _cohort_value(signup)
    out.append("<h3>CLV by channel, CLV:CAC</h3>")
    if inputs.channels is None:
        out.append(_missing(inputs, CHANNELS_FILE, "No channel figures"))
    else:
        out += _channel_value(inputs.channels)
    out.append("<h3>Total predicted value, run by run</h3>")
    out += _value_trend(inputs)
    return out


def _cohort_value(signup: list[Json]) -> list[str]:
    rows, hits = [], set()
    for i, c in enumerate(signup):
        outlook = c.get("outlook_per_customer")
        change = c.get("change")
        rows.append(
            [
                esc(c.get("name")),
                num(c.get("customers"), ",.0f"),
                num(c.get("realized_per_customer"), ",.2f"),
                _interval(outlook),
                _interval(c.get("predicted"), ",.0f"),
                num(change, "+.1%") if change is not None else "no earlier run",
                _flag("fell below the last run's P10") if c.get("flagged") else "",
            ]
        )
        if c.get("flagged"):
            hits.add(i)
    header = [
        "signup month",
        "customers",
        "realized / customer",
        "outlook / customer (P10-P90)",
        "predicted, cohort total",
        "change",
        "",
    ]
    return [
        "<p>Outlook per customer = margin realized to date + the served model's prediction over "
        "its horizon. A cohort is flagged when its outlook fell below the P10 of the last run's: "
        "a drop larger than the model's own uncertainty.</p>",
        cohort_value_chart(signup),
        _long(table(header, rows, hits=hits), rows=len(rows), what="signup months"),
    ]


def _channel_value(doc: Json) -> list[str]:
    channels = _rows(doc, "channels")
    if not channels:
        return ['<p class="missing">The channel analysis holds no channel.</p>']

    def rows_of(items: list[Json], *, month: bool) -> tuple[list[list[str]], set[int]]:
        rows, hits = [], set()
        for i, r in enumerate(items):
            payback = r.get("payback_months")
            rows.append(
                [
                    esc(r.get("channel")),
                    *([esc(r.get("month"))] if month else []),
                    num(r.get("spend"), ",.0f"),
                    num(r.get("new_customers"), ",.0f"),
                    num(r.get("cac"), ",.2f"),
                    _interval(r.get("clv_per_customer")),
                    _interval(r.get("clv_cac")),
                    f"{payback} months ({esc(r.get('payback'))})"
                    if payback is not None
                    else "not within the horizon",
                    _flag("does not pay back") if r.get("flagged") else "",
                ]
            )
            if r.get("flagged"):
                hits.add(i)
        return rows, hits

    header = ["spend", "new customers", "CAC", "CLV / customer", "CLV:CAC", "payback", ""]
    rows, hits = rows_of(channels, month=False)
    out = [
        "<p>CLV per acquired customer = realized since acquisition + predicted over the horizon "
        "(P10-P90); CLV:CAC divides it by CAC. A channel is flagged when even the P90 of its "
        "CLV:CAC is below 1.</p>",
        clv_cac_chart(channels),
        table(["channel", *header], rows, hits=hits),
    ]
    months = _rows(doc, "months")
    if months:
        rows, hits = rows_of(months, month=True)
        out.append(
            "<details><summary>By channel and month</summary>"
            + table(["channel", "month", *header], rows, left=2, hits=hits)
            + "</details>"
        )
    return out


@dataclass(frozen=True)
class TrendPoint:
    """The total predicted value of the signup cohorts in one run (P10-P90 of a sum of
    independent cohorts: value +- the root of the cohorts' squared half-widths)."""

    as_of: str
    ran_at: str
    total: float
    p10: float
    p90: float
    cohorts: int


def trend_points(runs: Sequence[Json]) -> list[TrendPoint]:
    """One point per as-of date (its latest run), oldest first."""
    latest: dict[str, TrendPoint] = {}
    for run in runs:
        signup = [c for c in _rows(run, "cohorts") if c.get("kind") == "signup_month"]
        predicted = [p for c in signup if isinstance(p := c.get("predicted"), Mapping)]
        total = sum(_f(p.get("value"), 0.0) for p in predicted)
        lo = math.sqrt(
            sum((_f(p.get("value"), 0.0) - _f(p.get("p10"), 0.0)) ** 2 for p in predicted)
        )
        hi = math.sqrt(
            sum((_f(p.get("p90"), 0.0) - _f(p.get("value"), 0.0)) ** 2 for p in predicted)
        )
        point = TrendPoint(
            _s(run.get("as_of"))[:10],
            _s(run.get("ran_at")),
            total,
            total - lo,
            total + hi,
            len(signup),
        )
        if point.as_of and (
            point.as_of not in latest or point.ran_at >= latest[point.as_of].ran_at
        ):
            latest[point.as_of] = point
    return [latest[k] for k in sorted(latest)]


def _value_trend(inputs: DashboardInputs) -> list[str]:
    runs = inputs.runs or ([inputs.cohorts] if inputs.cohorts is not None else [])
    points = trend_points(runs)
    if not points:
        return [_missing(inputs, COHORTS_FILE, "No analysis run")]
    rows = [
        [
            esc(p.as_of),
            num(p.total, ",.0f"),
            _span(p.p10, p.p90, ",.0f"),
            str(p.cohorts),
        ]
        for p in reversed(points)
    ]
    out = [
        "<p>The sum of every signup cohort's predicted value at each as-of date kept in "
        "<code>reports/decisions/runs/</code> (the latest run of a date).</p>"
    ]
    if len(points) > 1:
        out.append(trend_chart(points))
    else:
        out.append(
            '<p class="missing">One as-of date so far: the trend needs a run at a later date '
            "(<code>clv analyze --as-of DATE</code>, or the next scheduled run).</p>"
        )
    out.append(table(["as-of", "total predicted", "P10-P90", "signup cohorts"], rows))
    return out


# --------------------------------------------------------------------------- product


def _product(inputs: DashboardInputs) -> list[str]:
    if inputs.cohorts is None:
        return [_missing(inputs, COHORTS_FILE, "No cohorts")]
    out = ["<h3>Cohort curves</h3>"]
    signup = [c for c in _cohorts(inputs, "signup_month") if well_observed(c)]
    if signup:
        out += [
            "<p>Cumulative discounted margin per customer by month of age, one line per signup "
            "month; each month averages over the customers observed through it (a younger "
            "cohort's line is shorter, not zero), and a line stops before the months observed "
            f"for fewer than {WELL_OBSERVED:.0%} of its customers.</p>",
            cohort_curves_chart(signup),
        ]
    else:
        out.append('<p class="missing">No signup cohort has a full month of age yet.</p>')
    out.append("<h3>Adoption cohorts</h3>")
    adoption = _cohorts(inputs, "adoption")
    if not adoption:
        out.append(
            '<p class="missing">No adoption cohorts yet: ingest product events with '
            "<code>clv data ingest PATH --table events</code>, then run <code>clv analyze</code>."
            "</p>"
        )
        return out
    pairs = adoption_pairs(adoption)
    rows, hits = [], set()
    for i, (yes, no) in enumerate(pairs):
        a, b = _mapping(yes, "outlook_per_customer"), _mapping(no, "outlook_per_customer")
        flagged = bool(_mapping(yes).get("flagged") or _mapping(no).get("flagged"))
        rows.append(
            [
                esc(_mapping(yes or no).get("name")),
                num(_mapping(yes).get("customers"), ",.0f"),
                _interval(a or None),
                num(_mapping(no).get("customers"), ",.0f"),
                _interval(b or None),
                num(_f(a.get("value")) - _f(b.get("value")), "+,.2f"),
                _flag("outlook fell") if flagged else "",
            ]
        )
        if flagged:
            hits.add(i)
    header = ["adopted", "adopters", "outlook / adopter", "others", "outlook / other", "difference"]
    out += [
        "<p>Customers old enough to have had the window, split by whether they used the feature "
        "within it; outlook per customer as above. A difference is an association, not the "
        "feature's effect: the experiments section measures effects.</p>",
        adoption_chart(pairs),
        table([*header, ""], rows, hits=hits),
    ]
    return out


def adoption_pairs(adoption: Sequence[Json]) -> list[tuple[Json | None, Json | None]]:
    """(adopters, the others) per event type: "X within N days" with "no X within N days"."""
    by_name = {_s(c.get("name")): c for c in adoption}
    pairs: list[tuple[Json | None, Json | None]] = []
    seen: set[str] = set()
    for name, cohort in by_name.items():
        if name in seen:
            continue
        if name.startswith("no ") and name[3:] in by_name:
            continue  # listed with its adopters
        other = by_name.get(f"no {name}")
        seen.update({name, f"no {name}"})
        if name.startswith("no "):
            pairs.append((None, cohort))
        else:
            pairs.append((cohort, other))
    return pairs


# --------------------------------------------------------------------------- CRM


def _crm(inputs: DashboardInputs) -> list[str]:
    return [
        "<h3>High value, at risk</h3>",
        *_at_risk(inputs),
        "<h3>Retention: the current selection</h3>",
        *_retention(inputs),
        "<h3>Retention: past selections</h3>",
        *_retention_past(inputs),
    ]


def _at_risk(inputs: DashboardInputs) -> list[str]:
    frame = inputs.at_risk
    if frame is None:
        return [_missing(inputs, AT_RISK_FILE, "No at-risk list")]
    written = f"{inputs.at_risk_written:%Y-%m-%d %H:%M} UTC" if inputs.at_risk_written else "?"
    if frame.empty:
        return [
            "<p>No high-value customer at risk in the last <code>clv score --all</code> "
            f"({written}).</p>"
        ]
    cols = [
        c
        for c in ("customer_id", "clv", "clv_p10", "clv_p90", "churn_probability", "segment")
        if c in frame.columns
    ]
    shown = frame[cols].head(TOP)
    rows = [
        [
            esc(r.get("customer_id")),
            num(r.get("clv"), ",.2f"),
            _span(r.get("clv_p10"), r.get("clv_p90"), ",.2f"),
            num(r.get("churn_probability"), ".0%"),
            esc(r.get("segment", "")),
        ]
        for r in shown.to_dict(orient="records")
    ]
    return [
        f"<p><strong>{len(frame):,}</strong> customers of high predicted value with a churn "
        f"probability at or above the threshold (<code>{AT_RISK_FILE}</code>, written by "
        f"<code>clv score --all</code> at {written}); the {len(shown)} most valuable:</p>",
        table(["customer", "CLV", "P10-P90", "churn probability", "segment"], rows),
    ]


def _retention(inputs: DashboardInputs) -> list[str]:
    doc = inputs.retention
    if doc is None:
        return [_missing(inputs, RETENTION_FILE, "No retention selection")]
    source = (
        f"the save rate measured by experiment <strong>{esc(doc['from_experiment'])}</strong>"
        if doc.get("from_experiment")
        else f"an assumed save rate of {num(doc.get('save_rate'), '.0%')}"
    )
    out = [
        f"<p>As of {esc(_s(doc.get('as_of'))[:10])}, experiment "
        f"<strong>{esc(doc.get('experiment'))}</strong>: a budget of "
        f"{num(doc.get('budget'), ',.0f')} at {num(doc.get('offer_cost'), ',.2f')} an offer "
        f"selected {num(doc.get('selected'), ',.0f')} customers by expected saved value "
        f"({source}): "
        f"{num(doc.get('treated'), ',.0f')} treated, {num(doc.get('holdout'), ',.0f')} held out "
        "to measure it.</p>",
        table(
            ["expected saved", "expected cost", "expected ROI"],
            [
                [
                    num(doc.get("expected_saved"), ",.0f"),
                    num(doc.get("expected_cost"), ",.0f"),
                    num(doc.get("expected_roi"), ".2f"),
                ]
            ],
            left=0,
        ),
    ]
    customers = _rows(doc, "customers")
    if customers:
        rows = [
            [
                esc(c.get("customer_id")),
                num(c.get("clv"), ",.2f"),
                num(c.get("churn_probability"), ".0%"),
                num(c.get("expected_saved"), ",.2f"),
            ]
            for c in customers[:TOP]
        ]
        out.append(f"<p>The {len(rows)} best of the {len(customers):,} treated:</p>")
        out.append(table(["customer", "CLV", "churn probability", "expected saved"], rows))
    return out


def _retention_past(inputs: DashboardInputs) -> list[str]:
    if inputs.retention is None:
        return [_missing(inputs, RETENTION_FILE, "No past selection")]
    past = _rows(inputs.retention, "past")
    if not past:
        return ['<p class="missing">No earlier selection: the first one is the current one.</p>']
    rows = [
        [
            esc(p.get("experiment")),
            esc(_s(p.get("assigned_at"))[:10]),
            num(p.get("treated"), ",.0f"),
            num(p.get("holdout"), ",.0f"),
            esc(_s(p.get("matures_at"))[:10] or "n/a"),
            num(p.get("expected_roi"), ".2f"),
            _realized_roi(p),
        ]
        for p in past
    ]
    header = ["experiment", "assigned", "treated", "holdout", "matures", "expected ROI"]
    return [
        "<p>Realized ROI: the treated against their holdout once the selection has matured.</p>",
        table([*header, "realized ROI"], rows),
    ]


def _realized_roi(past: Json) -> str:
    if past.get("realized_roi") is not None:
        return num(past.get("realized_roi"), ".2f")
    matures = _s(past.get("matures_at"))[:10]
    if matures:
        return f"matures {esc(matures)}"
    return "not measured yet: <code>clv analyze experiments</code>"


# --------------------------------------------------------------------------- experiments


def _experiments(inputs: DashboardInputs) -> list[str]:
    doc = inputs.experiments
    if doc is None:
        return [_missing(inputs, EXPERIMENTS_FILE, "No experiments")]
    experiments = _rows(doc, "experiments")
    if not experiments:
        return ['<p class="missing">The experiments file holds no experiment.</p>']
    outcome = _s(experiments[0].get("outcome")) or "the outcome"
    rows, hits = [], set()
    for i, x in enumerate(experiments):
        arms, cuped = _mapping(x, "arms"), _mapping(x, "cuped")
        surrogate, srm = _mapping(x, "surrogate"), _mapping(x, "srm")
        rows.append(
            [
                esc(x.get("name")),
                "<br>".join(f"{esc(a)} {num(n, ',.0f')}" for a, n in arms.items()),
                _interval(x.get("uplift"), lo="low", hi="high"),
                _interval(x.get("bootstrap"), lo="low", hi="high"),
                _interval(cuped, lo="low", hi="high")
                + f"<br>variance -{num(cuped.get('variance_reduction'), '.0%')}",
                _interval(surrogate, lo="low", hi="high")
                + f"<br><em>{esc(surrogate.get('label', 'surrogate'))}</em>",
                num(srm.get("p_value"), ".2g") + (" " + _flag("SRM") if srm.get("flagged") else ""),
                "matured" if x.get("matured") else f"matures {esc(_s(x.get('matures_at'))[:10])}",
            ]
        )
        if srm.get("flagged"):
            hits.add(i)
    return [
        f"<p>Uplift of treatment over control in {esc(outcome)}, with 95% intervals: Welch's "
        "t, a bootstrap, and CUPED (adjusted for the pre-assignment value, which narrows it). "
        "Before an experiment matures, the surrogate is the early read from predicted CLV: a "
        "forecast, not a measurement. A flagged sample-ratio mismatch (SRM) means the arms' "
        "sizes are not those assigned: the experiment's results are not to be trusted.</p>",
        experiments_chart(experiments),
        table(
            [
                "experiment",
                "arms",
                "uplift (Welch)",
                "bootstrap",
                "CUPED",
                "surrogate",
                "SRM p",
                "status",
            ],
            rows,
            hits=hits,
        ),
    ]


# --------------------------------------------------------------------------- model health


def _model_health(inputs: DashboardInputs) -> list[str]:
    h = inputs.health
    out = ["<h3>Served models</h3>"]
    if h.error is not None:
        out.append(f'<p class="missing">The model registry could not be read ({esc(h.error)}).</p>')
    elif "champion" not in h.aliases:
        out.append('<p class="missing">No champion yet: run <code>clv train</code>.</p>')
    else:
        canary = h.aliases.get("canary")
        if canary is None:
            canary_text = "no canary"
        elif h.canary_shadow:
            canary_text = (
                f"version {esc(canary)} in shadow (scores beside the champion, serves none)"
            )
        else:
            canary_text = f"version {esc(canary)} serving {num(h.canary_share, '.0%')} of customers"
        rows = [["champion", f"version {esc(h.aliases['champion'])}"], ["canary", canary_text]]
        rows += [
            [esc(a), f"version {esc(v)}"]
            for a, v in h.aliases.items()
            if a not in ("champion", "canary")
        ]
        out.append(table(["alias", "model"], rows, left=2))
    out.append("<h3>Last monitor run</h3>")
    doc, folder = inputs.monitor, inputs.monitor_folder
    if doc is None or folder is None:
        out.append(_missing(inputs, SUMMARY_FILE, "No monitoring run"))
        return out
    verdict = _s(doc.get("verdict"))
    reasons = doc.get("reasons") if isinstance(doc.get("reasons"), list) else []
    assert isinstance(reasons, list)
    link = f"{quote(folder)}/{INDEX_FILE}"
    out += [
        f"<p>{pill(verdict)} as of {esc(_s(doc.get('as_of'))[:10])}, model version "
        f'{esc(doc.get("model_version") or "n/a")}: <a href="{esc(link)}">the report</a> '
        f'&middot; <a href="{INDEX_FILE}">every run</a>.</p>',
        '<ul class="reasons">' + "".join(f"<li>{esc(r)}</li>" for r in reasons) + "</ul>",
    ]
    return out


# --------------------------------------------------------------------------- plots


def _figure(width: float, height: float) -> tuple[Figure, Axes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def svg(fig: Figure, key: str, label: str) -> str:
    """`fig` as an inline <svg> element (the figure is closed): text as text, no metadata, every
    id prefixed with `key` so that several charts share one page."""
    import matplotlib
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": key}):
        fig.savefig(buf, format="svg", metadata=dict.fromkeys(SVG_METADATA))
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg") :]  # no XML prolog or DOCTYPE inside HTML
    text = re.sub(r'\bid="([^"]+)"', rf'id="{key}-\1"', text)
    text = text.replace('href="#', f'href="#{key}-').replace("url(#", f"url(#{key}-")
    return text.replace("<svg ", f'<svg class="chart" role="img" aria-label="{esc(label)}" ', 1)


SVG_METADATA = ("Creator", "Date", "Format", "Type")
"""Matplotlib's default SVG metadata, each set to None: left out (it names web addresses)."""


def _bounds(items: Sequence[Mapping[str, object]], lo: str, hi: str) -> list[list[float]]:
    """Error-bar lengths (below, above) of intervals around their value."""
    values = [_f(i.get("value"), 0.0) for i in items]
    return [
        [max(v - _f(i.get(lo), v), 0.0) for v, i in zip(values, items, strict=True)],
        [max(_f(i.get(hi), v) - v, 0.0) for v, i in zip(values, items, strict=True)],
    ]


def cohort_value_chart(signup: Sequence[Json]) -> str:
    """Outlook per customer by signup month: realized (dark) and predicted (light) stacked, with
    the P10-P90 bar; flagged cohorts in red."""
    fig, ax = _figure(7.5, 3.2)
    names = [_s(c.get("name")) for c in signup]
    realized = [_f(c.get("realized_per_customer"), 0.0) for c in signup]
    outlook = [_mapping(c, "outlook_per_customer") for c in signup]
    value = [_f(o.get("value"), 0.0) for o in outlook]
    flagged = [bool(c.get("flagged")) for c in signup]
    x = list(range(len(names)))
    ax.bar(x, realized, color=[RED if f else BLUE for f in flagged], label="realized to date")
    ax.bar(
        x,
        [v - r for v, r in zip(value, realized, strict=True)],
        bottom=realized,
        color=[RED if f else GREY for f in flagged],
        alpha=0.5,
        label="predicted over the horizon",
    )
    ax.errorbar(
        x,
        value,
        yerr=_bounds(outlook, "p10", "p90"),
        fmt="none",
        ecolor="#333",
        capsize=2,
        linewidth=0.8,
    )
    from matplotlib.patches import Patch

    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("outlook per customer")
    keys = [
        Patch(color=BLUE, label="realized to date"),
        Patch(color=GREY, alpha=0.5, label="predicted over the horizon"),
        Patch(color=RED, label="flagged"),
    ]
    ax.legend(handles=keys, fontsize=8)
    return svg(fig, "cohort-value", "outlook per customer by signup month (red: flagged)")


def clv_cac_chart(channels: Sequence[Json]) -> str:
    """CLV:CAC per channel with its P10-P90, the break-even line at 1; flagged in red."""
    rows = [r for r in channels if isinstance(r.get("clv_cac"), Mapping)]
    fig, ax = _figure(7.5, 0.45 * max(len(rows), 1) + 1.2)
    ratios = [_mapping(r, "clv_cac") for r in rows]
    y = list(range(len(rows)))
    ax.barh(
        y,
        [_f(r.get("value"), 0.0) for r in ratios],
        xerr=_bounds(ratios, "p10", "p90"),
        color=[RED if r.get("flagged") else BLUE for r in rows],
        error_kw={"ecolor": "#333", "capsize": 3, "linewidth": 0.8},
    )
    ax.axvline(1.0, color="#333", linestyle="--", linewidth=1)
    ax.set_yticks(y, [_s(r.get("channel")) for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("CLV:CAC (bars: P10-P90; dashed: pays back; red: flagged)")
    return svg(fig, "clv-cac", "CLV to CAC ratio per channel")


def trend_chart(points: Sequence[TrendPoint]) -> str:
    """The total predicted value of the signup cohorts per as-of date, P10-P90 shaded."""
    fig, ax = _figure(7.5, 3.0)
    dates = [pd.Timestamp(p.as_of) for p in points]
    ax.fill_between(
        dates,
        [p.p10 for p in points],
        [p.p90 for p in points],
        color=GREY,
        alpha=0.3,
        label="P10-P90",
    )
    ax.plot(dates, [p.total for p in points], marker="o", color=BLUE, label="total predicted")
    if len(dates) <= 12:
        ax.set_xticks(dates, [p.as_of for p in points])
    ax.set_ylabel("predicted value, all cohorts")
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    return svg(fig, "value-trend", "total predicted value per as-of date")


def cohort_curves_chart(signup: Sequence[Json]) -> str:
    """One line per signup cohort: cumulative discounted margin per customer by month of age,
    older cohorts darker."""
    import matplotlib

    fig, ax = _figure(7.5, 3.6)
    cmap = matplotlib.colormaps["viridis"]
    n = len(signup)
    for i, c in enumerate(signup):
        tri = well_observed(c)
        label = _s(c.get("name")) if n <= 12 or i in (0, n - 1) else None
        ax.plot(
            [_f(t.get("month"), 0.0) + 1 for t in tri],
            [_f(t.get("cumulative_margin")) for t in tri],
            color=cmap(0.8 * i / max(n - 1, 1)),
            marker="o",
            markersize=3,
            linewidth=2.0 if c.get("flagged") else 1.2,
            linestyle="--" if c.get("flagged") else "-",
            label=label,
        )
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("months of age (1: the first month)")
    ax.set_ylabel("cumulative margin per customer")
    ax.legend(fontsize=7, ncol=2 if n > 6 else 1, title="signup month", title_fontsize=7)
    return svg(fig, "cohort-curves", "cumulative margin per customer by month of age, per cohort")


def well_observed(cohort: Json) -> list[Json]:
    """The cohort's triangle months observed for at least WELL_OBSERVED of its customers."""
    n = _f(cohort.get("customers"), 0.0)
    return [t for t in _rows(cohort, "triangle") if _f(t.get("observed"), 0.0) >= WELL_OBSERVED * n]


def adoption_chart(pairs: Sequence[tuple[Json | None, Json | None]]) -> str:
    """Outlook per customer of adopters against the others, per event type (P10-P90)."""
    fig, ax = _figure(7.5, 0.6 * max(len(pairs), 1) + 1.2)
    y = list(range(len(pairs)))
    for side, (offset, colour, label) in enumerate(
        ((-0.2, ORANGE, "adopters"), (0.2, GREY, "others"))
    ):
        outlooks = [_mapping(pair[side], "outlook_per_customer") for pair in pairs]
        ax.barh(
            [v + offset for v in y],
            [_f(o.get("value"), 0.0) for o in outlooks],
            height=0.4,
            xerr=_bounds(outlooks, "p10", "p90"),
            color=colour,
            label=label,
            error_kw={"ecolor": "#333", "capsize": 2, "linewidth": 0.8},
        )
    ax.set_yticks(y, [_s(_mapping(yes or no).get("name")) for yes, no in pairs], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("outlook per customer")
    ax.legend(fontsize=8)
    return svg(fig, "adoption", "outlook per customer, adopters against the others")


def experiments_chart(experiments: Sequence[Json]) -> str:
    """Per experiment: Welch's uplift and CUPED's with 95% intervals, the surrogate's early read
    hollow; the zero line is no effect."""
    fig, ax = _figure(7.5, 0.7 * max(len(experiments), 1) + 1.2)
    y = list(range(len(experiments)))
    for key, offset, colour, label, face in (
        ("uplift", -0.2, BLUE, "Welch (95%)", BLUE),
        ("cuped", 0.0, ORANGE, "CUPED (95%)", ORANGE),
        ("surrogate", 0.2, GREY, "surrogate (early read)", "white"),
    ):
        est = [_mapping(x, key) for x in experiments]
        ax.errorbar(
            [_f(e.get("value")) for e in est],
            [v + offset for v in y],
            xerr=_bounds(est, "low", "high"),
            fmt="o",
            color=colour,
            markerfacecolor=face,
            capsize=3,
            label=label,
        )
    ax.axvline(0.0, color="#333", linestyle="--", linewidth=1)
    ax.set_yticks(y, [_s(x.get("name")) for x in experiments])
    ax.invert_yaxis()
    ax.set_xlabel("uplift per customer (dashed: no effect)")
    ax.legend(fontsize=8)
    return svg(fig, "experiments", "uplift per experiment with its intervals")


# --------------------------------------------------------------------------- values


def _s(value: object) -> str:
    return "" if value is None else str(value)


def _f(value: object, default: float = math.nan) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return default


def _mapping(doc: Json | None, key: str | None = None) -> Json:
    """`doc[key]` when it is an object (`doc` itself without a key), else {}."""
    value = doc if key is None else (doc or {}).get(key)
    return value if isinstance(value, Mapping) else {}


def _rows(doc: Json | None, key: str) -> list[Json]:
    """The objects of the list `doc[key]` ([] when absent)."""
    value = (doc or {}).get(key)
    return [r for r in value if isinstance(r, Mapping)] if isinstance(value, list) else []


def _interval(value: object, fmt: str = ",.2f", *, lo: str = "p10", hi: str = "p90") -> str:
    """ "v (lo to hi)" of an interval object ("lo to hi" without a value); "n/a" for none."""
    if not isinstance(value, Mapping):
        return "n/a"
    bounds = _span(value.get(lo), value.get(hi), fmt)
    if "value" not in value:  # an interval alone (the bootstrap's)
        return bounds
    return f"{num(value.get('value'), fmt)} ({bounds})"


def _span(lo: object, hi: object, fmt: str) -> str:
    return f"{num(lo, fmt)} to {num(hi, fmt)}"


def _long(html: str, *, rows: int, what: str) -> str:
    """A table of more than LONG rows folded (the chart above shows them all)."""
    if rows <= LONG:
        return html
    return f"<details><summary>All {rows} {esc(what)}</summary>{html}</details>"


def _flag(why: str) -> str:
    return f'<span class="pill flag" title="{esc(why)}">flagged</span> {esc(why)}'
