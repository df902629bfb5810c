"""Canary routing and judgement: pure functions.

`route` sends a deterministic share of customers to the canary by a stable hash of the customer
id (BLAKE2b, not Python's salted `hash()`), so a customer sees the same model on every request,
in every process, and in batch scoring. `judge_canary` compares the canary with the champion on
live traffic (error rate, p95 latency ratio, PSI of CLV predictions over fixed bins, every
replica's counts added) and says whether to wait, keep going, or roll back.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from clv.core.contracts import CANARY, CHAMPION, Route
from clv.core.telemetry import Buckets, bin_counts, histogram_quantile
from clv.evaluation.psi import noise_bound, psi_from_shares

Action = Literal["wait", "healthy", "rollback"]
_SCALE = float(2**64)


def bucket(customer_id: str, salt: str) -> float:
    """A stable number in [0, 1) for a customer: BLAKE2b-64 of `salt:customer_id`."""
    digest = hashlib.blake2b(f"{salt}:{customer_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def route(customer_id: str, share: float, salt: str) -> Route:
    """ "canary" for a `share` of customers (stable per id and salt), else "champion"."""
    if share <= 0.0:
        return CHAMPION
    return CANARY if bucket(customer_id, salt) < share else CHAMPION


def route_many(customer_ids: Sequence[str], share: float, salt: str) -> npt.NDArray[np.bool_]:
    """True where `route` says canary (the batch form; same answers)."""
    if share <= 0.0:
        return np.zeros(len(customer_ids), dtype=bool)
    return np.fromiter(
        (bucket(c, salt) < share for c in customer_ids), dtype=bool, count=len(customer_ids)
    )


@dataclass(frozen=True)
class AliasStats:
    """Live traffic of one alias's version since it started serving, summed over replicas:
    counters and the cumulative buckets of the `clv.core.telemetry` histograms."""

    version: str
    requests: int
    errors: int
    latency: Buckets = ()
    """/score latency in seconds (`telemetry.LATENCY_BUCKETS`)."""
    predictions: Buckets = ()
    """CLV predictions of known customers (`telemetry.PREDICTION_BUCKETS`)."""

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def latency_p95_ms(self) -> float:
        """The p95 latency (Prometheus's `histogram_quantile` rule); nan without requests."""
        return histogram_quantile(0.95, self.latency) * 1000.0

    @property
    def predicted(self) -> int:
        """Predictions in the histogram."""
        return int(self.predictions[-1][1]) if self.predictions else 0


def psi(expected: AliasStats, actual: AliasStats) -> float:
    """PSI of `actual`'s CLV predictions against `expected`'s over the fixed prediction bins
    (clv.evaluation.psi's rule: empty bins floored); nan when either has none."""
    if not expected.predicted or not actual.predicted:
        return math.nan
    e, a = bin_counts(expected.predictions), bin_counts(actual.predictions)
    if e.size != a.size:
        return math.nan
    return psi_from_shares(e / e.sum(), a / a.sum())


def psi_noise(expected: AliasStats, actual: AliasStats) -> float:
    """The PSI that sampling noise alone stays under for these two samples' sizes, over the
    bins either fills (clv.evaluation.psi.noise_bound, the monitoring rule)."""
    if not expected.predicted or not actual.predicted:
        return math.inf
    filled = int(((bin_counts(expected.predictions) + bin_counts(actual.predictions)) > 0).sum())
    return noise_bound(filled, expected.predicted, actual.predicted)


@dataclass(frozen=True)
class CanaryGuardrails:
    max_error_rate: float
    max_latency_ratio: float
    max_psi: float
    min_requests: int


@dataclass(frozen=True)
class CanaryCheck:
    name: str
    value: float
    limit: float
    breached: bool


@dataclass(frozen=True)
class CanaryVerdict:
    action: Action
    reason: str
    checks: tuple[CanaryCheck, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "action": self.action,
            "reason": self.reason,
            "checks": [
                {"name": c.name, "value": c.value, "limit": c.limit, "breached": c.breached}
                for c in self.checks
            ],
        }


def judge_canary(
    champion: AliasStats, canary: AliasStats, *, guardrails: CanaryGuardrails
) -> CanaryVerdict:
    """Roll back when a guardrail is breached; wait until the canary has enough traffic.

    An error-rate breach is judged at once (errors are never acceptable in volume); latency
    and PSI need `min_requests` on the canary first, as noisy small samples would flap. A PSI
    over `max_psi` counts only above what sampling noise alone gives for the two samples'
    sizes (`psi_noise`), as in the drift monitor: two random halves of the customers scored by
    one model differ by about (bins - 1) x (1/n1 + 1/n2), 0.15 at 200 predictions a side.
    """
    g = guardrails
    err = CanaryCheck(
        "error_rate", canary.error_rate, g.max_error_rate, canary.error_rate > g.max_error_rate
    )
    enough = canary.requests >= g.min_requests
    if err.breached and canary.errors >= 5:
        return CanaryVerdict(
            "rollback",
            f"canary v{canary.version} error rate {canary.error_rate:.2%} > "
            f"{g.max_error_rate:.2%} ({canary.errors}/{canary.requests})",
            (err,),
        )
    if not enough:
        return CanaryVerdict(
            "wait",
            f"canary v{canary.version} has {canary.requests} of {g.min_requests} requests",
            (err,),
        )
    ratio = latency_ratio(champion, canary)
    lat = CanaryCheck("latency_p95_ratio", ratio, g.max_latency_ratio, ratio > g.max_latency_ratio)
    drift = psi(champion, canary)
    shifted = math.isfinite(drift) and drift > g.max_psi and drift > psi_noise(champion, canary)
    psi_check = CanaryCheck("prediction_psi", drift, g.max_psi, shifted)
    checks = (err, lat, psi_check)
    breached = [c for c in checks if c.breached]
    if breached:
        what = "; ".join(f"{c.name} {c.value:.3g} > {c.limit:.3g}" for c in breached)
        return CanaryVerdict("rollback", f"canary v{canary.version} breached: {what}", checks)
    return CanaryVerdict(
        "healthy",
        f"canary v{canary.version} within guardrails after {canary.requests} requests "
        f"(errors {canary.error_rate:.2%}, p95 ratio {ratio:.2f}, psi {drift:.3f})",
        checks,
    )


def latency_ratio(champion: AliasStats, canary: AliasStats) -> float:
    """Canary p95 / champion p95 (1 when neither has a latency, inf when only the champion
    has none)."""
    mine, theirs = canary.latency_p95_ms, champion.latency_p95_ms
    if math.isfinite(theirs) and theirs > 0:
        return mine / theirs if math.isfinite(mine) else 1.0
    return 1.0 if not (math.isfinite(mine) and mine > 0) else math.inf
