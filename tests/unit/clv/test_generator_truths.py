"""The generator's planted truths for the decisions (clv.inputs.planted): off, a world is what
it was; on, the written tables carry the planted CAC exactly, early adopters buy at the planted
lift, and the retention experiment is a fair randomization whose difference in means finds
the planted uplift."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from scipy import stats
from typer.testing import CliRunner

import clv.cli.main
from clv.cli import data as data_cli
from clv.core.errors import DataError
from clv.core.settings import load_settings
from clv.core.store import read_table
from clv.inputs.generator import CHANNELS, GeneratedData, generate, write_raw
from clv.inputs.ingest import canonical, ingest_all
from clv.inputs.planted import (
    DEFAULT_CAC,
    TREATMENT,
    AdoptionPlan,
    CostPlan,
    ExperimentPlan,
)

N, MONTHS, WORLD = 6000, 24, "mixed"
SEEDS = (1, 2, 3, 4, 5)
CAC = dict(DEFAULT_CAC)
DAY = pd.Timedelta(days=1)


def plant(seed: int, *, customers: int = N, months: int = MONTHS) -> GeneratedData:
    """The demo world with every truth planted (the default plans)."""
    return generate(
        customers=customers,
        months=months,
        seed=seed,
        world=WORLD,
        costs=CostPlan(),
        adoption=AdoptionPlan(),
        experiment=ExperimentPlan(),
    )


@pytest.fixture(scope="module")
def planted() -> dict[int, GeneratedData]:
    return {s: plant(s) for s in SEEDS}


@pytest.fixture(scope="module")
def plain() -> GeneratedData:
    return generate(customers=N, months=MONTHS, seed=SEEDS[0], world=WORLD)


def first_versions(customers: pd.DataFrame) -> pd.DataFrame:
    return customers.drop_duplicates("customer_id").set_index("customer_id")


def test_costs_alone_change_nothing_else(plain: GeneratedData) -> None:
    data = generate(customers=N, months=MONTHS, seed=SEEDS[0], world=WORLD, costs=CostPlan())
    assert set(data.tables()) == set(plain.tables()) | {"acquisition_costs"}
    for name, frame in plain.tables().items():
        pd.testing.assert_frame_equal(frame, data.tables()[name])
    pd.testing.assert_frame_equal(plain.truth, data.truth)
    assert data.truths.adoption is None and data.truths.experiment is None


def test_without_plans_no_tables_and_no_truths(plain: GeneratedData) -> None:
    assert set(plain.tables()) == {"transactions", "customers", "events"}
    assert plain.acquisition_costs is None and plain.assignments is None
    assert plain.truths.as_dict() == {} and plain.truths.describe() == []


def test_effects_only_add_rows_to_the_world(
    plain: GeneratedData, planted: dict[int, GeneratedData]
) -> None:
    data = planted[SEEDS[0]]
    truths = data.truths
    assert truths.adoption is not None and truths.experiment is not None
    added = set(truths.adoption.extra["order_id"]) | set(truths.experiment.extra["order_id"])
    assert not added & set(plain.transactions["order_id"])
    own = data.transactions[~data.transactions["order_id"].isin(added)]
    pd.testing.assert_frame_equal(own.reset_index(drop=True), plain.transactions)
    pd.testing.assert_frame_equal(data.customers, plain.customers)
    pd.testing.assert_frame_equal(data.events, plain.events)
    pd.testing.assert_frame_equal(data.truth.drop(columns="early_adopter"), plain.truth)
    assert data.transactions["ts"].is_monotonic_increasing


def test_planting_is_deterministic(planted: dict[int, GeneratedData]) -> None:
    again = plant(SEEDS[0])
    for name, frame in planted[SEEDS[0]].tables().items():
        pd.testing.assert_frame_equal(frame, again.tables()[name])


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[GeneratedData, Path]:
    """A small planted world written as CSV files."""
    data = plant(8, customers=1500, months=12)
    out = tmp_path_factory.mktemp("raw")
    write_raw(data, out)
    return data, out


def test_cac_from_the_written_tables_is_the_planted_cac_exactly(
    written: tuple[GeneratedData, Path],
) -> None:
    data, out = written
    assert data.truths.cac is not None and dict(data.truths.cac.cac) == CAC
    costs = pd.read_csv(out / "acquisition_costs.csv")
    assert (costs["spend"] == costs["channel"].map(CAC) * costs["new_customers"]).all()
    per_channel = costs.groupby("channel")[["spend", "new_customers"]].sum()
    assert (per_channel["spend"] / per_channel["new_customers"]).to_dict() == CAC
    # new_customers is the customers table's count of signups by channel and month
    people = first_versions(pd.read_csv(out / "customers.csv"))
    month = pd.to_datetime(people["signup_ts"], utc=True).dt.strftime("%Y-%m")
    counts = people.groupby([people["acquisition_channel"], month]).size()
    costs["key"] = pd.to_datetime(costs["month"], utc=True).dt.strftime("%Y-%m")
    reported = costs.set_index(["channel", "key"])["new_customers"]
    assert counts.reindex(reported.index, fill_value=0).tolist() == reported.tolist()
    assert reported.sum() == len(people)
    assert set(costs["channel"]) == {c.name for c in CHANNELS}
    assert costs.groupby("channel").size().tolist() == [12] * len(CHANNELS)  # every month


def test_the_planted_world_ingests_whole(
    written: tuple[GeneratedData, Path], tmp_path: Path
) -> None:
    data, out = written
    settings = load_settings(tmp_path, environ={})
    run = ingest_all(settings, out)
    assert all(not r.quarantined for r in run)
    assert data.acquisition_costs is not None and data.assignments is not None
    for table, frame in (
        ("acquisition_costs", data.acquisition_costs),
        ("assignments", data.assignments),
    ):
        pd.testing.assert_frame_equal(read_table(settings, table), canonical(frame, table))


def test_noisy_spend_keeps_the_counts_and_the_cac_on_average() -> None:
    noisy = generate(customers=6000, months=24, seed=3, world="btyd", costs=CostPlan(noise=0.1))
    exact = generate(customers=6000, months=24, seed=3, world="btyd", costs=CostPlan())
    assert noisy.acquisition_costs is not None and exact.acquisition_costs is not None
    assert noisy.truths.cac is not None and noisy.truths.cac.noise == 0.1
    n, e = noisy.acquisition_costs, exact.acquisition_costs
    assert n["new_customers"].equals(e["new_customers"])
    assert not n["spend"].equals(e["spend"]) and (n["spend"] >= 0).all()
    per = n.groupby("channel")[["spend", "new_customers"]].sum()
    ratio = per["spend"] / per["new_customers"] / pd.Series(CAC)
    assert ratio.between(0.97, 1.03).all(), ratio.to_dict()


def test_early_adopters_are_who_the_written_events_say(planted: dict[int, GeneratedData]) -> None:
    for data in planted.values():
        people = first_versions(data.customers)
        ev = data.events[data.events["event_type"] == "feature_use"]
        early = ev["ts"] < ev["customer_id"].map(people["signup_ts"]) + 14 * DAY
        adopters = set(ev.loc[early, "customer_id"])
        flag = data.truth.set_index("customer_id")["early_adopter"]
        assert set(flag.index[flag]) == adopters
        assert data.truths.adoption is not None and data.truths.adoption.adopters == len(adopters)


def test_adopters_buy_at_the_planted_lift_after_the_window(
    planted: dict[int, GeneratedData],
) -> None:
    """Per seed the purchases the lift added are ~25% of what adopters would have bought
    after the window without it; a naive adopter vs non-adopter comparison is far above the
    lift (engaged customers both use features and buy more)."""
    for data in planted.values():
        a = data.truths.adoption
        assert a is not None and a.lift == 0.25
        people = first_versions(data.customers)
        flag = data.truth.set_index("customer_id")["early_adopter"]
        extra = a.extra
        assert flag[extra["customer_id"]].all()
        assert (extra["ts"] >= extra["customer_id"].map(people["signup_ts"]) + 14 * DAY).all()
        tx = data.transactions
        after = tx[tx["ts"] >= tx["customer_id"].map(people["signup_ts"]) + 14 * DAY]
        per = after.groupby("customer_id")["margin"].sum().reindex(flag.index, fill_value=0.0)
        without = per[flag].sum() - extra["margin"].sum()
        assert 0.2 < extra["margin"].sum() / without < 0.3
        naive = per[flag].mean() / per[~flag].mean()
        assert naive > 1.5 * (1 + a.lift)


def _post_and_pre(data: GeneratedData) -> tuple[pd.DataFrame, pd.Timestamp]:
    """Per assigned customer: arm, margin after assignment, margin before it."""
    e = data.truths.experiment
    assert e is not None and data.assignments is not None
    arms = data.assignments.set_index("customer_id")[["arm"]]
    tx = data.transactions[data.transactions["customer_id"].isin(arms.index)]
    after = tx["ts"] > e.assigned_at
    for name, rows in (("post", tx[after]), ("pre", tx[~after])):
        margin = rows.groupby("customer_id")["margin"].sum()
        arms[name] = margin.reindex(arms.index, fill_value=0.0)
    return arms, e.assigned_at


def test_the_eligible_are_assigned_at_random(planted: dict[int, GeneratedData]) -> None:
    for data in planted.values():
        arms, at = _post_and_pre(data)
        assert data.assignments is not None
        assert (data.assignments["experiment"] == "retention").all()
        assert (data.assignments["assigned_at"] == at).all()
        assert at == data.change_date
        tx = data.transactions
        recent = tx[(tx["amount"] > 0) & (tx["ts"] < at) & (tx["ts"] >= at - 180 * DAY)]
        assert set(arms.index) == set(recent["customer_id"])  # share 1: every active customer
        counts = arms["arm"].value_counts()
        srm = stats.chisquare([counts["treatment"], counts["control"]]).pvalue
        assert srm > 0.001, counts.to_dict()  # no sample-ratio mismatch
        pre = stats.ttest_ind(
            arms.loc[arms["arm"] == TREATMENT, "pre"],
            arms.loc[arms["arm"] != TREATMENT, "pre"],
            equal_var=False,
        )
        assert pre.pvalue > 0.001  # the arms bought alike before


def test_only_the_treatment_gets_the_uplift(planted: dict[int, GeneratedData]) -> None:
    for data in planted.values():
        e = data.truths.experiment
        assert e is not None and data.assignments is not None
        arm = data.assignments.set_index("customer_id")["arm"]
        assert e.assigned == len(arm)
        treated = e.extra["customer_id"].map(arm) == TREATMENT
        assert e.extra["customer_id"].isin(arm.index).all()
        in_data = e.extra["order_id"].isin(data.transactions["order_id"])
        assert (in_data == treated).all()  # control's rows are the counterfactual
        assert (e.extra["ts"] > e.assigned_at).all()


def test_difference_in_means_finds_the_planted_uplift(planted: dict[int, GeneratedData]) -> None:
    """The 95% interval of a difference in means of post-assignment margin per customer
    covers the sample's true effect in at least 4 of 5 seeds (5 of 5 when written); the true
    effect is ~uplift x the margin the customers would have brought untreated."""
    covered = 0
    for data in planted.values():
        e = data.truths.experiment
        assert e is not None
        arms, _ = _post_and_pre(data)
        t = arms.loc[arms["arm"] == TREATMENT, "post"]
        c = arms.loc[arms["arm"] != TREATMENT, "post"]
        diff = t.mean() - c.mean()
        se = np.sqrt(t.var() / len(t) + c.var() / len(c))
        truth = e.effect()
        covered += abs(diff - truth) <= 1.96 * se
        added = e.extra["order_id"].isin(data.transactions["order_id"])
        untreated = arms["post"].sum() - e.extra.loc[added, "margin"].sum()
        assert 0.15 < truth * e.assigned / untreated < 0.25
        assert 0 < e.effect(horizon_days=180, annual_discount_rate=0.1) < truth
    assert covered >= 4


def test_plans_are_checked() -> None:
    with pytest.raises(DataError, match="retail world"):
        generate(customers=300, months=6, seed=1, world="retail", experiment=ExperimentPlan())
    retail = generate(customers=300, months=6, seed=1, world="retail", costs=CostPlan())
    assert retail.acquisition_costs is not None  # costs need no purchases
    with pytest.raises(DataError, match="event_type must be one of"):
        generate(customers=300, months=6, seed=1, adoption=AdoptionPlan(event_type="purchase"))
    with pytest.raises(DataError, match="not inside the period"):
        generate(customers=300, months=6, seed=1, experiment=ExperimentPlan(at="2030-01-01"))
    with pytest.raises(DataError, match="a CAC for each channel"):
        generate(customers=300, months=6, seed=1, costs=CostPlan(cac=(("organic", 1.0),)))
    with pytest.raises(DataError, match="must not be negative"):
        CostPlan(noise=-0.1)
    with pytest.raises(DataError, match="treatment_share"):
        ExperimentPlan(treatment_share=1.0)


def _app() -> typer.Typer:
    try:
        if not any(g.name == "data" for g in clv.cli.main.app.registered_groups):
            clv.cli.main._register()
        return clv.cli.main.app
    except ImportError:
        root = typer.Typer(add_completion=False)
        root.callback()(clv.cli.main.root)
        root.add_typer(data_cli.app, name="data")
        return root


def test_clv_data_generate_decisions_writes_and_ingests(tmp_path: Path) -> None:
    app, ws = _app(), ["--workspace", str(tmp_path)]
    gen = ["--customers", "400", "--months", "12", "--seed", "2", "--decisions", "--json"]
    result = CliRunner().invoke(app, [*ws, "data", "generate", *gen])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    raw = tmp_path / "data" / "raw"
    assert out["files"]["acquisition_costs"] == str(raw / "acquisition_costs.csv")
    assert out["files"]["assignments"] == str(raw / "assignments.csv")
    truths = out["truths"]
    assert truths["cac"]["per_channel"] == CAC
    assert truths["adoption"]["lift"] == 0.25 and truths["experiment"]["uplift"] == 0.2
    assert truths["experiment"]["assigned"] == out["rows"]["assignments"]
    result = CliRunner().invoke(app, [*ws, "data", "ingest", str(raw), "--json"])
    assert result.exit_code == 0, result.output
    stored = {r["table"]: r["inserted"] for r in json.loads(result.stdout)["results"]}
    assert stored["acquisition_costs"] == out["rows"]["acquisition_costs"] == 12 * len(CHANNELS)
    assert stored["assignments"] == out["rows"]["assignments"]
    plain = CliRunner().invoke(app, [*ws, "data", "generate", "--customers", "50", "--json"])
    assert "truths" not in json.loads(plain.stdout)
