"""Which versions serve: the routing plan read from the registry, and loading them.

`ModelRegistry` is what the server (`clv.serving.state`, `clv.serving.supervise`) and
`clv.serving.batch` need from a registry: the plan (champion, canary, share, shadow) and
loading a version. Both only read: serving needs no write access to the registry.
`MlflowRegistry` reads the MLflow aliases and model tags in one call; `SingleModel` wraps a
plain model source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from clv.core.contracts import CANARY, CHAMPION
from clv.core.settings import Settings
from clv.serving.scorer import LoadedModelLike, ModelSource


@dataclass(frozen=True)
class RoutingPlan:
    """What the registry says should serve."""

    champion: str | None
    canary: str | None = None
    share: float = 0.0
    shadow: bool = False


class ModelRegistry(Protocol):
    """Where the server learns which versions serve, and loads them (read only)."""

    def plan(self) -> RoutingPlan: ...

    def load(self, version: str, alias: str) -> LoadedModelLike: ...


class MlflowRegistry:
    """The MLflow registry of a workspace (aliases and model tags in one call)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def plan(self) -> RoutingPlan:
        from clv.registry.mlflow_io import registry_state

        state = registry_state(self.settings)
        canary = state.aliases.get(CANARY)
        return RoutingPlan(
            champion=state.aliases.get(CHAMPION),
            canary=canary,
            share=state.canary_share if canary is not None else 0.0,
            shadow=state.canary_shadow,
        )

    def load(self, version: str, alias: str) -> LoadedModelLike:
        from clv.registry.mlflow_io import load_version

        loaded: LoadedModelLike = load_version(self.settings, version, alias=alias)
        return loaded


class SingleModel:
    """A champion-only registry around a model source (tests, simple embedding)."""

    def __init__(self, source: ModelSource) -> None:
        self.source = source
        self._loaded: LoadedModelLike | None = None

    def plan(self) -> RoutingPlan:
        self._loaded = self.source()
        return RoutingPlan(champion=str(self._loaded.version))

    def load(self, version: str, alias: str) -> LoadedModelLike:
        loaded = self._loaded if self._loaded is not None else self.source()
        return loaded
