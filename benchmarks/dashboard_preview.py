"""A PNG preview of a Grafana dashboard (deploy/grafana/clv.json), drawn with matplotlib from
Prometheus `query_range` answers: Grafana cannot be installed here, and the README shows what
on call will see. Rows, gridPos, titles, units, thresholds and value mappings come from the
JSON; the look imitates Grafana's dark theme, not its every option."""

from __future__ import annotations

import json
import math
import re
import textwrap
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypedDict

import numpy as np
from matplotlib import dates as mdates
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.text import Text
from matplotlib.ticker import Formatter, MaxNLocator

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType


class Series(TypedDict):
    """One series of a Prometheus `/api/v1/query_range` answer (`data.result[i]`)."""

    metric: dict[str, str]
    values: Sequence[Sequence[float | str]]  # [unix seconds, "value"] pairs


QueryRange = Callable[[str, float, float, float], list[Series]]
"""(PromQL, start, end, step in seconds) -> the `data.result` of a range query."""

ROOT: Final = Path(__file__).resolve().parents[1]
COLUMNS: Final = 24
COLUMN_PX: Final = 64  # 24 x 64 = 1536 px: Grafana's grid on a 1920 px screen, at 80 %
UNIT_PX: Final = 30  # one gridPos height unit, as in Grafana
GAP_PX: Final = 6
HEADER_PX: Final = 44
FOOTER_PX: Final = 28
DPI: Final = 100
STAT_KINDS: Final = ("stat", "gauge")
DRAWN_KINDS: Final = ("timeseries", "table", *STAT_KINDS)
TABLE_ROWS: Final = 8
LEGEND_ROW_PX: Final = 14
LEGEND_CHAR_PX: Final = 6.0  # DejaVu Sans at 7 pt, a little over its average
_NICE: Final = [1.0, 2.0, 2.5, 5.0, 10.0]  # tick steps, as matplotlib's AutoLocator

BACKGROUND, PANEL, BORDER = "#111217", "#181b1f", "#2c3235"
TEXT, DIM, GRID = "#ccccdc", "#8e8e9e", "#262a2e"
RED = "#f2495c"
NAMED_COLORS: Final = {  # Grafana's dark-theme names, as thresholds and mappings use them
    "green": "#73bf69",
    "red": RED,
    "orange": "#ff9830",
    "yellow": "#fade2a",
    "blue": "#5794f2",
    "purple": "#b877d9",
    "text": TEXT,
}
PALETTE: Final = ("#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a6")
THEME: Final[dict[RcKeyType, object]] = {
    "font.size": 8,
    "text.color": TEXT,
    "axes.edgecolor": BORDER,
    "xtick.color": DIM,
    "ytick.color": DIM,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
}


# ---- the dashboard, as data ------------------------------------------------------------------


@dataclass(frozen=True)
class Box:
    """A gridPos: columns x..x+w of 24, height units y..y+h."""

    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str


@dataclass(frozen=True)
class Step:
    """A threshold step: `color` from `value` up (the base step's value is -inf)."""

    value: float
    color: str


@dataclass(frozen=True)
class Panel:
    kind: str
    title: str
    box: Box
    targets: tuple[Target, ...] = ()
    unit: str = ""
    steps: tuple[Step, ...] = ()
    threshold_lines: bool = False
    mappings: Mapping[str, tuple[str, str | None]] = field(default_factory=dict)
    stacked: bool = False
    fill: float = 0.0  # fillOpacity / 100
    sparkline: bool = False
    hidden: int = 0  # panels inside a collapsed row


@dataclass(frozen=True)
class Dashboard:
    title: str
    timezone: tzinfo | None  # None: the local time zone ("browser")
    panels: tuple[Panel, ...]
    variables: Mapping[str, str]

    @property
    def units(self) -> int:
        return max((p.box.y + p.box.h for p in self.panels), default=0)


def load_dashboard(path: Path) -> Dashboard:
    """The drawable parts of a dashboard JSON. The panels of a collapsed row stay hidden, as
    in Grafana, which saves the layout of the rows below already collapsed."""
    doc = json.loads(path.read_text())
    panels = tuple(_panel(p) for p in doc.get("panels", []))
    zone = doc.get("timezone", "")
    return Dashboard(
        title=doc.get("title", path.stem),
        timezone=UTC if zone == "utc" else None,
        panels=panels,
        variables=_dashboard_variables(doc),
    )


def _panel(doc: Mapping[str, Any]) -> Panel:
    defaults = doc.get("fieldConfig", {}).get("defaults", {})
    custom = defaults.get("custom", {})
    options = doc.get("options", {})
    targets = tuple(
        Target(t["expr"], t.get("legendFormat", ""))
        for t in doc.get("targets", [])
        if t.get("expr") and not t.get("hide", False)
    )
    return Panel(
        kind=doc.get("type", ""),
        title=doc.get("title", ""),
        box=Box(**{k: int(doc["gridPos"][k]) for k in "xywh"}),
        targets=targets,
        unit=defaults.get("unit", "") or "",
        steps=tuple(
            Step(-math.inf if s.get("value") is None else float(s["value"]), _color(s["color"]))
            for s in defaults.get("thresholds", {}).get("steps", [])
        ),
        threshold_lines=custom.get("thresholdsStyle", {}).get("mode", "off") in ("line", "dashed"),
        mappings={
            key: (m.get("text", key), _color(m["color"]) if "color" in m else None)
            for mapping in defaults.get("mappings", [])
            if mapping.get("type") == "value"
            for key, m in mapping.get("options", {}).items()
        },
        stacked=custom.get("stacking", {}).get("mode", "none") == "normal",
        fill=float(custom.get("fillOpacity", 0)) / 100,
        sparkline=options.get("graphMode", "none") == "area",
        hidden=len(doc.get("panels", [])) if doc.get("collapsed") else 0,
    )


def _dashboard_variables(doc: Mapping[str, Any]) -> dict[str, str]:
    """Values of the template variables the JSON defines: the current one, `.*` for "All",
    the data source's name for a data source variable or an exported dashboard's input."""
    found = {i["name"]: i.get("pluginName", "Prometheus") for i in doc.get("__inputs", [])}
    for var in doc.get("templating", {}).get("list", []):
        current = var.get("current", {}).get("value")
        if isinstance(current, list):
            current = "|".join(current)
        if current in ("$__all", "All"):
            current = var.get("allValue") or ".*"
        if not current:
            current = var.get("query") if var.get("type") in ("datasource", "constant") else None
        if isinstance(current, str) and current:
            found[var["name"]] = current
    return found


def _color(name: str) -> str:
    """A Grafana color name or CSS color as matplotlib takes it."""
    from matplotlib.colors import is_color_like

    named = NAMED_COLORS.get(name.removeprefix("dark-").removeprefix("semi-dark-"))
    return named or (name if is_color_like(name) else TEXT)


# ---- template variables ----------------------------------------------------------------------


class UnresolvedVariable(ValueError):
    """An expression names a template variable no one gave a value."""


_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")


def builtin_variables(
    *, start: float, end: float, step: float, scrape_interval: float
) -> dict[str, str]:
    """Grafana's global variables for a range query of `step`; `$__rate_interval` as Grafana
    defines it: max($__interval + scrape interval, 4 x scrape interval)."""
    span = end - start
    return {
        "__interval": prometheus_duration(step),
        "__interval_ms": str(round(step * 1000)),
        "__rate_interval": prometheus_duration(max(step + scrape_interval, 4 * scrape_interval)),
        "__range": prometheus_duration(span),
        "__range_s": str(round(span)),
        "__range_ms": str(round(span * 1000)),
        "__from": str(round(start * 1000)),
        "__to": str(round(end * 1000)),
    }


def expand(expr: str, variables: Mapping[str, str]) -> str:
    """`expr` with `$name`, `${name}`, `${name:format}` and `[[name]]` replaced."""

    def value(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name not in variables:
            raise UnresolvedVariable(
                f"unresolved template variable ${name} (pass variables={{{name!r}: ...}})"
            )
        return variables[name]

    return _VARIABLE.sub(value, expr)


def prometheus_duration(seconds: float) -> str:
    """`seconds` in PromQL's duration syntax, in the largest unit that divides it: 1m, 90s."""
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    whole = round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


# ---- queries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    name: str
    labels: Mapping[str, str]
    times: tuple[float, ...]
    values: tuple[float, ...]

    @property
    def last(self) -> float | None:
        """Grafana's lastNotNull."""
        return next((v for v in reversed(self.values) if math.isfinite(v)), None)


@dataclass(frozen=True)
class PanelData:
    lines: tuple[Line, ...]
    errors: tuple[str, ...]  # "query failed: ..." of each target that failed


def fetch(
    panel: Panel,
    query_range: QueryRange,
    *,
    start: float,
    end: float,
    step: float,
    variables: Mapping[str, str],
) -> PanelData:
    """Every target of `panel`, queried. Whatever a query raises is kept as its panel's error:
    `query_range` is any client (urllib, a fake, a proxy), so no exception class is special."""
    lines: list[Line] = []
    errors: list[str] = []
    for target in panel.targets:
        try:
            result = query_range(expand(target.expr, variables), start, end, step)
            lines.extend(_line(series, target) for series in result)
        except Exception as exc:  # drawn in the panel, never aborts the render
            first = next(iter(str(exc).strip().splitlines()), "") or type(exc).__name__
            errors.append(f"query failed: {first}")
    return PanelData(tuple(lines), tuple(dict.fromkeys(errors)))  # each message once


def _line(series: Series, target: Target) -> Line:
    labels = dict(series.get("metric", {}))
    points = [(float(t), float(v)) for t, v in series.get("values", [])]
    return Line(
        name=legend(target.legend, labels, target.expr),
        labels=labels,
        times=tuple(t for t, _ in points),
        values=tuple(v for _, v in points),
    )


def legend(template: str, labels: Mapping[str, str], expr: str) -> str:
    """A series' name: `legendFormat` with `{{label}}` replaced (a missing label by nothing,
    as Grafana does), else `name{label="value", ...}`, else the expression."""
    if template and template != "__auto":
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m[1], ""), template).strip()
    name = labels.get("__name__", "")
    rest = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{rest}}}" if rest else name or expr


# ---- units -----------------------------------------------------------------------------------

_TIME_STEPS: Final = (  # (below this many seconds, factor, suffix), as Grafana's "s" unit
    (1e-3, 1e6, " µs"),
    (1.0, 1e3, " ms"),
    (60.0, 1.0, " s"),
    (3600.0, 1 / 60, " min"),
    (86400.0, 1 / 3600, " hour"),
    (604800.0, 1 / 86400, " day"),
    (31536000.0, 1 / 604800, " week"),
    (math.inf, 1 / 31536000, " year"),
)
_TIME_UNITS: Final = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "ns": 1e-9}
_SHORT_STEPS: Final = ((1e3, 1.0, ""), (1e6, 1e-3, " K"), (1e9, 1e-6, " Mil"), (1e12, 1e-9, " Bil"))
_SUFFIXES: Final = {"": "", "none": "", "percent": "%", "reqps": " req/s", "ops": " ops/s"}


def unit_scale(unit: str, magnitude: float) -> tuple[float, str]:
    """(factor, suffix) that show values of about `magnitude` in Grafana's `unit`."""
    if unit == "percentunit":
        return 100.0, "%"
    if unit in _TIME_UNITS:
        seconds = magnitude * _TIME_UNITS[unit]
        if seconds == 0:
            return 1.0, f" {unit}"
        _, factor, suffix = next(s for s in _TIME_STEPS if seconds < s[0])
        return factor * _TIME_UNITS[unit], suffix
    if unit == "short":
        return next(((f, s) for b, f, s in _SHORT_STEPS if magnitude < b), (1e-12, " Tri"))
    return 1.0, _SUFFIXES.get(unit, f" {unit}")


def format_value(value: float, unit: str) -> str:
    """One value as a stat shows it: about three significant digits, trailing zeros cut."""
    if not math.isfinite(value):
        return str(value)
    factor, suffix = unit_scale(unit, abs(value))
    scaled = value * factor
    digits = 0 if scaled == 0 else max(0, min(3, 2 - math.floor(math.log10(abs(scaled)))))
    text = f"{scaled:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text + suffix


def _view_scale(unit: str, ticks: Formatter, locs: Sequence[float]) -> tuple[float, str]:
    """The unit's scale for the visible range of the formatter's axis (or its ticks)."""
    span = ticks.axis.get_view_interval() if ticks.axis is not None else locs
    return unit_scale(unit, max((abs(float(x)) for x in span if math.isfinite(x)), default=0.0))


class UnitLocator(MaxNLocator):
    """Ticks at round numbers of the unit shown (1 hour, 2 hour, not 5000 s, 10000 s)."""

    def __init__(self, unit: str, *, nbins: int) -> None:
        super().__init__(nbins=nbins, steps=_NICE)
        self.unit = unit

    def tick_values(self, vmin: float, vmax: float) -> Sequence[float]:
        factor, _ = unit_scale(self.unit, max(abs(vmin), abs(vmax)))
        return [t / factor for t in super().tick_values(vmin * factor, vmax * factor)]


class UnitTicks(Formatter):
    """Axis labels in one scale for the whole axis (4 ms, 6 ms, not 4 ms, 0.006 s), with as
    many decimals as the tick spacing needs."""

    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.scale = (1.0, "")
        self.decimals = 0

    def set_locs(self, locs: list[float]) -> None:
        super().set_locs(locs)
        self.scale = _view_scale(self.unit, self, locs)
        ticks = sorted(float(x) * self.scale[0] for x in locs if math.isfinite(x))
        spacing = min((b - a for a, b in pairwise(ticks)), default=0.0)
        self.decimals = next(
            (d for d in range(4) if abs(spacing * 10**d - round(spacing * 10**d)) < 1e-6), 3
        )

    def __call__(self, x: float, pos: int | None = None) -> str:
        factor, suffix = self.scale
        return f"{x * factor:.{self.decimals}f}{suffix}"


# ---- drawing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rect:
    """Pixels from the image's top-left corner."""

    left: float
    top: float
    width: float
    height: float

    def inset(self, left: float = 0, top: float = 0, right: float = 0, bottom: float = 0) -> Rect:
        return Rect(
            self.left + left,
            self.top + top,
            max(1.0, self.width - left - right),
            max(1.0, self.height - top - bottom),
        )


class Canvas:
    """A figure addressed in pixels from the top-left, as a dashboard is laid out."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor=BACKGROUND)
        FigureCanvasAgg(self.figure)  # measures text (get_window_extent) and writes the PNG

    def fraction(self, r: Rect) -> tuple[float, float, float, float]:
        w, h = self.width, self.height
        return r.left / w, 1 - (r.top + r.height) / h, r.width / w, r.height / h

    def axes(self, r: Rect) -> Axes:
        ax = self.figure.add_axes(self.fraction(r))
        ax.set_facecolor("none")
        return ax

    def px_axes(self, r: Rect) -> Axes:
        """An axes without axis whose data coordinates are pixels from `r`'s top-left."""
        ax = self.axes(r)
        ax.set_axis_off()
        ax.set_xlim(0, r.width)
        ax.set_ylim(r.height, 0)
        return ax

    def box(self, r: Rect, *, color: str, edge: str | None = None) -> None:
        left, bottom, width, height = self.fraction(r)
        rect = Rectangle((left, bottom), width, height, transform=self.figure.transFigure)
        rect.set(facecolor=color, edgecolor=edge or color, linewidth=0.8, zorder=-1)
        self.figure.add_artist(rect)


def pixel_size(dashboard: Dashboard) -> tuple[int, int]:
    """(width, height) of the preview image: the 24-column grid plus header and footer."""
    return COLUMNS * COLUMN_PX, HEADER_PX + dashboard.units * UNIT_PX + FOOTER_PX


def cell(box: Box) -> Rect:
    return Rect(
        box.x * COLUMN_PX + GAP_PX / 2,
        HEADER_PX + box.y * UNIT_PX + GAP_PX / 2,
        box.w * COLUMN_PX - GAP_PX,
        box.h * UNIT_PX - GAP_PX,
    )


def _clip(text: str, width_px: float, *, char_px: float) -> str:
    room = max(1, int(width_px / char_px))
    return text if len(text) <= room else text[: max(1, room - 1)] + "…"


def _message(ax: Axes, r: Rect, lines: Sequence[str], *, color: str, y: float | None) -> None:
    """`lines` wrapped to `r`'s width, centred (or from `y` down) in a px_axes."""
    wrapped = [w for line in lines for w in textwrap.wrap(line, max(8, int(r.width / 6.2)))]
    top = r.height / 2 - 6 * len(wrapped) if y is None else y
    ax.text(r.width / 2, top, "\n".join(wrapped), color=color, ha="center", va="top", fontsize=8)


def draw_row(canvas: Canvas, panel: Panel) -> None:
    r = cell(panel.box)
    mark = f"▸ {panel.title}  ({panel.hidden} panels collapsed)" if panel.hidden else panel.title
    ax = canvas.px_axes(r)
    ax.text(2, r.height / 2, mark, va="center", fontsize=10.5, fontweight="bold", color=TEXT)
    ax.add_line(Line2D([0, r.width], [r.height - 1, r.height - 1], color=BORDER, lw=1))


@dataclass(frozen=True)
class Span:
    """The time range drawn, and the zone its clock times are shown in."""

    start: float
    end: float
    zone: tzinfo


def draw_panel(canvas: Canvas, panel: Panel, data: PanelData | None, *, span: Span) -> None:
    """The panel's frame and title, then its content (`data` None: a type not previewed)."""
    r = cell(panel.box)
    canvas.box(r, color=PANEL, edge=BORDER)
    canvas.figure.text(
        *canvas.fraction(Rect(r.left + 8, r.top + 7, 0, 0))[:2],
        _clip(panel.title, r.width - 16, char_px=7.2),
        fontsize=9,
        fontweight="bold",
        color=TEXT,
        va="top",
    )
    content = r.inset(left=8, top=26, right=8, bottom=6)
    if data is None:
        note = f"(panel type {panel.kind} not previewed)"
        _message(canvas.px_axes(content), content, [note], color=DIM, y=None)
    elif panel.kind == "timeseries":
        draw_timeseries(canvas, content, panel, data, span=span)
    elif panel.kind == "table":
        draw_table(canvas, content, panel, data)
    else:
        draw_stat(canvas, content, panel, data)


def _threshold_color(panel: Panel, value: float) -> str:
    passed = [s.color for s in panel.steps if value >= s.value]
    return passed[-1] if passed else NAMED_COLORS["green"]


def _dates(times: Sequence[float]) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.asarray(times, dtype=float) / 86400.0  # matplotlib's date epoch is 1970-01-01


def draw_timeseries(canvas: Canvas, r: Rect, panel: Panel, data: PanelData, *, span: Span) -> None:
    """One line per series (stacked when the panel stacks), the legend below as a list that
    wraps, thresholds as dashed lines where they fall inside the data's range."""
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(data.lines))]
    labels = [_clip(line.name, r.width - 24, char_px=LEGEND_CHAR_PX) for line in data.lines]
    spots = _flow([30 + len(label) * LEGEND_CHAR_PX for label in labels], r.width)
    key_px = LEGEND_ROW_PX * (spots[-1][1] + 1 if spots else 0)
    if data.lines:
        ax = canvas.axes(r.inset(left=50, bottom=18 + key_px))
        _time_axes(ax, panel.unit, r, span)
        _plot_lines(ax, panel, data.lines, colors)
        if panel.threshold_lines:
            low, high = ax.get_ylim()
            for s in panel.steps:
                if low < s.value < high:
                    ax.axhline(s.value, color=s.color, linestyle="--", linewidth=1)
            ax.set_ylim(low, high)
        key = canvas.px_axes(Rect(r.left, r.top + r.height - key_px, r.width, key_px))
        for (x, row), color, label in zip(spots, colors, labels, strict=True):
            y = (row + 0.5) * LEGEND_ROW_PX
            key.add_line(Line2D([x, x + 12], [y, y], color=color, linewidth=2.5))
            key.text(x + 16, y, label, color=TEXT, va="center", fontsize=7)
    if data.errors or not data.lines:
        notes, color = (data.errors, RED) if data.errors else (("No data",), DIM)
        _message(canvas.px_axes(r), r, notes, color=color, y=4 if data.lines else None)


def _flow(widths: Sequence[float], room: float) -> list[tuple[float, int]]:
    """(x, row) of items of `widths` laid out left to right, wrapping at `room`."""
    spots: list[tuple[float, int]] = []
    x, row = 0.0, 0
    for w in widths:
        if x > 0 and x + w > room:
            x, row = 0.0, row + 1
        spots.append((x, row))
        x += w
    return spots


def _time_axes(ax: Axes, unit: str, r: Rect, span: Span) -> None:
    """Grafana's graph look: no spines, a faint grid, clock times below, the unit at left."""
    ax.set_xlim(*_dates([span.start, span.end]))
    ax.set_axisbelow(True)
    ax.grid(color=GRID, linewidth=0.7)
    ax.tick_params(length=0, pad=3)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ticks = max(3, int(r.width // 95))
    # matplotlib.dates is untyped in matplotlib's own stubs
    locator = mdates.AutoDateLocator(tz=span.zone, minticks=2, maxticks=ticks)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(Clock(span.zone))
    ax.yaxis.set_major_formatter(UnitTicks(unit))
    ax.yaxis.set_major_locator(UnitLocator(unit, nbins=max(2, int(r.height // 45))))


class Clock(mdates.DateFormatter):
    """HH:MM:SS, except at ticks within 5 % of either end of the axis, whose labels would
    cross the panel's border or meet the y axis' lowest label."""

    def __init__(self, zone: tzinfo) -> None:
        super().__init__("%H:%M:%S", tz=zone)  # type: ignore[no-untyped-call]

    def __call__(self, x: float, pos: int | None = 0) -> str:
        if self.axis is not None:
            low, high = self.axis.get_view_interval()
            if min(x - low, high - x) < 0.05 * (high - low):
                return ""
        return str(super().__call__(x, pos))  # type: ignore[no-untyped-call]


def _plot_lines(ax: Axes, panel: Panel, lines: Sequence[Line], colors: Sequence[str]) -> None:
    if panel.stacked:
        times = sorted({t for line in lines for t in line.times})
        x = _dates(times)
        below = np.zeros(len(times))
        for line, color in zip(lines, colors, strict=True):
            by_time = dict(zip(line.times, line.values, strict=True))
            values = np.nan_to_num([by_time.get(t, 0.0) for t in times], nan=0.0)
            above = below + values
            ax.fill_between(x, below, above, color=color, alpha=panel.fill or 0.3, linewidth=0)
            ax.plot(x, above, color=color, linewidth=1.1)
            below = above
        return
    for line, color in zip(lines, colors, strict=True):
        x = _dates(line.times)
        ax.plot(x, line.values, color=color, linewidth=1.2)
        if panel.fill:
            ax.fill_between(x, line.values, color=color, alpha=panel.fill, linewidth=0)


def _stat_text(panel: Panel, value: float) -> tuple[str, str]:
    """(text, color) of a stat's value: a value mapping's, else the unit and thresholds'."""
    key = str(int(value)) if value.is_integer() else repr(value)
    text, color = panel.mappings.get(key, (format_value(value, panel.unit), None))
    return text, color or _threshold_color(panel, value)


def draw_stat(canvas: Canvas, r: Rect, panel: Panel, data: PanelData) -> None:
    """The last value of each series (up to 4), large, in its threshold color; the series'
    names under the values when more than one; a sparkline under a single value."""
    ax = canvas.px_axes(r)
    shown = [(line, line.last) for line in data.lines if line.last is not None][:4]
    if not shown:
        if data.errors:
            _message(ax, r, data.errors, color=RED, y=None)
        else:
            ax.text(r.width / 2, r.height / 2, "No data", color=DIM, ha="center", va="center")
        return
    vertical = r.width < 2 * r.height
    n = len(shown)
    named = n > 1
    for i, (line, value) in enumerate(shown):
        if vertical:
            part = Rect(0, i * r.height / n, r.width, r.height / n)
        else:
            part = Rect(i * r.width / n, 0, r.width / n, r.height)
        text, color = _stat_text(panel, value)
        room = part.height - (12 if named else 0) - (4 if data.errors else 0)
        size_px = min(room * 0.62, 46.0)
        middle = part.top + room / 2
        centre = part.left + part.width / 2
        big = ax.text(centre, middle, text, color=color, ha="center", va="center")
        big.set_fontweight("bold")
        _fit(big, size_px * 72 / DPI, part.width * 0.94)
        if named:
            name = _clip(line.name, part.width, char_px=5.4)
            ax.text(centre, part.top + room, name, color=DIM, ha="center", va="top", fontsize=7)
    if panel.sparkline and n == 1:
        line, value = shown[0]
        color = _stat_text(panel, value)[1]
        spark = canvas.axes(r.inset(top=r.height * 0.62))
        spark.set_axis_off()
        floor = float(np.nanmin(line.values))
        spark.fill_between(line.times, line.values, floor, color=color, alpha=0.18)
        spark.plot(line.times, line.values, color=color, linewidth=1, alpha=0.7)
    if data.errors:
        _message(ax, r, data.errors, color=RED, y=r.height - 12)


def _fit(text: Text, size: float, width_px: float) -> None:
    """`text` at `size` points, or smaller if it would be wider than `width_px` drawn."""
    text.set_fontsize(size)
    drawn = text.get_window_extent().width
    if drawn > width_px:
        text.set_fontsize(size * width_px / drawn)


def draw_table(canvas: Canvas, r: Rect, panel: Panel, data: PanelData) -> None:
    """Label values and the last value of up to TABLE_ROWS series, in columns sized to their
    widest cell, all narrowed alike (cells clipped) when they do not fit."""
    ax = canvas.px_axes(r)
    if not data.lines:
        _message(ax, r, data.errors or ["No data"], color=RED if data.errors else DIM, y=None)
        return
    keys = sorted({k for line in data.lines for k in line.labels if k != "__name__"})
    header = [*keys, "Value"]
    rows = [
        [
            *(line.labels.get(k, "") for k in keys),
            "-" if line.last is None else format_value(line.last, panel.unit),
        ]
        for line in data.lines[:TABLE_ROWS]
    ]
    char_px = 5.6  # DejaVu Sans at 7 pt
    widths = [(max(len(c) for c in col) + 2) * char_px for col in zip(header, *rows, strict=True)]
    widths = [w * min(1.0, r.width / sum(widths)) for w in widths]
    lefts = [sum(widths[:i]) for i in range(len(widths))]
    row_px = 17.0
    for i, cells in enumerate([header, *rows]):
        y = i * row_px + row_px / 2
        color, weight = (DIM, "bold") if i == 0 else (TEXT, "normal")
        for left, w, text in zip(lefts, widths, cells, strict=True):
            shown = _clip(text, w - char_px, char_px=char_px)
            ax.text(left, y, shown, color=color, va="center", fontsize=7, fontweight=weight)
        ax.add_line(Line2D([0, r.width], [y + row_px / 2] * 2, color=BORDER, lw=0.6))
    more = len(data.lines) - TABLE_ROWS
    notes = ([f"+ {more} more rows"] if more > 0 else []) + list(data.errors)
    if notes:
        y = (len(rows) + 1) * row_px + 4
        ax.text(0, y, "\n".join(notes), color=RED if data.errors else DIM, va="top", fontsize=7)


def _footer(dashboard: Path, title_note: str) -> str:
    try:
        shown = dashboard.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        shown = str(dashboard)
    note = f" — {title_note}" if title_note else ""
    return (
        f"Preview of {shown} rendered by benchmarks/dashboard_preview.py "
        f"from Prometheus data (not Grafana){note}"
    )


def draw(
    dashboard: Path,
    query_range: QueryRange,
    *,
    start: float,
    end: float,
    step: float,
    title_note: str = "",
    variables: Mapping[str, str] | None = None,
    scrape_interval: float = 15.0,
) -> Figure:
    """The preview as a matplotlib figure (what `render` saves): every panel queried over
    [start, end] at `step`, template variables from the JSON, Grafana's globals, then
    `variables` (which win)."""
    board = load_dashboard(dashboard)
    known = {
        **board.variables,
        **builtin_variables(start=start, end=end, step=step, scrape_interval=scrape_interval),
        **(variables or {}),
    }
    span = Span(start, end, board.timezone or datetime.now().astimezone().tzinfo or UTC)
    width, height = pixel_size(board)
    with rc_context(THEME):
        canvas = Canvas(width, height)
        _header(canvas, board.title, span, step)
        for panel in board.panels:
            if panel.kind == "row":
                draw_row(canvas, panel)
                continue
            data = None
            if panel.kind in DRAWN_KINDS:
                data = fetch(panel, query_range, start=start, end=end, step=step, variables=known)
            draw_panel(canvas, panel, data, span=span)
        canvas.figure.text(
            8 / width, 9 / height, _footer(dashboard, title_note), color=DIM, fontsize=7.5
        )
    return canvas.figure


def render(
    dashboard: Path,
    query_range: QueryRange,
    *,
    start: float,
    end: float,
    step: float,
    out: Path,
    title_note: str = "",
    variables: Mapping[str, str] | None = None,
    scrape_interval: float = 15.0,
) -> Path:
    """`dashboard` drawn from `query_range` answers into the PNG `out` (see `draw`); `out`.
    A failing query is drawn in its panel; the render itself fails only on a bad JSON."""
    figure = draw(
        dashboard,
        query_range,
        start=start,
        end=end,
        step=step,
        title_note=title_note,
        variables=variables,
        scrape_interval=scrape_interval,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=DPI, facecolor=BACKGROUND)
    return out


def _header(canvas: Canvas, title: str, span: Span, step: float) -> None:
    def clock(t: float) -> str:
        return datetime.fromtimestamp(t, span.zone).strftime("%Y-%m-%d %H:%M:%S")

    zone = datetime.fromtimestamp(span.end, span.zone).tzname() or ""
    when = f"{clock(span.start)} to {clock(span.end)} {zone}, step {prometheus_duration(step)}"
    top = 1 - 22 / canvas.height
    canvas.figure.text(8 / canvas.width, top, title, fontsize=13, fontweight="bold", va="center")
    canvas.figure.text(1 - 8 / canvas.width, top, when, color=DIM, ha="right", va="center")


# ---- a real Prometheus -----------------------------------------------------------------------


class PrometheusError(RuntimeError):
    """Prometheus answered a query with an error (its errorType and error)."""


def prometheus_query_range(url: str, *, timeout: float = 10.0) -> QueryRange:
    """A QueryRange on the Prometheus at `url` (http://host:9090), through its HTTP API."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) Prometheus URL: {url!r}")
    base = url.rstrip("/")

    def query_range(expr: str, start: float, end: float, step: float) -> list[Series]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        request = urllib.request.Request(
            f"{base}/api/v1/query_range?{urllib.parse.urlencode(params)}",
            headers={"Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:  # 400/422/503 come with a JSON error body
            body = _error_body(exc)
        if body.get("status") != "success":
            raise PrometheusError(f"{body.get('errorType', 'error')}: {body.get('error', body)}")
        data = body["data"]
        if data.get("resultType") != "matrix":
            raise PrometheusError(f"expected a matrix, got {data.get('resultType')!r}")
        result: list[Series] = data["result"]
        return result

    return query_range


def _error_body(exc: urllib.error.HTTPError) -> dict[str, Any]:
    try:
        body = json.loads(exc.read() or b"null")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise PrometheusError(f"HTTP {exc.code} {exc.reason}") from exc
    return body
