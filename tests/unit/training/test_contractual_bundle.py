"""The contractual part of a version on a small mixed SaaS world: a customer with both a
subscription and one-off purchases is scored on both parts and they are summed; the bundle
reads back the same numbers; the hazard starts from the sBG it carries."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clv.core.settings import Settings
from clv.features.subscription_features import one_off_history, subscription_features
from clv.inputs.saas import generate_saas
from clv.inputs.subscriptions import SubscriptionLog
from clv.model.contractual_bundle import SCORE_COLUMNS, ContractualModel, with_contractual
from clv.model.subscription import sbg_margin
from clv.training.contractual import fit_contractual


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[ContractualModel, SubscriptionLog]:
    d = generate_saas(customers=700, months=20, seed=5, world="saas_mixed")
    log = SubscriptionLog(d.subscriptions, d.changes, d.events, d.transactions)
    ws = tmp_path_factory.mktemp("ws")
    settings = Settings.model_validate({"workspace": str(ws), "model": {"horizon_days": 90}})
    return fit_contractual(log, at=log.end, settings=settings, nthread=1), log


def _values(model: ContractualModel, log: SubscriptionLog) -> tuple[pd.DataFrame, pd.DataFrame]:
    feats = subscription_features(*log.tables[:3], as_of=log.end, transactions=log.transactions)
    history = one_off_history(log.transactions, as_of=log.end)
    return feats, model.customer_values(feats, history, as_of=log.end)


def test_a_customer_with_both_parts_is_scored_on_both_and_summed(
    fitted: tuple[ContractualModel, SubscriptionLog],
) -> None:
    model, log = fitted
    feats, values = _values(model, log)
    history = one_off_history(log.transactions, as_of=log.end)
    both = values.index.intersection(history.index[history["margin_recent"] > 0])
    assert len(both) > 10
    who = both[0]
    row = values.loc[who]
    subs = model.subscription_values(feats, as_of=log.end)
    assert row["subscription_clv"] == pytest.approx(
        subs.loc[subs["customer_id"] == who, "clv"].sum()
    )
    assert row["one_off_clv"] > 0 and row["subscription_clv"] > 0
    assert row["clv"] == pytest.approx(row["subscription_clv"] + row["one_off_clv"])
    # the one-off part grows with her recent one-off margin and never reads her invoices
    richer = history.copy()
    richer.loc[who, "margin_recent"] += 1_000.0
    more = model.customer_values(feats, richer, as_of=log.end).loc[who]
    assert more["one_off_clv"] > row["one_off_clv"]
    assert more["subscription_clv"] == pytest.approx(row["subscription_clv"])
    # every served customer is a paying subscriber at the end, with sane probabilities
    assert set(values.index) == set(feats["customer_id"])
    assert values["renewal_probability"].between(0, 1).all()
    assert (values["subscription_clv_p10"] <= values["subscription_clv_p90"] + 1e-9).all()


def test_the_bundle_reads_back_the_same_numbers(
    fitted: tuple[ContractualModel, SubscriptionLog], tmp_path: Path
) -> None:
    model, log = fitted
    again = ContractualModel.load(model.save(tmp_path / "contractual"))
    _, before = _values(model, log)
    _, after = _values(again, log)
    pd.testing.assert_frame_equal(before, after)
    assert again.hazard.sbg is not None and set(again.hazard.sbg) == set(model.hazard.sbg or {})


def test_the_hazard_starts_from_the_sbg_it_carries(
    fitted: tuple[ContractualModel, SubscriptionLog],
) -> None:
    model, log = fitted
    feats = subscription_features(*log.tables[:3], as_of=log.end, transactions=log.transactions)
    rows = feats.assign(k=1, tenure_at_k=feats["tenure_months"])
    assert model.hazard.sbg is not None
    offset = sbg_margin(model.hazard.sbg, rows)
    trees = model.hazard.booster.predict(model.hazard.matrix(rows), output_margin=True)
    bare = np.asarray(trees) - offset  # the trees' correction alone
    plain = replace(model.hazard, sbg=None)
    # without the offset the booster's margin is its trees' alone (base_score aside)
    diff = np.asarray(plain.booster.predict(plain.matrix(rows), output_margin=True)) - bare
    assert np.allclose(diff, diff[0], atol=1e-5)
    assert model.card.hazard_rounds >= 1


def test_scores_get_the_contractual_fields_of_the_version_that_scored_them(
    fitted: tuple[ContractualModel, SubscriptionLog],
) -> None:
    model, log = fitted
    _, values = _values(model, log)
    subscriber = str(values.index[0])
    outsider = "C_NOT_A_SUBSCRIBER"
    scores = pd.DataFrame(
        {
            "customer_id": [subscriber, outsider, subscriber],
            "clv": [1.0, 2.0, 3.0],
            "model_version": ["7", "7", "8"],  # version 8 has no contractual part
        }
    )
    out = with_contractual(scores, {"7": model}, log, as_of=log.end)
    assert list(out["clv"]) == [1.0, 2.0, 3.0]  # the value model's own column is left alone
    assert out.loc[0, "contractual_clv"] == pytest.approx(values.loc[subscriber, "clv"])
    assert out.loc[0, "renewal_probability"] == pytest.approx(
        values.loc[subscriber, "renewal_probability"]
    )
    assert out.loc[[1, 2], list(SCORE_COLUMNS)].isna().all().all()
