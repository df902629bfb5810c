"""Request coalescing: the `/score` requests that arrive together are scored in one model call.

Exact, because rows are independent: each request gets back its own rows of the shared batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from clv.features.online_read import OnlineBatch
from clv.serving.routed import Scored, score_batch
from clv.serving.state import ServingState


def merge_batches(batches: Sequence[OnlineBatch]) -> OnlineBatch:
    """Concatenate batches read by one reader (same features), in order."""
    if len(batches) == 1:
        return batches[0]
    first = batches[0]
    return OnlineBatch(
        customer_ids=[c for b in batches for c in b.customer_ids],
        feature_names=first.feature_names,
        strings=first.strings,
        values={n: [v for b in batches for v in b.values[n]] for n in first.feature_names},
        timestamps=[t for b in batches for t in b.timestamps],
    )


class Coalescer:
    """Scores the requests that arrive together in one model call (exact: rows are independent).

    XGBoost's in-place prediction has a fixed cost per tree and call (about 0.75 us per tree
    here: 0.45 ms for one row of a 550-tree model, 0.75 ms for 64 rows). A request enqueues its
    batch and awaits; a drain task, scheduled behind the handlers that are ready in the same
    event-loop turn, scores everything queued as one batch per serving state. Alone, a request
    is scored at once; under load, requests share the per-call cost.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[ServingState, OnlineBatch, asyncio.Future[tuple[Scored, int]]]]
        self._pending = []
        self._task: asyncio.Task[None] | None = None

    async def score(self, state: ServingState, batch: OnlineBatch) -> tuple[Scored, int]:
        """The scored batch holding this request's rows, and the offset of its first row."""
        future: asyncio.Future[tuple[Scored, int]] = asyncio.get_running_loop().create_future()
        self._pending.append((state, batch, future))
        if self._task is None:
            self._task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let the handlers ready in this turn enqueue first
        try:
            while self._pending:
                items, self._pending = self._pending, []
                groups: dict[int, list[tuple[OnlineBatch, asyncio.Future[tuple[Scored, int]]]]]
                groups = {}
                states: dict[int, ServingState] = {}
                for state, batch, future in items:
                    groups.setdefault(id(state), []).append((batch, future))
                    states[id(state)] = state
                for key, group in groups.items():
                    try:
                        scored = score_batch(states[key], merge_batches([b for b, _ in group]))
                    except Exception as exc:
                        for _, future in group:
                            if not future.done():
                                future.set_exception(exc)
                        continue
                    offset = 0
                    for batch, future in group:
                        if not future.done():
                            future.set_result((scored, offset))
                        offset += len(batch.customer_ids)
                await asyncio.sleep(0)
        finally:
            self._task = None
