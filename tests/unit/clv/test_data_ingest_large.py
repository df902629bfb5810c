"""A real-size ingest: 1,000,000 CSV rows, 1% corrupted in five kinds, every valid row lands."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from clv.core.settings import load_settings
from clv.core.store import read_table
from clv.inputs.generator import corrupted_transactions_csv
from clv.inputs.ingest import ingest

ROWS = 1_000_000


@pytest.mark.slow
def test_million_row_csv_lands_every_valid_row_and_quarantines_each_bad_one(
    tmp_path: Path,
) -> None:
    settings = load_settings(tmp_path, environ={})
    path = tmp_path / "transactions.csv"
    expected = corrupted_transactions_csv(path, rows=ROWS)
    assert sum(expected.values()) == ROWS // 100  # 1% corrupted, 2,000 of each kind

    result = ingest(settings, path, now=pd.Timestamp("2024-06-01", tz="UTC"))

    valid = ROWS - sum(expected.values())
    assert result.read == ROWS
    assert result.quarantined == expected
    assert result.inserted == valid
    assert len(read_table(settings, "transactions")) == valid
    assert result.quarantine_path is not None
    quarantine = pd.read_csv(result.quarantine_path, dtype=str, keep_default_na=False)
    assert quarantine["reason"].value_counts().to_dict() == expected
