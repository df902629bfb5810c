"""Time: every timestamp clv handles is UTC; this module turns dates and strings into UTC
timestamps (naive values are taken to be UTC), for frames and for the command line."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import numpy.typing as npt
import pandas as pd

from clv.core.contracts import TS_DTYPE
from clv.core.errors import DataError

DateLike = date | datetime | str
MONTH_DAYS = 30.4375
"""Days in an average month: fractional months of tenure, to a renewal."""


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


def months_of(delta: pd.Series) -> npt.NDArray[np.float64]:
    """Timedeltas in average months (MONTH_DAYS)."""
    return np.asarray(delta.dt.total_seconds().to_numpy() / (86_400.0 * MONTH_DAYS), np.float64)


def add_months(ts: pd.Series, months: npt.ArrayLike) -> pd.Series:
    """`ts` (UTC) plus whole calendar months, the day clamped to the month's last
    (pd.DateOffset's rule, a billing grid's), time of day kept; vectorized, months one per row
    or a scalar."""
    v = ts.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    add = np.broadcast_to(np.asarray(months, dtype=np.int64), v.shape)
    day = v.astype("datetime64[D]")
    month = v.astype("datetime64[M]")
    dom = (day - month.astype("datetime64[D]")).astype(np.int64)
    tod = v - day.astype("datetime64[us]")
    target = month + add.astype("timedelta64[M]")
    first = target.astype("datetime64[D]")
    length = ((target + np.timedelta64(1, "M")).astype("datetime64[D]") - first).astype(np.int64)
    out = (first + np.minimum(dom, length - 1).astype("timedelta64[D]")).astype(
        "datetime64[us]"
    ) + tod
    return pd.Series(out, index=ts.index).dt.tz_localize("UTC")
