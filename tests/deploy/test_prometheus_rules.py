"""deploy/prometheus: the rules and the example config load in Prometheus' own `promtool`, the
rules' unit tests pass, and every alert is tested, labelled, and has its runbook section.

Needs Debian's `prometheus` package for `promtool` (`.ci/run` installs it); those tests skip
with that reason without it, the YAML checks run anyway.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import pytest
import yaml

from tests.deploy.metrics_contract import RULES, rules, unknown_metrics
from tests.deploy.promtool import ROOT, Promtool

CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
RULES_TEST = ROOT / "deploy" / "prometheus" / "tests" / "rules_test.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"
RUNBOOK_BASE = "https://github.com/clv-project/clv/blob/main/docs/runbook.md"


def alert_names() -> list[str]:
    return [r.name for r in rules("alert")]


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to
    hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def runbook_anchors() -> set[str]:
    headings = re.findall(r"^#{1,6} (.+)$", RUNBOOK.read_text(), flags=re.MULTILINE)
    return {github_anchor(h) for h in headings}


def test_promtool_checks_the_rules(promtool: Promtool) -> None:
    done = promtool("check", "rules", RULES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules('record')) + len(rules('alert'))} rules found" in done.stdout


def test_promtool_checks_the_config_and_finds_the_rules_beside_it(
    promtool: Promtool, tmp_path: Path
) -> None:
    done = promtool("check", "config", CONFIG, cwd=tmp_path)  # not from the config's folder
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 1 rule files found" in done.stdout
    assert f"Checking {RULES}" in done.stdout


def test_the_example_config_scrapes_two_replicas_every_15s() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "clv"]
    assert job["scrape_interval"] == "15s"
    assert len([t for c in job["static_configs"] for t in c["targets"]]) >= 2
    assert config["rule_files"] == ["rules.yml"]


def test_promtool_unit_tests_of_the_rules_pass(promtool: Promtool) -> None:
    done = promtool("test", "rules", RULES_TEST)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_does_not() -> None:
    cases = [
        case
        for test in yaml.safe_load(RULES_TEST.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    fires = {c["alertname"] for c in cases if c["exp_alerts"]}
    quiet = {c["alertname"] for c in cases if not c["exp_alerts"]}
    names = set(alert_names())
    assert names - fires == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested quiet"
    assert (fires | quiet) - names == set(), "tests of alerts rules.yml does not have"


def test_every_alert_has_a_severity_a_summary_a_description_and_a_runbook_url() -> None:
    for rule in rules("alert"):
        assert rule.labels.get("severity") in ("page", "ticket"), rule.name
        for key in ("summary", "description", "runbook_url"):
            assert rule.annotations.get(key, "").strip(), f"{rule.name}: no {key}"


def test_every_runbook_url_points_at_the_alerts_section_of_the_runbook() -> None:
    anchors = runbook_anchors()
    for rule in rules("alert"):
        base, _, anchor = rule.annotations["runbook_url"].partition("#")
        assert base == RUNBOOK_BASE, rule.name
        assert anchor == rule.name.lower(), rule.name
        assert anchor in anchors, f"docs/runbook.md has no section {anchor}"


def test_every_alert_has_a_runbook_section() -> None:
    missing = {name.lower() for name in alert_names()} - runbook_anchors()
    assert missing == set()


def test_the_threshold_table_at_the_top_lists_every_alert() -> None:
    listed = re.findall(r"^#   (Clv\w+) ", RULES.read_text(), flags=re.MULTILINE)
    assert listed == alert_names()


def test_recording_rules_are_named_clv_quantity_operation() -> None:
    bad = [r.name for r in rules("record") if not re.fullmatch(r"clv:\w+:\w+", r.name)]
    assert bad == []


@pytest.mark.parametrize("kind", ["record", "alert"])
def test_rules_read_only_served_or_recorded_metrics(kind: Literal["record", "alert"]) -> None:
    unknown = {r.name: unknown_metrics(r.expr) for r in rules(kind)}
    assert {name: names for name, names in unknown.items() if names} == {}
