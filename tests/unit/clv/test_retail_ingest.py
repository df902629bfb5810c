"""Issue 12 acceptance on the `retail` world: the export ingests with 0 valid revenue lost (the
stored order totals equal the generator's truth), and every planted bad row is quarantined
with its reason.

The raw folder is what `clv data generate --world retail` writes, with `plant_bad_rows` in the
transactions file, read with the settings block the generator prints (clv.yaml).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clv.core.settings import Settings, load_settings
from clv.core.store import read_table
from clv.inputs.generator import GeneratedData, generate, ingest_block, plant_bad_rows, write_raw
from clv.inputs.ingest import ingest_all

KEY = "retail-test-key"
TOLERANCE = 1e-6
"""Per order: the truth sums in another order than ingest (clv.inputs.generator._order_totals)."""


@pytest.fixture(scope="module")
def data() -> GeneratedData:
    return generate(customers=600, months=18, seed=12, world="retail")


@pytest.fixture(scope="module")
def ingested(
    data: GeneratedData, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Settings, dict[str, object], pd.DataFrame]:
    """(settings, the transactions result as a dict, the planted rows' expected rejects)."""
    ws = tmp_path_factory.mktemp("retail")
    assert data.ingest_settings is not None
    (ws / "clv.yaml").write_text(ingest_block(data.ingest_settings))
    raw = ws / "raw"
    write_raw(data, raw)
    planted = plant_bad_rows(data.transactions, per_kind=3, seed=7)
    planted.frame.to_csv(raw / "transactions.csv", index=False)
    (ws / "planted_accepted.csv").write_text(planted.accepted.to_csv(index=False))
    settings = load_settings(ws, environ={})
    mp = pytest.MonkeyPatch()
    mp.setenv(settings.ingest.personal_key_env, KEY)
    try:
        results = ingest_all(settings, raw, now=data.end + pd.Timedelta(days=1))
    finally:
        mp.undo()
    tx = next(r for r in results if r.table == "transactions")
    return settings, tx.as_dict(), planted.rejected


def _canonical(ids: pd.Series, identities: pd.DataFrame) -> pd.Series:
    owner = identities.set_index("alias_id")["customer_id"]
    return ids.map(owner).fillna(ids)


def test_every_planted_row_is_quarantined_with_its_reason(
    ingested: tuple[Settings, dict[str, object], pd.DataFrame],
) -> None:
    _, result, rejected = ingested
    assert result["quarantined"] == rejected["reason"].value_counts().to_dict()
    path = result["quarantine_path"]
    assert isinstance(path, str)
    quarantine = pd.read_csv(path, dtype=str, keep_default_na=False)
    got = quarantine[["row_number", "reason"]].astype({"row_number": int})
    pd.testing.assert_frame_equal(
        got.sort_values("row_number", ignore_index=True),
        rejected.astype({"row_number": int}),
    )


def test_no_valid_revenue_is_lost(
    data: GeneratedData, ingested: tuple[Settings, dict[str, object], pd.DataFrame]
) -> None:
    """The stored order totals per (canonical customer, order) are the truth, to 1e-6."""
    settings, _, _ = ingested
    assert data.order_totals is not None and data.identities is not None
    stored = read_table(settings, "transactions")
    assert set(stored["currency"].dropna()) <= {"GBP"}  # converted to the workspace currency
    with_order = stored[stored["order_id"].notna()]
    owner = _canonical(with_order["customer_id"], data.identities)
    got = with_order.groupby([owner, with_order["order_id"]])["amount"].sum()
    truth = data.order_totals.set_index(["customer_id", "order_id"])["amount"]
    assert set(got.index) == set(truth.index)
    assert np.abs(got.reindex(truth.index) - truth).max() < TOLERANCE
    # the only rows without an order id: the kept copy of each planted exact duplicate
    planted = pd.read_csv(settings.workspace / "planted_accepted.csv", dtype=str)
    loose = stored[stored["order_id"].isna()]
    assert len(loose) == len(planted)
    expected = (planted["quantity"].astype(float) * planted["unit_price"].astype(float)).sum()
    assert float(loose["amount"].sum()) == pytest.approx(expected, abs=TOLERANCE)


def test_cancellations_are_refunds_linked_to_their_invoice(
    data: GeneratedData, ingested: tuple[Settings, dict[str, object], pd.DataFrame]
) -> None:
    settings, _, _ = ingested
    assert data.order_totals is not None
    stored = read_table(settings, "transactions")
    cancels = stored[stored["order_id"].fillna("").str.startswith("C")]
    assert (cancels["amount"] < 0).all()
    link = cancels.groupby("order_id")["refund_of"].first()
    truth = data.order_totals.set_index("order_id")["refund_of"]
    expected = truth.loc[link.index]
    assert (link.isna() == expected.isna()).all()  # unlinked: the invoice is not in the export
    assert (link.dropna() == expected.dropna()).all()


def test_personal_columns_are_not_stored_in_clear(
    data: GeneratedData, ingested: tuple[Settings, dict[str, object], pd.DataFrame]
) -> None:
    settings, _, _ = ingested
    customers = read_table(settings, "customers")
    emails = set(data.customers["email"])
    for column in customers.columns:
        values = set(customers[column].dropna().astype(str))
        assert not values & emails, column
    stored_identities = read_table(settings, "identities")
    assert data.identities is not None
    assert len(stored_identities) == len(data.identities)
