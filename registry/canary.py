"""Canary routing and judgement: pure functions.

`route` sends a deterministic share of customers to the canary by a stable hash of the customer
id (BLAKE2b, not Python's salted `hash()`), so a customer sees the same model on every request,
in every process, and in batch scoring. `judge_canary` compares the canary with the champion on
live traffic (error rate, p95 latency ratio, PSI of CLV predictions) and says whether to wait,
keep going, or roll back.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from clv.core.contracts import CANARY, CHAMPION, Route
from clv.evaluation.psi import N_BINS, numeric_psi

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


def psi(expected: npt.ArrayLike, actual: npt.ArrayLike, *, bins: int = N_BINS) -> float:
    """Population stability index of `actual` against `expected`: the monitoring rule
    (clv.evaluation.psi: decile bins of `expected`, a missing value in a bin of its own, shares
    floored so an empty bin does not give infinity); nan when either side is empty."""
    return numeric_psi("prediction", pd.Series(expected), pd.Series(actual), bins=bins).psi


@dataclass(frozen=True)
class AliasStats:
    """Live traffic of one alias since its version started serving."""

    version: str
    requests: int
    errors: int
    latency_p95_ms: float
    predictions: tuple[float, ...] = ()
    """A recent sample of CLV predictions."""

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


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
    and PSI need `min_requests` on the canary first, as noisy small samples would flap.
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
    ratio = (
        canary.latency_p95_ms / champion.latency_p95_ms
        if champion.latency_p95_ms > 0
        else (1.0 if canary.latency_p95_ms <= 0 else math.inf)
    )
    lat = CanaryCheck("latency_p95_ratio", ratio, g.max_latency_ratio, ratio > g.max_latency_ratio)
    drift = psi(champion.predictions, canary.predictions)
    psi_check = CanaryCheck(
        "prediction_psi", drift, g.max_psi, bool(math.isfinite(drift) and drift > g.max_psi)
    )
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
