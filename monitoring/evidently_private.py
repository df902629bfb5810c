"""Evidently's private API, in one place, used only on the Evidently versions it was verified
against: while clv's report runs, skip the widgets Evidently draws and then throws away.

A preset shows what its own `render` builds; the widgets of the metrics inside it are computed
(a Plotly figure each, most of a report's time) and dropped (`Report._run_items` keeps only the
container's). In the two presets clv runs that is:

- `ValueDrift`, one per column in `DataDriftPreset`: its drift-over-index and distribution
  figures (`ValueDriftCalculation._render`); the preset shows `DataDriftTable`'s instead;
- the column statistics in `DataSummaryPreset` (`MaxValue`, `MeanValue`, `StdValue`, three
  `QuantileValue`s): each draws the column's distribution again; `ValueStats` shows the one
  of `MinValue` only.

And `DataDriftPreset` computes every column's drift three times (`get_one_column_drift`): for
its `ValueDrift` metrics and for the legacy `DatasetDriftMetric` and `DataDriftTable` of its own
widgets, on the same frames. The table reads the legacy metric's results (same options); a
`ValueDrift`, which keeps only the score, method, threshold and verdict, reads them too when
its test and threshold resolve to the same (the legacy metric runs first: the preset's
`DriftedColumnsCount` asks for it).

Optionally (`index_charts=False`) the drift table's chart of a numerical column against the
row number is left out: the column's `scatter`, which the table's JSON never holds, is not
kept, so the table draws its distributions only (Evidently's own branch for a column without
one).

Their values and tests are computed as before. On a version not listed here the report runs
as Evidently ships it; the saved HTML and JSON are the same either way, but for the index
charts when they are left out (tests/unit/monitoring/test_evidently_private.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from clv.core.dependencies import dependency_version, unverified

VERIFIED = ("0.7.23",)
"""Evidently versions whose report internals the skipped widgets were checked against."""


def unavailable() -> str | None:
    """None when the widgets may be skipped (a verified Evidently), else why not."""
    return unverified(
        "evidently",
        dependency_version("evidently"),
        VERIFIED,
        public="the report draws every widget",
        logger=__name__,
    )


@contextlib.contextmanager
def unshown_widgets_skipped(*, enabled: bool = True, index_charts: bool = True) -> Iterator[None]:
    """While the block runs a report of `DataDriftPreset` / `DataSummaryPreset` only, the
    widgets those presets never show are not drawn, each column's drift is computed once and
    (`index_charts=False`) no column is charted against the row number (a no-op off the
    verified versions)."""
    if not enabled or unavailable() is not None:
        yield
        return
    from evidently.legacy.calculations import data_drift
    from evidently.metrics import column_statistics as stats

    once = _DriftOnce(
        data_drift.get_one_column_drift, stats.get_one_column_drift, index_charts=index_charts
    )
    saved = (
        stats.ValueDriftCalculation._render,
        stats.StatisticsCalculation.calculate,
        data_drift.get_one_column_drift,
        stats.get_one_column_drift,
    )
    statistics_calculate = stats.StatisticsCalculation.calculate

    def calculate(self: Any, context: Any, current: Any, reference: Any) -> Any:
        if isinstance(self.metric, stats.MinValue):  # ValueStats shows this one's figure
            return statistics_calculate(self, context, current, reference)
        drawn = stats.distribution
        stats.distribution = lambda *args, **kwargs: []
        try:
            return statistics_calculate(self, context, current, reference)
        finally:
            stats.distribution = drawn

    stats.ValueDriftCalculation._render = lambda self, *args, **kwargs: []
    stats.StatisticsCalculation.calculate = calculate
    data_drift.get_one_column_drift = once.table
    stats.get_one_column_drift = once.value_drift
    try:
        yield
    finally:
        (
            stats.ValueDriftCalculation._render,
            stats.StatisticsCalculation.calculate,
            data_drift.get_one_column_drift,
            stats.get_one_column_drift,
        ) = saved


class _DriftOnce:
    """`get_one_column_drift` once per column and options for the legacy metrics (`table`), and
    their result for a `ValueDrift` whose test and threshold resolve to the same
    (`value_drift`). Results are keyed by the report's frames, alive while it runs."""

    def __init__(self, table: Any, value_drift: Any, *, index_charts: bool) -> None:
        self._table, self._value_drift = table, value_drift
        self._index_charts = index_charts
        self._computed: dict[tuple[object, ...], Any] = {}
        self._by_column: dict[tuple[object, ...], tuple[Any, Any]] = {}

    @staticmethod
    def _column(kwargs: Mapping[str, Any]) -> tuple[object, ...]:
        return (
            id(kwargs["current_data"]),
            id(kwargs["reference_data"]),
            kwargs["column_name"],
            kwargs["column_type"],
            kwargs["agg_data"],
        )

    def table(self, **kwargs: Any) -> Any:
        # The correlations and NaN flags are `get_drift_for_columns`' of the same frames.
        column = self._column(kwargs)
        key = (*column, repr(kwargs["options"]), repr(kwargs["dataset_columns"]))
        if key not in self._computed:
            result = self._table(**kwargs)
            if not self._index_charts and getattr(result, "scatter", None) is not None:
                result.scatter = None  # never in the JSON (dict_exclude_fields)
            self._computed[key] = result
            self._by_column[column] = (kwargs["options"], self._computed[key])
        return self._computed[key]

    def value_drift(self, **kwargs: Any) -> Any:
        found = self._by_column.get(self._column(kwargs))
        if found is not None:
            theirs, result = found
            mine, name = kwargs["options"], kwargs["column_name"]
            kind = kwargs["column_type"].value
            same = mine.get_feature_stattest_func(name, kind) == theirs.get_feature_stattest_func(
                name, kind
            ) and mine.get_threshold(name, kind) == theirs.get_threshold(name, kind)
            if same:
                return result
        return self._value_drift(**kwargs)
