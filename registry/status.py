"""`clv registry status`: the aliases, the canary judged on live traffic, and the report.

The live traffic is every replica's, read from Prometheus when `registry.prometheus_url` is set,
else the one local server's live-stats file (`clv.registry.live`). With `enforce` (the
scheduled judge, `clv registry status --enforce`, from cron or a systemd timer) a canary that
breaches a guardrail is rolled back here, the one place aliases move on live traffic
(`clv.registry.promotion.rollback`, only that canary: a newer one is left alone and the report
says why).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from clv.core.contracts import CANARY
from clv.core.settings import Settings
from clv.registry import mlflow_io
from clv.registry.canary import AliasStats, CanaryVerdict
from clv.registry.live import LiveStats, judge_live, live_stats
from clv.registry.moves import ConflictError
from clv.registry.promotion import ChangeResult, rollback


@dataclass(frozen=True)
class StatusReport:
    aliases: dict[str, str]
    share: float
    shadow: bool
    live: LiveStats | None
    verdict: CanaryVerdict | None
    rolled_back: ChangeResult | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, object]:
        return {
            "aliases": self.aliases,
            "canary": {"share": self.share, "shadow": self.shadow}
            if CANARY in self.aliases
            else None,
            "live": None
            if self.live is None
            else {
                "source": self.live.source,
                "replicas": self.live.replicas,
                "age_seconds": round(self.live.age_seconds, 1),
                "champion": _alias_doc(self.live.champion),
                "canary": _alias_doc(self.live.canary),
                "prediction_psi": self.live.prediction_psi,
            },
            "verdict": self.verdict.as_dict() if self.verdict is not None else None,
            "rolled_back": self.rolled_back.as_dict() if self.rolled_back is not None else None,
            "notes": list(self.notes),
        }


def _alias_doc(s: AliasStats | None) -> dict[str, object] | None:
    if s is None:
        return None
    p95 = s.latency_p95_ms if math.isfinite(s.latency_p95_ms) else None
    return {
        "version": s.version,
        "requests": s.requests,
        "errors": s.errors,
        "error_rate": s.error_rate,
        "latency_p95_ms": p95,
        "predictions": s.predicted,
    }


def status(settings: Settings, *, enforce: bool = False, actor: str | None = None) -> StatusReport:
    """Aliases and canary vs champion on live traffic; with `enforce`, a rollback on a breach."""
    incomplete = mlflow_io.mark_incomplete(settings)
    state = mlflow_io.registry_state(settings)
    live = live_stats(settings, state)
    verdict, notes = judge_live(settings, state, live)
    notes = (
        *notes,
        *(f"version {v} marked incomplete: its registration did not complete" for v in incomplete),
    )
    rolled: ChangeResult | None = None
    if verdict is not None and verdict.action == "rollback" and enforce:
        try:
            rolled = rollback(
                settings,
                reason=f"auto: {verdict.reason}",
                actor=actor,
                canary_version=state.aliases.get(CANARY),
            )
        except ConflictError as exc:
            notes = (*notes, f"auto-rollback skipped: {exc}")
        state = mlflow_io.registry_state(settings)
    return StatusReport(
        aliases=state.aliases,
        share=state.canary_share,
        shadow=state.canary_shadow,
        live=live,
        verdict=verdict,
        rolled_back=rolled,
        notes=notes,
    )
