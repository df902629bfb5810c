"""Timestamps of raw files: text (or typed values) to UTC, never guessing silently.

ISO 8601 text is parsed as it always was (naive values are UTC). Only the cells that are not
ISO take the slower road, where three guesses are refused:
- a numeric date (`01/02/2024`, `5.1.2024`) is read in one day-month order for the whole file
  (`ingest.dayfirst`, or decided by the file: `file_date_order`), never row by row;
- a trailing time-zone name is resolved to its offset (RFC 5322 section 4.3 and the common
  standard/daylight names below) or rejected (`unknown_timezone`), never dropped to UTC;
- a bare number is a timestamp only when `ingest.epoch_unit` says in which unit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from clv.core.contracts import TS_DTYPE

EpochUnit = Literal["none", "s", "ms"]
Mask = npt.NDArray[np.bool_]

ZONE_OFFSETS: dict[str, int] = {
    # RFC 5322 section 4.3 (obs-zone): UT, GMT and the North American zones.
    **{"UT": 0, "UTC": 0, "GMT": 0, "Z": 0},
    **{"EST": -300, "EDT": -240, "CST": -360, "CDT": -300},
    **{"MST": -420, "MDT": -360, "PST": -480, "PDT": -420},
    # Other names that stand for one offset only.
    **{"AKST": -540, "AKDT": -480, "HST": -600, "WET": 0, "WEST": 60, "CET": 60, "CEST": 120},
    **{"EET": 120, "EEST": 180, "MSK": 180, "JST": 540, "KST": 540, "AEST": 600},
    **{"AEDT": 660, "ACST": 570, "AWST": 480, "NZST": 720, "NZDT": 780},
}
"""Minutes east of UTC of the time-zone names ingest resolves. Names used for several zones
(IST, BST, AST, ...) are absent on purpose: they are rejected, not guessed."""

_NOT_ZONES = frozenset(
    {
        *("AM", "PM", "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "SEPT"),
        *("OCT", "NOV", "DEC", "MON", "TUE", "TUES", "WED", "THU", "THUR", "THURS", "FRI"),
        *("SAT", "SUN"),
    }
)
"""Trailing words that are not time-zone names (10:00 PM, 5 Jan)."""
_ZONE = r"^(?P<rest>.*(?:\d|[AaPp]\.?[Mm]\.?))\s+\(?(?P<zone>[A-Za-z]{1,5})\)?$"
_OFFSET_AT_END = r"(?:[+-]\d{2}:?\d{2}|Z)$"
_SIGNED_ZONE = r"\s(?:GMT|UTC|UT)\s*[+-]\d{1,2}(?::?\d{2})?$"
"""`GMT+2`: UTC+2 to a person, UTC-2 to POSIX (and to dateutil): rejected, not guessed."""
_NUMERIC_DATE = r"^(?P<a>\d{1,2})[/.\-](?P<b>\d{1,2})[/.\-](?P<y>\d{4}|\d{2})(?P<tail>(?:[ T].*)?)$"
_EPOCH = r"-?\d+(?:\.\d+)?"


@dataclass(frozen=True)
class TimeRules:
    """How one file's timestamps are read (`ingest.dayfirst`, `ingest.epoch_unit`)."""

    dayfirst: bool | None = None
    """None: not known (yet): numeric dates are ambiguous until `file_date_order` decides."""
    epoch_unit: EpochUnit = "none"
    decided: bool = False
    """The file was already looked at for the date order (it is decided once per file)."""


@dataclass(frozen=True, eq=False)
class ParsedTimes:
    """UTC microsecond timestamps and, per row, why there is none."""

    values: pd.Series
    missing: Mask
    bad: Mask
    ambiguous: Mask
    """Numeric dates whose day-month order is not known."""
    unknown_zone: Mask


def stripped_text(col: pd.Series) -> pd.Series:
    """Strings, stripped; empty -> missing."""
    s = col.astype("string").str.strip()
    return s.mask(s == "")


def parse_times(col: pd.Series, rules: TimeRules = TimeRules()) -> ParsedTimes:
    """A raw column as UTC timestamps (naive values are UTC)."""
    n = len(col)
    none = np.zeros(n, dtype=bool)
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        parsed = col.dt.tz_localize("UTC") if col.dt.tz is None else col.dt.tz_convert("UTC")
        missing = parsed.isna().to_numpy()
        return ParsedTimes(parsed.astype(TS_DTYPE), missing, none, none, none.copy())
    if rules.epoch_unit != "none" and pd.api.types.is_numeric_dtype(col.dtype):
        col = col.astype("string")
    text = stripped_text(col)
    missing = text.isna().to_numpy()
    parsed = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    ambiguous, unknown = none.copy(), none.copy()
    if rules.epoch_unit != "none":
        epoch = text.str.fullmatch(_EPOCH).fillna(False).to_numpy(dtype=bool)
        if epoch.any():
            seconds = pd.to_numeric(text[epoch], errors="coerce")
            parsed = parsed.copy()
            parsed[epoch] = pd.to_datetime(
                seconds, unit=rules.epoch_unit, utc=True, errors="coerce"
            )
    failed = parsed.isna().to_numpy() & ~missing
    if failed.any():
        rest = _not_iso(text[failed], rules.dayfirst)
        parsed = parsed.copy()
        parsed[failed] = rest.values
        ambiguous[failed] = rest.ambiguous
        unknown[failed] = rest.unknown_zone
        failed = parsed.isna().to_numpy() & ~missing & ~ambiguous & ~unknown
    return ParsedTimes(parsed.astype(TS_DTYPE), missing, failed, ambiguous, unknown)


def _not_iso(text: pd.Series, dayfirst: bool | None) -> ParsedTimes:
    """Cells ISO 8601 could not read: a trailing zone name, then numeric dates, then the
    common written forms ("Jan 5 2024 10:00 PM")."""
    n = len(text)
    found = text.str.extract(_ZONE)
    zone = found["zone"].str.upper()
    named = (zone.notna() & ~zone.isin(_NOT_ZONES)).to_numpy(dtype=bool)
    named &= ~found["rest"].str.contains(_OFFSET_AT_END).fillna(False).to_numpy(dtype=bool)
    local = text.where(~named, found["rest"])
    values, ambiguous = _local(local, dayfirst)
    unknown = named & ~zone.isin(list(ZONE_OFFSETS)).to_numpy(dtype=bool)
    unknown &= values.notna().to_numpy()
    unknown |= text.str.contains(_SIGNED_ZONE, case=False).fillna(False).to_numpy(dtype=bool)
    minutes = zone.map(ZONE_OFFSETS).where(named & ~unknown, 0.0).astype("float64")
    values = values - pd.to_timedelta(minutes.to_numpy(), unit="min")
    values = values.where(~unknown)
    none = np.zeros(n, dtype=bool)
    return ParsedTimes(values, none, none, ambiguous, unknown)


def _local(text: pd.Series, dayfirst: bool | None) -> tuple[pd.Series, Mask]:
    """(UTC timestamps, numeric dates of unknown order) of cells without a zone name."""
    found = text.str.extract(_NUMERIC_DATE)
    numeric = found["a"].notna().to_numpy(dtype=bool)
    values = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
    ambiguous = numeric & (dayfirst is None)
    if numeric.any() and dayfirst is not None:
        values[numeric] = _numeric_dates(found.loc[numeric], dayfirst=dayfirst)
    other = ~numeric
    if other.any():
        values[other] = pd.to_datetime(text[other], utc=True, errors="coerce", format="mixed")
    return values, ambiguous


def _numeric_dates(parts: pd.DataFrame, *, dayfirst: bool) -> pd.Series:
    """d/m/y (or m/d/y) with an optional time, in the order given; an impossible day or month
    is NaT (never read in the other order)."""
    a, b = parts["a"].astype(int), parts["b"].astype(int)
    day, month = (a, b) if dayfirst else (b, a)
    year = parts["y"].astype(int)
    year = year.where(parts["y"].str.len() == 4, year + np.where(year < 69, 2000, 1900))
    iso = (
        year.astype(str).str.zfill(4)
        + "-"
        + month.astype(str).str.zfill(2)
        + "-"
        + day.astype(str).str.zfill(2)
        + parts["tail"].fillna("")
    )
    ok = (day.between(1, 31) & month.between(1, 12)).to_numpy(dtype=bool)
    out = pd.to_datetime(iso.where(ok), utc=True, errors="coerce", format="ISO8601")
    retry = out.isna().to_numpy() & ok
    if retry.any():  # a written time after the date ("10:00 PM"): the date is Y-M-D by now
        out[retry] = pd.to_datetime(iso[retry], utc=True, errors="coerce", format="mixed")
    return out


def date_order_evidence(col: pd.Series) -> tuple[bool, bool]:
    """(a numeric date that must be day-first, one that must be month-first) in a column."""
    if pd.api.types.is_datetime64_any_dtype(col.dtype) or pd.api.types.is_numeric_dtype(col.dtype):
        return False, False
    found = stripped_text(col).str.extract(_NUMERIC_DATE)
    if found["a"].isna().all():
        return False, False
    a, b = pd.to_numeric(found["a"]), pd.to_numeric(found["b"])
    return bool(((a > 12) & (b <= 12)).any()), bool(((b > 12) & (a <= 12)).any())


def file_date_order(columns: Iterable[pd.Series]) -> bool | None:
    """True: the file's numeric dates are day-first; False: month-first; None: the file does not
    say (no day above 12), or says both."""
    day_first = month_first = False
    for col in columns:
        d, m = date_order_evidence(col)
        day_first, month_first = day_first or d, month_first or m
    if day_first == month_first:
        return None
    return day_first
