"""The readiness report (clv.training.readiness): figures computed by hand on tiny frames, the
horizon fit against the protocol, and the refusal on a generated world too short for its horizon."""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from clv.cli.main import main
from clv.core.errors import ReadinessError
from clv.core.settings import Settings, load_settings
from clv.jobs.demo import DEMO_END
from clv.training.readiness import Finding, Readiness, profile


def settings_with(tmp_path: Path, yaml_text: str = "") -> Settings:
    (tmp_path / "clv.yaml").write_text(yaml_text)
    return load_settings(tmp_path, environ={})


def finding(r: Readiness, check: str) -> Finding:
    return next(f for f in r.findings if f.check == check)


def tx(rows: list[tuple[str, str, float, str | None]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "ts": pd.to_datetime([r[1] for r in rows], utc=True, format="ISO8601"),
            "amount": [r[2] for r in rows],
            "order_id": pd.array([r[3] for r in rows], dtype="string"),
        }
    )


ORDER_LINES = tx(
    [
        ("C1", "2024-01-01 10:00", 10.0, "o1"),  # o1: two lines, one purchase
        ("C1", "2024-01-01 10:00", 5.0, "o1"),
        ("C1", "2024-01-03", 20.0, "o2"),  # a second purchase day: repeat buyer
        ("C2", "2024-01-02 09:00", 30.0, "o3"),  # two orders on one day: not a repeat buyer
        ("C2", "2024-01-02 18:00", 40.0, "o4"),
        ("C3", "2024-01-01", 20.0, "o5"),
        ("C3", "2024-01-05", -20.0, "o6"),  # a refund order: negative total
        ("C4", "2024-01-04", 10.0, "o7"),  # lines netting to zero: no purchase
        ("C4", "2024-01-04", -10.0, "o7"),
        ("C5", "2024-01-01", 8.0, None),  # no order id: each row is an order
        ("C5", "2024-01-06", 12.0, None),
    ]
)


def test_orders_purchases_repeat_buyers_and_shares_by_hand(tmp_path: Path) -> None:
    r = profile(ORDER_LINES, settings=settings_with(tmp_path))
    assert (r.rows, r.customers) == (11, 5)
    assert r.orders == 9  # o1..o7 and C5's two rows
    assert r.purchases == 7  # o1 o2 o3 o4 o5 and C5's two
    assert (r.buyers, r.repeat_buyers) == (4, 2)  # C4 never bought; C1 and C5 on two days
    assert r.repeat_buyer_share == pytest.approx(0.5)
    assert r.orders_per_customer_mean == pytest.approx(7 / 4)  # 2, 2, 1, 2
    assert r.orders_per_customer_median == 2
    assert r.zero_value_share == pytest.approx(1 / 9)  # o7
    assert r.negative_value_share == pytest.approx(1 / 9)  # o6
    assert r.refund_share == pytest.approx(30 / 155)  # refunds 20 + 10 over gross sales 155
    # nets: C1 35, C2 70, C3 0, C4 0, C5 20; the top 1% of 5 customers is one customer
    assert r.top1_revenue_share == pytest.approx(70 / 125)
    assert finding(r, "zero_value").level == "warn"  # 11% of orders total zero (> 5%)
    assert finding(r, "concentration").level == "warn"  # 56% >= 50%
    assert finding(r, "repeat_buyers").level == "refuse"  # 2 < 500


def test_without_an_order_id_each_row_is_an_order(tmp_path: Path) -> None:
    frame = ORDER_LINES.drop(columns=["order_id"])
    r = profile(frame, settings=settings_with(tmp_path))
    assert r.orders == 11
    assert r.zero_value_share == 0.0  # C4's two rows are +10 and -10 now
    assert r.purchases == 9  # C1 3, C2 2, C3 1, C4 1 (its +10 row), C5 2
    assert r.buyers == 5 and r.repeat_buyers == 2  # C1 and C5: C2 and C4 bought on one day


def test_the_repeat_buyer_minimum_is_inclusive(tmp_path: Path) -> None:
    at = profile(
        ORDER_LINES, settings=settings_with(tmp_path, "readiness:\n  min_repeat_buyers: 2\n")
    )
    above = profile(
        ORDER_LINES, settings=settings_with(tmp_path, "readiness:\n  min_repeat_buyers: 3\n")
    )
    assert finding(at, "repeat_buyers").level == "ok"
    assert finding(above, "repeat_buyers").level == "refuse"
    assert "readiness.min_repeat_buyers = 3" in finding(above, "repeat_buyers").message


def test_gaps_are_runs_of_empty_days_longest_first(tmp_path: Path) -> None:
    days = ["2024-01-01", "2024-01-02", "2024-01-10", "2024-01-11", "2024-01-15"]
    r = profile(
        tx([("C1", d, 10.0, f"o{i}") for i, d in enumerate(days)]), settings=settings_with(tmp_path)
    )
    assert r.empty_days == 7 + 3
    assert [(g.start, g.end, g.days) for g in r.longest_gaps] == [
        (date(2024, 1, 3), date(2024, 1, 9), 7),
        (date(2024, 1, 12), date(2024, 1, 14), 3),
    ]
    assert finding(r, "gaps").level == "warn"  # 7 days reach gap_warn_days = 7
    relaxed = profile(
        tx([("C1", d, 10.0, f"o{i}") for i, d in enumerate(days)]),
        settings=settings_with(tmp_path, "readiness:\n  gap_warn_days: 8\n"),
    )
    assert finding(relaxed, "gaps").level == "ok"


def daily(first: str, last: str, value: object) -> pd.DataFrame:
    """One order a day; `value(day)` its amount."""
    days = pd.date_range(first, last, tz="UTC")
    return pd.DataFrame(
        {
            "customer_id": "C1",
            "ts": days,
            "amount": [value(d) for d in days],  # type: ignore[operator]
            "order_id": [f"o{i}" for i in range(len(days))],
        }
    )


def test_seasonality_is_what_month_of_year_explains_after_the_trend(tmp_path: Path) -> None:
    s = settings_with(tmp_path)
    december = profile(
        daily("2022-01-01", "2023-12-31", lambda d: 200.0 if d.month == 12 else 100.0), settings=s
    )
    assert december.seasonality.months == 24
    assert december.seasonality.strength == pytest.approx(1.0)  # months explain all of it
    # a pure trend (each month 5 more a day than the one before) is not seasonality
    trend = profile(
        daily("2022-01-01", "2023-12-31", lambda d: 100.0 + 5 * ((d.year - 2022) * 12 + d.month)),
        settings=s,
    )
    assert trend.seasonality.strength == pytest.approx(0.0, abs=1e-9)
    short = profile(daily("2022-01-01", "2023-11-30", lambda d: 100.0), settings=s)
    assert short.seasonality.months == 23
    assert short.seasonality.strength is None and "24 whole months" in short.seasonality.reason


def test_strong_seasonality_warns_only_with_a_horizon_of_part_years(tmp_path: Path) -> None:
    frame = daily("2022-01-01", "2023-12-31", lambda d: 200.0 if d.month == 12 else 100.0)
    year = profile(frame, settings=settings_with(tmp_path, "model:\n  horizon_days: 365\n"))
    part = profile(frame, settings=settings_with(tmp_path, "model:\n  horizon_days: 90\n"))
    assert finding(year, "seasonality").level == "ok"
    assert finding(part, "seasonality").level == "warn"


TWO_ROWS = tx([("C1", "2023-01-01", 10.0, "o1"), ("C1", "2025-12-31", 10.0, "o2")])
NO_BACKTESTS = "evaluation:\n  backtest_origins: 0\n"


def test_a_year_horizon_on_three_years_is_not_embargoed_and_270_days_is(tmp_path: Path) -> None:
    # Monthly snapshots from 2023-02-01; labels close by 2025-12-31. With 365 days the test
    # origin is 2024-12-01, its validation 2023-12-01, and no train snapshot is a year before
    # that. With 270 days: test 2025-04-01, validation 2024-07-01, train up to 2023-10-01.
    r = profile(TWO_ROWS, settings=settings_with(tmp_path, NO_BACKTESTS))
    h = r.horizon
    assert h.required_days == 730 + 31  # two horizons, then one month (2024-12-31 -> 2025-01-31)
    assert finding(r, "history").level == "ok"  # 1095 days
    assert (h.test_origin, h.embargoed) == (date(2024, 12, 1), False)
    assert finding(r, "embargo").level == "warn"
    assert h.suggested_horizon_days == 270
    shorter = profile(
        TWO_ROWS, settings=settings_with(tmp_path, NO_BACKTESTS + "model:\n  horizon_days: 270\n")
    )
    assert (shorter.horizon.test_origin, shorter.horizon.embargoed) == (date(2025, 4, 1), True)
    assert shorter.horizon.suggested_horizon_days == 270


def test_a_year_of_history_refuses_a_year_horizon_and_names_the_override(tmp_path: Path) -> None:
    one_year = tx([("C1", "2025-01-01", 10.0, "o1"), ("C1", "2025-12-31", 10.0, "o2")])
    r = profile(one_year, settings=settings_with(tmp_path, NO_BACKTESTS))
    assert r.refused and r.status == "refused"
    history = finding(r, "history")
    assert history.level == "refuse" and "364 days is shorter than 2 horizons" in history.message
    # 90 days: test 2025-10-01, validation 2025-07-01, train from 2025-02-01; 120 days: test
    # 2025-09-01, validation 2025-05-01, and no snapshot 120 days before it
    assert r.horizon.suggested_horizon_days == 90
    message = r.refusal()
    assert "suggested horizon 90 days" in message
    assert "--skip-readiness" in message and "readiness.enforce: false" in message


@pytest.fixture(scope="module")
def short_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated mixed world of 12 months, ingested: too short for the 365-day horizon."""
    from clv.inputs.generator import generate, write_raw
    from clv.inputs.ingest import ingest_all

    ws = tmp_path_factory.mktemp("short")
    settings = load_settings(ws, environ={})
    data = generate(customers=800, months=12, seed=3, world="mixed", start="2025-01-01")
    write_raw(data, settings.raw_dir, fmt="parquet")
    ingest_all(settings, settings.raw_dir)
    return ws


def test_profile_refuses_a_world_too_short_for_the_horizon(
    short_world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--workspace", str(short_world), "data", "profile", "--json"])
    captured = capsys.readouterr()
    assert code == 1
    doc = json.loads(captured.out)
    assert doc["status"] == "refused"
    assert doc["repeat_buyers"] > 500  # refused for the history, not the customers
    assert [f["check"] for f in doc["findings"] if f["level"] == "refuse"] == ["history"]
    assert doc["horizon"]["labelled_snapshots"] == 0
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("error: not ready to train: history") and "Traceback" not in captured.err
    html = Path(doc["report"]).read_text()
    assert Path(doc["report"]) == short_world / "reports" / "readiness.html"
    assert "refused" in html and "://" not in html  # self-contained: nothing to fetch
    assert json.loads(Path(doc["json"]).read_text())["status"] == "refused"


def test_train_refuses_before_any_work_unless_overridden(
    short_world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from clv.training.readiness_io import require_ready

    code = main(["--workspace", str(short_world), "train", "--trials", "1"])
    err = capsys.readouterr().err
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: not ready to train: history ")
    assert "shorter than 2 horizons of 365 days plus one 1M snapshot" in last
    assert "`--skip-readiness`" in last and "`readiness.enforce: false`" in last
    assert not (short_world / ".clv" / "mlflow.db").exists()  # refused before MLflow
    # the setting turns the refusal into a warning; --skip-readiness skips the check
    lenient = load_settings(short_world, environ={"CLV_READINESS__ENFORCE": "false"})
    said: list[str] = []
    r = require_ready(lenient, progress=said.append)
    assert r is not None and r.refused
    assert any(line.startswith("readiness: refuse: history") for line in said)
    with pytest.raises(ReadinessError, match="not ready to train"):
        require_ready(load_settings(short_world, environ={}))
    assert require_ready(load_settings(short_world / "nothing", environ={}), skip=True) is None


def test_a_demo_shaped_world_is_ready(tmp_path: Path) -> None:
    """The demo's shape (mixed world, 48 months to DEMO_END, 365-day horizon), fewer customers
    (still above 500 repeat buyers)."""
    from clv.inputs.generator import generate, write_raw
    from clv.inputs.ingest import ingest_all
    from clv.training.readiness_io import profile_store

    settings = load_settings(tmp_path, environ={})
    start = pd.Timestamp(DEMO_END, tz="UTC") - pd.DateOffset(months=48)
    data = generate(customers=1_000, months=48, seed=7, world="mixed", start=start)
    write_raw(data, settings.raw_dir, fmt="parquet")
    ingest_all(settings, settings.raw_dir)
    r = profile_store(settings)
    assert r.status == "ready", [f for f in r.findings if f.level != "ok"]
    assert r.repeat_buyers > 500
    h = r.horizon
    assert h.embargoed and h.backtests == h.wanted_backtests == 3
    assert h.test_origin == date(2024, 12, 1)
    assert h.suggested_horizon_days == 365
    assert r.seasonality.strength is not None and r.seasonality.strength > 0.3  # mixed: seasonal
    assert math.isclose(r.history_days, 1461, abs_tol=2)
