"""The memory a one-shot feature build would take, and how many customer buckets fit a budget.

The estimate comes from row counts (`clv.features.offline.memory_estimate`), not the data; the
build (`clv.features.build`) splits the customers into that many disjoint buckets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from clv.core.errors import ConfigError

MIB = 1024 * 1024

# Peak memory of a one-shot build per stored row, fitted to the peak RSS, minus the ~130 MiB of
# the interpreter and its imports, of `build_features(..., buckets=1)` with DuckDB free to use
# 16 GiB (duckdb 2.0, pyarrow 25; 2 threads):
#
#   world (rows: tx / events / customers -> feature rows)   measured   model   model / measured
#   synthetic_log 1M / 0 / 200k -> 1.29M                     1070 MiB   1405    1.31
#   synthetic_log 10M / 0 / 200k -> 1.29M                    1902 MiB   2435    1.28
#   synthetic_log 3M / 0 / 50k -> 0.32M                       742 MiB    667    0.90
#   synthetic_log 1M / 0 / 800k -> 5.18M                     3956 MiB   5280    1.33
#   generator 0.63M / 0 / 60k -> 0.63M                        758 MiB    693    0.91
#   generator 0.63M / 1.59M / 60k -> 0.63M                    866 MiB    875    1.01
#
# The differences give 97 B per transaction (1M -> 10M), 71 B per event (with and without
# events) and 740-780 B per feature row (1.29M -> 5.18M rows); customers and feature rows grow
# together in these worlds, so the customer-row cost is an assumption. The estimate counts
# feature rows as known customers x snapshots, an upper bound (1.9x the real rows of
# `synthetic_log`, whose sign-ups spread over the year), which covers what does not shrink
# with a bucket: with a 1024 MiB budget the 10M world builds in 4 buckets at 0.92 GiB peak RSS
# (benchmark `feature_build_chunked`), with 512 MiB in 7 at 0.65 GiB.
BYTES_PER_TRANSACTION = 120
"""Peak bytes per transaction row: DuckDB's scan of it and its share of the per-day aggregates."""
BYTES_PER_EVENT = 120
"""Peak bytes per event row (the shape of a transaction: id, ts, one short string)."""
BYTES_PER_CUSTOMER = 300
"""Peak bytes per customers-table row (id, signup, three strings, the join's hash entry)."""
BYTES_PER_FEATURE_ROW = 1000
"""Peak bytes per output row (known customer x snapshot): the grid, the aggregates joined
back, the Arrow result (~50 columns) and its sorted copy."""


@dataclass(frozen=True)
class MemoryEstimate:
    """What a one-shot build would hold at its peak, from row counts (not the data itself).

    Row counts come from the Parquet footers; `known_customers` is DuckDB's HyperLogLog count
    of the distinct ids in the transactions and customers tables (a streaming scan).

    bytes = transactions x BYTES_PER_TRANSACTION + events x BYTES_PER_EVENT
          + customers x BYTES_PER_CUSTOMER + feature_rows x BYTES_PER_FEATURE_ROW,
    feature_rows = known_customers x snapshots, an upper bound (a customer appears only in the
    snapshots after they became known).
    """

    transactions: int
    events: int
    customers: int
    known_customers: int
    snapshots: int

    @property
    def feature_rows(self) -> int:
        return self.known_customers * self.snapshots

    @property
    def bytes(self) -> int:
        return (
            self.transactions * BYTES_PER_TRANSACTION
            + self.events * BYTES_PER_EVENT
            + self.customers * BYTES_PER_CUSTOMER
            + self.feature_rows * BYTES_PER_FEATURE_ROW
        )

    @property
    def mb(self) -> float:
        return self.bytes / MIB

    def buckets(self, *, budget_mb: int) -> int:
        """How many customer buckets keep each one under the budget: ceil(estimate / budget)."""
        return plan_buckets(self.bytes, budget_mb=budget_mb)


def plan_buckets(estimate_bytes: int, *, budget_mb: int) -> int:
    """max(1, ceil(estimate / budget)): the fewest equal buckets that each fit the budget."""
    if budget_mb <= 0:
        raise ConfigError(f"compute.memory_budget_mb must be positive, got {budget_mb}")
    return max(1, math.ceil(estimate_bytes / (budget_mb * MIB)))
