from __future__ import annotations

from clv.registry.aliases import decide_initial_champion


def test_first_version_becomes_champion() -> None:
    d = decide_initial_champion("1", current=None)
    assert d.assign and d.alias == "champion" and d.reason == "no champion yet"


def test_existing_champion_is_kept_and_promotion_command_named() -> None:
    d = decide_initial_champion("3", current="2")
    assert not d.assign
    assert "clv registry promote 3" in d.reason


def test_same_version_is_not_reassigned() -> None:
    assert not decide_initial_champion("2", current="2").assign


def test_an_unembargoed_first_version_is_not_made_champion() -> None:
    decision = decide_initial_champion("1", current=None, embargoed=False)
    assert not decision.assign
    assert "not embargoed" in decision.reason and "--force" in decision.reason
    assert decide_initial_champion("1", current=None, embargoed=True).assign
