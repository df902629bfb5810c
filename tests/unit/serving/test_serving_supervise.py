"""The background supervisor: a reload that freezes the heap collects its garbage first."""

from __future__ import annotations

import gc
import weakref

import pandas as pd
from serving_fixtures import FakeRegistry

import clv.serving.supervise as supervise
from clv.core.settings import Settings
from clv.model.bundle import ClvModel
from clv.serving.metrics import LiveMetrics
from clv.serving.routing import RoutingPlan
from clv.serving.scorer import load_champion
from clv.serving.state import ModelHolder


class _Cycle:
    """Garbage only the cyclic collector frees: it refers to itself."""

    def __init__(self) -> None:
        self.me = self


def test_a_reload_collects_before_it_freezes_the_heap(
    settings: Settings, model: ClvModel, features: pd.DataFrame
) -> None:
    registry = FakeRegistry({"1": model, "2": model}, RoutingPlan(champion="1"))
    metrics = LiveMetrics()
    holder = ModelHolder(
        registry,
        lambda loaded: load_champion(
            loaded, serving=settings.serving, reference_source=lambda run_id: features
        ),
        salt="clv",
        metrics=metrics,
    )
    assert holder.reload()
    registry.plan_now = RoutingPlan(champion="2")  # the alias moves
    gc.disable()  # no automatic collection may free the garbage in its place
    try:
        garbage = _Cycle()
        ref = weakref.ref(garbage)
        del garbage
        supervise.tick(settings, holder, metrics, poll=True, freeze_gc=True)
        frozen = gc.get_freeze_count()
        kept = ref() is not None
    finally:
        gc.unfreeze()
        gc.enable()
    assert holder.error is None and holder.current is not None
    assert holder.current.versions == {"champion": "2"}
    assert frozen > 0
    assert not kept, "the garbage from before the reload was frozen, not collected"
