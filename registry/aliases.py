"""The first champion, and the challenger: alias decisions (pure) and their application.

`ensure_champion` runs after every training run: the first registered version becomes champion
(there is nothing to gate it against) when its evaluation was embargoed (the `embargo` gate's
rule: overlapping label windows are no evidence); otherwise, and for every later version, it
becomes `challenger`, waiting for `clv registry canary` or `clv registry promote` (which run
the gates, `clv.registry.promotion`; `--force` overrides).
Both moves are written to the alias history (`clv.registry.moves.apply_moves`).
"""

from __future__ import annotations

from dataclasses import dataclass

from clv.core.contracts import CHALLENGER, CHAMPION
from clv.core.settings import Settings
from clv.registry import mlflow_io
from clv.registry.history import HistoryRow
from clv.registry.moves import AliasMove, apply_moves


@dataclass(frozen=True)
class AliasDecision:
    """Whether to point an alias at a version, and why."""

    alias: str
    version: str
    assign: bool
    reason: str


def decide_initial_champion(
    version: str, *, current: str | None, embargoed: bool = True
) -> AliasDecision:
    """The first registered version becomes champion when its evaluation was embargoed;
    later ones (and an unembargoed first one) wait for promotion."""
    if current is None and not embargoed:
        return AliasDecision(
            CHAMPION,
            version,
            False,
            f"version {version}'s evaluation is not embargoed: "
            f"`clv registry promote {version} --force` to serve it anyway",
        )
    if current is None:
        return AliasDecision(CHAMPION, version, True, "no champion yet")
    if current == version:
        return AliasDecision(CHAMPION, version, False, f"version {version} is already champion")
    return AliasDecision(
        CHAMPION,
        version,
        False,
        f"champion is version {current}: promote with `clv registry promote {version}`",
    )


def ensure_champion(settings: Settings, version: str) -> bool:
    """Make `version` champion when the model has none (else challenger); True when champion."""
    from clv.core.tags import EMBARGOED_TAG

    current = mlflow_io.alias_version(settings, CHAMPION)
    embargoed = mlflow_io.version_tags(settings, version).get(EMBARGOED_TAG) == "true"
    decision = decide_initial_champion(version, current=current, embargoed=embargoed)
    if decision.assign:
        record_initial_champion(settings, version)
    elif current != version and mlflow_io.alias_version(settings, CHALLENGER) != version:
        mark_challenger(settings, version)
    return decision.assign


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
