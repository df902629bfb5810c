from __future__ import annotations

import pandas as pd
import pytest

from clv.errors import DataError
from training.split import max_feasible_embargo, temporal_split


def monthly(n: int, customers: tuple[str, ...] = ("a", "b", "c")) -> pd.DataFrame:
    times = pd.date_range("2024-01-01", periods=n, freq="MS", tz="UTC")
    rows = [(c, t) for t in times for c in customers]
    return pd.DataFrame(rows, columns=["customer_id", "event_timestamp"]).sample(
        frac=1.0, random_state=1
    )  # shuffled: the split must not rely on input order


def test_latest_snapshot_is_test_previous_is_validation_rest_train() -> None:
    s = temporal_split(monthly(6))
    assert s.test_times == (pd.Timestamp("2024-06-01", tz="UTC"),)
    assert s.validation_times == (pd.Timestamp("2024-05-01", tz="UTC"),)
    assert s.train_times[0] == pd.Timestamp("2024-01-01", tz="UTC")
    assert s.train_times[-1] == pd.Timestamp("2024-04-01", tz="UTC")
    assert (len(s.train), len(s.validation), len(s.test)) == (12, 3, 3)


def test_folds_are_disjoint_and_ordered_in_time() -> None:
    s = temporal_split(monthly(8), n_validation=2, n_train=3)
    assert len(s.validation_times) == 2 and len(s.train_times) == 3
    assert s.train["event_timestamp"].max() < s.validation["event_timestamp"].min()
    assert s.validation["event_timestamp"].max() < s.test["event_timestamp"].min()
    keys = [
        set(zip(f.customer_id, f.event_timestamp, strict=True))
        for f in (s.train, s.validation, s.test)
    ]
    assert not (keys[0] & keys[1]) and not (keys[1] & keys[2]) and not (keys[0] & keys[2])
    # every customer of a snapshot stays with its snapshot
    assert set(s.test["customer_id"]) == {"a", "b", "c"}


def test_embargo_keeps_label_windows_before_the_test_snapshot() -> None:
    s = temporal_split(monthly(8), embargo_days=60)
    test_t = pd.Timestamp("2024-08-01", tz="UTC")
    assert s.test_times == (test_t,)
    assert max(s.validation_times) <= test_t - pd.Timedelta(days=60)
    assert s.validation_times == (pd.Timestamp("2024-06-01", tz="UTC"),)
    assert pd.Timestamp("2024-07-01", tz="UTC") not in (*s.train_times, *s.validation_times)


def test_too_few_snapshots_is_a_data_error() -> None:
    with pytest.raises(DataError, match="at least 3"):
        temporal_split(monthly(2))
    with pytest.raises(DataError, match="embargo 365 days"):
        temporal_split(monthly(6), embargo_days=365)


def test_max_feasible_embargo_falls_back_to_zero() -> None:
    assert max_feasible_embargo(monthly(8), wanted_days=60) == 60
    assert max_feasible_embargo(monthly(8), wanted_days=365) == 0
