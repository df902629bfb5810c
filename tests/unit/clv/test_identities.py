"""The identity rule on tiny tables: point in time, chains, remaps, cycles, groups."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from clv.core.settings import load_settings
from clv.core.store import read_table_bucket, write_table
from clv.inputs.identities import canonical_ids, epoch_keys, expand_rows, resolve

JAN = pd.Timestamp("2024-01-01", tz="UTC")
FEB = pd.Timestamp("2024-02-01", tz="UTC")
MAR = pd.Timestamp("2024-03-01", tz="UTC")
DAY = pd.Timedelta(days=1)


def _table(rows: list[tuple[str, str, pd.Timestamp | None]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "alias_id": [r[0] for r in rows],
            "customer_id": [r[1] for r in rows],
            "valid_from": pd.Series([r[2] for r in rows], dtype="datetime64[us, UTC]"),
        }
    )


def test_an_alias_is_its_own_customer_until_strictly_after_valid_from() -> None:
    ids = resolve(_table([("a", "c", FEB), ("b", "c", None)]))
    assert canonical_ids(["a", "b", "c", "z"], ids, FEB) == ["a", "c", "c", "z"]  # v = t: before
    assert canonical_ids(["a", "b", "c", "z"], ids, FEB + pd.Timedelta(microseconds=1)) == [
        "c",
        "c",
        "c",
        "z",
    ]
    assert canonical_ids(["b"], ids, pd.Timestamp("1970-01-02", tz="UTC")) == ["c"]  # no date


def test_chains_resolve_when_both_rows_are_in_force() -> None:
    ids = resolve(_table([("a", "b", JAN), ("b", "c", FEB)]))
    assert canonical_ids(["a", "b"], ids, JAN + DAY) == ["b", "b"]
    assert canonical_ids(["a", "b"], ids, FEB + DAY) == ["c", "c"]


def test_the_latest_row_of_a_remapped_alias_wins() -> None:
    ids = resolve(_table([("a", "b", JAN), ("a", "c", FEB)]))
    assert canonical_ids(["a"], ids, FEB) == ["b"]
    assert canonical_ids(["a"], ids, MAR) == ["c"]


def test_a_self_mapping_row_says_nothing() -> None:
    ids = resolve(_table([("a", "a", FEB), ("a", "b", JAN)]))
    assert canonical_ids(["a"], ids, MAR) == ["b"]  # the later (a, a) row does not un-merge
    assert resolve(_table([("a", "a", None)])).empty


def test_a_cycle_drops_its_oldest_row() -> None:
    # a is b's alias from Jan, then b is a's alias from Feb: the later statement wins
    ids = resolve(_table([("a", "b", JAN), ("b", "a", FEB), ("x", "b", None)]))
    assert canonical_ids(["a", "b", "x"], ids, FEB) == ["b", "b", "b"]
    assert canonical_ids(["a", "b", "x"], ids, MAR) == ["a", "a", "a"]
    window = ids.intervals.loc[ids.intervals["lo"] == FEB].set_index("alias_id")
    assert window["customer_id"].to_dict() == {"a": "a", "b": "a", "x": "a"}  # the same rule


def test_groups_join_every_id_ever_linked_under_the_least_id() -> None:
    ids = resolve(_table([("d", "b", JAN), ("d", "c", FEB), ("y", "x", None)]))
    groups = ids.groups.set_index("member_id")["group_id"].to_dict()
    assert groups == {"b": "b", "c": "b", "d": "b", "x": "x", "y": "x"}


def test_intervals_partition_time_and_agree_with_the_instant_answer() -> None:
    ids = resolve(_table([("a", "b", JAN), ("b", "c", FEB), ("a", "d", MAR), ("e", "c", None)]))
    iv = ids.intervals
    for when in (JAN - DAY, JAN, JAN + DAY, FEB, FEB + DAY, MAR, MAR + DAY):
        lo = iv["lo"].isna() | (iv["lo"] < when)
        hi = iv["hi"].isna() | (when <= iv["hi"])
        at = iv.loc[lo & hi]
        assert at["alias_id"].is_unique and set(at["alias_id"]) == set(ids.groups["member_id"])
        expected = canonical_ids(at["alias_id"].tolist(), ids, when)
        assert at["customer_id"].tolist() == expected, when


def test_expanded_rows_meet_their_entity_rows_under_one_key() -> None:
    ids = resolve(_table([("a", "c", FEB)]))
    rows = pd.DataFrame({"customer_id": ["a", "c", "z"], "amount": [1.0, 2.0, 4.0]})
    expanded, lo = expand_rows(rows, ids)
    keyed = expanded.assign(lo=lo)
    who, at = epoch_keys(pd.Series(["c", "a", "c", "z"]), pd.Series([FEB, FEB, MAR, MAR]), ids)
    assert list(who) == ["c", "a", "c", "z"]
    for customer, since, total in zip(who, at, (2.0, 1.0, 3.0, 4.0), strict=True):
        mine = keyed.loc[(keyed["customer_id"] == customer) & (keyed["lo"] == since)]
        assert mine["amount"].sum() == pytest.approx(total), customer


def test_a_grouped_bucket_read_keeps_every_id_of_a_customer_together(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, environ={})
    ids = [f"{p}{i:02d}" for i in range(30) for p in ("k", "m")]
    write_table(
        settings,
        "transactions",
        pd.DataFrame(
            {"customer_id": ids, "ts": pd.Series([JAN] * len(ids)), "amount": [1.0] * len(ids)}
        ),
    )
    identities = resolve(_table([(f"m{i:02d}", f"k{i:02d}", FEB) for i in range(30)]))
    parts = [
        read_table_bucket(settings, "transactions", buckets=3, bucket=b, groups=identities.groups)
        for b in range(3)
    ]
    assert sorted(pd.concat(parts)["customer_id"]) == sorted(ids)

    def together(part: pd.DataFrame) -> bool:
        held = set(part["customer_id"])
        return {f"k{i[1:]}" for i in held} == {i for i in held if i.startswith("k")}

    assert all(together(p) for p in parts)
    plain = [read_table_bucket(settings, "transactions", buckets=3, bucket=b) for b in range(3)]
    assert not all(together(p) for p in plain)  # without groups, aliases land elsewhere
