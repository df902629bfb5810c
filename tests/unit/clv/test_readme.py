"""The README is part of the product: its configuration reference must match the code."""

from __future__ import annotations

import re
from pathlib import Path

from clv.core.contracts import CONTRACTS, RejectReason
from clv.core.settings import CODE_ROOT, reference_table

README = (CODE_ROOT / "README.md").read_text()


def test_every_setting_is_documented_with_its_default() -> None:
    missing = [row for row in reference_table().splitlines()[2:] if row not in README]
    assert not missing, "README configuration table is stale; regenerate with reference_table()"


def test_quick_start_shows_the_two_commands() -> None:
    assert "make demo" in README and "make test" in README
    assert Path(CODE_ROOT / ".ci" / "run").read_text().count("make test") == 1


def _data_contract() -> str:
    start = README.index("## Data contract")
    return README[start : README.index("\n## ", start)]


def test_the_data_contract_table_is_the_contracts() -> None:
    """Every table's columns, in order, with their kind and whether they are required."""
    kinds = {"category": "string"}
    documented: dict[str, list[tuple[str, str, str]]] = {}
    table = None
    for line in _data_contract().splitlines():
        cells = [c.strip() for c in line.split("|")[1:5]]
        if len(cells) < 4 or not cells[1].startswith("`"):
            continue
        if cells[0]:
            table = re.fullmatch(r"`(\w+)`( \(optional\))?", cells[0]).group(1)  # type: ignore[union-attr]
        assert table is not None
        required = "ingest" if cells[3] == "set by ingest" else cells[3].split(",")[0]
        documented.setdefault(table, []).append((cells[1].strip("`"), cells[2], required))
    expected = {
        name: [
            (
                c.name,
                kinds.get(c.kind, c.kind),
                "ingest" if c.source == "ingest" else ("yes" if c.required else "no"),
            )
            for c in contract.columns
        ]
        for name, contract in CONTRACTS.items()
    }
    assert documented == expected


def test_the_data_contract_names_every_quarantine_reason() -> None:
    section = _data_contract()
    assert [r.value for r in RejectReason if f"`{r.value}`" not in section] == []
