"""Hand-written inputs of the dashboard (clv.decisions.dashboard): every JSON file of
reports/decisions, an at_risk.csv and two monitor runs, with numbers whose totals are worked
out by hand in the tests. Shared by the unit test and the browser test."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from clv.core.settings import Settings
from clv.decisions.dashboard import ModelHealth

HEALTH = ModelHealth(aliases={"champion": "3", "canary": "4"}, canary_share=0.1)


def interval(value: float, p10: float, p90: float) -> dict[str, float]:
    return {"value": value, "p10": p10, "p90": p90}


def triangle(*cumulative: float) -> list[dict[str, float]]:
    return [
        {"month": m, "observed": 10, "cumulative_margin": c, "active_share": 0.5, "arpu": 12.0}
        for m, c in enumerate(cumulative)
    ]


def cohort(
    name: str,
    *,
    kind: str = "signup_month",
    customers: int,
    realized: float,
    predicted: dict[str, float],
    previous: float | None = None,
    flagged: bool = False,
    tri: list[dict[str, float]] | None = None,
) -> dict[str, object]:
    n = customers
    outlook = {k: v / n + realized for k, v in predicted.items()}
    return {
        "name": name,
        "kind": kind,
        "customers": customers,
        "realized_per_customer": realized,
        "predicted": predicted,
        "outlook_per_customer": outlook,
        "previous_outlook_per_customer": previous,
        "change": None if previous is None else outlook["value"] / previous - 1.0,
        "flagged": flagged,
        "triangle": tri or [],
    }


# Signup months: predicted sums 200 + 400 + 100 = 700, half-widths 50, 70, 30 (P10-P90 of the
# total: 700 -+ sqrt(50^2 + 70^2 + 30^2) = 700 -+ 91.1). 2024-01's outlook 30 + 200 / 10 = 50
# fell below the last run's P10: flagged.
COHORTS = [
    cohort(
        "2024-01",
        customers=10,
        realized=30.0,
        predicted=interval(200.0, 150.0, 250.0),
        previous=60.0,
        flagged=True,
        tri=triangle(10.0, 18.0, 25.0, 30.0),
    ),
    cohort(
        "2024-02",
        customers=20,
        realized=20.0,
        predicted=interval(400.0, 330.0, 470.0),
        tri=triangle(9.0, 15.0, 20.0),
    ),
    cohort(
        "2024-03",
        customers=5,
        realized=8.0,
        predicted=interval(100.0, 70.0, 130.0),
        tri=triangle(8.0),
    ),
    cohort(
        "export within 30 days",
        kind="adoption",
        customers=8,
        realized=40.0,
        predicted=interval(160.0, 120.0, 200.0),
    ),
    cohort(
        "no export within 30 days",
        kind="adoption",
        customers=22,
        realized=15.0,
        predicted=interval(220.0, 180.0, 260.0),
    ),
]


def run(as_of: str, ran_at: str, cohorts: list[dict[str, object]]) -> dict[str, object]:
    return {"as_of": as_of, "ran_at": ran_at, "previous_run": None, "cohorts": cohorts}


CURRENT = run("2024-06-01T00:00:00+00:00", "2024-06-02T06:00:00Z", COHORTS)
# Two runs at 2024-05-01: the later one (190 + 360 = 550) is the trend's point.
EARLIER = [
    run(
        "2024-05-01T00:00:00+00:00",
        "2024-05-02T06:00:00Z",
        [
            cohort("2024-01", customers=10, realized=25.0, predicted=interval(180.0, 140.0, 220.0)),
            cohort("2024-02", customers=20, realized=10.0, predicted=interval(350.0, 300.0, 400.0)),
        ],
    ),
    run(
        "2024-05-01T00:00:00+00:00",
        "2024-05-02T07:00:00Z",
        [
            cohort("2024-01", customers=10, realized=25.0, predicted=interval(190.0, 150.0, 230.0)),
            cohort("2024-02", customers=20, realized=10.0, predicted=interval(360.0, 310.0, 410.0)),
        ],
    ),
]


def channel(
    name: str,
    month: str | None,
    *,
    spend: float,
    new: int,
    clv: dict[str, float],
    payback: int | None,
) -> dict[str, object]:
    cac = spend / new
    ratio = {k: v / cac for k, v in clv.items()}
    return {
        "channel": name,
        "month": month,
        "spend": spend,
        "new_customers": new,
        "new_customers_from": "table",
        "cac": cac,
        "clv_per_customer": clv,
        "clv_cac": ratio,
        "payback_months": payback,
        "payback": None if payback is None else "realized",
        "flagged": ratio["p90"] < 1.0,
    }


# paid_search: CAC 5000 / 50 = 100, CLV:CAC 0.60 (0.45 to 0.75): flagged. referral: CAC 40,
# CLV:CAC 2.25 (2.00 to 2.50).
CHANNELS = {
    "as_of": "2024-06-01T00:00:00+00:00",
    "channels": [
        channel("paid_search", None, spend=5000.0, new=50, clv=interval(60, 45, 75), payback=None),
        channel("referral", None, spend=1000.0, new=25, clv=interval(90, 80, 100), payback=4),
    ],
    "months": [
        channel(
            "paid_search", "2024-01", spend=5000.0, new=50, clv=interval(60, 45, 75), payback=None
        ),
        channel("referral", "2024-01", spend=1000.0, new=25, clv=interval(90, 80, 100), payback=4),
    ],
}

EXPERIMENTS = {
    "as_of": "2024-06-01T00:00:00+00:00",
    "experiments": [
        {
            "name": "onboarding_email",
            "control": "control",
            "arms": {"control": 1000, "treatment": 1010},
            "outcome": "realized discounted margin per customer since assignment",
            "uplift": {"value": 4.2, "low": 1.1, "high": 7.3},
            "bootstrap": {"low": 1.0, "high": 7.5},
            "cuped": {"value": 4.0, "low": 2.1, "high": 5.9, "variance_reduction": 0.42},
            "surrogate": {
                "value": 3.5,
                "low": 0.5,
                "high": 6.5,
                "label": "surrogate: predicted CLV",
            },
            "srm": {"p_value": 0.82, "flagged": False},
            "assigned_from": "2024-01-01",
            "assigned_to": "2024-01-31",
            "matures_at": "2024-05-01",
            "matured": True,
        },
        {
            "name": "price_test",
            "control": "control",
            "arms": {"control": 1000, "treatment": 850},
            "outcome": "realized discounted margin per customer since assignment",
            "uplift": {"value": -1.5, "low": -4.0, "high": 1.0},
            "bootstrap": {"low": -4.2, "high": 1.1},
            "cuped": {"value": -1.2, "low": -3.0, "high": 0.6, "variance_reduction": 0.3},
            "surrogate": {
                "value": -0.8,
                "low": -3.1,
                "high": 1.5,
                "label": "surrogate: predicted CLV",
            },
            "srm": {"p_value": 0.0004, "flagged": True},
            "assigned_from": "2024-05-01",
            "assigned_to": "2024-05-31",
            "matures_at": "2024-09-01",
            "matured": False,
        },
    ],
}

RETENTION = {
    "as_of": "2024-06-01T00:00:00+00:00",
    "experiment": "winback-2024-06",
    "budget": 1000.0,
    "offer_cost": 10.0,
    "from_experiment": "onboarding_email",
    "selected": 100,
    "treated": 90,
    "holdout": 10,
    "expected_saved": 2500.0,
    "expected_cost": 900.0,
    "expected_roi": 1.78,
    "customers": [
        {"customer_id": "c9", "clv": 500.0, "churn_probability": 0.7, "expected_saved": 70.0},
        {"customer_id": "c4", "clv": 420.0, "churn_probability": 0.6, "expected_saved": 50.4},
    ],
    "past": [
        {
            "experiment": "winback-2024-03",
            "assigned_at": "2024-03-01T00:00:00+00:00",
            "treated": 80,
            "holdout": 20,
            "expected_cost": 800.0,
            "expected_roi": 1.2,
            "matures_at": "2024-05-30T00:00:00+00:00",
            "realized_roi": 0.85,
        },
        {
            "experiment": "winback-2024-05",
            "assigned_at": "2024-05-01T00:00:00+00:00",
            "treated": 85,
            "holdout": 15,
            "expected_cost": 850.0,
            "expected_roi": 1.5,
            "matures_at": "2024-08-01T00:00:00+00:00",
            "realized_roi": None,
        },
        {
            "experiment": "retention-2024-05-20",
            "assigned_at": "2024-05-20T00:00:00+00:00",
            "treated": 10,
            "holdout": 2,
            "expected_cost": 100.0,
            "expected_roi": 1.1,
            "matures_at": None,  # its experiment is not in the assignments table
            "realized_roi": None,
        },
    ],
}

AT_RISK = pd.DataFrame(
    {
        "customer_id": ["c9", "c4", "c17"],
        "clv": [500.0, 420.0, 310.0],
        "clv_p10": [400.0, 300.0, 250.0],
        "clv_p90": [600.0, 540.0, 370.0],
        "churn_probability": [0.7, 0.6, 0.55],
        "segment": ["high / at risk"] * 3,
        "cold_start": [False] * 3,
        "model_version": ["3"] * 3,
        "alias": ["champion"] * 3,
    }
)


def monitor_summary(as_of: str, verdict: str, reasons: list[str]) -> dict[str, object]:
    return {"as_of": as_of, "verdict": verdict, "model_version": "3", "reasons": reasons}


def _dump(path: Path, doc: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))


def write_inputs(settings: Settings) -> None:
    """Every input of the dashboard, in the workspace's reports (and at_risk.csv beside them)."""
    out = settings.reports_dir / "decisions"
    _dump(out / "cohorts.json", CURRENT)
    for i, doc in enumerate([*EARLIER, CURRENT]):
        _dump(out / "runs" / f"cohorts-{i}.json", doc)
    _dump(out / "channels.json", CHANNELS)
    _dump(out / "experiments.json", EXPERIMENTS)
    _dump(out / "retention.json", RETENTION)
    settings.workspace.mkdir(parents=True, exist_ok=True)
    AT_RISK.to_csv(settings.workspace / "at_risk.csv", index=False)
    _dump(
        settings.reports_dir / "2024-05-01" / "summary.json",
        monitor_summary("2024-05-01T00:00:00+00:00", "OK", ["no drift"]),
    )
    _dump(
        settings.reports_dir / "2024-06-01" / "summary.json",
        monitor_summary(
            "2024-06-01T00:00:00+00:00", "WARN", ["clv predictions moved by PSI 0.12 (WARN at 0.1)"]
        ),
    )
