"""Temporal split over snapshot dates: whole snapshots go to train, validation or test.

Test is the latest snapshot, validation the one(s) before, train the earlier ones. Rows are
assigned by their snapshot time only, never at random, so a customer's row at one snapshot is
never separated from the other customers' rows at that snapshot.

Label windows overlap: a train row at t - 1 month has a label covering 11 of the 12 months of the
test row at t for the same customer, whose features are nearly the same. With `embargo_days`
set (training uses the label horizon), train and validation keep only snapshots whose label
window closes by the test snapshot (t + embargo <= t_test): the test score is then an honest
backtest of a model trained with what was known at t_test.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from clv.errors import DataError


@dataclass(frozen=True)
class TemporalSplit:
    """Three disjoint frames and the snapshot times each holds (ascending)."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    train_times: tuple[pd.Timestamp, ...]
    validation_times: tuple[pd.Timestamp, ...]
    test_times: tuple[pd.Timestamp, ...]
    embargo_days: int

    def summary(self) -> dict[str, object]:
        return {
            "train_rows": len(self.train),
            "validation_rows": len(self.validation),
            "test_rows": len(self.test),
            "train_start": self.train_times[0].isoformat(),
            "train_end": self.train_times[-1].isoformat(),
            "validation_times": [t.isoformat() for t in self.validation_times],
            "test_times": [t.isoformat() for t in self.test_times],
            "embargo_days": self.embargo_days,
        }


def temporal_split(
    frame: pd.DataFrame,
    *,
    n_test: int = 1,
    n_validation: int = 1,
    n_train: int | None = None,
    embargo_days: int = 0,
    time_column: str = "event_timestamp",
) -> TemporalSplit:
    """Split rows by snapshot time; `n_train=None` keeps every eligible earlier snapshot."""
    if n_test < 1 or n_validation < 1 or (n_train is not None and n_train < 1):
        raise ValueError("n_test, n_validation and n_train must be at least 1")
    times = sorted(pd.Timestamp(t) for t in frame[time_column].unique())
    if len(times) < n_test + n_validation + 1:
        raise DataError(
            f"{len(times)} complete snapshot(s); training needs at least "
            f"{n_test + n_validation + 1}: build features over a longer period"
        )
    test_times = times[-n_test:]
    cutoff = test_times[0] - pd.Timedelta(days=embargo_days)
    earlier = [t for t in times[:-n_test] if t <= cutoff]
    if len(earlier) < n_validation + 1:
        raise DataError(
            f"only {len(earlier)} snapshot(s) end their label window by the test snapshot "
            f"{test_times[0].date()} (embargo {embargo_days} days); need {n_validation + 1}"
        )
    validation_times = earlier[-n_validation:]
    train_times = earlier[:-n_validation]
    if n_train is not None:
        train_times = train_times[-n_train:]

    ts = frame[time_column]

    def rows(chosen: list[pd.Timestamp]) -> pd.DataFrame:
        return frame.loc[ts.isin(chosen)].reset_index(drop=True)

    return TemporalSplit(
        train=rows(train_times),
        validation=rows(validation_times),
        test=rows(test_times),
        train_times=tuple(train_times),
        validation_times=tuple(validation_times),
        test_times=tuple(test_times),
        embargo_days=embargo_days,
    )


def max_feasible_embargo(
    frame: pd.DataFrame,
    *,
    wanted_days: int,
    n_test: int = 1,
    n_validation: int = 1,
    time_column: str = "event_timestamp",
) -> int:
    """`wanted_days` when enough snapshots precede the test by that much, else 0."""
    times = sorted(pd.Timestamp(t) for t in frame[time_column].unique())
    if len(times) < n_test + n_validation + 1:
        return 0
    cutoff = times[-n_test] - pd.Timedelta(days=wanted_days)
    eligible = [t for t in times[:-n_test] if t <= cutoff]
    return wanted_days if len(eligible) >= n_validation + 1 else 0
