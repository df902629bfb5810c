"""What serves now: the routing state one request reads, and its reload from the registry.

`ModelHolder.reload()` asks the registry for its plan (champion, canary, share, shadow) and,
when an alias moved, binds the new versions and swaps the whole `ServingState` in one
reference assignment: a request keeps the state it started with. A registry outage keeps the
old state (the reason is in `error`); a canary that does not load leaves the champion serving
everyone (`canary_error`).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass

from clv.core.contracts import CANARY, CHAMPION
from clv.core.time import utc
from clv.serving.metrics import LiveMetrics
from clv.serving.routing import ModelRegistry
from clv.serving.scorer import Champion, LoadedModelLike


@dataclass(frozen=True)
class ServingState:
    """Everything one request needs, swapped as a whole on reload."""

    champion: Champion
    canary: Champion | None
    share: float
    shadow: bool
    salt: str

    @property
    def versions(self) -> dict[str, str]:
        out = {CHAMPION: self.champion.version}
        if self.canary is not None:
            out[CANARY] = self.canary.version
        return out


class ModelHolder:
    """The serving state; `reload()` re-reads the registry and swaps when an alias moved."""

    def __init__(
        self,
        registry: ModelRegistry,
        bind: Callable[[LoadedModelLike], Champion],
        *,
        salt: str,
        metrics: LiveMetrics,
    ) -> None:
        self._registry = registry
        self._bind = bind
        self._salt = salt
        self._metrics = metrics
        self._lock = threading.Lock()
        self.current: ServingState | None = None
        self.error: str | None = None
        self.canary_error: str | None = None

    def reload(self) -> bool:
        """Swap in what the registry says; keeps the old state when anything fails."""
        with self._lock:
            try:
                plan = self._registry.plan()
                if plan.champion is None:
                    raise LookupError("no champion yet: run `clv train`")
                cur = self.current
                canary_version = plan.canary if plan.canary != plan.champion else None
                if (
                    cur is not None
                    and cur.champion.version == plan.champion
                    and (cur.canary.version if cur.canary else None) == canary_version
                    and (cur.share, cur.shadow) == (plan.share, plan.shadow)
                    and self.canary_error is None
                ):
                    self.error = None
                    return False
                champion = self._model(plan.champion, CHAMPION)
            except Exception as exc:  # a registry outage must not take serving down
                self.error = describe(exc)
                return False
            canary: Champion | None = None
            self.canary_error = None
            if canary_version is not None:
                try:
                    canary = self._model(canary_version, CANARY)
                except Exception as exc:  # a canary that does not load: champion serves all
                    self.canary_error = f"canary v{canary_version}: {describe(exc)}"
            state = ServingState(
                champion=champion,
                canary=canary,
                share=plan.share if canary is not None else 0.0,
                shadow=plan.shadow,
                salt=self._salt,
            )
            self.error = None
            self._metrics.set_routing(
                state.versions,
                share=state.share,
                shadow=state.shadow,
                data_ends={CHAMPION: data_end(champion), CANARY: data_end(canary)},
            )
            self.current = state  # one reference assignment: readers see old or new
            return True

    def _model(self, version: str, alias: str) -> Champion:
        cur = self.current
        if cur is not None:  # reuse a bound model (e.g. the canary just promoted)
            for bound in (cur.champion, cur.canary):
                if bound is not None and bound.version == version:
                    return (
                        bound if bound.alias == alias else dataclasses.replace(bound, alias=alias)
                    )
        return self._bind(self._registry.load(version, alias))


def data_end(model: Champion | None) -> float | None:
    """Where the model's training data ends (unix seconds; None when its card predates it)."""
    end = model.model.card.data_end if model is not None else None
    return None if end is None else utc(end).timestamp()


def describe(exc: BaseException) -> str:
    """An error as the server reports it: its type and the first line of its message."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
