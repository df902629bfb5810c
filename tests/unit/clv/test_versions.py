"""Customer versions: which stored row is in force when, on frames small enough to follow."""

from __future__ import annotations

import pandas as pd

from clv.inputs.ingest import canonical
from clv.inputs.versions import BEGINNING, in_force_order, merge_versions

FEB = pd.Timestamp("2024-02-01", tz="UTC")
MAR = pd.Timestamp("2024-03-01", tz="UTC")


def _customers(rows: list[tuple[str, str, str | None, str | None]]) -> pd.DataFrame:
    """(customer_id, plan, valid_from, ingested_at) rows as a canonical customers frame."""
    frame = pd.DataFrame(rows, columns=["customer_id", "plan", "valid_from", "ingested_at"])
    for col in ("valid_from", "ingested_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return canonical(frame, "customers")


def _us(day: str) -> int:
    return int(pd.Timestamp(day, tz="UTC").value // 1000)


def test_first_undated_version_is_in_force_from_the_beginning() -> None:
    stored = _customers(
        [
            ("a", "free", None, "2024-01-10"),  # first, undated: from the beginning
            ("a", "pro", None, "2024-02-10"),  # later, undated: from its ingest time
            ("b", "free", "2024-01-05", "2024-01-10"),  # first, dated: from its valid_from
        ]
    )
    assert in_force_order(stored).tolist() == [BEGINNING, _us("2024-02-10"), _us("2024-01-05")]


def test_rows_stored_before_versions_count_as_first_versions() -> None:
    legacy = canonical(pd.DataFrame({"customer_id": ["a"], "plan": ["free"]}), "customers")
    merged = merge_versions(legacy, _customers([("a", "free", None, None)]), ingested_at=MAR)
    assert (merged.inserted, merged.already_present, len(merged.frame)) == (0, 1, 1)
    changed = merge_versions(legacy, _customers([("a", "pro", None, None)]), ingested_at=MAR)
    assert changed.frame["plan"].tolist() == ["free", "pro"]
    assert changed.frame["ingested_at"].isna().tolist() == [True, False]


def test_an_earlier_dated_change_comes_before_the_undated_first_version() -> None:
    stored = _customers([("a", "free", None, "2024-02-01")])  # free, from the beginning
    news = _customers([("a", "pro", "2024-01-15", None)])  # but pro since Jan 15
    merged = merge_versions(stored, news, ingested_at=MAR)
    assert merged.inserted == 1
    assert merged.frame["plan"].tolist() == ["pro", "free"]
    # pro from Jan 15 (nothing before: a dated first version), free again from Feb 1
    assert in_force_order(merged.frame).tolist() == [_us("2024-01-15"), _us("2024-02-01")]
    # the same news again changes nothing
    again = merge_versions(merged.frame, news, ingested_at=MAR)
    assert (again.inserted, again.already_present) == (0, 1)
    pd.testing.assert_frame_equal(again.frame, merged.frame)
