"""The snapshot calendar: UTC instants every `features.snapshot_every` over the log's span.

Snapshot instants are UTC midnights; month spacing is aligned to the first day of a month. By
default from the first month after the log starts to the first calendar point after the last
transaction, so the last snapshot sees the whole log (the rules: `clv.features.build`).
"""

from __future__ import annotations

import re

import pandas as pd

from clv.core.errors import ConfigError
from clv.core.time import DateLike, to_utc

_EVERY = re.compile(r"^\s*(\d+)\s*([dwM])\s*$")


def parse_every(every: str) -> tuple[int, str]:
    """'3M' -> (3, 'M'); units d (days), w (weeks), M (months)."""
    m = _EVERY.match(every)
    if m is None or int(m.group(1)) <= 0:
        raise ConfigError(f"snapshot spacing {every!r}: use Nd, Nw or NM with N > 0 (e.g. 1M)")
    return int(m.group(1)), m.group(2)


def _step(n: int, unit: str, k: int) -> pd.DateOffset | pd.Timedelta:
    if unit == "M":
        return pd.DateOffset(months=n * k)
    return pd.Timedelta(days=n * k * (7 if unit == "w" else 1))


def snapshot_dates(
    first: DateLike,
    last: DateLike,
    *,
    every: str = "1M",
    start: DateLike | None = None,
    end: DateLike | None = None,
) -> list[pd.Timestamp]:
    """Snapshot instants (UTC midnights) for a log spanning [first, last].

    Default start: the first day of the month after `first`. Month spacing starts on the first
    day of a month (a given `start` is moved forward to one). Default end: the first calendar
    point strictly after `last`, so the last snapshot sees the whole log; a given `end` is
    inclusive.
    """
    n, unit = parse_every(every)
    if start is None:
        anchor = to_utc(first).floor("D").replace(day=1) + pd.DateOffset(months=1)
    else:
        anchor = to_utc(start).ceil("D")
        if unit == "M" and anchor.day != 1:
            anchor = anchor.replace(day=1) + pd.DateOffset(months=1)
    last_ts = to_utc(last)
    stop = to_utc(end).floor("D") if end is not None else None
    dates: list[pd.Timestamp] = []
    k = 0
    while True:
        t = anchor + _step(n, unit, k)
        if stop is not None and t > stop:
            break
        dates.append(t)
        if stop is None and t > last_ts:
            break
        k += 1
    return dates
