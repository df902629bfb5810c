"""Alias decisions (pure) and their application to the registry.

The decision is a pure function of what the registry holds; `ensure_champion` reads the current
state through the MLflow adapter, decides, applies, and reports what happened. Promotion gates,
canaries and history extend this pattern.
"""

from __future__ import annotations

from dataclasses import dataclass

from clv.settings import Settings
from registry import mlflow_io
from registry.mlflow_io import CHAMPION


@dataclass(frozen=True)
class AliasDecision:
    """Whether to point an alias at a version, and why."""

    alias: str
    version: str
    assign: bool
    reason: str


def decide_initial_champion(version: str, *, current: str | None) -> AliasDecision:
    """The first registered version becomes champion; later ones wait for promotion."""
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
    """Make `version` champion when the model has none; True when the alias was set."""
    decision = decide_initial_champion(version, current=mlflow_io.alias_version(settings, CHAMPION))
    if decision.assign:
        mlflow_io.set_alias(settings, decision.alias, decision.version)
    return decision.assign


def promote(settings: Settings, version: str, *, alias: str = CHAMPION) -> AliasDecision:
    """Point `alias` at `version` unconditionally (the manual override); reports the change."""
    previous = mlflow_io.alias_version(settings, alias)
    if previous == version:
        return AliasDecision(alias, version, False, f"version {version} already holds {alias}")
    mlflow_io.set_alias(settings, alias, version)
    was = f"was version {previous}" if previous is not None else "was unset"
    return AliasDecision(alias, version, True, f"{alias} -> version {version} ({was})")
