"""A feature build is the same to the last bit every time (issue 14: the seeded demo was not).

300,000 transactions span several Parquet row groups, so DuckDB would run the feature query on
several threads if it were allowed to; its parallel aggregation then adds partial float sums in
whatever order the threads finish. With two threads, two builds of this log differed (measured
2026-12-02); the build runs the query on one thread (clv.features.query.feature_connection).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from benchmarks.features import synthetic_log
from clv.core.settings import load_settings
from clv.features.build import build_features
from clv.features.snapshots import require_features


@pytest.mark.slow
def test_two_builds_of_one_log_are_identical_in_order_and_value(tmp_path: Path) -> None:
    built = []
    for name in ("first", "second"):
        settings = load_settings(tmp_path / name, environ={})
        settings.ensure_dirs()
        synthetic_log(settings, customers=20_000, transactions=300_000)
        build_features(settings)
        frame = pd.read_parquet(require_features(settings))
        built.append(frame.drop(columns=["created_timestamp"]))  # when it was built
    first, second = built
    assert len(first) > 100_000
    pd.testing.assert_frame_equal(first, second, check_exact=True)
