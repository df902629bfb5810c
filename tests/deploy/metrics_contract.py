"""What the deploy/ files may query: the metrics every `clv serve` exposes on /metrics (the
serving metrics contract), and the rules of deploy/prometheus/rules.yml."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import yaml

from clv.core.telemetry import HISTOGRAMS, METRICS
from tests.deploy.promtool import ROOT

RULES = ROOT / "deploy" / "prometheus" / "rules.yml"

SERVED_METRICS = METRICS
"""The serving metrics contract (clv.core.telemetry)."""

_METRIC = re.compile(r"(?<![\w:])(clv_[a-z_]+|clv:[a-z0-9_:]+)")
_HISTOGRAM_SERIES = re.compile(rf"^({'|'.join(HISTOGRAMS)})_(bucket|sum|count)$")


@dataclass(frozen=True)
class Rule:
    """One recording or alerting rule of rules.yml."""

    kind: Literal["record", "alert"]
    name: str
    expr: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]


def rules(kind: Literal["record", "alert"]) -> list[Rule]:
    """The rules of that kind in rules.yml, in file order."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [
        Rule(
            kind=kind,
            name=str(r[kind]),
            expr=str(r["expr"]),
            labels={str(k): str(v) for k, v in (r.get("labels") or {}).items()},
            annotations={str(k): str(v) for k, v in (r.get("annotations") or {}).items()},
        )
        for g in groups
        for r in g["rules"]
        if kind in r
    ]


def metric_names(expr: str) -> set[str]:
    """The clv metric and recording-rule names an expression reads; a histogram's `_bucket`,
    `_sum` and `_count` series count as the histogram."""
    return {_HISTOGRAM_SERIES.sub(r"\1", name) for name in _METRIC.findall(expr)}


def unknown_metrics(expr: str) -> set[str]:
    """The names `expr` reads that are neither served nor recorded in rules.yml."""
    recorded = {r.name for r in rules("record")}
    return metric_names(expr) - set(SERVED_METRICS) - recorded
