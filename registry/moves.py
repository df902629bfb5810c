"""Alias moves with their history: `apply_moves`, the one way an alias changes.

Under the model's lock it checks that the aliases still point where the caller saw them
(compare-and-set), writes a pending history row, moves the MLflow alias, and marks the row
done. If the alias call fails the row is removed; if the history write fails after the alias
moved, the alias is restored. Two concurrent changes: one wins, the other gets a ConflictError
naming the version that moved.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from clv.core.errors import ClvError
from clv.core.settings import Settings
from clv.registry import mlflow_io
from clv.registry.gates import GateResult
from clv.registry.history import DONE, FAILED, History, HistoryRow, default_actor


class ConflictError(ClvError):
    """An alias moved between reading it and changing it."""


@dataclass(frozen=True)
class AliasMove:
    alias: str
    to_version: str | None
    """None removes the alias."""
    action: str
    reason: str


def history(settings: Settings) -> History:
    """The alias history of this workspace's tracking database."""
    return History(
        settings.tracking_uri,
        lock_timeout=settings.registry.lock_timeout_seconds,
        connect_timeout=settings.services.connect_timeout_seconds,
    )


def version_text(version: str | None) -> str:
    """'version 3', or 'nothing' for an alias that points nowhere."""
    return f"version {version}" if version is not None else "nothing"


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
                    f"{alias} moved to {version_text(have)} (expected {version_text(want)}) "
                    "while you were deciding: check `clv registry status` and retry"
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
