"""The first champion, and the challenger: alias decisions (pure) and their application.

`ensure_champion` runs after every training run: the first registered version becomes champion
(there is nothing to gate it against) when its evaluation was embargoed (the `embargo` gate's
rule: overlapping label windows are no evidence); otherwise, and for every later version, it
becomes `challenger`, waiting for `clv registry canary` or `clv registry promote` (which run
the gates, `clv.registry.promotion`; `--force` overrides).
Both moves are written to the alias history.
"""

from __future__ import annotations

from dataclasses import dataclass

from clv.core.settings import Settings
from clv.registry import mlflow_io
from clv.registry.mlflow_io import CHALLENGER, CHAMPION


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
    from clv.core.contracts import EMBARGOED_TAG
    from clv.registry.promotion import mark_challenger, record_initial_champion

    current = mlflow_io.alias_version(settings, CHAMPION)
    embargoed = mlflow_io.version_tags(settings, version).get(EMBARGOED_TAG) == "true"
    decision = decide_initial_champion(version, current=current, embargoed=embargoed)
    if decision.assign:
        record_initial_champion(settings, version)
    elif current != version and mlflow_io.alias_version(settings, CHALLENGER) != version:
        mark_challenger(settings, version)
    return decision.assign
