"""The canary on live traffic: the server's per-alias stats file, and the verdict on it.

The server (`clv.serving`) writes the live-stats file (clv.core.live_stats); `judge_live` calls the
pure `clv.registry.canary.judge_canary` when those stats describe the current canary.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from clv.core.contracts import CANARY, CHAMPION
from clv.core.live_stats import read_live_stats_doc
from clv.core.settings import Settings
from clv.registry import mlflow_io
from clv.registry.canary import AliasStats, CanaryGuardrails, CanaryVerdict, judge_canary, psi

STATS_MAX_AGE_SECONDS = 120.0


@dataclass(frozen=True)
class LiveStats:
    """The server's rolling per-alias summary, as written to live_stats.json."""

    written_at: float
    champion: AliasStats | None
    canary: AliasStats | None
    share: float
    shadow: bool

    @property
    def age_seconds(self) -> float:
        return time.time() - self.written_at

    @property
    def prediction_psi(self) -> float | None:
        """PSI of the canary's CLV predictions against the champion's (None without both)."""
        if self.champion is None or self.canary is None:
            return None
        value = psi(self.champion.predictions, self.canary.predictions)
        return value if math.isfinite(value) else None


def parse_live_stats(doc: Mapping[str, object]) -> LiveStats:
    aliases = doc.get("aliases")
    routing = doc.get("routing")
    if not isinstance(aliases, dict) or not isinstance(routing, dict):
        raise ValueError("live stats lack aliases/routing")

    def stats(alias: str) -> AliasStats | None:
        item = aliases.get(alias)
        if not isinstance(item, dict):
            return None
        return AliasStats(
            version=str(item["version"]),
            requests=int(item["requests"]),
            errors=int(item["errors"]),
            latency_p95_ms=float(item["latency_p95_ms"]),
            predictions=tuple(float(x) for x in item.get("predictions", [])),
        )

    written = doc.get("written_at", 0.0)
    return LiveStats(
        written_at=float(written) if isinstance(written, int | float) else 0.0,
        champion=stats(CHAMPION),
        canary=stats(CANARY),
        share=float(routing.get("share", 0.0)),
        shadow=bool(routing.get("shadow", False)),
    )


def read_live_stats(settings: Settings) -> LiveStats | None:
    doc = read_live_stats_doc(settings)
    try:
        return parse_live_stats(doc) if doc is not None else None
    except (ValueError, KeyError, TypeError):
        return None


def guardrails(settings: Settings) -> CanaryGuardrails:
    r = settings.registry
    return CanaryGuardrails(
        max_error_rate=r.canary_max_error_rate,
        max_latency_ratio=r.canary_max_latency_ratio,
        max_psi=r.canary_max_psi,
        min_requests=r.canary_min_requests,
    )


def judge_live(
    settings: Settings, state: mlflow_io.RegistryState, live: LiveStats | None
) -> tuple[CanaryVerdict | None, tuple[str, ...]]:
    """The canary verdict from live stats that describe the current canary (else None)."""
    canary = state.aliases.get(CANARY)
    if canary is None:
        return None, ()
    if live is None:
        return None, ("no live stats: is `clv serve` running on this workspace?",)
    if live.age_seconds > STATS_MAX_AGE_SECONDS:
        return None, (f"live stats are {live.age_seconds:.0f} s old: the server is not running",)
    if live.canary is None or live.canary.version != canary or live.champion is None:
        return None, ("the server has not picked up this canary yet",)
    return judge_canary(live.champion, live.canary, guardrails=guardrails(settings)), ()
