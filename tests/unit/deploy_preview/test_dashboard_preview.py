"""benchmarks/dashboard_preview.py: the real deploy/grafana/clv.json drawn from a fake
Prometheus into a PNG of the grid's size, every target queried once, a failing query drawn
in its panel; and the pure pieces (template variables, units, legends) by hand."""

from __future__ import annotations

import json
import math
import struct
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text

from benchmarks.dashboard_preview import (
    COLUMN_PX,
    FOOTER_PX,
    HEADER_PX,
    UNIT_PX,
    Series,
    UnresolvedVariable,
    builtin_variables,
    draw,
    expand,
    format_value,
    legend,
    render,
)

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "deploy" / "grafana" / "clv.json"
START, END, STEP = 1_750_000_000.0, 1_750_003_600.0, 60.0  # one hour, 61 points a series
FAILING = "clv:cold_start_ratio"  # the metric whose queries raise


def targets() -> list[str]:
    """The expression of every target of the JSON, rows' panels included."""
    doc = json.loads(DASHBOARD.read_text())
    panels = [q for p in doc["panels"] for q in (p, *p.get("panels", []))]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


Curve = Callable[[float, int], float]  # (fraction of the hour gone, series index) -> value


def synthetic(expr: str) -> tuple[list[dict[str, str]], Curve]:
    """Plausible series for `expr`: its label sets, and the value curve of each."""
    p99 = 3.0 if "p99" in expr else 1.0
    aliases = [{"alias": "champion"}, {"alias": "canary"}]
    if "clv_model_info" in expr:
        infos = [("champion", "7"), ("canary", "8"), ("champion", "7")]
        labels = [
            {"alias": a, "version": v, "instance": f"clv-{i}:8000"}
            for i, (a, v) in enumerate(infos)
        ]
        return labels, lambda f, i: 1.0
    if "by_tier" in expr:
        tiers = [{"tier": t} for t in ("low value", "mid value", "high value")]
        return tiers, lambda f, i: p99 * (0.002 + 0.0005 * i) * (1 + f)
    if "latency_seconds" in expr:
        return aliases, lambda f, i: p99 * (0.0015 + 0.001 * i * math.sin(6 * f) ** 2)
    if "score_responses" in expr:
        codes = [{"code": c} for c in ("200", "400", "503")]
        return codes, lambda f, i: (40.0, 4.0, 1.0)[i] * (1 + 0.2 * math.sin(5 * f))
    if "error_ratio" in expr:
        return aliases, lambda f, i: 0.002 + 0.004 * f * i
    if "canary_latency_ratio" in expr:
        return [{}], lambda f, i: 1.1 + 0.2 * f
    if "ratio" in expr:
        return [{}], lambda f, i: 0.995 - 0.003 * math.sin(4 * f)
    if "age_seconds" in expr:
        scale = 1.5 if "max" in expr else 0.5 if "p50" in expr else 1.0
        return [{}], lambda f, i: scale * 3600 * (5 + 3 * f)
    if "online_store_ready" in expr:
        return [{"instance": "clv-0:8000"}], lambda f, i: 1.0
    if "up{" in expr:
        return [{}], lambda f, i: 3.0
    if "canary_sh" in expr:
        base = 0.1 if "share" in expr else 0.05
        return [{}], lambda f, i: base * (1 + f)
    return [{}], lambda f, i: 1.2e5


class FakePrometheus:
    """A QueryRange that records what it was asked and raises for FAILING."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        self.asked.append(expr)
        if FAILING in expr:
            raise ConnectionError("connection refused\n(the rest of a long traceback)")
        times = [start + i * step for i in range(int((end - start) // step) + 1)]
        labels, curve = synthetic(expr)
        return [
            {
                "metric": ls,
                "values": [(t, repr(curve((t - start) / (end - start), i))) for t in times],
            }
            for i, ls in enumerate(labels)
        ]


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def texts(figure: Figure) -> list[str]:
    return [t.get_text() for t in figure.findobj(Text)]


def test_render_writes_a_png_of_the_grid_and_queries_every_target(tmp_path: Path) -> None:
    fake = FakePrometheus()
    out = render(
        DASHBOARD, fake, start=START, end=END, step=STEP, out=tmp_path / "p.png", title_note="test"
    )
    doc = json.loads(DASHBOARD.read_text())
    grid_units = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in doc["panels"])
    assert out == tmp_path / "p.png"
    assert png_size(out) == (24 * COLUMN_PX, HEADER_PX + grid_units * UNIT_PX + FOOTER_PX)
    assert Counter(fake.asked) == Counter(targets())


def test_a_failing_query_is_drawn_in_its_panel_and_the_others_still_are() -> None:
    figure = draw(DASHBOARD, FakePrometheus(), start=START, end=END, step=STEP)
    shown = texts(figure)
    assert any("query failed: connection refused" in t for t in shown)
    assert not any("long traceback" in t for t in shown)  # the first line only
    assert "ready" in shown  # Online store ready: value 1 through its value mapping
    assert "99.7%" in shown  # Batch coverage: last value 0.995 - 0.003 sin 4 = 0.99727
    assert "3" in shown and "up" in shown and "configured" in shown  # Replicas up: both
    assert any(t.startswith("Preview of deploy/grafana/clv.json") for t in shown)


def test_a_panel_without_data_says_so() -> None:
    def empty(expr: str, start: float, end: float, step: float) -> list[Series]:
        return []

    shown = texts(draw(DASHBOARD, empty, start=START, end=END, step=STEP))
    assert shown.count("No data") == len(
        [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]
    )


def test_template_variables_expand_to_grafana_values() -> None:
    known = builtin_variables(start=0.0, end=3600.0, step=15.0, scrape_interval=15.0)
    expr = 'rate(x{job="$job", ds="${datasource}"}[$__rate_interval]) * [[k]] / $__range_s'
    done = expand(expr, {**known, "job": "clv", "datasource": "Prometheus", "k": "2"})
    assert done == 'rate(x{job="clv", ds="Prometheus"}[1m]) * 2 / 3600'  # max(15+15, 4*15) s
    slow = builtin_variables(start=0.0, end=86400.0, step=300.0, scrape_interval=15.0)
    assert slow["__rate_interval"] == "315s" and slow["__interval"] == "5m"
    assert expand('x{a=~"b$"}', {}) == 'x{a=~"b$"}'  # a regex anchor is not a variable
    with pytest.raises(UnresolvedVariable, match=r"\$job"):
        expand('up{job="$job"}', known)


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (0.9953, "percentunit", "99.5%"),
        (0.0042, "s", "4.2 ms"),
        (0.0000042, "s", "4.2 µs"),
        (90.0, "s", "1.5 min"),
        (5184000.0, "s", "8.57 week"),
        (12345.0, "short", "12.3 K"),
        (3.0, "short", "3"),
        (42.5, "reqps", "42.5 req/s"),
        (1.234, "none", "1.23"),
    ],
)
def test_values_show_in_the_panel_unit(value: float, unit: str, text: str) -> None:
    assert format_value(value, unit) == text


def test_legend_substitutes_labels_or_lists_them() -> None:
    labels = {"__name__": "clv_model_info", "alias": "canary", "version": "8"}
    assert legend("p99 {{alias}}", labels, "e") == "p99 canary"
    assert legend("{{tier}}", labels, "e") == ""  # a missing label is empty, as in Grafana
    assert legend("", labels, "e") == 'clv_model_info{alias="canary", version="8"}'
    assert legend("", {}, "sum(up)") == "sum(up)"


def test_variables_reach_the_query_and_hidden_or_unknown_panels_are_not_queried(
    tmp_path: Path,
) -> None:
    def panel(kind: str, y: int, expr: str = "") -> dict[str, object]:
        targets = [{"expr": expr, "legendFormat": "{{job}}"}] if expr else []
        return {
            "type": kind,
            "title": kind,
            "gridPos": {"x": 0, "y": y, "w": 24, "h": 4},
            "targets": targets,
        }

    doc = {
        "title": "tiny",
        "timezone": "utc",
        "templating": {"list": [{"name": "job", "type": "custom", "current": {"value": "clv"}}]},
        "panels": [
            panel("timeseries", 0, 'rate(x{job="$job"}[$__rate_interval])'),
            panel("text", 4),
            {
                **panel("row", 8),
                "title": "Hidden",
                "collapsed": True,
                "panels": [panel("stat", 9, "y")],
            },
        ],
    }
    (tmp_path / "tiny.json").write_text(json.dumps(doc))
    fake = FakePrometheus()
    shown = texts(draw(tmp_path / "tiny.json", fake, start=0.0, end=600.0, step=15.0))
    assert fake.asked == ['rate(x{job="clv"}[1m])']
    assert "(panel type text not previewed)" in shown
    assert "▸ Hidden  (1 panels collapsed)" in shown
