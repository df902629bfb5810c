"""The `retail` world (inputs/worlds.py): a shop's point-of-sale export, checked on the raw frames
without ingest: invoice lines, lines written twice, cancellation invoices, currencies, aliases,
personal columns, the order-total truth, the planted bad rows and the CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from clv.cli import data as data_cli
from clv.core.contracts import TS_DTYPE, RejectReason
from clv.core.settings import IngestSettings
from clv.inputs.generator import (
    BAD_CELLS,
    PERSONAL_COLUMNS,
    PLANTED_KINDS,
    GeneratedData,
    generate,
    ingest_block,
    plant_bad_rows,
    write_raw,
)
from clv.inputs.worlds import WORLD_SPECS, Retail

N, MONTHS, SEED = 1500, 24, 21
SPEC = WORLD_SPECS["retail"].retail
assert SPEC is not None
RETAIL: Retail = SPEC


@pytest.fixture(scope="module")
def data() -> GeneratedData:
    return generate(customers=N, months=MONTHS, seed=SEED, world="retail")


def _tables(data: GeneratedData) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    assert data.identities is not None and data.order_totals is not None
    return data.transactions, data.identities, data.order_totals


def _canonical(tx: pd.DataFrame, identities: pd.DataFrame) -> pd.Series:
    """The customer each row belongs to: its id, or the customer its alias maps to."""
    owner = identities.set_index("alias_id")["customer_id"]
    return tx["customer_id"].map(owner).fillna(tx["customer_id"])


def _cancellations(tx: pd.DataFrame) -> pd.DataFrame:
    return tx[tx["order_id"].str.startswith("C")]


def test_rows_are_invoice_lines_without_amount_or_line_id(data: GeneratedData) -> None:
    tx = data.transactions
    columns = ["customer_id", "ts", "order_id", "sku", "quantity", "unit_price", "currency"]
    assert list(tx.columns) == columns
    assert str(tx["ts"].dtype) == TS_DTYPE
    assert tx["quantity"].dtype == np.int64 and (tx["quantity"] != 0).all()
    assert np.allclose(tx["unit_price"].round(2), tx["unit_price"], rtol=0, atol=1e-9)
    assert (tx["unit_price"] > 0).all()
    assert tx["order_id"].str.fullmatch(r"C?\d{6}").all()
    assert tx["ts"].is_monotonic_increasing
    assert (tx["ts"] < data.end).all()
    # an invoice is one customer at one time, in one currency
    per_invoice = tx.groupby("order_id")[["customer_id", "ts", "currency"]].nunique()
    assert (per_invoice == 1).all().all()
    buys = tx[~tx["order_id"].str.startswith("C")]
    assert (buys["quantity"] > 0).all() and (_cancellations(tx)["quantity"] < 0).all()
    assert buys["order_id"].astype(int).min() == RETAIL.first_invoice


def test_some_invoices_hold_the_same_line_twice(data: GeneratedData) -> None:
    tx = data.transactions
    buys = tx[~tx["order_id"].str.startswith("C")]
    second = buys.duplicated()  # identical in every column, so within one invoice
    share = second.sum() / (~second).sum()
    assert RETAIL.identical_share < share < RETAIL.identical_share + 0.03
    assert buys[second]["order_id"].nunique() > 0.02 * buys["order_id"].nunique()


def test_cancellations_follow_the_invoice_they_cancel(data: GeneratedData) -> None:
    tx = data.transactions
    cancels = _cancellations(tx)
    original = cancels["order_id"].str.removeprefix("C")
    linked = cancels[original.isin(tx["order_id"])]
    unlinked = cancels[~original.isin(tx["order_id"])]
    invoices = tx["order_id"].str.removeprefix("C").nunique()
    assert 0.5 * RETAIL.cancel_share < linked["order_id"].nunique() / invoices < 0.06
    first = tx.drop_duplicates("order_id").set_index("order_id")
    of = linked["order_id"].str.removeprefix("C")
    assert (linked["customer_id"].to_numpy() == first.loc[of, "customer_id"].to_numpy()).all()
    delay = (linked["ts"].to_numpy() - first.loc[of, "ts"].to_numpy()) / np.timedelta64(1, "D")
    assert (delay >= 1.0).all() and (delay <= 30.0).all()
    # each returned line is a line of the invoice: same sku and price, at most the units bought
    bought = tx.groupby(["order_id", "sku", "unit_price"])["quantity"].sum()
    back = linked.assign(order_id=of).groupby(["order_id", "sku", "unit_price"])["quantity"].sum()
    held = bought.reindex(back.index)
    assert held.notna().all()
    assert (-back <= held).all()
    assert (-back < held).sum() > 0.1 * len(back)  # partial returns
    assert (-back == held).sum() > 0.5 * len(back)  # and whole lines
    # cancellations of invoices from before the export: numbers below the first invoice
    assert unlinked["order_id"].nunique() >= 5
    assert (unlinked["order_id"].str.removeprefix("C").astype(int) < RETAIL.first_invoice).all()


def test_a_few_percent_of_invoices_are_in_euro(data: GeneratedData) -> None:
    tx = data.transactions
    currency = tx.drop_duplicates("order_id")["currency"]
    assert set(currency) == {"GBP", "EUR"}
    assert 0.01 < (currency == "EUR").mean() < 0.08
    assert data.ingest_settings is not None
    assert dict(data.ingest_settings.currency_rates) == {"EUR": RETAIL.rate}


def test_customers_also_buy_under_aliases(data: GeneratedData) -> None:
    tx, identities, _ = _tables(data)
    assert list(identities.columns) == ["alias_id", "customer_id", "valid_from"]
    assert identities["alias_id"].is_unique
    assert identities["customer_id"].isin(data.customers["customer_id"]).all()
    assert not identities["alias_id"].isin(data.customers["customer_id"]).any()
    kinds = identities["alias_id"].str.extract(r"^(e:|d:|C)")[0]
    assert kinds.notna().all() and set(kinds) == {"e:", "d:", "C"}
    dated = identities["valid_from"].notna()
    assert 0.2 < dated.mean() < 0.8 and (kinds[dated] == "e:").all()
    # an e-mail alias is the hash of its customer's e-mail
    emails = data.customers.set_index("customer_id")["email"]
    mail = identities[kinds == "e:"]
    hashed = [
        "e:" + hashlib.sha256(e.encode()).hexdigest()[:20] for e in emails.loc[mail["customer_id"]]
    ]
    assert mail["alias_id"].tolist() == hashed
    # rows under an alias: of its customer (for cancellations too) and after its valid_from
    under = tx.merge(identities, left_on="customer_id", right_on="alias_id")
    assert under["alias_id"].nunique() > 0.5 * len(identities)
    assert 0.02 < len(under) / len(tx) < 0.2
    later = under["valid_from"].isna() | (under["valid_from"] < under["ts"])
    assert later.all()


def test_personal_columns_hold_believable_values(data: GeneratedData) -> None:
    c = data.customers
    assert list(c.columns[-4:]) == list(PERSONAL_COLUMNS)
    assert data.ingest_settings is not None
    assert data.ingest_settings.personal_columns == PERSONAL_COLUMNS
    assert c["email"].is_unique
    assert c["email"].str.fullmatch(r"[a-z]+\.[a-z]+\d+@[a-z.]*example\.[a-z.]+").all()
    assert c["name"].str.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+").all()
    assert c["phone"].str.fullmatch(r"\+44 7700 900\d{3}").all()
    assert c["address"].str.fullmatch(r"\d+ [A-Za-z ]+, [A-Za-z]+ [A-Z]{1,2}\d+ \d[A-Z]{2}").all()
    assert c["name"].nunique() > 500


def test_order_totals_are_the_net_of_the_rows(data: GeneratedData) -> None:
    """A hand computation from the raw frames: amount = quantity x unit_price x rate, summed
    per (canonical customer, invoice); a cancellation is an invoice of its own."""
    tx, identities, truth = _tables(data)
    rates = {"GBP": 1.0, "EUR": RETAIL.rate}
    amount = tx["quantity"] * tx["unit_price"] * tx["currency"].map(rates)
    hand = amount.groupby([_canonical(tx, identities), tx["order_id"]]).sum()
    got = truth.set_index(["customer_id", "order_id"])["amount"]
    assert got.index.is_unique
    assert set(got.index) == set(hand.index)
    assert np.abs(got - hand.reindex(got.index)).max() < 1e-6
    # by hand on one invoice that holds a line twice and one in euro
    twice = tx[tx.duplicated(keep=False) & ~tx["order_id"].str.startswith("C")]
    one = tx[tx["order_id"] == twice["order_id"].iloc[0]]
    by_hand = sum(q * p for q, p in zip(one["quantity"], one["unit_price"], strict=True))
    assert truth.set_index("order_id").loc[one["order_id"].iloc[0], "amount"] == pytest.approx(
        by_hand * rates[one["currency"].iloc[0]], abs=1e-9
    )
    euro = truth[truth["currency"] == "EUR"].iloc[0]
    rows = tx[tx["order_id"] == euro["order_id"]]
    assert euro["amount"] == pytest.approx(
        float((rows["quantity"] * rows["unit_price"]).sum()) * RETAIL.rate, abs=1e-9
    )


def test_order_totals_link_cancellations_to_their_invoice(data: GeneratedData) -> None:
    tx, _, truth = _tables(data)
    cancels = truth[truth["order_id"].str.startswith("C")]
    linked = cancels["refund_of"].notna()
    assert (cancels.loc[linked, "refund_of"] == cancels.loc[linked, "order_id"].str[1:]).all()
    assert set(cancels.loc[~linked, "order_id"].str[1:]).isdisjoint(tx["order_id"])
    assert truth.loc[~truth["order_id"].str.startswith("C"), "refund_of"].isna().all()
    assert (cancels["amount"] < 0).all()
    invoice = truth.set_index("order_id")
    sold = invoice.loc[cancels.loc[linked, "refund_of"]]
    assert (sold["customer_id"].to_numpy() == cancels.loc[linked, "customer_id"].to_numpy()).all()
    assert (-cancels.loc[linked, "amount"].to_numpy() <= sold["amount"].to_numpy() + 1e-9).all()
    net = truth["amount"].sum()
    assert net == pytest.approx(float((tx["quantity"] * tx["unit_price"]).sum()), rel=0.02)


def test_same_seed_same_export_other_seed_differs(data: GeneratedData) -> None:
    again = generate(customers=N, months=MONTHS, seed=SEED, world="retail")
    for name, frame in data.tables().items():
        pd.testing.assert_frame_equal(frame, again.tables()[name])
    assert data.order_totals is not None and again.order_totals is not None
    pd.testing.assert_frame_equal(data.order_totals, again.order_totals)
    other = generate(customers=300, months=MONTHS, seed=SEED + 1, world="retail")
    small = generate(customers=300, months=MONTHS, seed=SEED, world="retail")
    assert not other.transactions.equals(small.transactions)


def test_the_settings_block_is_a_valid_ingest_config(data: GeneratedData) -> None:
    assert data.ingest_settings is not None
    block = yaml.safe_load(ingest_block(data.ingest_settings))
    assert block == {
        "ingest": {
            "cancellation_pattern": "^C",
            "currency": "GBP",
            "currency_rates": {"EUR": RETAIL.rate},
            "personal_columns": list(PERSONAL_COLUMNS),
        }
    }
    assert IngestSettings.model_validate(block["ingest"]) == data.ingest_settings


def test_planted_rows_hold_one_bad_cell_each(data: GeneratedData) -> None:
    planted = plant_bad_rows(data.transactions, per_kind=3, seed=4)
    assert planted.reasons == {k.value: 3 for k in PLANTED_KINDS}
    frame = planted.frame
    assert list(frame.columns) == list(data.transactions.columns)
    assert len(frame) == len(data.transactions) + 3 * len(PLANTED_KINDS) + 3
    # the generated rows are all there, in their order, as the text write_raw writes
    real = frame[~planted.planted].reset_index(drop=True)
    assert len(real) == len(data.transactions)
    ts = pd.to_datetime(real["ts"], utc=True, format="ISO8601").dt.as_unit("us")
    assert (ts == data.transactions["ts"]).all()
    assert (real["quantity"].astype(int) == data.transactions["quantity"]).all()
    assert (real["customer_id"] == data.transactions["customer_id"]).all()
    # each planted row has its kind's cell, and only the planted rows have one
    bad = frame.iloc[planted.rejected["row_number"] - 1].reset_index(drop=True)
    reason = planted.rejected["reason"]
    cells = {
        RejectReason.MISSING_ID: bad["customer_id"] == "",
        RejectReason.BAD_TIMESTAMP: bad["ts"] == BAD_CELLS[RejectReason.BAD_TIMESTAMP],
        RejectReason.FUTURE_TIMESTAMP: bad["ts"] == BAD_CELLS[RejectReason.FUTURE_TIMESTAMP],
        RejectReason.BEFORE_MIN_DATE: bad["ts"] == "1899-12-30T00:00:00Z",
        RejectReason.MIXED_CURRENCY: bad["currency"] == "JPY",
        RejectReason.IMPLAUSIBLE_AMOUNT: bad["quantity"] == "1000000000",
        RejectReason.BAD_AMOUNT: bad["quantity"].eq("12,5O") | bad["unit_price"].eq("12,5O"),
        RejectReason.MISSING_VALUE: bad["unit_price"].eq("") | bad["ts"].eq(""),
        RejectReason.DUPLICATE: bad["order_id"] == "",
    }
    for kind, has_cell in cells.items():
        assert (has_cell == (reason == kind.value)).all(), kind
    assert set(real["currency"]) == {"GBP", "EUR"} and (real["order_id"] != "").all()
    # exact duplicates: three pairs of a line without its order id, the first of each kept
    no_order = frame[frame["order_id"] == ""]
    assert len(no_order) == 6 and no_order.duplicated().sum() == 3
    first = no_order[~no_order.duplicated()]
    assert (first.index + 1).tolist() == planted.accepted["row_number"].tolist()
    again = plant_bad_rows(data.transactions, per_kind=3, seed=4)
    pd.testing.assert_frame_equal(frame, again.frame)


def test_generate_retail_writes_four_files_and_the_settings(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    args = ["generate", "--world", "retail", "--customers", "200", "--months", "6"]
    result = CliRunner().invoke(data_cli.app, [*args, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert sorted(payload["files"]) == ["customers", "events", "identities", "transactions"]
    assert payload["ingest_settings"]["cancellation_pattern"] == "^C"
    identities = pd.read_csv(out / "identities.csv", dtype=str, keep_default_na=False)
    assert list(identities.columns) == ["alias_id", "customer_id", "valid_from"]
    assert (identities["valid_from"] == "").any()  # missing: an empty cell, not "NaT"
    assert identities["valid_from"].str.fullmatch(r"|\d{4}-\d\d-\d\dT[\d:.]+Z").all()
    tx = pd.read_csv(out / "transactions.csv", dtype=str)
    assert "amount" not in tx.columns and "line_id" not in tx.columns
    human = CliRunner().invoke(data_cli.app, [*args, "--out", str(tmp_path / "again")])
    assert human.exit_code == 0, human.output
    assert "ingest:\n  cancellation_pattern: ^C\n  currency: GBP\n" in human.stdout
    assert "currency_rates: {EUR: 0.86}" in human.stdout


def test_write_raw_round_trips_the_retail_tables(data: GeneratedData, tmp_path: Path) -> None:
    paths = write_raw(data, tmp_path, fmt="parquet")
    assert data.identities is not None
    back = pd.read_parquet(paths["identities"])
    assert back["valid_from"].isna().sum() == data.identities["valid_from"].isna().sum()
    tx = pd.read_parquet(paths["transactions"])
    pd.testing.assert_frame_equal(tx, data.transactions, check_dtype=False)
