"""Customer versions: the stored customers table is a history of each customer's attributes.

A row states a customer's `CUSTOMER_ATTRIBUTES` from its version time: its `valid_from`, else
its `ingested_at` (the ingest instant). A customer's versions, in version-time order, are each in
force from their version time until the next one; the first one, when it has no `valid_from`,
also before it, from the beginning (so a customer ingested once has their attributes in their
whole history, not nulls). Features at t use the version in force strictly before t; the same
rule is SQL in `clv.features.definitions.customer_versions_sql`. Why these rules:
docs/decisions/customer-versions.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from clv.core.contracts import CUSTOMER_ATTRIBUTES, TS_DTYPE

_VT = "_version_us"
_ORDER = "_order_us"
_NEW = "_new"
_ATTRS = "_attrs"
_CORRECTS = "_corrects"
BEGINNING = np.iinfo(np.int64).min
"""The in-force time of a first version without valid_from (NaT as int64 is the same value)."""


@dataclass(frozen=True, eq=False)
class VersionMerge:
    """The customers table after adding a file's rows, and what happened to those rows."""

    frame: pd.DataFrame
    """Every version, sorted by customer_id and version time."""
    inserted: int
    """Rows stored as a new version."""
    replaced: int
    """Rows correcting a stored version (same customer and version time, other attributes)."""
    already_present: int
    """Rows identical to the version in force at their version time."""
    superseded: int
    """Rows followed, in the same file, by a row of the same customer and version time."""


def version_time(frame: pd.DataFrame) -> pd.Series:
    """valid_from, else ingested_at (NaT for a row with neither, e.g. stored before versions)."""
    return frame["valid_from"].fillna(frame["ingested_at"]).astype(TS_DTYPE)


def _micros(ts: pd.Series) -> npt.NDArray[np.int64]:
    """UTC timestamps as int64 microseconds; NaT becomes the smallest int64 (sorts first)."""
    naive = ts.astype(TS_DTYPE).dt.tz_convert(None)
    return naive.to_numpy(dtype="datetime64[us]").view(np.int64)


def _attribute_hash(frame: pd.DataFrame) -> npt.NDArray[np.uint64]:
    return pd.util.hash_pandas_object(
        frame.loc[:, list(CUSTOMER_ATTRIBUTES)], index=False
    ).to_numpy()


def in_force_order(frame: pd.DataFrame) -> npt.NDArray[np.int64]:
    """Each version's in-force time (int64 microseconds): its version time, except that a
    customer's first version without valid_from is in force from the beginning."""
    vt = _micros(version_time(frame))
    order = np.lexsort((vt, frame["customer_id"].to_numpy(dtype=object).astype(str)))
    ids = frame["customer_id"].to_numpy(dtype=object)[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = ids[1:] != ids[:-1]
    undated = frame["valid_from"].isna().to_numpy()[order]
    out = vt.copy()
    out[order[first & undated]] = BEGINNING
    return out


def _drop_repeats(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    """Sorted by customer and `by` (stored rows first at a tie): drop every version whose
    attributes equal the one before it, which stays in force instead."""
    frame = frame.sort_values(["customer_id", by, _NEW], kind="stable", ignore_index=True)
    ids = frame["customer_id"].to_numpy(dtype=object)
    attrs = frame[_ATTRS].to_numpy()
    repeat = np.zeros(len(frame), dtype=bool)
    repeat[1:] = (ids[1:] == ids[:-1]) & (attrs[1:] == attrs[:-1])
    return frame.loc[~repeat]


def merge_versions(
    stored: pd.DataFrame, accepted: pd.DataFrame, *, ingested_at: pd.Timestamp
) -> VersionMerge:
    """Add a file's accepted customers rows (canonical) to the stored versions (canonical).

    A row is a new version unless its attributes equal those of the version in force at its
    version time (already present). In one file, rows of one customer and version time: the
    last wins. A row at the version time of a stored version with other attributes replaces it
    (a correction). Versions that end up equal to the one before them are dropped."""
    columns = list(stored.columns)
    new = accepted.assign(ingested_at=pd.Series(ingested_at, index=accepted.index).astype(TS_DTYPE))
    new[_VT] = _micros(version_time(new))
    last = ~new.duplicated(subset=["customer_id", _VT], keep="last").to_numpy()
    superseded = int((~last).sum())
    new = new.loc[last].reset_index(drop=True)
    new[_ORDER] = new[_VT]
    new[_NEW] = True
    new[_ATTRS] = _attribute_hash(new)

    old = stored.reset_index(drop=True)
    old[_VT] = _micros(version_time(old))
    old[_ORDER] = in_force_order(old)
    old[_NEW] = False
    old[_ATTRS] = _attribute_hash(old)

    # The same customer and version time in the file and the store: identical -> already
    # present; otherwise the file's row replaces the stored one.
    slot_new = pd.MultiIndex.from_arrays([new["customer_id"], new[_VT]])
    slot_old = pd.MultiIndex.from_arrays([old["customer_id"], old[_VT]])
    same = pd.MultiIndex.from_arrays([old["customer_id"], old[_VT], old[_ATTRS]])
    identical = pd.MultiIndex.from_arrays([new["customer_id"], new[_VT], new[_ATTRS]]).isin(same)
    replaced = slot_old.isin(slot_new[~identical])
    new[_CORRECTS] = ~identical & slot_new.isin(slot_old)
    old[_CORRECTS] = False
    both = pd.concat([old.loc[~replaced], new.loc[~identical]], ignore_index=True)

    # Against the versions in force as stored (a first undated version from the beginning),
    # then again in the merged order, where that version may no longer be the first.
    both = _drop_repeats(both, _ORDER)
    both = _drop_repeats(both, _VT)
    # A correction counts as one even when its version then equals the one before it and is
    # dropped: the stored version it corrected is gone either way.
    corrections = int(new[_CORRECTS].sum())
    inserted = int((both[_NEW] & ~both[_CORRECTS].astype(bool)).sum())
    frame = both.loc[:, columns].reset_index(drop=True)
    return VersionMerge(
        frame=frame,
        inserted=inserted,
        replaced=corrections,
        already_present=len(new) - inserted - corrections,
        superseded=superseded,
    )
