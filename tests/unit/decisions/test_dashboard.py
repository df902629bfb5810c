"""The dashboard page (clv.decisions.dashboard) from hand-written inputs: its sections, its
numbers, inline SVG only, and a sentence for every input not written yet."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import pytest

from clv.core.settings import Settings, load_settings
from clv.decisions.dashboard import (
    ModelHealth,
    adoption_pairs,
    read_model_health,
    render_dashboard,
    trend_points,
    well_observed,
)
from tests.unit.decisions.dashboard_inputs import (
    COHORTS,
    CURRENT,
    EARLIER,
    HEALTH,
    cohort,
    interval,
    triangle,
    write_inputs,
)

SECTIONS = ("executive", "product", "crm", "experiments", "model-health")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(tmp_path / "ws", environ={})


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path]:
    """The page of every hand-written input, rendered once for the module (a render draws six
    charts)."""
    settings = load_settings(tmp_path_factory.mktemp("dashboard") / "ws", environ={})
    write_inputs(settings)
    return settings, render_dashboard(settings, health=HEALTH)


@pytest.fixture
def page(rendered: tuple[Settings, Path]) -> str:
    return rendered[1].read_text()


def hit_rows(page: str) -> list[str]:
    """The text of every highlighted (flagged) table row."""
    return [re.sub(r"<[^>]+>", " ", r) for r in re.findall(r'<tr class="hit">(.*?)</tr>', page)]


def section(page: str, key: str) -> str:
    return page.split(f'<section id="{key}">', 1)[1].split("</section>", 1)[0]


def test_the_page_is_written_atomically_with_every_section(
    rendered: tuple[Settings, Path],
) -> None:
    settings, path = rendered
    assert path == settings.reports_dir / "dashboard.html"
    assert not list(settings.reports_dir.glob("*.tmp"))
    page = path.read_text()
    for key in SECTIONS:
        assert f'<section id="{key}">' in page and f'href="#{key}"' in page
    assert "<h1>CLV dashboard, as of 2024-06-01</h1>" in page


def test_flagged_cohorts_and_channels_are_marked(page: str) -> None:
    flagged = hit_rows(page)
    cohort_rows = [r for r in flagged if "2024-0" in r and "fell below" in r]
    assert len(cohort_rows) == 1 and "2024-01" in cohort_rows[0]
    assert "50.00 (45.00 to 55.00)" in cohort_rows[0]  # 30 realized + 200 / 10 predicted
    assert "-16.7%" in cohort_rows[0]  # 50 against the last run's 60
    channel_rows = [r for r in flagged if "does not pay back" in r]
    assert [r.split()[0] for r in channel_rows] == ["paid_search", "paid_search"]  # total, month
    assert not any("referral" in r for r in flagged)
    assert not any("2024-02" in r for r in flagged)


def test_clv_cac_and_payback_per_channel(page: str) -> None:
    executive = section(page, "executive")
    # paid_search: CAC 5000 / 50 = 100, CLV 60 (45-75) -> CLV:CAC 0.60 (0.45 to 0.75)
    assert "100.00" in executive and "0.60 (0.45 to 0.75)" in executive
    # referral: CAC 1000 / 25 = 40, CLV 90 (80-100) -> 2.25 (2.00 to 2.50), paid back month 4
    assert "40.00" in executive and "2.25 (2.00 to 2.50)" in executive
    assert "4 months (realized)" in executive and "not within the horizon" in executive


def test_the_trend_has_one_point_per_as_of_with_the_band_of_a_sum() -> None:
    points = trend_points([*EARLIER, CURRENT])
    assert [p.as_of for p in points] == ["2024-05-01", "2024-06-01"]
    assert points[0].total == pytest.approx(190 + 360)  # the later run of 2024-05-01
    assert points[1].total == pytest.approx(700)
    half = (50**2 + 70**2 + 30**2) ** 0.5  # independent cohorts: root of squared half-widths
    assert (points[1].p10, points[1].p90) == pytest.approx((700 - half, 700 + half))
    assert points[1].cohorts == 3  # the adoption cohorts are not counted


def test_the_trend_table_and_chart_are_on_the_page(page: str) -> None:
    executive = section(page, "executive")
    assert '<td class="l">2024-06-01</td><td class="">700</td>' in executive
    assert '<td class="l">2024-05-01</td><td class="">550</td>' in executive
    assert "609 to 791" in executive  # 700 -+ 91.1
    assert 'aria-label="total predicted value per as-of date"' in executive


def test_product_shows_cohort_curves_and_adoption_pairs(page: str) -> None:
    product = section(page, "product")
    assert 'aria-label="cumulative margin per customer by month of age, per cohort"' in product
    # adopters 40 + 160 / 8 = 60 per customer, others 15 + 220 / 22 = 25: +35
    assert "export within 30 days" in product
    assert "60.00 (55.00 to 65.00)" in product and "+35.00" in product
    pairs = adoption_pairs([c for c in COHORTS if c["kind"] == "adoption"])
    assert [(a and a["name"], b and b["name"]) for a, b in pairs] == [
        ("export within 30 days", "no export within 30 days")
    ]


def test_a_cohort_curve_stops_before_months_few_of_its_customers_reached() -> None:
    tri = triangle(10.0, 18.0, 25.0)
    tri[2]["observed"] = 4  # 4 of 10: the month only its earliest signups have lived through
    c = cohort("2024-01", customers=10, realized=0.0, predicted=interval(0, 0, 0), tri=tri)
    assert [t["month"] for t in well_observed(c)] == [0, 1]
    tri[2]["observed"] = 5  # half of them: kept
    assert [t["month"] for t in well_observed(c)] == [0, 1, 2]


def test_crm_shows_the_at_risk_list_the_selection_and_realized_roi(page: str) -> None:
    crm = section(page, "crm")
    assert "<strong>3</strong> customers of high predicted value" in crm
    assert crm.index(">c9<") < crm.index(">c4<") < crm.index(">c17<")  # the file's order
    assert "<strong>winback-2024-06</strong>" in crm and "onboarding_email" in crm
    assert "90 treated, 10 held out" in crm and ">1.78<" in crm
    assert '>1.20</td><td class="">0.85<' in crm  # winback-2024-03: expected, realized
    assert "matures 2024-08-01" in crm  # winback-2024-05 has not
    assert "not measured yet" in crm  # retention-2024-05-20: no experiment to measure it


def test_experiments_show_every_estimate_and_flag_srm(page: str) -> None:
    experiments = section(page, "experiments")
    assert "4.20 (1.10 to 7.30)" in experiments  # Welch
    assert "1.00 to 7.50" in experiments  # bootstrap (an interval alone)
    assert "4.00 (2.10 to 5.90)" in experiments and "variance -42%" in experiments  # CUPED
    assert "surrogate: predicted CLV" in experiments
    srm = [r for r in hit_rows(experiments) if "SRM" in r]
    assert len(srm) == 1 and srm[0].split()[0] == "price_test" and "0.0004" in srm[0]
    assert "matures 2024-09-01" in experiments


def test_model_health_shows_aliases_and_links_the_last_monitor_run(page: str) -> None:
    health = section(page, "model-health")
    assert "version 3" in health and "version 4 serving 10% of customers" in health
    assert ">WARN</span>" in health and "PSI 0.12" in health
    assert 'href="2024-06-01/index.html"' in health  # the latest of two runs, relative
    assert 'href="index.html"' in health


def test_plots_are_inline_svg_and_nothing_comes_from_the_network(page: str) -> None:
    charts = re.findall(r'<svg class="chart"', page)
    assert len(charts) == 6  # cohorts, CLV:CAC, trend, curves, adoption, experiments
    assert "<?xml" not in page and "<!DOCTYPE svg" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page, re.I)
    assert "<script" not in page and "<link" not in page and "<img" not in page
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))  # several charts on one page: ids stay unique


def test_every_missing_input_renders_the_command_that_writes_it(settings: Settings) -> None:
    page = render_dashboard(settings, health=ModelHealth()).read_text()
    missing = re.sub(r"<[^>]+>", "", " ".join(re.findall(r'<p class="missing">(.*?)</p>', page)))
    for sentence in (
        "No cohorts yet: run clv analyze",
        "No channel figures yet: ingest channel spend with clv data ingest PATH --table "
        "acquisition_costs",
        "No analysis run yet",
        "No at-risk list yet: run clv score --all",
        "No retention selection yet: run clv decide retention --budget B --offer-cost C",
        "No experiments yet: ingest assignments with clv data ingest PATH --table assignments",
        "No champion yet: run clv train",
        "No monitoring run yet: run clv monitor run",
    ):
        assert sentence in missing, sentence
    assert '<svg class="chart"' not in page


def test_cohorts_without_channels_or_events_say_which_input_is_missing(
    settings: Settings,
) -> None:
    out = settings.reports_dir / "decisions"
    out.mkdir(parents=True)
    signup_only = {**CURRENT, "cohorts": [c for c in COHORTS if c["kind"] == "signup_month"]}
    (out / "cohorts.json").write_text(json.dumps(signup_only))
    page = render_dashboard(settings, health=HEALTH).read_text()
    assert "No adoption cohorts yet" in page and "--table events" in page
    assert "One as-of date so far" in page  # no runs/ kept: the current run is the one point
    assert "No channel figures yet" in page


def test_a_long_cohort_table_is_folded_under_its_chart(settings: Settings) -> None:
    months = [f"2023-{m:02d}" for m in range(1, 13)] + ["2024-01"]
    many = [
        cohort(m, customers=10, realized=1.0, predicted=interval(10, 5, 15), tri=triangle(1.0))
        for m in months
    ]
    out = settings.reports_dir / "decisions"
    out.mkdir(parents=True)
    (out / "cohorts.json").write_text(json.dumps({**CURRENT, "cohorts": many}))
    page = render_dashboard(settings, health=HEALTH).read_text()
    assert "<details><summary>All 13 signup months</summary><table>" in page
    assert page.count("<tr class=") - page.count('<tr class="hit">') >= 13


def test_an_unreadable_input_is_a_sentence_not_an_error(settings: Settings) -> None:
    (settings.reports_dir / "decisions").mkdir(parents=True)
    (settings.reports_dir / "decisions" / "channels.json").write_text("{not json")
    (settings.workspace / "at_risk.csv").write_text("")
    (settings.reports_dir / "decisions" / "retention.json").write_text("[1, 2]")
    page = render_dashboard(settings, health=HEALTH).read_text()
    assert "No channel figures: <code>channels.json</code> could not be read" in page
    assert "No at-risk list: <code>at_risk.csv</code> could not be read" in page
    assert "<code>retention.json</code> could not be read (not a JSON object)" in page


def test_a_registry_error_renders_as_a_sentence(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(_: Settings) -> None:
        raise ConnectionError("tracking store did not answer")

    # the adapter's module stands in, so that the test does not import MLflow
    fake = types.ModuleType("clv.registry.mlflow_io")
    fake.registry_state = unreachable  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "clv.registry.mlflow_io", fake)
    health = read_model_health(settings)
    assert health.error == "ConnectionError: tracking store did not answer"
    page = render_dashboard(settings).read_text()
    assert "The model registry could not be read (ConnectionError: tracking store" in page


def test_a_shadow_canary_serves_no_one(settings: Settings) -> None:
    health = ModelHealth(aliases={"champion": "3", "canary": "5"}, canary_shadow=True)
    page = render_dashboard(settings, health=health).read_text()
    assert "version 5 in shadow" in page and "serving" not in section(page, "model-health")
