"""Promotion workflows: canary, promote (finalize), rollback; every alias move audited.

Each workflow gathers evidence and decides (`clv.registry.evidence.check_gates`, over the pure
`clv.registry.gates.evaluate_gates`), then applies alias moves with
`clv.registry.moves.apply_moves` (compare-and-set under the model's lock, with history rows).
A version that fails its gates without `force` gets a `rejected` history row and a GateError.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from clv.core.contracts import CANARY, CHALLENGER, CHAMPION
from clv.core.errors import ClvError
from clv.core.settings import Settings
from clv.registry import mlflow_io
from clv.registry.evidence import check_gates
from clv.registry.gates import GateResult
from clv.registry.history import DONE, HistoryRow, default_actor
from clv.registry.mlflow_io import CANARY_SHADOW_TAG, CANARY_SHARE_TAG
from clv.registry.moves import AliasMove, ConflictError, apply_moves, history, version_text

REFUSED = "refused"
"""The status of a history row for a change that was refused (a second rollback)."""


class GateError(ClvError):
    """A version failed its promotion gates (and --force was not given)."""


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
    rows = move_canary(settings, version, gates, share=share, shadow=shadow, held=held, actor=actor)
    mode = "shadow" if shadow else f"{share:.0%} of customers"
    return ChangeResult(rows, gates, f"canary -> version {version} ({mode})")


def move_canary(
    settings: Settings,
    version: str,
    gates: GateResult,
    *,
    share: float,
    shadow: bool = False,
    held: Mapping[str, str] | None = None,
    actor: str | None = None,
    by: str | None = None,
) -> tuple[HistoryRow, ...]:
    """Point `canary` at a gated `version` with a traffic share (or shadow mode), `gates` in
    its history row; compare-and-set on the champion and canary as in `held` (read now when
    None). `by` names the job that moves it (in the reason, and as the actor)."""
    held = mlflow_io.aliases(settings) if held is None else held
    mode = "shadow" if shadow else f"{share:.0%} of customers"
    signed = f" by {by}" if by is not None else ""
    return apply_moves(
        settings,
        [AliasMove(CANARY, version, "canary", f"canary ({mode}){signed}; {gates.summary()}")],
        expected={CHAMPION: held.get(CHAMPION), CANARY: held.get(CANARY)},
        actor=actor or by,
        gates=gates,
        model_tags={CANARY_SHARE_TAG: repr(float(share)), CANARY_SHADOW_TAG: str(shadow).lower()},
    )


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
    was = f"was {version_text(champion)}"
    return ChangeResult(rows, gates, f"champion -> version {version} ({was})")


def rollback(
    settings: Settings,
    *,
    reason: str | None = None,
    actor: str | None = None,
    canary_version: str | None = None,
) -> ChangeResult:
    """End the canary when one runs; otherwise give the champion back to its predecessor,
    once: a champion that a rollback restored is not rolled back again (ClvError, with a
    `refused` history row saying when it was rolled back).

    `canary_version` (the automatic rollback) rolls back only that canary: if another
    version became canary meanwhile, the call fails with a ConflictError.
    """
    held = mlflow_io.aliases(settings)
    canary, champion = held.get(CANARY), held.get(CHAMPION)
    if canary_version is not None and canary != canary_version:
        raise ConflictError(f"canary is {version_text(canary)}, not version {canary_version}")
    expected: dict[str, str | None]
    if canary is not None:
        why = reason or "manual rollback of the canary"
        move = AliasMove(CANARY, None, "rollback", why)
        expected = {CANARY: canary, CHAMPION: champion}
        done = f"canary version {canary} rolled back: {why}"
    else:
        if champion is None:
            raise ClvError("nothing to roll back: no champion and no canary")
        made = champion_change(settings, champion)
        if made is not None and made.action == "rollback":
            _refuse_second_rollback(settings, made, actor=actor)
        previous = made.from_version if made is not None else None
        if previous is None:
            raise ClvError(f"nothing to roll back to: version {champion} is the first champion")
        why = reason or f"manual rollback of champion {champion}"
        move = AliasMove(CHAMPION, previous, "rollback", why)
        expected = {CHAMPION: champion, CANARY: None}
        done = f"champion -> version {previous} (was version {champion})"
    rows = apply_moves(settings, [move], expected=expected, actor=actor)
    return ChangeResult(rows, None, done)


def champion_change(settings: Settings, champion: str) -> HistoryRow | None:
    """The history row that made `champion` the champion (the newest done one)."""
    for row in history(settings).rows(settings.mlflow.model_name, limit=None):
        if row.alias == CHAMPION and row.status == DONE and row.to_version == champion:
            return row
    return None


def _refuse_second_rollback(settings: Settings, made: HistoryRow, *, actor: str | None) -> None:
    """A champion that a rollback restored is not rolled back again: that would re-instate the
    version just rolled back from, without gates. Recorded as a `refused` row; raises."""
    why = (
        f"already rolled back from {version_text(made.from_version)} to "
        f"{version_text(made.to_version)} at {made.at[:19].replace('T', ' ')} UTC "
        f"(history #{made.id})"
    )
    h = history(settings)
    row = h.begin(
        model=settings.mlflow.model_name,
        alias=CHAMPION,
        action="rollback",
        from_version=made.to_version,
        to_version=made.from_version,
        reason=f"refused: {why}",
        actor=actor or default_actor(),
    )
    h.finish(row, status=REFUSED)
    raise ClvError(
        f"not rolled back: {why}; promote a version through the gates "
        "(`clv registry promote`) to change the champion"
    )
