"""benchmarks/worlds.py: the subscription worlds, development apart from judgement."""

from __future__ import annotations

import pytest

from benchmarks.worlds import (
    DEVELOPMENT,
    JUDGEMENT,
    SAAS_DEVELOPMENT,
    SAAS_JUDGEMENT,
    SAAS_WORLDS,
    SaasCase,
    generate_saas_world,
    saas_world,
)
from clv.inputs.saas import SAAS_FAMILIES

MIN_MONTHS = {90: 18, 365: 48}
"""Months of history an embargoed evaluation of each horizon needs."""


def test_every_saas_world_is_development_or_judgement() -> None:
    assert set(SAAS_DEVELOPMENT) | set(SAAS_JUDGEMENT) == set(SAAS_WORLDS)
    assert not set(SAAS_DEVELOPMENT) & set(SAAS_JUDGEMENT)
    assert all(w.name.startswith("dev-saas") for w in SAAS_DEVELOPMENT)
    assert all(w.name.startswith("judge-saas") for w in SAAS_JUDGEMENT)


def test_saas_development_and_judgement_share_no_seed_and_no_name() -> None:
    dev = {w.seed for w in SAAS_DEVELOPMENT}
    judge = {w.seed for w in SAAS_JUDGEMENT}
    assert not dev & judge
    assert len(dev) == len(SAAS_DEVELOPMENT) and len(judge) == len(SAAS_JUDGEMENT)
    names = [w.name for w in SAAS_WORLDS]
    assert len(names) == len(set(names))
    others = [*DEVELOPMENT, *JUDGEMENT]  # the non-contractual worlds: apart from these too
    assert not set(names) & {w.name for w in others}
    assert not (dev | judge) & {w.seed for w in others}


def test_saas_judgement_is_broad_and_holds_out_a_family() -> None:
    families = {w.family for w in SAAS_JUDGEMENT}
    unseen = families - {w.family for w in SAAS_DEVELOPMENT}
    assert {"saas_price_change", "saas_wear"} <= unseen
    assert families == set(SAAS_FAMILIES)
    assert {3_000, 12_000} <= {w.customers for w in SAAS_JUDGEMENT}
    assert {90, 365} <= {w.horizon_days for w in SAAS_JUDGEMENT}
    assert {90, 365} <= {w.horizon_days for w in SAAS_DEVELOPMENT}


@pytest.mark.parametrize("w", SAAS_WORLDS, ids=lambda w: w.name)
def test_every_saas_world_has_the_history_its_horizon_needs(w: SaasCase) -> None:
    assert w.family in SAAS_FAMILIES
    assert w.months >= MIN_MONTHS[w.horizon_days]


def test_saas_world_by_name_generates_its_family_seed_and_size() -> None:
    w = saas_world("dev-saas-s111")
    assert w == SaasCase("dev-saas-s111", "saas", 111, 3_000, 24, 90)
    data = generate_saas_world(w)
    assert (data.world, data.seed) == ("saas", 111)
    assert data.customers["customer_id"].nunique() == w.customers
    with pytest.raises(KeyError, match="no SaaS world named 'dev-mixed-s101'"):
        saas_world("dev-mixed-s101")


def test_the_world_not_shaped_like_the_sbg_is_judged_at_both_sizes_and_horizons() -> None:
    """saas_wear is there to judge: never developed on, at both sizes and both horizons."""
    wear = [w for w in SAAS_WORLDS if w.family == "saas_wear"]
    assert wear and set(wear) <= set(SAAS_JUDGEMENT)
    assert {w.customers for w in wear} == {3_000, 12_000}
    assert {w.horizon_days for w in wear} == {90, 365}
    assert all(w.name.startswith("judge-saas-wear-") for w in wear)
    w = saas_world("judge-saas-wear-s216")
    assert w == SaasCase("judge-saas-wear-s216", "saas_wear", 216, 3_000, 36, 90)
