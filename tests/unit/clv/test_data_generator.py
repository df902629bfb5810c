"""The seeded generator: determinism, referential sanity, believable structure, scenarios."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clv.contracts import CONTRACTS, TS_DTYPE
from clv.errors import DataError
from clv.generator import GeneratedData, Scenario, generate, write_raw

N, MONTHS, SEED = 3000, 24, 11


@pytest.fixture(scope="module")
def base() -> GeneratedData:
    return generate(customers=N, months=MONTHS, seed=SEED)


@pytest.fixture(scope="module")
def worlds(base: GeneratedData) -> dict[Scenario, GeneratedData]:
    out: dict[Scenario, GeneratedData] = {"baseline": base}
    scenarios: tuple[Scenario, ...] = ("price_increase", "channel_shift", "engagement_drop")
    for s in scenarios:
        out[s] = generate(customers=N, months=MONTHS, seed=SEED, scenario=s)
    return out


def test_same_seed_same_data_and_other_seed_differs(base: GeneratedData) -> None:
    again = generate(customers=N, months=MONTHS, seed=SEED)
    for name, frame in base.tables().items():
        pd.testing.assert_frame_equal(frame, again.tables()[name])
    other = generate(customers=N, months=MONTHS, seed=SEED + 1)
    assert not other.transactions["amount"].equals(base.transactions["amount"])
    assert not other.customers["signup_ts"].equals(base.customers["signup_ts"])


def test_tables_match_the_contract(base: GeneratedData) -> None:
    for name, frame in base.tables().items():
        assert list(frame.columns) == list(CONTRACTS[name].names)
        for col in frame.columns:
            if col in ("ts", "signup_ts"):
                assert str(frame[col].dtype) == TS_DTYPE
        assert not frame[list(CONTRACTS[name].required)].isna().any().any()


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


def test_baseline_ignores_the_change_date(base: GeneratedData) -> None:
    moved = generate(customers=N, months=MONTHS, seed=SEED, change_date="2023-06-01")
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


def test_custom_start(tmp_path: Path) -> None:
    data = generate(customers=50, months=2, seed=3, start="2020-03-01")
    assert data.customers["signup_ts"].min() >= pd.Timestamp("2020-03-01", tz="UTC")
    assert data.transactions["ts"].max() < pd.Timestamp("2020-05-01", tz="UTC")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_write_raw_round_trips(tmp_path: Path, fmt: str) -> None:
    data = generate(customers=200, months=6, seed=5)
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
