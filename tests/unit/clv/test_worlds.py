"""benchmarks/worlds.py: development worlds apart from judgement worlds, by the rules."""

from __future__ import annotations

import pytest

from benchmarks.worlds import DEVELOPMENT, JUDGEMENT, TEST_WORLDS, World, generate_world, world
from clv.inputs.worlds import WORLDS

MIN_MONTHS = {90: 18, 365: 48}
"""Months of history an embargoed evaluation of each horizon needs."""


def test_development_and_judgement_share_no_seed_and_no_name() -> None:
    dev = {w.seed for w in DEVELOPMENT}
    judge = {w.seed for w in JUDGEMENT}
    assert not dev & judge
    names = [w.name for w in (*DEVELOPMENT, *JUDGEMENT)]
    assert len(names) == len(set(names))
    assert len(dev) == len(DEVELOPMENT) and len(judge) == len(JUDGEMENT)


def test_judgement_is_broad_and_holds_out_a_family() -> None:
    assert len(JUDGEMENT) >= 6
    families = {w.family for w in JUDGEMENT}
    assert len(families) >= 3
    assert {3_000, 12_000} <= {w.customers for w in JUDGEMENT}
    assert families - {w.family for w in DEVELOPMENT}  # never seen while developing
    assert {90, 365} <= {w.horizon_days for w in JUDGEMENT}
    assert {90, 365} <= {w.horizon_days for w in DEVELOPMENT}


@pytest.mark.parametrize("w", [*DEVELOPMENT, *JUDGEMENT], ids=lambda w: w.name)
def test_every_world_has_the_history_its_horizon_needs(w: World) -> None:
    assert w.family in WORLDS
    assert w.horizon_days in MIN_MONTHS
    assert w.months >= MIN_MONTHS[w.horizon_days]


def test_test_worlds_are_small_judgement_worlds() -> None:
    assert 1 <= len(TEST_WORLDS) <= 2
    assert set(TEST_WORLDS) <= set(JUDGEMENT)
    for w in TEST_WORLDS:
        assert 1_500 <= w.customers <= 2_500
        assert w.horizon_days == 90
        assert 18 <= w.months <= 30


@pytest.mark.parametrize("w", TEST_WORLDS, ids=lambda w: w.name)
def test_test_worlds_generate_their_family_seed_and_size(w: World) -> None:
    data = generate_world(w)
    assert data.world == w.family
    assert data.seed == w.seed
    assert data.customers["customer_id"].nunique() == w.customers


def test_world_by_name() -> None:
    assert world("judge-btyd-s203") == World("judge-btyd-s203", "btyd", 203, 3_000, 24, 90)
    with pytest.raises(KeyError, match="no world named 'nope'"):
        world("nope")
