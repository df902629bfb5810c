"""The background supervisor: a reload that freezes the heap collects its garbage first."""

from __future__ import annotations

import gc
import weakref

import pandas as pd
import pytest
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


@pytest.mark.parametrize("reload_by", ["poll", "rollback"])
def test_a_reload_collects_before_it_freezes_the_heap(
    settings: Settings,
    model: ClvModel,
    features: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
    reload_by: str,
) -> None:
    canary = "2" if reload_by == "rollback" else None
    registry = FakeRegistry(
        {"1": model, "2": model}, RoutingPlan(champion="1", canary=canary, share=0.5)
    )
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
    if reload_by == "poll":
        registry.plan_now = RoutingPlan(champion="2")  # the alias moves
    else:
        monkeypatch.setattr(supervise, "judge", lambda s, snapshot: "a breach")
    gc.disable()  # no automatic collection may free the garbage in its place
    try:
        garbage = _Cycle()
        ref = weakref.ref(garbage)
        del garbage
        supervise.tick(
            settings, holder, registry, metrics, set(), poll=reload_by == "poll", freeze_gc=True
        )
        frozen = gc.get_freeze_count()
        kept = ref() is not None
    finally:
        gc.unfreeze()
        gc.enable()
    assert holder.error is None and holder.current is not None
    if reload_by == "poll":
        assert holder.current.versions == {"champion": "2"}
    else:
        assert registry.rollbacks == [("2", "auto: a breach")]
        assert holder.current.versions == {"champion": "1"}
    assert frozen > 0
    assert not kept, "the garbage from before the reload was frozen, not collected"
