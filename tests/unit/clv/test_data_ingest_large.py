"""A real-size ingest: 1,000,000 CSV rows, 1% corrupted in five kinds, every valid row lands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clv.contracts import RejectReason
from clv.ingest import ingest
from clv.settings import load_settings
from clv.store import read_table

ROWS = 1_000_000
KINDS = (
    RejectReason.MISSING_ID,
    RejectReason.BAD_TIMESTAMP,
    RejectReason.FUTURE_TIMESTAMP,
    RejectReason.BAD_AMOUNT,
    RejectReason.DUPLICATE,
)


def corrupted_transactions_csv(path: Path, *, rows: int, seed: int = 5) -> dict[str, int]:
    """Valid rows (unique order ids), then 0.2% of rows per kind corrupted on distinct rows.

    Corrupted rows sit at odd positions, never next to each other, so a duplicate always
    copies a valid row. Same construction as the `ingest_1m` benchmark.
    """
    rng = np.random.default_rng(seed)
    base = np.datetime64("2023-01-01T00:00:00", "s").astype(np.int64)
    ts = pd.to_datetime(base + rng.integers(0, 365 * 86_400, rows), unit="s", utc=True)
    frame = pd.DataFrame(
        {
            "customer_id": np.char.add("C", rng.integers(0, 100_000, rows).astype(str)),
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "amount": np.round(rng.lognormal(3.5, 0.8, rows), 2).astype(str),
            "order_id": np.char.add("O", np.arange(rows).astype(str)),
        }
    )
    per_kind = rows // 100 // len(KINDS)
    chosen = 1 + 2 * rng.choice((rows - 1) // 2, size=per_kind * len(KINDS), replace=False)
    for k, kind in enumerate(KINDS):
        at = chosen[k * per_kind : (k + 1) * per_kind]
        if kind is RejectReason.MISSING_ID:
            frame.loc[at, "customer_id"] = ""
        elif kind is RejectReason.BAD_TIMESTAMP:
            frame.loc[at, "ts"] = "not-a-date"
        elif kind is RejectReason.FUTURE_TIMESTAMP:
            frame.loc[at, "ts"] = "2099-01-01T00:00:00Z"
        elif kind is RejectReason.BAD_AMOUNT:
            frame.loc[at, "amount"] = "12,5O"
        else:
            frame.iloc[at] = frame.iloc[at - 1].to_numpy()
    frame.to_csv(path, index=False)
    return {kind.value: per_kind for kind in KINDS}


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
    assert result.accepted == valid
    assert len(read_table(settings, "transactions")) == valid
    assert result.quarantine_path is not None
    quarantine = pd.read_csv(result.quarantine_path, dtype=str, keep_default_na=False)
    assert quarantine["reason"].value_counts().to_dict() == expected
