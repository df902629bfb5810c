from __future__ import annotations

from registry.aliases import decide_initial_champion


def test_first_version_becomes_champion() -> None:
    d = decide_initial_champion("1", current=None)
    assert d.assign and d.alias == "champion" and d.reason == "no champion yet"


def test_existing_champion_is_kept_and_promotion_command_named() -> None:
    d = decide_initial_champion("3", current="2")
    assert not d.assign
    assert "clv registry promote 3" in d.reason


def test_same_version_is_not_reassigned() -> None:
    assert not decide_initial_champion("2", current="2").assign
