"""The server's lifecycle and its background supervisor: start-up load, registry poll, live
stats, canary guard.

At start the lifespan loads the models, the identities and the feature reader's layout, then
runs `supervise` until shutdown. Every `serving.reload_seconds` it polls the registry (one
`get_registered_model` call) and swaps the state when an alias moved; every
`serving.stats_seconds` it writes live per-alias stats to `.clv/serving/live_stats.json`; with
`serving.auto_rollback` it rolls back a canary that breaches a guardrail
(`clv.registry.canary.judge_canary`; the history row says why). Each tick runs wholly in a
worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from clv.core.live_stats import write_live_stats
from clv.core.settings import Settings
from clv.features.online_read import FeatureReader
from clv.serving.identities import AliasHolder
from clv.serving.metrics import LiveMetrics
from clv.serving.routing import ModelRegistry
from clv.serving.state import ModelHolder, describe

if TYPE_CHECKING:
    from fastapi import FastAPI


def lifespan(
    settings: Settings,
    holder: ModelHolder,
    registry: ModelRegistry,
    metrics: LiveMetrics,
    aliases: AliasHolder,
    reader: FeatureReader,
    *,
    freeze_gc: bool = False,
    on_stop: Sequence[Callable[[], None]] = (),
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: load everything off the event loop, then supervise until shutdown
    (then call `on_stop`: the worker threads' shutdown)."""

    @contextlib.asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(holder.reload)
        await asyncio.to_thread(aliases.refresh)
        await asyncio.to_thread(reader.ping)  # warm up: the first read builds its layout
        if freeze_gc:
            freeze_heap()
        task = asyncio.create_task(
            supervise(settings, holder, registry, metrics, aliases, freeze_gc=freeze_gc)
        )
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            for stop in on_stop:
                stop()

    return run


async def supervise(
    settings: Settings,
    holder: ModelHolder,
    registry: ModelRegistry,
    metrics: LiveMetrics,
    aliases: AliasHolder,
    *,
    freeze_gc: bool = False,
) -> None:
    """Poll the registry (and the identities), write live stats, judge the canary; never
    raises. Each tick runs in a worker thread (`tick`)."""
    reload_every = settings.serving.reload_seconds
    stats_every = settings.serving.stats_seconds
    period = min(stats_every, reload_every) if reload_every > 0 else stats_every
    next_reload = time.monotonic() + reload_every
    judged: set[str] = set()
    while True:
        await asyncio.sleep(period)
        now = time.monotonic()
        poll = reload_every > 0 and now >= next_reload
        if poll:
            next_reload = now + reload_every
        await asyncio.to_thread(
            tick,
            settings,
            holder,
            registry,
            metrics,
            judged,
            poll=poll,
            freeze_gc=freeze_gc,
            aliases=aliases,
        )


def tick(
    settings: Settings,
    holder: ModelHolder,
    registry: ModelRegistry,
    metrics: LiveMetrics,
    judged: set[str],
    *,
    poll: bool,
    freeze_gc: bool = False,
    aliases: AliasHolder | None = None,
) -> None:
    """One background tick (off the event loop); a registry or disk hiccup is recorded, not
    raised."""
    try:
        if poll and holder.reload() and freeze_gc:
            freeze_heap()
        if poll and aliases is not None:
            aliases.refresh()
        snapshot = metrics.snapshot()
        write_live_stats(settings, snapshot)
        state = holder.current
        if (
            settings.serving.auto_rollback
            and state is not None
            and state.canary is not None
            and state.canary.version not in judged
        ):
            verdict = judge(settings, snapshot)
            if verdict is not None:
                judged.add(state.canary.version)
                registry.rollback_canary(state.canary.version, f"auto: {verdict}")
                if holder.reload() and freeze_gc:
                    freeze_heap()
    except Exception as exc:  # the loop must survive a registry or disk hiccup
        holder.error = holder.error or f"background: {describe(exc)}"


def freeze_heap() -> None:
    """Move every object alive now (the loaded models, MLflow, Feast, pandas: ~400k objects)
    out of the cyclic GC's reach: a full collection over them pauses the event loop for
    ~200 ms (measured), which was the server's p99. Collects first, so that the garbage of a
    replaced model is freed rather than frozen for the life of the process."""
    gc.collect()
    gc.freeze()


def judge(settings: Settings, snapshot: dict[str, object]) -> str | None:
    """The rollback reason when the live canary breaches a guardrail, else None."""
    from clv.registry.canary import judge_canary
    from clv.registry.live import guardrails, parse_live_stats

    live = parse_live_stats({**snapshot, "written_at": time.time()})
    if live.champion is None or live.canary is None:
        return None
    verdict = judge_canary(live.champion, live.canary, guardrails=guardrails(settings))
    return verdict.reason if verdict.action == "rollback" else None
