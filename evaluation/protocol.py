"""The evaluation protocol: rolling origins, what a recipe may see at an origin, the embargo.

An origin O is an instant at which the recipe (tuning, boosters, calibration, interval
scales, the frozen baseline parameters and level) is fitted as it would have been in
production on that day. What it may use is `known_at(frame, O)`: the snapshots whose label
windows close by O, with the labels that O could see (a CLV label needs t + horizon <= O, a
churn label t + churn window <= O; the others are masked).

Inside that, `split_at` takes the validation snapshot t_v as the latest with a complete CLV
label, and train as the snapshots whose label windows close by t_v (t + horizon <= t_v): an
embargo of one horizon between train and validation, as between validation and the test
origin. The version's test is the latest snapshot with a complete label window, T0 = the
test origin; up to K earlier origins, `origin_spacing_days` apart, are backtests; the
registered model is the same recipe fitted at the end of the log.

When the history is too short, nothing falls back silently: `split_at` then drops the
train-validation embargo, or (history shorter than two horizons) fits on snapshots before O
whose labels overlap the test window, and says so in `RecipeSplit.embargoed` / `.reason`.
Backtest origins are kept only when they are embargoed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from clv.core.errors import DataError

TIME = "event_timestamp"


def _times(frame: pd.DataFrame, column: str = "clv_label") -> list[pd.Timestamp]:
    """Snapshot times with at least one non-null `column`, ascending."""
    rows = frame.loc[frame[column].notna(), TIME]
    return sorted(pd.Timestamp(t) for t in rows.unique())


def known_at(
    frame: pd.DataFrame, origin: pd.Timestamp, *, horizon_days: int, churn_window_days: int
) -> pd.DataFrame:
    """The rows a recipe fitted at `origin` may use, with only the labels known by then."""
    t = frame[TIME]
    value_known = (t + pd.Timedelta(days=horizon_days) <= origin) & frame["clv_label"].notna()
    churn_known = (t + pd.Timedelta(days=churn_window_days) <= origin) & frame[
        "churn_label"
    ].notna()
    keep = value_known | churn_known
    out = frame.loc[keep].reset_index(drop=True)
    out["clv_label"] = out["clv_label"].where(value_known[keep].to_numpy(), np.nan)
    out["churn_label"] = out["churn_label"].where(churn_known[keep].to_numpy(), np.nan)
    return out


@dataclass(frozen=True)
class RecipeSplit:
    """What a recipe fitted at `origin` sees: train and validation (CLV-complete rows), and
    `known` (every row with a label known at the origin: what the final boosters fit on)."""

    origin: pd.Timestamp
    train: pd.DataFrame
    validation: pd.DataFrame
    known: pd.DataFrame
    train_times: tuple[pd.Timestamp, ...]
    validation_time: pd.Timestamp
    embargo_days: int
    embargoed: bool
    reason: str

    @property
    def anchor_time(self) -> pd.Timestamp:
        """The latest snapshot of `known`: where the frozen baseline parameters and the level
        are fitted (features only, no label)."""
        return pd.Timestamp(self.known[TIME].max())

    @property
    def anchor(self) -> pd.DataFrame:
        return self.known.loc[self.known[TIME] == self.anchor_time].reset_index(drop=True)

    def summary(self) -> dict[str, object]:
        return {
            "origin": self.origin.isoformat(),
            "train_rows": len(self.train),
            "validation_rows": len(self.validation),
            "known_rows": len(self.known),
            "train_start": self.train_times[0].isoformat(),
            "train_end": self.train_times[-1].isoformat(),
            "validation_time": self.validation_time.isoformat(),
            "anchor_time": self.anchor_time.isoformat(),
            "embargo_days": self.embargo_days,
            "embargoed": self.embargoed,
            "reason": self.reason,
        }


def split_at(
    frame: pd.DataFrame,
    origin: pd.Timestamp,
    *,
    horizon_days: int,
    churn_window_days: int,
) -> RecipeSplit:
    """The recipe's rows at `origin` (module docstring); DataError when not even an
    unembargoed fit is possible (fewer than two snapshots with a CLV label)."""
    known = known_at(frame, origin, horizon_days=horizon_days, churn_window_days=churn_window_days)
    horizon = pd.Timedelta(days=horizon_days)
    complete = _times(known)
    reason = f"train and validation label windows close {horizon_days} days apart"
    overlapping = len(complete) < 2
    if overlapping:
        # Too short for labels that close by the origin: fit on earlier snapshots whose label
        # windows reach past it (what the old protocol did silently).
        known = frame.loc[frame[TIME] < origin].reset_index(drop=True)
        complete = _times(known)
        reason = (
            f"history too short for a {horizon_days}-day embargo: the fitting rows' labels "
            f"overlap the window after {origin.date()}"
        )
        if len(complete) < 2:
            raise DataError(
                f"{len(complete)} snapshot(s) with a complete {horizon_days}-day label before "
                f"{origin.date()}; training needs at least 2: build features over a longer "
                "period or shorten model.horizon_days"
            )
    t_v = complete[-1]
    train_times = [t for t in complete if t + horizon <= t_v]
    embargoed = bool(train_times) and not overlapping
    if not embargoed and not overlapping:
        reason = (
            f"history too short for a {horizon_days}-day embargo between train and validation: "
            f"train label windows overlap validation's ({t_v.date()})"
        )
    if not embargoed:
        train_times = complete[:-1]
    value_rows = known.loc[known["clv_label"].notna()]
    ts = value_rows[TIME]
    return RecipeSplit(
        origin=origin,
        train=value_rows.loc[ts.isin(train_times)].reset_index(drop=True),
        validation=value_rows.loc[ts == t_v].reset_index(drop=True),
        known=known,
        train_times=tuple(train_times),
        validation_time=t_v,
        embargo_days=horizon_days if embargoed else 0,
        embargoed=embargoed,
        reason=reason,
    )


@dataclass(frozen=True)
class Origins:
    """The test origin, the embargoed backtest origins (newest first) and what was dropped."""

    test: pd.Timestamp
    backtests: tuple[pd.Timestamp, ...]
    wanted_backtests: int
    embargoed: bool
    reason: str

    @property
    def all(self) -> tuple[pd.Timestamp, ...]:
        return (self.test, *self.backtests)

    def describe(self) -> str:
        head = f"test origin {self.test.date()}"
        if self.backtests:
            dates = ", ".join(str(t.date()) for t in self.backtests)
            head += f"; backtests {dates}"
        if len(self.backtests) < self.wanted_backtests:
            head += (
                f" ({len(self.backtests)} of {self.wanted_backtests}: earlier origins lack an "
                "embargoed history)"
            )
        return head if self.embargoed else f"{head}; NOT EMBARGOED: {self.reason}"


def _embargoed_at(
    complete: list[pd.Timestamp], origin: pd.Timestamp, horizon: pd.Timedelta
) -> bool:
    """Does `origin` have a validation snapshot and a train snapshot, one horizon apart each?"""
    before = [t for t in complete if t + horizon <= origin]
    return bool(before) and any(t + horizon <= before[-1] for t in before)


def evaluation_origins(
    frame: pd.DataFrame,
    *,
    horizon_days: int,
    backtests: int,
    spacing_days: int,
) -> Origins:
    """T0 = the latest snapshot with a complete CLV label; backtests at the latest complete
    snapshot at or before T0 - k x spacing, k = 1..`backtests`, when embargoed there."""
    complete = _times(frame)
    if not complete:
        raise DataError("no snapshot has a complete label window: build a longer history")
    horizon = pd.Timedelta(days=horizon_days)
    test = complete[-1]
    embargoed = _embargoed_at(complete, test, horizon)
    chosen: list[pd.Timestamp] = []
    for k in range(1, backtests + 1):
        target = test - pd.Timedelta(days=k * spacing_days)
        earlier = [t for t in complete if t <= target and t not in chosen]
        if earlier and _embargoed_at(complete, earlier[-1], horizon):
            chosen.append(earlier[-1])
    reason = (
        "every origin's train, validation and test label windows are disjoint"
        if embargoed
        else f"fewer than three {horizon_days}-day windows of labelled history before "
        f"{test.date()}: train, validation and test labels overlap"
    )
    return Origins(test, tuple(chosen), backtests, embargoed, reason)
