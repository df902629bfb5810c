"""The README is part of the product: its configuration reference must match the code."""

from __future__ import annotations

from pathlib import Path

from clv.core.settings import CODE_ROOT, reference_table

README = (CODE_ROOT / "README.md").read_text()


def test_every_setting_is_documented_with_its_default() -> None:
    missing = [row for row in reference_table().splitlines()[2:] if row not in README]
    assert not missing, "README configuration table is stale; regenerate with reference_table()"


def test_quick_start_shows_the_two_commands() -> None:
    assert "make demo" in README and "make test" in README
    assert Path(CODE_ROOT / ".ci" / "run").read_text().count("make test") == 1
