"""Time: every timestamp clv handles is UTC; this module turns dates and strings into UTC
timestamps (naive values are taken to be UTC), for frames and for the command line."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd

from clv.core.contracts import TS_DTYPE
from clv.core.errors import DataError

DateLike = date | datetime | str


def utc(value: object) -> pd.Timestamp:
    """`pd.Timestamp(value)` in UTC; raises ValueError or TypeError when it is not a time."""
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def to_utc(value: DateLike) -> pd.Timestamp:
    """A date, datetime or ISO string as a UTC timestamp; a DataError that says what to write."""
    try:
        return utc(value)
    except (ValueError, TypeError) as exc:
        raise DataError(f"not a date: {value!r} (use YYYY-MM-DD)") from exc


def parse_as_of(text: str) -> pd.Timestamp:
    """`--as-of` from the command line, as a UTC timestamp."""
    try:
        return utc(text)
    except (ValueError, TypeError) as exc:
        raise DataError(f"--as-of {text!r} is not a date (use YYYY-MM-DD)") from exc


def utc_series(values: pd.Series) -> pd.Series:
    """Timestamps as `datetime64[us, UTC]`; naive values are taken to be UTC."""
    if values.dtype == TS_DTYPE:
        return values  # already: no copy
    ts = pd.to_datetime(values)
    if ts.dt.tz is None:
        ts = ts.dt.tz_localize("UTC")
    return ts.dt.tz_convert("UTC").astype(TS_DTYPE)
