"""The seeded SaaS generator: determinism, the contract its tables obey, and the behaviour
each mechanism must show (inputs/saas.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clv.core.contracts import CUSTOMERS, EVENTS, TRANSACTIONS, TS_DTYPE
from clv.core.errors import DataError
from clv.inputs.saas import (
    EVENT_TYPES,
    PLANS,
    SAAS_FAMILIES,
    SaasData,
    SaasWorld,
    generate_saas,
    list_price,
    write_saas_raw,
)

N, MONTHS, SEED = 500, 24, 11
BIG = 2_000
"""The behaviour checks' size: each world generates in well under a second."""
RANK = {p: i for i, p in enumerate(PLANS)}
MONTH = pd.Timedelta(days=365.25 / 12)
PINNED: dict[SaasWorld, str] = {
    "saas": "47d8f282dd0a5ca302c23e394f60ef588ea67eaad0ec79a73c9111fc0cce4076",
    "saas_mixed": "51120090e6413858db73979313a584689886e4a50c1632875c7a8e69d9cc110b",
    "saas_price_change": "94df29eac0ee82a6bf59fe544a7954d0a9f1cc5d5bc0b05009ba67e26a51e252",
}
"""digest() of each family's 300 accounts x 18 months, seed 5, computed before saas_wear was
added: the families the benchmarks and models were developed on must not move. Re-pinned
2026-12-02 with the floats rounded (digest): unrounded, the same rows still gave the first pins
with numpy's AVX-512 paths off (NPY_DISABLE_CPU_FEATURES), and the rounded digests agree with
and without them."""


@pytest.fixture(scope="module")
def small() -> SaasData:
    return generate_saas(customers=N, months=MONTHS, seed=SEED)


@pytest.fixture(scope="module")
def mixed() -> SaasData:
    return generate_saas(customers=N, months=MONTHS, seed=SEED, world="saas_mixed")


@pytest.fixture(scope="module")
def big() -> SaasData:
    return generate_saas(customers=BIG, months=MONTHS, seed=SEED)


@pytest.fixture(scope="module")
def priced() -> SaasData:
    return generate_saas(customers=BIG, months=MONTHS, seed=SEED, world="saas_price_change")


@pytest.fixture(scope="module")
def worn() -> SaasData:
    return generate_saas(customers=BIG, months=MONTHS, seed=SEED, world="saas_wear")


def digest(data: SaasData) -> str:
    """A sha256 of every table and the truth: names, columns and each row's values, floats
    rounded to 10 decimals: numpy's exp and log differ in the last bit between CPUs (AVX-512
    or not), which moved the truth's usage, hazard and end_prob by 1e-16 and nothing else."""
    h = hashlib.sha256()
    frames: list[tuple[str, pd.DataFrame]] = [*data.tables().items()]
    frames += [("truth", data.truth), ("truth_periods", data.truth_periods)]
    for name, frame in sorted(frames, key=lambda f: f[0]):
        h.update(name.encode())
        floats = frame.select_dtypes("float").columns
        rounded = frame.assign(**{c: frame[c].round(10) for c in floats})
        h.update(pd.util.hash_pandas_object(rounded, index=True).to_numpy().tobytes())
        h.update(",".join(frame.columns).encode())
    return h.hexdigest()


def invoices(data: SaasData) -> pd.DataFrame:
    """The invoices, with their subscription and number (from the order id)."""
    tx = data.transactions
    inv = tx[tx["channel"] == "subscription"].copy()
    parts = inv["order_id"].str.split("-", expand=True)
    return inv.assign(subscription_id=parts[0], number=parts[1].astype(int))


def paid_subscriptions(data: SaasData) -> pd.DataFrame:
    """Subscriptions that were ever paid for in the period, with paid_from and months paid."""
    subs = data.subscriptions.merge(data.truth[["subscription_id", "paid_from", "trial_end"]])
    subs = subs[subs["paid_from"].notna() & (subs["paid_from"] < data.end)].copy()
    stop = subs["ended_at"].fillna(data.end)
    subs["months"] = (stop - subs["paid_from"]) / pd.Timedelta(days=365.25 / 12)
    return subs


def plan_moves(data: SaasData) -> pd.DataFrame:
    """Each change with the plan, seats and mrr it replaced."""
    subs = data.subscriptions
    first = subs[["subscription_id", "plan", "seats", "mrr"]].assign(ts=subs["started_at"])
    rows = pd.concat([first, data.changes]).sort_values(["subscription_id", "ts"], kind="stable")
    for col in ("plan", "seats", "mrr"):
        rows[f"{col}_before"] = rows.groupby("subscription_id")[col].shift()
    moves = rows[rows["plan_before"].notna()].copy()
    moves["step"] = moves["plan"].map(RANK) - moves["plan_before"].map(RANK)
    return moves.merge(subs[["subscription_id", "customer_id", "billing_period"]])


def share_leaving_team(data: SaasData, at: pd.Timestamp) -> tuple[float, float]:
    """Of the subscriptions on the team plan at `at`, the shares that ended and that moved to
    starter by the end of the period."""
    subs = data.subscriptions
    rows = pd.concat(
        [subs[["subscription_id", "plan"]].assign(ts=subs["started_at"]), data.changes]
    )
    rows = rows[rows["ts"] < at]
    plan_at = rows.sort_values("ts", kind="stable").groupby("subscription_id")["plan"].last()
    ended = subs.set_index("subscription_id")["ended_at"]
    ended = ended[(ended.isna() | (ended >= at)) & (plan_at.reindex(ended.index) == "team")]
    later = data.changes[(data.changes["ts"] >= at) & (data.changes["plan"] == "starter")]
    return float(ended.notna().mean()), float(ended.index.isin(later["subscription_id"]).mean())


def paid_months(data: SaasData) -> pd.DataFrame:
    """The paid months of monthly subscriptions until the truth's horizon (realized, also
    after the end), with the tenure (1: the first paid month) and whether the subscription
    ended at the month's end."""
    rows = data.truth_periods.merge(data.truth[["subscription_id", "churn_ts"]])
    rows = rows[(rows["mrr"] > 0) & (rows["billing_period"] == "month")].copy()
    rows["tenure"] = rows.groupby("subscription_id").cumcount() + 1
    rows["ended"] = rows["period_end"] == rows["churn_ts"]
    return rows[rows["period_end"] <= data.horizon]


def kept(rows: pd.DataFrame) -> float:
    """The share of these paid months after which the subscription went on."""
    return float(1.0 - rows["ended"].mean())


def test_same_seed_same_data_and_other_seed_differs(small: SaasData) -> None:
    again = generate_saas(customers=N, months=MONTHS, seed=SEED)
    for name, frame in small.tables().items():
        pd.testing.assert_frame_equal(frame, again.tables()[name])
    pd.testing.assert_frame_equal(small.truth, again.truth)
    pd.testing.assert_frame_equal(small.truth_periods, again.truth_periods)
    other = generate_saas(customers=N, months=MONTHS, seed=SEED + 1)
    assert not other.subscriptions["started_at"].equals(small.subscriptions["started_at"])
    assert not other.transactions["amount"].equals(small.transactions["amount"])


@pytest.mark.parametrize("world", sorted(PINNED))
def test_the_existing_families_rows_are_pinned(world: SaasWorld) -> None:
    assert digest(generate_saas(customers=300, months=18, seed=5, world=world)) == PINNED[world]
    assert set(PINNED) < set(SAAS_FAMILIES)


def test_bad_options_are_refused() -> None:
    with pytest.raises(DataError, match="unknown SaaS world 'btyd'"):
        generate_saas(customers=10, months=3, seed=1, world="btyd")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="at least 1 customer"):
        generate_saas(customers=0, months=3, seed=1)


def test_tables_follow_their_contracts(small: SaasData) -> None:
    subs, changes, tx = small.subscriptions, small.changes, small.transactions
    assert list(subs.columns) == [
        "customer_id",
        "subscription_id",
        "plan",
        "seats",
        "mrr",
        "started_at",
        "ended_at",
        "billing_period",
        "trial",
    ]
    assert list(changes.columns) == ["subscription_id", "ts", "plan", "seats", "mrr"]
    assert list(small.events.columns) == list(EVENTS.names)
    assert set(tx.columns) <= set(TRANSACTIONS.names) and set(TRANSACTIONS.required) <= set(
        tx.columns
    )
    assert set(small.customers.columns) <= set(CUSTOMERS.names)
    for frame, col in [(subs, "started_at"), (subs, "ended_at"), (changes, "ts"), (tx, "ts")]:
        assert frame[col].dtype == TS_DTYPE
    assert subs["subscription_id"].is_unique and tx["order_id"].is_unique
    assert set(subs["billing_period"]) == {"month", "year"} and subs["trial"].dtype == bool
    assert set(subs["plan"]) == set(PLANS) and (subs["seats"] >= 1).all()
    assert set(small.events["event_type"]) == set(EVENT_TYPES)
    assert small.customers["customer_id"].nunique() == N
    assert set(subs["customer_id"]) == set(small.customers["customer_id"])
    for frame, col in [(subs, "started_at"), (changes, "ts"), (tx, "ts"), (small.events, "ts")]:
        assert frame[col].max() < small.end  # the raw tables stop at the end
        assert frame[col].is_monotonic_increasing


def test_subscriptions_end_after_they_start_one_at_a_time(small: SaasData) -> None:
    subs = small.subscriptions
    ended = subs[subs["ended_at"].notna()]
    assert (ended["ended_at"] >= ended["started_at"]).all()
    nxt = subs.groupby("customer_id")["started_at"].shift(-1)
    follows = nxt.notna()
    assert (subs.loc[follows, "ended_at"] <= nxt[follows]).all()  # a new one only after the end
    again = subs[subs.duplicated("customer_id")]
    assert len(again) > 0 and not again["trial"].any()  # returns, never on a trial
    assert small.subscriptions["ended_at"].isna().any()  # some are active at the end


@pytest.mark.parametrize("world", ["big", "worn"])
def test_annual_subscriptions_end_only_at_anniversaries(
    world: str, request: pytest.FixtureRequest
) -> None:
    data: SaasData = request.getfixturevalue(world)
    subs = paid_subscriptions(data)
    annual = subs[(subs["billing_period"] == "year") & subs["ended_at"].notna()]
    assert len(annual) >= 20
    years = ((annual["ended_at"] - annual["paid_from"]).dt.days / 365.25).round().astype(int)
    assert (years >= 1).all()
    for n in years.unique():
        mine = annual[years == n]
        expected = mine["paid_from"] + pd.DateOffset(months=12 * int(n))
        assert (mine["ended_at"] == expected).all()
    monthly = subs[(subs["billing_period"] == "month") & subs["ended_at"].notna()]
    off_year = (monthly["ended_at"] - monthly["paid_from"]).dt.days % 365 > 31
    assert off_year.mean() > 0.5  # monthly ones end in any month


@pytest.mark.parametrize("world", ["big", "worn"])
def test_lapsed_trials_have_no_invoices_and_invoices_fall_in_paid_months(
    world: str, request: pytest.FixtureRequest
) -> None:
    data: SaasData = request.getfixturevalue(world)
    inv = invoices(data)
    truth = data.truth.set_index("subscription_id")
    lapsed = truth.index[truth["end_cause"] == "lapsed_trial"]
    assert len(lapsed) > 50 and not inv["subscription_id"].isin(lapsed).any()
    trials = data.subscriptions[data.subscriptions["trial"]].set_index("subscription_id")
    ended_trials = trials.loc[trials.index.intersection(lapsed)]
    trial_days = (ended_trials["ended_at"] - ended_trials["started_at"]).dt.days.dropna()
    assert set(trial_days) == {14, 30}
    subs = data.subscriptions.set_index("subscription_id")
    inv = inv.join(subs[["ended_at", "billing_period"]], on="subscription_id")
    inv = inv.join(truth["paid_from"], on="subscription_id")
    assert (inv["ts"] >= inv["paid_from"]).all()
    assert (inv["ended_at"].isna() | (inv["ts"] < inv["ended_at"])).all()
    for (period, n), rows in inv.groupby(["billing_period", "number"]):
        months = (n - 1) * (12 if period == "year" else 1)
        assert (rows["ts"] == rows["paid_from"] + pd.DateOffset(months=int(months))).all()
    paid = paid_subscriptions(data)
    monthly = paid[paid["billing_period"] == "month"].set_index("subscription_id")
    count = inv.groupby("subscription_id").size().reindex(monthly.index)
    for n in count.unique():  # one invoice per month paid: the next billing date is the end
        mine = monthly[count == n]
        next_date = mine["paid_from"] + pd.DateOffset(months=int(n))
        assert (mine["ended_at"].isna() | (mine["ended_at"] == next_date)).all()
        assert (mine["ended_at"].notna() | (next_date >= data.end)).all()


@pytest.mark.parametrize("world", ["priced", "worn"])
def test_mrr_is_seats_times_the_price_in_effect(world: str, request: pytest.FixtureRequest) -> None:
    data: SaasData = request.getfixturevalue(world)
    subs = data.subscriptions.merge(data.truth[["subscription_id", "paid_from", "trial_end"]])
    at = subs["paid_from"].fillna(subs["trial_end"])
    price = list_price(subs["plan"], subs["billing_period"], at, price_change=data.price_change)
    np.testing.assert_allclose(subs["mrr"], np.round(subs["seats"] * price, 2))
    moves = plan_moves(data)
    price = list_price(
        moves["plan"], moves["billing_period"], moves["ts"], price_change=data.price_change
    )
    np.testing.assert_allclose(moves["mrr"], np.round(moves["seats"] * price, 2))
    rows = pd.concat([subs.assign(ts=subs["paid_from"].fillna(subs["started_at"])), moves])
    in_force = rows[["subscription_id", "ts", "mrr"]].sort_values("ts")
    inv = invoices(data).sort_values("ts")
    inv = pd.merge_asof(inv, in_force, on="ts", by="subscription_id", direction="backward")
    inv = inv.merge(subs[["subscription_id", "billing_period"]])
    times = np.where(inv["billing_period"] == "year", 12, 1)
    np.testing.assert_allclose(inv["amount"], np.round(inv["mrr"] * times, 2))


def test_changes_fall_after_the_start_and_before_the_end(priced: SaasData) -> None:
    moves = plan_moves(priced)
    subs = priced.subscriptions.merge(priced.truth[["subscription_id", "paid_from"]])
    moves = moves.merge(subs[["subscription_id", "paid_from", "ended_at"]])
    assert (moves["ts"] > moves["paid_from"]).all()
    assert (moves["ended_at"].isna() | (moves["ts"] < moves["ended_at"])).all()
    assert (moves["step"] > 0).sum() > 20 and (moves["step"] < 0).sum() > 20
    same_plan = moves["step"] == 0
    assert (same_plan & (moves["seats"] > moves["seats_before"])).sum() > 20  # seat growth
    assert (same_plan & (moves["seats"] < moves["seats_before"])).sum() > 5
    repriced = same_plan & (moves["seats"] == moves["seats_before"])
    assert repriced.sum() > 20 and (moves.loc[repriced, "plan"] == "team").all()
    assert (moves.loc[repriced, "ts"] >= priced.price_change).all()
    annual = moves[moves["billing_period"] == "year"]
    months = (annual["ts"] - annual["paid_from"]).dt.days / (365.25 / 12)
    assert len(annual) > 5 and (np.abs(months / 12 - np.round(months / 12)) < 0.01).all()


def test_customers_hold_a_version_per_plan_in_force(big: SaasData) -> None:
    cust = big.customers
    first = cust.groupby("customer_id").head(1)
    assert (first["valid_from"] == first["signup_ts"]).all()
    subs = big.subscriptions.groupby("customer_id").head(1).set_index("customer_id")
    assert (
        first.set_index("customer_id")["plan"] == subs["plan"].reindex(first["customer_id"])
    ).all()
    assert (
        cust.groupby("customer_id")["valid_from"].apply(lambda s: s.is_monotonic_increasing).all()
    )
    again = cust.groupby("customer_id")["plan"].shift()
    assert (again.dropna() != cust.loc[again.notna(), "plan"]).all()  # a row is a new plan
    assert len(cust) > BIG


def test_written_raw_tables_hold_no_truth(small: SaasData, tmp_path: Path) -> None:
    paths = write_saas_raw(small, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{t}.csv"
        for t in ("subscriptions", "subscription_changes", "events", "transactions", "customers")
    )
    subs = pd.read_csv(paths["subscriptions"], keep_default_na=False)
    assert list(subs.columns) == list(small.subscriptions.columns)
    assert (subs["ended_at"] == "").sum() == small.subscriptions["ended_at"].isna().sum()
    assert subs["started_at"].str.endswith("Z").all()
    for path in paths.values():
        header = path.read_text().splitlines()[0]
        assert not {"theta", "hazard", "churn_ts", "usage"} & set(header.split(","))
    back = pd.read_csv(paths["transactions"])
    assert len(back) == len(small.transactions)
    with pytest.raises(DataError, match="unknown format"):
        write_saas_raw(small, tmp_path, fmt="xlsx")  # type: ignore[arg-type]


@pytest.mark.parametrize("world", ["big", "worn"])
def test_truth_knows_what_happens_after_the_end(world: str, request: pytest.FixtureRequest) -> None:
    data: SaasData = request.getfixturevalue(world)
    truth = data.truth.merge(data.subscriptions[["subscription_id", "ended_at"]])
    later = truth["churn_ts"] >= data.end
    assert later.sum() > 20 and truth.loc[later, "ended_at"].isna().all()
    seen = truth[truth["churn_ts"] < data.end]
    assert (seen["churn_ts"] == seen["ended_at"]).all()
    periods = data.truth_periods
    assert periods["period_start"].max() >= data.end + pd.DateOffset(months=12)
    assert periods["hazard"].between(0.0, 0.9).all() and periods["end_prob"].between(0, 1).all()


# --- behaviour ---------------------------------------------------------------------------


def test_accounts_with_more_support_tickets_churn_more(big: SaasData) -> None:
    paid = paid_subscriptions(big)
    acct = paid.groupby("customer_id").agg(
        months=("months", "sum"), churns=("ended_at", lambda s: s.notna().sum())
    )
    events = big.events
    tickets = events[events["event_type"] == "support_ticket"].groupby("customer_id").size()
    acct = acct[acct["months"] >= 3]
    rate = tickets.reindex(acct.index).fillna(0) / acct["months"]
    high, low = acct[rate >= rate.quantile(0.75)], acct[rate <= rate.quantile(0.5)]
    churn_high = high["churns"].sum() / high["months"].sum()
    churn_low = low["churns"].sum() / low["months"].sum()
    assert churn_high > 1.3 * churn_low


def test_accounts_that_adopt_a_feature_upgrade_more(big: SaasData) -> None:
    moves = plan_moves(big)
    first_up = moves[moves["step"] > 0].groupby("customer_id")["ts"].min()
    events = big.events
    first_use = events[events["event_type"] == "advanced_use"].groupby("customer_id")["ts"].min()
    paid = paid_subscriptions(big)
    below_top = paid.groupby("customer_id").head(1)
    below_top = below_top[(below_top["plan"] != "business") & (below_top["months"] >= 6)]
    who = below_top["customer_id"]
    up, use = first_up.reindex(who).to_numpy(), first_use.reindex(who).to_numpy()
    adopter = ~pd.isna(use) & (pd.isna(up) | (use < up))
    upgraded = ~pd.isna(up)
    assert adopter.sum() > 50 and (~adopter).sum() > 50
    assert upgraded[adopter].mean() > 3 * upgraded[~adopter].mean()


def test_monthly_retention_rises_with_tenure(big: SaasData) -> None:
    """Realized retention from invoices: of the subscriptions that paid month t and whose next
    billing date is in the period, the share that paid month t + 1 (the sBG story)."""
    paid = paid_subscriptions(big)
    monthly = paid[paid["billing_period"] == "month"].set_index("subscription_id")
    n = invoices(big).groupby("subscription_id").size().reindex(monthly.index).fillna(0)
    ended = monthly["ended_at"].notna()

    def retention(months: range) -> float:
        kept = risk = 0
        for t in months:
            at_risk = (n >= t) & ((n >= t + 1) | (ended & (n == t)))
            kept, risk = kept + int(((n >= t + 1) & at_risk).sum()), risk + int(at_risk.sum())
        return kept / risk

    early, late = retention(range(1, 4)), retention(range(10, 21))
    assert late > early + 0.02


def test_usage_falls_before_churn_but_is_no_oracle(big: SaasData) -> None:
    """Logins of monthly subscriptions paid 7 months or more: fewer in the last month before
    churn than in months 4-6 before it; yet busy accounts leave and quiet ones stay."""
    truth = big.truth.merge(big.subscriptions[["subscription_id", "billing_period"]])
    churned = truth[
        (truth["billing_period"] == "month")
        & (truth["end_cause"] == "churn")
        & (truth["churn_ts"] < big.end)
        & (truth["churn_ts"] - truth["paid_from"] >= pd.Timedelta(days=210))
    ]
    assert len(churned) > 50
    logins = big.events[big.events["event_type"] == "login"]
    paid = logins.merge(churned[["customer_id", "paid_from", "churn_ts"]])
    paid = paid[(paid["ts"] >= paid["paid_from"]) & (paid["ts"] < paid["churn_ts"])]
    days = (paid["churn_ts"] - paid["ts"]).dt.days
    last_month = (days < 30).sum()
    months_4_to_6 = ((days >= 90) & (days < 180)).sum() / 3
    assert last_month < 0.9 * months_4_to_6
    periods = big.truth_periods.merge(truth[["subscription_id", "end_cause"]])
    level = periods.groupby("subscription_id").agg(
        usage=("usage", "mean"), cause=("end_cause", "first")
    )
    high = level["usage"] > level["usage"].median()
    assert (high & (level["cause"] == "churn")).sum() > 100  # busy accounts that leave
    assert (~high & (level["cause"] == "active")).sum() > 50  # quiet accounts that stay


def test_trials_convert_more_after_busier_trials(big: SaasData) -> None:
    trials = big.truth_periods.merge(big.truth[["subscription_id", "trial_end", "end_cause"]])
    trials = trials[trials["period_end"] == trials["trial_end"]]
    converted = trials["end_cause"] != "lapsed_trial"
    busy = trials["usage"] > trials["usage"].median()
    assert converted[busy].mean() > converted[~busy].mean() + 0.15


def test_price_change_raises_churn_after_its_date(big: SaasData, priced: SaasData) -> None:
    change = priced.price_change
    assert change is not None and big.price_change is None
    assert priced.start + pd.DateOffset(months=2 * MONTHS // 3) == change
    for name, frame in big.tables().items():
        col = {"subscriptions": "started_at", "customers": "valid_from"}.get(name, "ts")
        a = frame[frame[col] < change].drop(columns=["ended_at", "mrr"], errors="ignore")
        b = priced.tables()[name]
        b = b[b[col] < change].drop(columns=["ended_at", "mrr"], errors="ignore")
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))

    def churn_rate(data: SaasData, since: pd.Timestamp, until: pd.Timestamp) -> float:
        paid = data.truth_periods[data.truth_periods["mrr"] > 0]
        exposure = paid["period_start"].between(since, until, inclusive="left").sum()
        ends = data.subscriptions["ended_at"].between(since, until, inclusive="left")
        lapsed = data.truth.set_index("subscription_id")["end_cause"] == "lapsed_trial"
        return float((ends & ~data.subscriptions["subscription_id"].map(lapsed)).sum() / exposure)

    before = (priced.start + pd.DateOffset(months=MONTHS // 3), change)
    after = (change, priced.end)
    assert churn_rate(priced, *before) == churn_rate(big, *before)
    assert churn_rate(priced, *after) > 1.1 * churn_rate(big, *after)
    assert (priced.truth["end_cause"] == "price_change").sum() > 20
    (ended, down), (ended_priced, down_priced) = (
        share_leaving_team(d, change) for d in (big, priced)
    )
    assert ended_priced > ended + 0.05 and down_priced > 1.3 * down


def test_mixed_world_adds_one_off_purchases(small: SaasData, mixed: SaasData) -> None:
    pd.testing.assert_frame_equal(small.subscriptions, mixed.subscriptions)
    assert (small.transactions["channel"] == "subscription").all()
    tx = mixed.transactions
    one_off = tx[tx["channel"] != "subscription"]
    assert len(one_off) > 100 and set(one_off["channel"]) == {"web", "sales"}
    assert one_off["order_id"].str.startswith("O").all() and (one_off["amount"] > 0).all()
    both = set(one_off["customer_id"]) & set(tx.loc[tx["channel"] == "subscription", "customer_id"])
    assert 0.1 * N < len(both) < 0.9 * N  # some customers buy both, not all
    assert (one_off.loc[one_off["channel"] == "sales", "amount"] >= 1200).all()


# --- saas_wear: retention that is not sBG-shaped -----------------------------------------


def test_wear_world_has_the_same_accounts_and_its_own_truth(big: SaasData, worn: SaasData) -> None:
    first = ["customer_id", "signup_ts", "acquisition_channel", "country"]
    pd.testing.assert_frame_equal(
        big.customers.groupby("customer_id").head(1)[first].reset_index(drop=True),
        worn.customers.groupby("customer_id").head(1)[first].reset_index(drop=True),
    )
    trials = ["customer_id", "trial_end", "paid_from"]
    firsts = [
        d.truth.groupby("customer_id").head(1)[trials].reset_index(drop=True) for d in (big, worn)
    ]
    pd.testing.assert_frame_equal(*firsts)  # the same trials, converted or lapsed alike
    assert not {"fragile", "outgrows_at", "fiscal_year_end"} & set(big.truth.columns)
    acct = worn.truth.groupby("customer_id").first()
    assert 0.25 < acct["fragile"].mean() < 0.35
    assert 0.35 < acct["outgrows_at"].notna().mean() < 0.55
    fragile, stable = acct.loc[acct["fragile"], "theta"], acct.loc[~acct["fragile"], "theta"]
    assert fragile.median() > 5 * stable.median()  # two groups, not one Beta
    assert (acct["theta"] != big.truth.groupby("customer_id")["theta"].first()).all()


def test_wear_retention_past_the_outgrow_time_falls_unlike_saas(
    big: SaasData, worn: SaasData
) -> None:
    """The same accounts, in both worlds: the months of monthly subscriptions by months past
    the account's outgrow time (saas_wear's truth); retained less and less in saas_wear, about
    as much or more in saas."""
    outgrows = worn.truth.groupby("customer_id")["outgrows_at"].first()
    share: dict[str, list[float]] = {}
    for name, data in (("saas", big), ("saas_wear", worn)):
        rows = paid_months(data)
        past = (rows["period_end"] - rows["customer_id"].map(outgrows)) / MONTH
        bins = [(-6, 0), (0, 3), (3, 6), (6, 12)]
        assert all(past.between(lo, hi, inclusive="left").sum() > 200 for lo, hi in bins)
        share[name] = [kept(rows[past.between(lo, hi, inclusive="left")]) for lo, hi in bins]
    assert (np.diff(share["saas_wear"]) < -0.03).all()  # each span retains less
    before, *after = share["saas"]
    assert min(after) > before - 0.01


def test_wear_population_retention_rises_then_falls_unlike_saas(
    big: SaasData, worn: SaasData
) -> None:
    """Realized retention of monthly subscriptions by tenure: sBG-shaped (rising) in saas;
    in saas_wear it rises while the fragile leave, then falls as accounts outgrow the tool."""
    spans = {"early": (1, 3), "mid": (7, 9), "late": (16, 20)}
    share: dict[str, dict[str, float]] = {}
    for name, data in (("saas", big), ("saas_wear", worn)):
        rows = paid_months(data)
        share[name] = {k: kept(rows[rows["tenure"].between(*span)]) for k, span in spans.items()}
    saas, wear = share["saas"], share["saas_wear"]
    assert saas["early"] < saas["mid"] < saas["late"] - 0.01
    assert wear["early"] < wear["mid"] - 0.01 and wear["late"] < wear["mid"] - 0.015


def test_wear_monthly_churn_bunches_at_fiscal_year_ends(big: SaasData, worn: SaasData) -> None:
    """Monthly subscriptions leave about twice as often at a billing date in the last month of
    their account's fiscal year (GB: March, AU: June, else December) in saas_wear; in saas,
    no more there than elsewhere."""
    year_end = worn.truth.groupby("customer_id")["fiscal_year_end"].first()
    assert set(year_end) == {3, 6, 12}
    ratio: dict[str, float] = {}
    for name, data in (("saas", big), ("saas_wear", worn)):
        rows = paid_months(data)
        review = rows["period_end"].dt.month == rows["customer_id"].map(year_end)
        ratio[name] = rows.loc[review, "ended"].mean() / rows.loc[~review, "ended"].mean()
    assert ratio["saas_wear"] > 1.8 and 0.8 < ratio["saas"] < 1.2
    rows = paid_months(worn)
    gb = rows[rows["customer_id"].map(year_end) == 3]
    march, december = (gb.loc[gb["period_end"].dt.month == m, "ended"].mean() for m in (3, 12))
    assert march > 1.4 * december  # a GB account's budget year ends in March
