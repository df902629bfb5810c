"""The serving telemetry contract: the Prometheus metrics every `clv serve` replica exposes, and
the histogram arithmetic the canary judge applies to them.

The server (`clv.serving.metrics`) writes these series; the judge (`clv registry status`,
`clv.registry.live`) reads them back, either summed over every replica by PromQL from a
Prometheus server (`registry.prometheus_url`) or from the one local server's live-stats file.
Both read the same numbers: per alias and version, the request and error counters and the
cumulative buckets of the latency and prediction histograms since that version started serving
in each replica. The deploy/ folder's alert rules and dashboard use the same names.

Quantiles follow Prometheus's `histogram_quantile`: linear interpolation inside the bucket that
holds the rank, the lowest bucket starting at 0, and the last finite bound when the rank falls in
the +Inf bucket.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

REQUESTS: Final = "clv_requests_total"
"""Counter {alias, version}: /score requests (or their part) scored by that alias."""
ERRORS: Final = "clv_request_errors_total"
"""Counter {alias, version}: failed scoring (a failing canary falls back to the champion)."""
CUSTOMERS: Final = "clv_scored_customers_total"
COLD_START: Final = "clv_cold_start_total"
LATENCY: Final = "clv_request_duration_seconds"
"""Histogram {alias, version, tier}: /score latency."""
RESPONSES: Final = "clv_score_responses_total"
"""Counter {code}: every /score answer by HTTP status code."""
FEATURE_AGE: Final = "clv_feature_age_seconds"
FEATURE_MAX_AGE: Final = "clv_feature_max_age_seconds"
PREDICTIONS: Final = "clv_prediction_clv"
"""Histogram {alias, version}: CLV predictions of known customers (the canary's PSI)."""
MODEL_AGE: Final = "clv_model_age_seconds"
LAST_BATCH: Final = "clv_last_batch_scoring_timestamp_seconds"
BATCH_COVERAGE: Final = "clv_batch_scoring_coverage_ratio"
CANARY_SHARE: Final = "clv_canary_share"
CANARY_SHADOW: Final = "clv_canary_shadow"
MODEL_INFO: Final = "clv_model_info"
STORE_READY: Final = "clv_online_store_ready"

METRICS: Final = (
    REQUESTS,
    ERRORS,
    CUSTOMERS,
    COLD_START,
    LATENCY,
    RESPONSES,
    FEATURE_AGE,
    FEATURE_MAX_AGE,
    PREDICTIONS,
    MODEL_AGE,
    LAST_BATCH,
    BATCH_COVERAGE,
    CANARY_SHARE,
    CANARY_SHADOW,
    MODEL_INFO,
    STORE_READY,
)
"""Every metric a replica exposes (the deploy/ rules and dashboard may read only these)."""
HISTOGRAMS: Final = (LATENCY, FEATURE_AGE, PREDICTIONS)

LATENCY_BUCKETS: Final = (
    0.00025,
    0.0005,
    0.00075,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
"""Seconds; fine around the serving target (p50 1 ms, p99 3 ms), so that a p95 ratio of 1.5
is resolved rather than rounded to the next bound."""
PREDICTION_BUCKETS: Final = (
    1.0,
    2.0,
    5.0,
    10.0,
    20.0,
    50.0,
    100.0,
    200.0,
    500.0,
    1000.0,
    2000.0,
    5000.0,
    10000.0,
    20000.0,
    50000.0,
)
"""CLV in the log's currency: 1-2-5 steps over five decades, 16 bins with +Inf: the canary's
PSI bins (fixed, so that every replica's counts add up)."""
FEATURE_AGE_BUCKETS: Final = (
    3600.0,
    21600.0,
    43200.0,
    86400.0,
    172800.0,
    259200.0,
    604800.0,
    1209600.0,
    2592000.0,
    7776000.0,
)
"""Seconds: 1 h, 6 h, 12 h, 1 d, 2 d, 3 d, 1 w, 2 w, 30 d, 90 d."""

TIERS: Final = ("low value", "mid value", "high value", "unknown")
MIXED_TIER: Final = "mixed"
"""The tier of a request whose customers fall in different value tiers."""

Buckets = tuple[tuple[float, float], ...]
"""A histogram as (upper bound, cumulative count) pairs, ascending, +Inf last."""


def bucket_pairs(bounds: Sequence[float], cumulative: Sequence[float]) -> Buckets:
    """(bound, cumulative count) pairs for `bounds` plus +Inf."""
    edges = (*bounds, math.inf)
    if len(edges) != len(cumulative):
        raise ValueError(f"{len(cumulative)} counts for {len(edges)} buckets")
    return tuple((float(b), float(c)) for b, c in zip(edges, cumulative, strict=True))


def histogram_quantile(q: float, buckets: Buckets) -> float:
    """Prometheus's `histogram_quantile(q, ...)` of one histogram; nan without observations."""
    if not buckets or not math.isinf(buckets[-1][0]):
        return math.nan
    total = buckets[-1][1]
    if total <= 0:
        return math.nan
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound if len(buckets) > 1 else math.nan
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def bin_counts(buckets: Buckets) -> npt.NDArray[np.float64]:
    """Per-bin counts (not cumulative) of a histogram, +Inf bin last."""
    cumulative = np.array([c for _, c in buckets], dtype=np.float64)
    return np.diff(cumulative, prepend=0.0) if cumulative.size else cumulative


def add_buckets(a: Buckets, b: Buckets) -> Buckets:
    """Two histograms over the same bounds, added (two replicas' series)."""
    if not a:
        return b
    if not b:
        return a
    if [x for x, _ in a] != [x for x, _ in b]:
        raise ValueError("histograms with different bounds cannot be added")
    return tuple((bound, ca + cb) for (bound, ca), (_, cb) in zip(a, b, strict=True))
