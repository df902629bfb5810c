"""Promotion workflows: canary, promote (finalize), rollback, status; every alias move audited.

Each workflow gathers evidence (tags, the online store's contract, a smoke test), calls a pure
decision (`clv.registry.gates.evaluate_gates`, `clv.registry.canary.judge_canary`), then
applies alias moves with `apply_moves`: under the model's lock it checks that the aliases still
point where the caller saw them (compare-and-set), writes a pending history row, moves the MLflow
alias, and marks the row done. If the alias call fails the row is removed; if the history write
fails after the alias moved, the alias is restored. Two concurrent promotions: one wins, the other
gets a ConflictError naming the version that moved.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from clv.core.errors import ClvError
from clv.core.settings import Settings
from clv.registry import mlflow_io
from clv.registry.canary import AliasStats, CanaryGuardrails, CanaryVerdict, judge_canary, psi
from clv.registry.gates import (
    GateResult,
    ModelContract,
    ServedContract,
    SmokeResult,
    VersionEvidence,
    evaluate_gates,
)
from clv.registry.history import DONE, FAILED, History, HistoryRow, default_actor
from clv.registry.mlflow_io import CANARY, CANARY_SHADOW_TAG, CANARY_SHARE_TAG, CHALLENGER, CHAMPION

LIVE_STATS_FILE = "live_stats.json"
STATS_MAX_AGE_SECONDS = 120.0


class ConflictError(ClvError):
    """An alias moved between reading it and changing it."""


class GateError(ClvError):
    """A version failed its promotion gates (and --force was not given)."""


@dataclass(frozen=True)
class AliasMove:
    alias: str
    to_version: str | None
    """None removes the alias."""
    action: str
    reason: str


@dataclass(frozen=True)
class ChangeResult:
    """What a workflow did: the history rows it wrote and the gate result it acted on."""

    rows: tuple[HistoryRow, ...]
    gates: GateResult | None = None
    message: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "message": self.message,
            "changes": [r.as_dict() for r in self.rows],
            "gates": self.gates.as_dict() if self.gates is not None else None,
        }


def history(settings: Settings) -> History:
    return History(settings.tracking_uri, lock_timeout=settings.registry.lock_timeout_seconds)


# --------------------------------------------------------------------------- alias moves


def apply_moves(
    settings: Settings,
    moves: Sequence[AliasMove],
    *,
    expected: Mapping[str, str | None],
    actor: str | None = None,
    gates: GateResult | None = None,
    model_tags: Mapping[str, str] | None = None,
) -> tuple[HistoryRow, ...]:
    """Move aliases atomically with their history rows (compare-and-set on `expected`)."""
    h = history(settings)
    model = settings.mlflow.model_name
    who = actor or default_actor()
    with h.lease(model):
        held = _reconcile(settings, h)
        for alias, want in expected.items():
            have = held.get(alias)
            if have != want:
                raise ConflictError(
                    f"{alias} moved to {_v(have)} (expected {_v(want)}) while you were "
                    "deciding: check `clv registry status` and retry"
                )
        if model_tags:
            mlflow_io.set_model_tags(settings, dict(model_tags))
        current = dict(held)
        done: list[tuple[str, str | None, int]] = []
        try:
            for move in moves:
                previous = current.get(move.alias)
                row = h.begin(
                    model=model,
                    alias=move.alias,
                    action=move.action,
                    from_version=previous,
                    to_version=move.to_version,
                    reason=move.reason,
                    actor=who,
                    gates=gates.as_dict() if gates is not None else None,
                    forced=bool(gates is not None and gates.forced and not gates.passed),
                )
                try:
                    mlflow_io.move_alias(settings, move.alias, move.to_version)
                except BaseException:
                    h.discard(row)
                    raise
                done.append((move.alias, previous, row))
                if move.to_version is None:
                    current.pop(move.alias, None)
                else:
                    current[move.alias] = move.to_version
            for _, _, row in done:
                h.finish(row)
        except BaseException:
            for alias, previous, row in reversed(done):
                _quietly(functools.partial(mlflow_io.move_alias, settings, alias, previous))
                _quietly(functools.partial(h.discard, row))
            raise
    ids = {row for _, _, row in done}
    return tuple(r for r in reversed(h.rows(model, limit=max(len(ids), 1) + 5)) if r.id in ids)


def _quietly(action: Callable[[], object]) -> None:
    """Best effort (undo after a failure): the original error is the one to report."""
    with contextlib.suppress(Exception):
        action()


def _reconcile(settings: Settings, h: History) -> dict[str, str]:
    """Settle rows left pending by a crashed change; the aliases as they are now."""
    held = mlflow_io.aliases(settings)
    for row in h.pending(settings.mlflow.model_name):
        h.finish(row.id, status=DONE if held.get(row.alias) == row.to_version else FAILED)
    return held


def _v(version: str | None) -> str:
    return f"version {version}" if version is not None else "nothing"


# --------------------------------------------------------------------------- gates


def served_contract(settings: Settings) -> ServedContract | None:
    """The FeatureService the online store serves, or None when Feast cannot be read."""
    try:
        from clv.features.feast_io import feature_names

        names = feature_names(settings)
    except Exception:
        return None
    return ServedContract(service=settings.features.service, feature_names=tuple(names))


def smoke_test(settings: Settings, version: str, *, rows: int = 200) -> SmokeResult:
    """Load the version and score part of its reference sample (or one empty row)."""
    import pandas as pd

    try:
        loaded = mlflow_io.load_version(settings, version)
    except Exception as exc:
        return SmokeResult(False, f"does not load: {type(exc).__name__}: {_line(exc)}")
    model = loaded.model
    contract = ModelContract(model.card.feature_service, tuple(model.feature_names))
    try:
        batch = mlflow_io.reference_frame(settings, loaded.run_id).head(rows)
    except ClvError:
        batch = pd.DataFrame({name: [np.nan] for name in model.feature_names})
    try:
        preds = model.predict(batch)
    except Exception as exc:
        return SmokeResult(False, f"does not score: {type(exc).__name__}: {_line(exc)}", contract)
    clv = preds["clv"].to_numpy(dtype=np.float64)
    churn = preds["churn_probability"].to_numpy(dtype=np.float64)
    if len(preds) != len(batch) or not np.isfinite(clv).all():
        return SmokeResult(False, f"non-finite CLV on a {len(batch)}-row smoke batch", contract)
    if np.isfinite(churn).any() and not ((churn >= 0) & (churn <= 1)).all():
        return SmokeResult(False, "churn probability outside [0, 1] on the smoke batch", contract)
    return SmokeResult(True, f"loaded and scored {len(batch)} rows", contract)


def check_gates(settings: Settings, version: str, *, forced: bool = False) -> GateResult:
    """Gather the evidence for `version` against the champion, decide, tag the version."""
    held = mlflow_io.aliases(settings)
    champion = held.get(CHAMPION)
    candidate = VersionEvidence(version, mlflow_io.version_tags(settings, version))
    incumbent = (
        VersionEvidence(champion, mlflow_io.version_tags(settings, champion))
        if champion is not None and champion != version
        else None
    )
    result = evaluate_gates(
        candidate,
        incumbent,
        settings=settings.registry,
        served=served_contract(settings),
        smoke=smoke_test(settings, version),
        forced=forced,
    )
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    mlflow_io.set_version_tags(settings, version, {**result.tags(), "gate.checked_at": stamp})
    return result


def _gate_or_reject(
    settings: Settings, version: str, *, alias: str, forced: bool, actor: str | None
) -> GateResult:
    result = check_gates(settings, version, forced=forced)
    if result.allowed:
        return result
    h = history(settings)
    row = h.begin(
        model=settings.mlflow.model_name,
        alias=alias,
        action="rejected",
        from_version=mlflow_io.alias_version(settings, alias),
        to_version=version,
        reason=result.summary(),
        actor=actor or default_actor(),
        gates=result.as_dict(),
    )
    h.finish(row, status="rejected")
    raise GateError(f"version {version} not made {alias}: {result.summary()} (--force overrides)")


# --------------------------------------------------------------------------- workflows


def start_canary(
    settings: Settings,
    version: str,
    *,
    share: float,
    shadow: bool = False,
    force: bool = False,
    actor: str | None = None,
) -> ChangeResult:
    """Gate `version`, then point `canary` at it with a traffic share (or shadow mode)."""
    if not 0.0 < share <= 1.0:
        raise ClvError(f"--share must be in (0, 1], got {share}")
    held = mlflow_io.aliases(settings)
    champion = held.get(CHAMPION)
    if champion is None:
        raise ClvError("no champion yet: promote a first version with `clv registry promote`")
    if champion == version:
        raise ClvError(f"version {version} is the champion: a canary must be another version")
    mlflow_io.version_tags(settings, version)  # a clear error when the version does not exist
    gates = _gate_or_reject(settings, version, alias=CANARY, forced=force, actor=actor)
    mode = "shadow" if shadow else f"{share:.0%} of customers"
    rows = apply_moves(
        settings,
        [AliasMove(CANARY, version, "canary", f"canary ({mode}); {gates.summary()}")],
        expected={CHAMPION: champion, CANARY: held.get(CANARY)},
        actor=actor,
        gates=gates,
        model_tags={CANARY_SHARE_TAG: repr(float(share)), CANARY_SHADOW_TAG: str(shadow).lower()},
    )
    return ChangeResult(rows, gates, f"canary -> version {version} ({mode})")


def promote(
    settings: Settings, version: str, *, force: bool = False, actor: str | None = None
) -> ChangeResult:
    """Gate `version`, make it champion, end its canary and challenger roles."""
    held = mlflow_io.aliases(settings)
    champion = held.get(CHAMPION)
    if champion == version:
        raise ClvError(f"version {version} is already champion")
    mlflow_io.version_tags(settings, version)
    gates = _gate_or_reject(settings, version, alias=CHAMPION, forced=force, actor=actor)
    moves = [AliasMove(CHAMPION, version, "promote", f"promoted; {gates.summary()}")]
    if held.get(CANARY) is not None:
        ended = "finalized" if held[CANARY] == version else f"ended by promoting {version}"
        moves.append(AliasMove(CANARY, None, "end-canary", f"canary {ended}"))
    if held.get(CHALLENGER) == version:
        moves.append(AliasMove(CHALLENGER, None, "promote", "challenger became champion"))
    rows = apply_moves(
        settings,
        moves,
        expected={CHAMPION: champion, CANARY: held.get(CANARY)},
        actor=actor,
        gates=gates,
    )
    was = f"was {_v(champion)}"
    return ChangeResult(rows, gates, f"champion -> version {version} ({was})")


def rollback(
    settings: Settings,
    *,
    reason: str | None = None,
    actor: str | None = None,
    canary_version: str | None = None,
) -> ChangeResult:
    """End the canary when one runs; otherwise give the champion back to its predecessor.

    `canary_version` (the automatic rollback) rolls back only that canary: if another
    version became canary meanwhile, the call fails with a ConflictError.
    """
    held = mlflow_io.aliases(settings)
    canary, champion = held.get(CANARY), held.get(CHAMPION)
    if canary_version is not None and canary != canary_version:
        raise ConflictError(f"canary is {_v(canary)}, not version {canary_version}")
    if canary is not None:
        why = reason or "manual rollback of the canary"
        rows = apply_moves(
            settings,
            [AliasMove(CANARY, None, "rollback", why)],
            expected={CANARY: canary, CHAMPION: champion},
            actor=actor,
        )
        return ChangeResult(rows, None, f"canary version {canary} rolled back: {why}")
    if champion is None:
        raise ClvError("nothing to roll back: no champion and no canary")
    previous = previous_champion(settings, champion)
    if previous is None:
        raise ClvError(f"nothing to roll back to: version {champion} is the first champion")
    why = reason or f"manual rollback of champion {champion}"
    rows = apply_moves(
        settings,
        [AliasMove(CHAMPION, previous, "rollback", why)],
        expected={CHAMPION: champion, CANARY: None},
        actor=actor,
    )
    return ChangeResult(rows, None, f"champion -> version {previous} (was version {champion})")


def previous_champion(settings: Settings, champion: str) -> str | None:
    """The version the current champion replaced (from the history)."""
    for row in history(settings).rows(settings.mlflow.model_name, limit=None):
        if row.alias == CHAMPION and row.status == DONE and row.to_version == champion:
            return row.from_version
    return None


def record_initial_champion(
    settings: Settings, version: str, *, actor: str | None = None
) -> tuple[HistoryRow, ...]:
    """The first champion (no gates: nothing to compare with), recorded in the history."""
    return apply_moves(
        settings,
        [AliasMove(CHAMPION, version, "initial", "first registered version")],
        expected={CHAMPION: None},
        actor=actor,
    )


def mark_challenger(
    settings: Settings, version: str, *, actor: str | None = None
) -> tuple[HistoryRow, ...]:
    """Point `challenger` at the newest trained version that is not champion."""
    held = mlflow_io.aliases(settings)
    if held.get(CHALLENGER) == version:
        return ()
    return apply_moves(
        settings,
        [AliasMove(CHALLENGER, version, "challenger", "newly trained; awaits gates")],
        expected={CHALLENGER: held.get(CHALLENGER), CHAMPION: held.get(CHAMPION)},
        actor=actor,
    )


# --------------------------------------------------------------------------- live canary


def live_stats_path(settings: Settings) -> Path:
    """Where the server writes its per-alias live stats (`clv.serving.app`)."""
    return settings.state_dir / "serving" / LIVE_STATS_FILE


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
    path = live_stats_path(settings)
    try:
        return parse_live_stats(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def guardrails(settings: Settings) -> CanaryGuardrails:
    r = settings.registry
    return CanaryGuardrails(
        max_error_rate=r.canary_max_error_rate,
        max_latency_ratio=r.canary_max_latency_ratio,
        max_psi=r.canary_max_psi,
        min_requests=r.canary_min_requests,
    )


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
        def alias_doc(s: AliasStats | None) -> dict[str, object] | None:
            if s is None:
                return None
            p95 = s.latency_p95_ms if math.isfinite(s.latency_p95_ms) else None
            return {
                "version": s.version,
                "requests": s.requests,
                "errors": s.errors,
                "error_rate": s.error_rate,
                "latency_p95_ms": p95,
                "predictions_sampled": len(s.predictions),
            }

        return {
            "aliases": self.aliases,
            "canary": {"share": self.share, "shadow": self.shadow}
            if CANARY in self.aliases
            else None,
            "live": None
            if self.live is None
            else {
                "age_seconds": round(self.live.age_seconds, 1),
                "champion": alias_doc(self.live.champion),
                "canary": alias_doc(self.live.canary),
                "prediction_psi": self.live.prediction_psi,
            },
            "verdict": self.verdict.as_dict() if self.verdict is not None else None,
            "rolled_back": self.rolled_back.as_dict() if self.rolled_back is not None else None,
            "notes": list(self.notes),
        }


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


def status(
    settings: Settings, *, auto_rollback: bool = True, actor: str | None = None
) -> StatusReport:
    """Aliases, canary vs champion on live traffic, and an automatic rollback on a breach."""
    state = mlflow_io.registry_state(settings)
    live = read_live_stats(settings)
    verdict, notes = judge_live(settings, state, live)
    rolled: ChangeResult | None = None
    if verdict is not None and verdict.action == "rollback" and auto_rollback:
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


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
