"""deploy/grafana/clv.json: a Grafana dashboard (schema 39) whose layout is sound, whose rows
are Executive, On call and Debug in that order, and whose every query reads only metrics the
servers expose or rules.yml records, in PromQL that Prometheus' own parser accepts (promtool
on a rules file made of the panels' expressions; skipped without promtool)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.metrics_contract import unknown_metrics
from tests.deploy.promtool import ROOT, Promtool

DASHBOARD = ROOT / "deploy" / "grafana" / "clv.json"
ROWS = ("Executive", "On call", "Debug")
DATASOURCES = ("${datasource}", "${DS_PROMETHEUS}")

Panel = Mapping[str, Any]  # a panel of the JSON document, as json.load reads it


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def panels() -> list[Panel]:
    """Every panel, rows included, with the panels of a collapsed row after it."""
    out: list[Panel] = []
    for p in dashboard()["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def data_panels() -> list[Panel]:
    return [p for p in panels() if p["type"] != "row"]


def expressions() -> Iterator[tuple[str, str]]:
    """(panel title, PromQL expression) of every target."""
    for p in data_panels():
        for t in p["targets"]:
            yield p["title"], t["expr"]


def test_dashboard_is_schema_39_with_a_prometheus_datasource_to_choose() -> None:
    doc = dashboard()
    assert doc["schemaVersion"] == 39
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    inputs = {i["name"]: i for i in doc.get("__inputs", [])}
    assert (
        variables.get("datasource", {}).get("type") == "datasource"
        and variables["datasource"]["query"] == "prometheus"
    ) or inputs.get("DS_PROMETHEUS", {}).get("pluginId") == "prometheus"


def test_panel_ids_are_unique() -> None:
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids))


def test_panels_fit_24_columns_and_do_not_overlap() -> None:
    boxes = [(p["title"], p["gridPos"]) for p in panels()]
    for title, g in boxes:
        assert g["x"] >= 0 and g["y"] >= 0 and g["w"] > 0 and g["h"] > 0, title
        assert g["x"] + g["w"] <= 24, title
    for i, (a, ga) in enumerate(boxes):
        for b, gb in boxes[i + 1 :]:
            apart = (
                ga["x"] + ga["w"] <= gb["x"]
                or gb["x"] + gb["w"] <= ga["x"]
                or ga["y"] + ga["h"] <= gb["y"]
                or gb["y"] + gb["h"] <= ga["y"]
            )
            assert apart, f"{a!r} overlaps {b!r}"


def test_the_three_rows_come_in_order_each_with_panels_below_it() -> None:
    top = dashboard()["panels"]
    rows = [p for p in top if p["type"] == "row"]
    assert [r["title"] for r in rows] == list(ROWS)
    assert [r["gridPos"]["y"] for r in rows] == sorted(r["gridPos"]["y"] for r in rows)
    starts = [r["gridPos"]["y"] for r in rows] + [10**6]
    for row, start, end in zip(rows, starts, starts[1:], strict=False):
        below = [p for p in data_panels() if start < p["gridPos"]["y"] < end]
        assert below, f"row {row['title']!r} has no panels"


def test_every_panel_has_a_prometheus_datasource_and_a_target() -> None:
    for p in data_panels():
        assert p["datasource"]["type"] == "prometheus", p["title"]
        assert p["datasource"]["uid"] in DATASOURCES, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["expr"].strip(), p["title"]
            assert t.get("datasource", p["datasource"]) == p["datasource"], p["title"]


def test_every_query_reads_served_or_recorded_metrics_only() -> None:
    unknown = {f"{title}: {expr}": unknown_metrics(expr) for title, expr in expressions()}
    assert {query: names for query, names in unknown.items() if names} == {}


def test_every_query_parses_as_promql(promtool: Promtool, tmp_path: Path) -> None:
    """`promtool query` needs a server; `check rules` parses each expression as a recording
    rule's."""
    exprs = [expr for _, expr in expressions()]
    rules = [{"record": f"dashboard:query_{i}:parse", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = promtool("check", "rules", path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in done.stdout


@pytest.mark.parametrize("row", ROWS)
def test_each_row_is_what_its_readers_look_for(row: str) -> None:
    """The panels the operators asked for, by the names they read in each row."""
    wanted = {
        "Executive": {
            "clv_scored_customers_total",
            "clv:score_success_ratio:rate5m",
            "clv:model_age_seconds:max",
            "clv:batch_scoring_coverage_ratio:min",
        },
        "On call": {
            "clv:score_success_ratio:rate5m",
            "clv:request_latency_seconds:p50_5m",
            "clv:request_latency_seconds:p99_5m",
            "clv:feature_max_age_seconds:max",
            "clv:batch_scoring_age_seconds:min",
            "clv:request_error_ratio:rate5m",
            "clv:canary_latency_ratio:p95_5m",
            "clv_online_store_ready",
        },
        "Debug": {
            "clv:request_latency_seconds_by_tier:p99_5m",
            "clv:cold_start_ratio:rate5m",
            "clv:score_responses:rate5m",
            "clv_canary_share",
            "clv_model_info",
        },
    }[row]
    top = dashboard()["panels"]
    rows = [p for p in top if p["type"] == "row"]
    start = next(r["gridPos"]["y"] for r in rows if r["title"] == row)
    end = min([r["gridPos"]["y"] for r in rows if r["gridPos"]["y"] > start], default=10**6)
    read = " ".join(
        t["expr"] for p in data_panels() if start < p["gridPos"]["y"] < end for t in p["targets"]
    )
    assert {name for name in wanted if name not in read} == set()
    if row == "On call":
        assert 'up{job="clv"}' in read  # replicas up
