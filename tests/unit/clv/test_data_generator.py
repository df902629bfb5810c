"""The seeded generator: determinism, referential sanity, believable structure, scenarios,
and the defining property of each world family (inputs/worlds.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clv.core.contracts import CONTRACTS, TS_DTYPE
from clv.core.errors import DataError
from clv.inputs.generator import PERSONAL_COLUMNS, GeneratedData, Scenario, generate, write_raw
from clv.inputs.worlds import WORLDS, WorldName

N, MONTHS, SEED = 3000, 24, 11
SCENARIO_CHANGES: tuple[Scenario, ...] = ("price_increase", "channel_shift", "engagement_drop")
LIVELY: tuple[WorldName, ...] = tuple(w for w in WORLDS if w != "btyd")


@pytest.fixture(scope="module")
def base() -> GeneratedData:
    return generate(customers=N, months=MONTHS, seed=SEED, world="btyd")


@pytest.fixture(scope="module")
def worlds(base: GeneratedData) -> dict[Scenario, GeneratedData]:
    out: dict[Scenario, GeneratedData] = {"baseline": base}
    for s in SCENARIO_CHANGES:
        out[s] = generate(customers=N, months=MONTHS, seed=SEED, scenario=s, world="btyd")
    return out


@pytest.fixture(scope="module")
def family() -> dict[WorldName, GeneratedData]:
    """Every world at N x MONTHS, same seed."""
    return {w: generate(customers=N, months=MONTHS, seed=SEED, world=w) for w in WORLDS}


def test_same_seed_same_data_and_other_seed_differs(base: GeneratedData) -> None:
    again = generate(customers=N, months=MONTHS, seed=SEED, world="btyd")
    for name, frame in base.tables().items():
        pd.testing.assert_frame_equal(frame, again.tables()[name])
    other = generate(customers=N, months=MONTHS, seed=SEED + 1, world="btyd")
    assert not other.transactions["amount"].equals(base.transactions["amount"])
    assert not other.customers["signup_ts"].equals(base.customers["signup_ts"])


def test_btyd_is_row_for_row_the_original_generator(base: GeneratedData) -> None:
    """Reference values of the generator before world families existed (same seed, same size)."""
    assert {t: len(f) for t, f in base.tables().items()} == {
        "transactions": 31770,
        "customers": 3000,
        "events": 80773,
    }
    assert round(float(base.transactions["amount"].sum()), 2) == 1492167.74
    assert round(float(base.truth["purchase_rate"].sum()), 6) == 130.992771
    assert list(base.truth.columns) == [
        "customer_id",
        "purchase_rate",
        "dropout_rate",
        "mean_spend",
        "churn_ts",
    ]


def test_the_default_world_is_mixed() -> None:
    data = generate(customers=200, months=6, seed=5)
    assert data.world == "mixed"
    assert "valid_from" in data.customers.columns
    assert "line_id" in data.transactions.columns


@pytest.mark.parametrize("world", WORLDS)
def test_every_world_is_deterministic_per_seed(world: WorldName) -> None:
    one = generate(customers=800, months=12, seed=3, world=world)
    two = generate(customers=800, months=12, seed=3, world=world)
    for name, frame in one.tables().items():
        pd.testing.assert_frame_equal(frame, two.tables()[name])
    pd.testing.assert_frame_equal(one.truth, two.truth)
    other = generate(customers=800, months=12, seed=4, world=world)
    col = "amount" if "amount" in one.transactions else "unit_price"  # retail: no amount
    assert not other.transactions[col].equals(one.transactions[col])


def _in_contract_order(frame: pd.DataFrame, names: tuple[str, ...]) -> bool:
    return list(frame.columns) == [c for c in names if c in frame.columns]


@pytest.mark.parametrize("world", WORLDS)
def test_tables_match_the_contract(
    family: dict[WorldName, GeneratedData], world: WorldName
) -> None:
    data = family[world]
    for name, frame in data.tables().items():
        contract = CONTRACTS[name]
        known = frame[[c for c in frame.columns if c in contract.names]]
        assert _in_contract_order(known, contract.names), (name, list(frame.columns))
        personal = world == "retail" and name == "customers"  # then at the end
        extra = list(PERSONAL_COLUMNS) if personal else []
        assert list(frame.columns) == list(known.columns) + extra, (name, list(frame.columns))
        for col in frame.columns:
            if col in ("ts", "signup_ts", "valid_from"):
                assert str(frame[col].dtype) == TS_DTYPE
        for column in contract.columns:
            # A required column may be absent when its factors are there (amount = q x price).
            absent = column.name not in frame and bool(column.product_of)
            needed = list(column.product_of) if absent else [column.name]
            if column.required:
                assert not frame[needed].isna().any().any(), (name, column.name)
    assert ("valid_from" in data.customers.columns) is (world != "btyd")
    assert data.transactions["order_id"].notna().all()
    assert data.world == world


def test_customer_ids_unique_and_well_formed(base: GeneratedData) -> None:
    ids = base.customers["customer_id"]
    assert ids.is_unique
    assert len(ids) == N
    assert ids.str.fullmatch(r"C\d{6}").all()


def test_transactions_and_events_belong_to_known_customers_after_signup(
    base: GeneratedData,
) -> None:
    signup = base.customers.set_index("customer_id")["signup_ts"]
    for frame in (base.transactions, base.events):
        assert frame["customer_id"].isin(signup.index).all()
        assert (frame["ts"].to_numpy() >= signup.loc[frame["customer_id"]].to_numpy()).all()


def test_nothing_after_the_period_end(base: GeneratedData) -> None:
    assert base.start == pd.Timestamp("2023-01-01", tz="UTC")
    assert base.end == pd.Timestamp("2025-01-01", tz="UTC")
    for frame, col in (
        (base.transactions, "ts"),
        (base.events, "ts"),
        (base.customers, "signup_ts"),
    ):
        assert frame[col].max() < base.end
        assert frame[col].min() >= base.start


def test_signup_cohorts_cover_every_month_and_grow(base: GeneratedData) -> None:
    per_month = base.customers["signup_ts"].dt.tz_localize(None).dt.to_period("M").value_counts()
    assert len(per_month) == MONTHS
    months = per_month.sort_index().to_numpy()
    assert months[-6:].sum() > 1.2 * months[:6].sum()


def test_channels_differ_in_value(base: GeneratedData) -> None:
    tx = base.transactions[base.transactions["amount"] > 0]
    per = tx.groupby("customer_id")["amount"].agg(["size", "mean"])
    per = per.join(base.customers.set_index("customer_id")["acquisition_channel"])
    by = per.groupby("acquisition_channel").mean()
    assert by.loc["referral", "size"] > 1.5 * by.loc["affiliate", "size"]
    assert by.loc["referral", "mean"] > 1.3 * by.loc["affiliate", "mean"]
    assert by.loc["organic", "size"] > by.loc["social", "size"]


def test_refunds_are_negative_rows_of_earlier_orders(base: GeneratedData) -> None:
    tx = base.transactions
    refunds = tx[tx["amount"] < 0]
    orders = tx[tx["amount"] > 0].set_index("order_id")
    assert 0.01 < len(refunds) / len(orders) < 0.06
    assert orders.index.is_unique
    matched = orders.loc[refunds["order_id"]]
    assert (matched["amount"].to_numpy() == -refunds["amount"].to_numpy()).all()
    assert (matched["ts"].to_numpy() < refunds["ts"].to_numpy()).all()
    assert (matched["customer_id"].to_numpy() == refunds["customer_id"].to_numpy()).all()


def test_margin_is_a_noisy_share_of_amount(base: GeneratedData) -> None:
    tx = base.transactions
    rate = tx["margin"] / tx["amount"]
    assert rate.between(0.04, 0.61).all()
    assert 0.27 < rate.mean() < 0.33
    assert rate.std() > 0.02


def test_december_peak(base: GeneratedData) -> None:
    tx = base.transactions[base.transactions["amount"] > 0]
    month = tx["ts"].dt.month
    year = tx["ts"].dt.year
    dec = ((month == 12) & (year == 2023)).sum()
    octo = ((month == 10) & (year == 2023)).sum()
    assert dec > 1.3 * octo


def test_engagement_fades_and_tickets_rise_before_churn(base: GeneratedData) -> None:
    truth = base.truth.dropna(subset=["churn_ts"]).set_index("customer_id")["churn_ts"]
    signup = base.customers.set_index("customer_id")["signup_ts"]
    long_lived = truth[(truth - signup.loc[truth.index]) > pd.Timedelta(days=200)]
    ev = base.events[base.events["customer_id"].isin(long_lived.index)]
    days_left = (
        long_lived.loc[ev["customer_id"]].to_numpy() - ev["ts"].to_numpy()
    ) / np.timedelta64(1, "D")
    assert (days_left > 0).all()  # nothing after churn
    last30 = days_left < 30
    earlier = (days_left >= 100) & (days_left < 130)  # also 30 days, well before churn
    login = (ev["event_type"] == "login").to_numpy()
    ticket = (ev["event_type"] == "support_ticket").to_numpy()
    assert (login & last30).sum() < 0.6 * (login & earlier).sum()
    assert (ticket & last30).sum() > 1.5 * (ticket & earlier).sum()
    # and no one who churned buys afterwards
    tx = base.transactions[base.transactions["customer_id"].isin(truth.index)]
    after = tx["ts"].to_numpy() > truth.loc[tx["customer_id"]].to_numpy()
    assert not (after & (tx["amount"] > 0).to_numpy()).any()


def _split(frame: pd.DataFrame, col: str, at: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    before = frame[frame[col] < at].reset_index(drop=True)
    return before, frame[frame[col] >= at].reset_index(drop=True)


@pytest.mark.parametrize("scenario", ["price_increase", "channel_shift", "engagement_drop"])
def test_scenarios_leave_the_past_alone(
    worlds: dict[Scenario, GeneratedData], scenario: Scenario
) -> None:
    base, world = worlds["baseline"], worlds[scenario]
    assert world.change_date == pd.Timestamp("2024-05-01", tz="UTC")  # 16 of 24 months
    at = world.change_date
    tx_cols = ["customer_id", "ts", "amount", "margin", "channel"]
    pd.testing.assert_frame_equal(
        _split(world.transactions, "ts", at)[0][tx_cols],
        _split(base.transactions, "ts", at)[0][tx_cols],
    )
    pd.testing.assert_frame_equal(
        _split(world.customers, "signup_ts", at)[0], _split(base.customers, "signup_ts", at)[0]
    )
    assert not world.transactions.equals(base.transactions)  # but the future differs


@pytest.mark.parametrize("world", LIVELY)
@pytest.mark.parametrize("scenario", SCENARIO_CHANGES)
def test_scenarios_leave_the_past_alone_in_every_world(
    world: WorldName, scenario: Scenario
) -> None:
    base = generate(customers=1500, months=MONTHS, seed=SEED, world=world)
    changed = generate(customers=1500, months=MONTHS, seed=SEED, world=world, scenario=scenario)
    at = changed.change_date
    pd.testing.assert_frame_equal(
        _split(changed.transactions, "ts", at)[0], _split(base.transactions, "ts", at)[0]
    )
    pd.testing.assert_frame_equal(
        _split(changed.customers, "signup_ts", at)[0], _split(base.customers, "signup_ts", at)[0]
    )
    assert not changed.transactions.equals(base.transactions)


def test_baseline_ignores_the_change_date(base: GeneratedData) -> None:
    moved = generate(customers=N, months=MONTHS, seed=SEED, change_date="2023-06-01", world="btyd")
    pd.testing.assert_frame_equal(moved.transactions, base.transactions)
    pd.testing.assert_frame_equal(moved.events, base.events)


def test_price_increase_raises_prices_and_lowers_purchases(
    worlds: dict[Scenario, GeneratedData],
) -> None:
    at = worlds["baseline"].change_date
    post_base = _split(worlds["baseline"].transactions, "ts", at)[1]
    post = _split(worlds["price_increase"].transactions, "ts", at)[1]
    post_base, post = post_base[post_base["amount"] > 0], post[post["amount"] > 0]
    ratio = post["amount"].mean() / post_base["amount"].mean()
    assert 1.08 < ratio < 1.22
    assert len(post) < 0.9 * len(post_base)


def test_channel_shift_moves_new_signups_to_affiliate(
    worlds: dict[Scenario, GeneratedData],
) -> None:
    at = worlds["baseline"].change_date

    def affiliate_share(data: GeneratedData, *, after: bool) -> float:
        before, later = _split(data.customers, "signup_ts", at)
        part = later if after else before
        return float((part["acquisition_channel"] == "affiliate").mean())

    assert affiliate_share(worlds["channel_shift"], after=True) > 0.35
    assert affiliate_share(worlds["baseline"], after=True) < 0.15
    assert affiliate_share(worlds["channel_shift"], after=False) == affiliate_share(
        worlds["baseline"], after=False
    )


def test_engagement_drop_cuts_logins_and_raises_churn(
    worlds: dict[Scenario, GeneratedData],
) -> None:
    at = worlds["baseline"].change_date
    base, drop = worlds["baseline"], worlds["engagement_drop"]

    def logins(data: GeneratedData) -> tuple[int, int]:
        ev = data.events[data.events["event_type"] == "login"]
        before, after = _split(ev, "ts", at)
        return len(before), len(after)

    (b0, b1), (d0, d1) = logins(base), logins(drop)
    assert abs(d0 - b0) < 0.03 * b0  # only the pre-churn fade of earlier churners leaks back
    assert d1 < 0.6 * b1

    def churned_after(data: GeneratedData) -> int:
        churn = data.truth["churn_ts"]
        return int((churn >= at).sum())

    assert churned_after(drop) > 1.2 * churned_after(base)


def test_bad_arguments_raise_data_error() -> None:
    with pytest.raises(DataError, match="outside the period"):
        generate(customers=10, months=3, seed=1, change_date="2030-01-01")
    with pytest.raises(DataError, match="unknown scenario"):
        generate(customers=10, months=3, seed=1, scenario="nope")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="unknown world"):
        generate(customers=10, months=3, seed=1, world="nope")  # type: ignore[arg-type]


@pytest.mark.parametrize("world", ["btyd", "mixed"])
def test_custom_start(world: WorldName) -> None:
    data = generate(customers=50, months=2, seed=3, start="2020-03-01", world=world)
    assert data.customers["signup_ts"].min() >= pd.Timestamp("2020-03-01", tz="UTC")
    assert data.transactions["ts"].max() < pd.Timestamp("2020-05-01", tz="UTC")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_write_raw_round_trips(tmp_path: Path, fmt: str) -> None:
    data = generate(customers=200, months=6, seed=5, world="mixed")
    paths = write_raw(data, tmp_path / "raw", fmt=fmt)  # type: ignore[arg-type]
    assert sorted(paths) == ["customers", "events", "transactions"]
    for table, path in paths.items():
        assert path == tmp_path / "raw" / f"{table}.{fmt}"
        back = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
        assert len(back) == len(data.tables()[table])
    if fmt == "csv":
        ts = pd.read_csv(paths["transactions"])["ts"]
        parsed = pd.to_datetime(ts, utc=True, format="ISO8601")
        assert (parsed.dt.as_unit("us").to_numpy() == data.transactions["ts"].to_numpy()).all()


# --------------------------------------------------------------------------- world families


def _orders(data: GeneratedData) -> pd.DataFrame:
    """One row per purchase order (line worlds: the order's first line, with its total)."""
    tx = data.transactions[data.transactions["amount"] > 0]
    total = tx.groupby("order_id", sort=False)["amount"].sum()
    first = tx.drop_duplicates("order_id").set_index("order_id")
    return first.assign(amount=total).reset_index()


def _signups(data: GeneratedData) -> pd.Series:
    return data.customers.drop_duplicates("customer_id").set_index("customer_id")["signup_ts"]


def _with_age(data: GeneratedData) -> pd.DataFrame:
    """Repeat orders with the customer's tenure in days at the order."""
    orders = _orders(data)
    signup = _signups(data).loc[orders["customer_id"]].to_numpy()
    orders["age"] = (orders["ts"].to_numpy() - signup) / np.timedelta64(1, "D")
    return orders[orders["age"] > 0]


def test_seasonal_world_peaks_at_year_end_and_dips_in_summer(
    family: dict[WorldName, GeneratedData],
) -> None:
    def by_month(world: WorldName) -> tuple[float, float]:
        orders = _orders(family[world])
        month = orders["ts"].dt.month
        count = (month == 12).sum() / (month == 7).sum()
        value = orders.loc[month == 12, "amount"].mean() / orders.loc[month == 7, "amount"].mean()
        return float(count), float(value)

    (count, value), (btyd_count, btyd_value) = by_month("seasonal"), by_month("btyd")
    assert count > 4.0
    assert count > 1.8 * btyd_count  # same customers, same cohorts: the season does it
    assert value > 1.3
    assert btyd_value < 1.15


def _cohort_ratio(data: GeneratedData) -> float:
    months = _signups(data).dt.tz_localize(None).dt.to_period("M").value_counts().sort_index()
    return float(months.iloc[-6:].sum() / months.iloc[:6].sum())


def _drift(data: GeneratedData) -> float:
    """Repeat orders in the first 90 days per customer, signups of Mar-Aug 2024 over those of
    Jan-Jun 2023: the business-level order rate, tenure held fixed."""
    signup = _signups(data)
    orders = _with_age(data)
    early_orders = orders[orders["age"] < 90]

    def per_customer(since: str, until: str) -> float:
        lo, hi = pd.Timestamp(since, tz="UTC"), pd.Timestamp(until, tz="UTC")
        ids = signup.index[(signup >= lo) & (signup < hi)]
        return int(early_orders["customer_id"].isin(ids).sum()) / len(ids)

    return per_customer("2024-03-01", "2024-09-01") / per_customer("2023-01-01", "2023-07-01")


@pytest.mark.parametrize(("world", "growing"), [("growth", True), ("decline", False)])
def test_growth_and_decline_move_cohorts_and_the_order_rate(
    family: dict[WorldName, GeneratedData], world: WorldName, growing: bool
) -> None:
    data, btyd = family[world], family["btyd"]
    assert 0.9 < _drift(btyd) < 1.1  # btyd: no business-level drift
    if growing:
        assert _cohort_ratio(data) > 3.0 > _cohort_ratio(btyd)  # btyd grows 4% a month
        assert _drift(data) > 1.2
    else:
        assert _cohort_ratio(data) < 0.7
        assert _drift(data) < 0.85


def test_tenure_world_ramps_up_some_customers_and_cools_others(
    family: dict[WorldName, GeneratedData],
) -> None:
    data = family["tenure"]
    truth = data.truth.set_index("customer_id")
    signup = _signups(data)
    lived = (truth["churn_ts"].isna() | (truth["churn_ts"] - signup > pd.Timedelta(days=200))) & (
        signup < data.end - pd.Timedelta(days=200)
    )
    orders = _with_age(data)

    def monthly_rate(kind: str, lo: float, hi: float) -> float:
        ids = truth.index[lived & (truth["tenure_type"] == kind)]
        mine = orders[orders["customer_id"].isin(ids)]
        return float(((mine["age"] >= lo) & (mine["age"] < hi)).sum() / len(ids) / (hi - lo))

    assert monthly_rate("ramp_up", 91, 183) > 1.5 * monthly_rate("ramp_up", 0, 61)
    assert monthly_rate("decay", 0, 61) > 1.5 * monthly_rate("decay", 91, 183)
    flat = monthly_rate("flat", 91, 183) / monthly_rate("flat", 0, 61)
    assert 0.8 < flat < 1.25
    assert set(truth["tenure_type"]) == {"flat", "ramp_up", "decay"}


def _long_gap_share(data: GeneratedData) -> float:
    """Share of customers with a gap of more than 180 days between two orders."""
    orders = _orders(data).sort_values(["customer_id", "ts"])
    gap = orders.groupby("customer_id")["ts"].diff()
    return orders.loc[gap > pd.Timedelta(days=180), "customer_id"].nunique() / len(data.truth)


def test_comeback_world_has_dormant_spells_and_returns(
    family: dict[WorldName, GeneratedData],
) -> None:
    data = family["comeback"]
    truth = data.truth.set_index("customer_id")
    assert truth["on_off"].all()
    assert truth["churn_ts"].isna().all()  # nobody dies for good
    assert _long_gap_share(data) > 0.1  # in 24 months
    assert _long_gap_share(data) > 2.5 * _long_gap_share(family["btyd"])

    orders = _orders(data)
    back = truth.dropna(subset=["first_return_ts"])
    assert len(back) > 0.25 * len(truth)
    mine = orders[orders["customer_id"].isin(back.index)]
    ret = back["first_return_ts"].loc[mine["customer_id"]].to_numpy()
    gone = back["first_dormant_ts"].loc[mine["customer_id"]].to_numpy()
    t = mine["ts"].to_numpy()
    assert not ((t >= gone) & (t < ret)).any()  # no orders while dormant
    buyers_after = mine.loc[t >= ret, "customer_id"].nunique()
    assert buyers_after > 0.7 * len(back)  # the dormant come back
    assert (truth["comebacks"] >= 1).sum() == len(back)

    logins = data.events[data.events["event_type"] == "login"]
    mine = logins[logins["customer_id"].isin(back.index)]
    t = mine["ts"].to_numpy()
    ret = back["first_return_ts"].loc[mine["customer_id"]].to_numpy()
    gone = back["first_dormant_ts"].loc[mine["customer_id"]].to_numpy()
    days = np.timedelta64(1, "D")
    dormant_days = (back["first_return_ts"] - back["first_dormant_ts"]).sum() / pd.Timedelta(days=1)
    active_days = (back["first_dormant_ts"] - _signups(data).loc[back.index]).sum() / days
    dormant_rate = ((t >= gone) & (t < ret)).sum() / dormant_days
    active_rate = (t < gone).sum() / active_days
    assert 0.1 * active_rate < dormant_rate < 0.6 * active_rate  # fewer logins, not none


def _per_customer(data: GeneratedData) -> pd.DataFrame:
    logins = data.events[data.events["event_type"] == "login"].groupby("customer_id").size()
    orders = _orders(data)
    ids = data.truth["customer_id"]
    return pd.DataFrame(
        {
            "logins": logins.reindex(ids, fill_value=0).to_numpy(),
            "orders": orders.groupby("customer_id").size().reindex(ids, fill_value=0).to_numpy(),
            "value": orders.groupby("customer_id")["amount"].mean().reindex(ids).to_numpy(),
        },
        index=ids,
    )


@pytest.mark.parametrize("world", ["behaviour", "mixed"])
def test_behaviour_events_track_activity_but_are_no_oracle(
    family: dict[WorldName, GeneratedData], world: WorldName
) -> None:
    data = family[world]
    per = _per_customer(data)
    corr = per["logins"].corr(per["orders"])
    assert 0.3 < corr < 0.9

    last = data.end - pd.Timedelta(days=90)
    recent_buyers = set(data.transactions.loc[data.transactions["ts"] >= last, "customer_id"])
    ev = data.events
    recent_login = set(ev.loc[(ev["ts"] >= last) & (ev["event_type"] == "login"), "customer_id"])
    assert len(recent_login - recent_buyers) > 0.05 * len(per)  # quiet buyers who log in
    assert len(recent_buyers - recent_login) > 0.1 * len(recent_buyers)  # buyers who never do

    truth = data.truth.dropna(subset=["churn_ts"]).set_index("customer_id")
    logins = ev[(ev["event_type"] == "login") & ev["customer_id"].isin(truth.index)]
    after = logins["ts"].to_numpy() > truth["churn_ts"].loc[logins["customer_id"]].to_numpy()
    assert logins.loc[after, "customer_id"].nunique() > 0.1 * len(truth)  # ghosts


def test_btyd_events_are_an_oracle_of_death(family: dict[WorldName, GeneratedData]) -> None:
    data = family["btyd"]
    truth = data.truth.dropna(subset=["churn_ts"]).set_index("customer_id")
    ev = data.events[data.events["customer_id"].isin(truth.index)]
    assert (ev["ts"].to_numpy() < truth["churn_ts"].loc[ev["customer_id"]].to_numpy()).all()


def test_behaviour_world_spend_depends_on_engagement_and_sales_channel(
    family: dict[WorldName, GeneratedData],
) -> None:
    def engagement_and_channel(world: WorldName) -> tuple[float, float]:
        data = family[world]
        per = _per_customer(data).dropna()
        tercile = pd.qcut(per["logins"].rank(method="first"), 3, labels=False)
        by = per.groupby(tercile)["value"].mean()
        tx = data.transactions[data.transactions["amount"] > 0]
        orders = tx.groupby(["order_id", "channel"])["amount"].sum().reset_index()
        ch = orders.groupby("channel")["amount"].mean()
        return float(by.iloc[-1] / by.iloc[0]), float(ch["app"] / ch["store"])

    (engaged, app), (btyd_engaged, btyd_app) = (
        engagement_and_channel("behaviour"),
        engagement_and_channel("btyd"),
    )
    assert engaged > 1.25 > btyd_engaged
    assert app > 1.25 > btyd_app


@pytest.mark.parametrize("world", ["lines", "mixed"])
def test_orders_have_line_items(family: dict[WorldName, GeneratedData], world: WorldName) -> None:
    tx = family[world].transactions
    assert np.array_equal(np.round(tx["quantity"] * tx["unit_price"], 2), tx["amount"])
    buys = tx[tx["amount"] > 0]
    lines = buys.groupby("order_id").size()
    assert 1.5 < lines.mean() < 2.5
    assert lines.max() <= 6
    assert (buys.groupby("order_id")[["customer_id", "ts", "channel"]].nunique() == 1).all().all()
    assert not buys.duplicated(["order_id", "line_id"]).any()
    numbers = buys.groupby("order_id")["line_id"].agg(lambda s: sorted(int(x) for x in s))
    assert all(n == list(range(1, len(n) + 1)) for n in numbers)
    assert buys["sku"].str.fullmatch(r"SKU\d{4}").all()
    assert (buys["quantity"] >= 1).all() and (buys["unit_price"] > 0).all()
    assert buys["sku"].nunique() > 100
    # one sku, one list price (no price changes in the baseline scenario)
    assert (buys.groupby("sku")["unit_price"].nunique() == 1).all()


@pytest.mark.parametrize("world", [w for w in LIVELY if w != "retail"])  # retail: test_retail_*
def test_refunds_point_at_an_earlier_order_of_the_same_customer(
    family: dict[WorldName, GeneratedData], world: WorldName
) -> None:
    tx = family[world].transactions
    refunds = tx[tx["amount"] < 0]
    buys = tx[tx["amount"] > 0]
    assert 0.015 < len(refunds) / len(buys) < 0.06
    key = ["order_id", "line_id"] if "line_id" in tx.columns else ["order_id"]
    if "line_id" in tx.columns:
        refunds = refunds.assign(line_id=refunds["line_id"].str.removeprefix("R"))
        assert not tx.duplicated(["customer_id", "order_id", "line_id"]).any()
    assert not buys.duplicated(key).any()
    matched = refunds.merge(buys, on=key, how="left", suffixes=("", "_bought"), validate="m:1")
    assert (matched["customer_id"] == matched["customer_id_bought"]).all()
    assert (matched["ts"] > matched["ts_bought"]).all()
    assert np.allclose(matched["amount"], -matched["amount_bought"])


@pytest.mark.parametrize("world", ["behaviour", "mixed"])
def test_customers_change_plan_and_country_from_valid_from(
    family: dict[WorldName, GeneratedData], world: WorldName
) -> None:
    data = family[world]
    c = data.customers
    rows = c.groupby("customer_id").size()
    assert rows.index.size == N
    assert 0.15 < (rows > 1).mean() < 0.6
    assert c.equals(c.sort_values(["customer_id", "valid_from"]))
    first = c.drop_duplicates("customer_id")
    assert (first["valid_from"] == first["signup_ts"]).all()
    assert (c["valid_from"] < data.end).all()
    later = c[c.duplicated("customer_id")]
    prev = c.shift().loc[later.index]
    changed = (later["plan"] != prev["plan"]) | (later["country"] != prev["country"])
    assert changed.all()  # a row per change
    assert (later["country"] != prev["country"]).sum() > 0.02 * N
    assert (later["valid_from"] > prev["valid_from"]).all()
    assert (data.truth.set_index("customer_id")["attribute_changes"] == rows - 1).all()


def test_a_plan_change_changes_spend_after_valid_from(
    family: dict[WorldName, GeneratedData],
) -> None:
    data = family["behaviour"]
    c = data.customers
    prev = c.groupby("customer_id")["plan"].shift()
    moves = c.assign(before=prev).dropna(subset=["before"]).drop_duplicates("customer_id")
    orders = _orders(data)

    def after_over_before(move: pd.DataFrame) -> float:
        at = move.set_index("customer_id")["valid_from"]
        mine = orders[orders["customer_id"].isin(at.index)]
        after = mine["ts"].to_numpy() >= at.loc[mine["customer_id"]].to_numpy()
        return float(mine.loc[after, "amount"].mean() / mine.loc[~after, "amount"].mean())

    up = moves[(moves["before"] == "free") & (moves["plan"] == "premium")]
    down = moves[(moves["before"] == "premium") & (moves["plan"] != "premium")]
    assert len(up) > 30 and len(down) > 30
    assert after_over_before(up) > 1.2
    assert after_over_before(down) < 0.9


@pytest.mark.parametrize("world", [w for w in LIVELY if w not in ("behaviour", "mixed")])
def test_worlds_without_changes_have_one_row_per_customer(
    family: dict[WorldName, GeneratedData], world: WorldName
) -> None:
    c = family[world].customers
    assert c["customer_id"].is_unique
    assert (c["valid_from"] == c["signup_ts"]).all()


def test_mixed_world_mixes_every_mechanism(family: dict[WorldName, GeneratedData]) -> None:
    data = family["mixed"]
    truth = data.truth.set_index("customer_id")
    assert 0.25 < truth["on_off"].mean() < 0.45
    assert truth.loc[~truth["on_off"], "churn_ts"].notna().any()  # others still die
    assert truth.loc[truth["on_off"], "churn_ts"].isna().all()
    assert truth["first_return_ts"].notna().sum() > 0.1 * N
    assert set(truth["tenure_type"]) == {"flat", "ramp_up", "decay"}
    assert {"fades", "no_fade", "ghost", "silent"} <= set(truth["event_profile"])
    assert data.transactions["line_id"].notna().all()
    assert len(data.customers) > 1.15 * N
    assert _long_gap_share(data) > 1.5 * _long_gap_share(family["btyd"])
    orders = _orders(data)
    month = orders["ts"].dt.month
    assert (month == 12).sum() > 2.5 * (month == 7).sum()


def test_world_truth_columns(family: dict[WorldName, GeneratedData]) -> None:
    extra = [
        "tenure_type",
        "on_off",
        "first_dormant_ts",
        "first_return_ts",
        "comebacks",
        "event_profile",
        "attribute_changes",
    ]
    for world in LIVELY:
        truth = family[world].truth
        assert list(truth.columns) == list(family["btyd"].truth.columns) + extra, world
        assert truth["customer_id"].is_unique and len(truth) == N
