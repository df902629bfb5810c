"""The retention selection (clv.decisions.retention): best net value first, within the budget,
a random holdout, no customer twice within the cooldown."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clv.decisions.retention import expected_saved, realized_roi, select


def scores(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:03d}" for i in range(n)],
            "clv": rng.gamma(2.0, 50.0, n),
            "churn_probability": rng.random(n),
            "cold_start": np.arange(n) % 50 == 0,
        }
    )


def test_it_takes_the_best_net_value_within_the_budget() -> None:
    s = scores()
    got = select(
        s, name="r1", budget=300.0, offer_cost=10.0, min_churn=0.5, holdout=0.1, save_rate=0.3
    )
    assert len(got.treated) == 30 and got.expected_cost == 300.0
    assert len(got.chosen) == 33 and len(got.holdout) == 3
    pool = s.loc[(s["churn_probability"] >= 0.5) & ~s["cold_start"]]
    net = pool["churn_probability"] * 0.3 * pool["clv"] - 10.0
    best = set(pool.loc[net.sort_values(ascending=False).index[:33], "customer_id"])
    assert set(got.chosen["customer_id"]) == best  # no better customer was left out
    assert (got.chosen["net"] > 0).all()
    saved = got.treated["expected_saved"].sum()
    assert got.expected_roi == pytest.approx((saved - 300.0) / 300.0)


def test_the_holdout_is_random_reproducible_and_the_same_share() -> None:
    s = scores(2000, seed=1)
    a = select(
        s, name="r1", budget=5000.0, offer_cost=5.0, min_churn=0.0, holdout=0.1, save_rate=0.5
    )
    b = select(
        s, name="r1", budget=5000.0, offer_cost=5.0, min_churn=0.0, holdout=0.1, save_rate=0.5
    )
    c = select(
        s, name="r2", budget=5000.0, offer_cost=5.0, min_churn=0.0, holdout=0.1, save_rate=0.5
    )
    assert a.holdout["customer_id"].tolist() == b.holdout["customer_id"].tolist()
    assert set(a.holdout["customer_id"]) != set(c.holdout["customer_id"])
    assert len(a.holdout) == round(0.1 * len(a.chosen))
    # not the worst of the chosen: the holdout is spread over the ranking
    ranks = a.chosen.index[a.chosen["arm"] == "control"]
    assert ranks.min() < len(a.chosen) / 4 and ranks.max() > 3 * len(a.chosen) / 4


def test_recent_customers_and_unprofitable_offers_are_left_out() -> None:
    s = scores()
    recent = set(s["customer_id"].iloc[:100])
    got = select(
        s,
        name="r",
        budget=1e9,
        offer_cost=10.0,
        min_churn=0.5,
        holdout=0.1,
        save_rate=0.3,
        recent=recent,
    )
    assert not set(got.chosen["customer_id"]) & recent
    assert got.excluded_recent == int(
        ((s["churn_probability"] >= 0.5) & ~s["cold_start"]).iloc[:100].sum()
    )
    assert (got.chosen["net"] > 0).all()  # an unlimited budget still buys no loss


def test_a_measured_uplift_values_customers_by_their_clv() -> None:
    s = scores()
    assert expected_saved(s, uplift=0.05).tolist() == pytest.approx((0.05 * s["clv"]).tolist())
    with pytest.raises(ValueError):
        expected_saved(s, save_rate=0.1, uplift=0.05)
    assert realized_roi(12.0, 100, 10.0) == pytest.approx(0.2)


def test_a_past_selection_reports_its_realized_roi_once_matured(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from clv.core.settings import load_settings
    from clv.decisions.analyze import ExperimentRun, _past_retention, decisions_dir
    from clv.decisions.experiments import Comparison, Estimate

    settings = load_settings(tmp_path, environ={})
    runs = decisions_dir(settings) / "runs"
    runs.mkdir(parents=True)
    for name, when in (("retention-a", "2024-01-01"), ("retention-b", "2024-05-01")):
        doc = {
            "experiment": name,
            "assigned_at": when,
            "treated": 100,
            "holdout": 11,
            "offer_cost": 10.0,
            "expected_cost": 1000.0,
            "expected_roi": 0.5,
        }
        (runs / f"{name}.json").write_text(json.dumps(doc))
    e = Estimate(12.0, 2.0, 22.0)

    def comparison(name: str, matured: bool) -> Comparison:
        t = pd.Timestamp("2024-01-01", tz="UTC")
        return Comparison(
            name,
            name,
            "treatment",
            "control",
            {"control": 11, "treatment": 100},
            e,
            e,
            e,
            0.3,
            e,
            0.5,
            False,
            t,
            t,
            t,
            matured,
            40.0,
        )

    run = ExperimentRun(
        pd.Timestamp("2025-02-01", tz="UTC"),
        [comparison("retention-a", True), comparison("retention-b", False)],
        tmp_path / "experiments.json",
    )
    past = {p["experiment"]: p for p in _past_retention(settings, run)}
    assert past["retention-a"]["realized_roi"] == pytest.approx((12.0 * 100 - 1000.0) / 1000.0)
    assert past["retention-b"]["realized_roi"] is None  # not matured: not reported yet
