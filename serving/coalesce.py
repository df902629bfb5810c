"""Request coalescing: the `/score` requests that arrive together share one store read and
one model call.

Exact, because rows are independent: each request gets back its own rows of the shared batch.
`ReadCoalescer` merges the ids of the requests ready in one event-loop turn into one read: on
the loop itself when the reader can read a few ids without waiting (`read_now`: a local SQLite
file, not locked), else on a worker thread (`clv.serving.workers`), so that a burst of requests
is one job of the bounded queue, not one each. As the read ends, the unexplained requests of
fewer than `clv.serving.workers.OFFLOAD_ROWS` rows together are scored at once, in one model
call, by the callback that hands the rows back (no task). The model stays on the event loop's
thread: scored on a worker, it contended for the GIL with the loop (every request in a queue
behind the switch interval, measured on a quiet machine).
`Coalescer` scores the rest together (explained, or that many rows) on a worker thread.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass

from clv.features.online_read import FeatureReader, OnlineBatch
from clv.serving.routed import Scored, score_batch
from clv.serving.state import ServingState
from clv.serving.workers import OFFLOAD_ROWS, WorkerPool

LOOP_READ_IDS = 16
"""A read of this many ids or fewer is tried on the event loop first, when the reader can
read without waiting (`read_now`: SQLite); a locked store, or more ids, go to a worker."""


class ShortRead(Exception):
    """The feature source answered with another number of rows than ids it was asked for."""


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


def slice_batch(batch: OnlineBatch, start: int, stop: int) -> OnlineBatch:
    """Rows [start, stop) of a batch."""
    if start == 0 and stop == len(batch.customer_ids):
        return batch
    return OnlineBatch(
        customer_ids=batch.customer_ids[start:stop],
        feature_names=batch.feature_names,
        strings=batch.strings,
        values={n: column[start:stop] for n, column in batch.values.items()},
        timestamps=batch.timestamps[start:stop],
    )


@dataclass(frozen=True)
class Read:
    """One request's rows of a coalesced read, and their scores when scored as the read ended
    (`scored`: the scored batch and the request's offset in it; `error`: why scoring failed);
    neither when they are left to the `Coalescer` (explained, or many rows)."""

    batch: OnlineBatch
    scored: tuple[Scored, int] | None = None
    error: Exception | None = None


@dataclass(frozen=True)
class _Request:
    ids: list[str]
    state: ServingState
    explain: bool
    future: asyncio.Future[Read]


class ReadCoalescer:
    """One store read, on a worker thread and bounded by the read timeout, for the requests
    ready in the same event-loop turn (up to `max_ids` ids a read: no longer than the largest
    request's); each request gets its own rows back, scored as the read ends when unexplained
    and, with the others of its serving state, fewer than `OFFLOAD_ROWS` rows.

    Every turn's reads are jobs of their own, started at once (never behind an earlier one),
    so a request waits at most the read timeout. A read that fails, times out or is refused
    fails each of its requests with that error."""

    def __init__(self, reader: FeatureReader, workers: WorkerPool, *, max_ids: int) -> None:
        self.reader = reader
        self.workers = workers
        self.max_ids = max_ids
        self._pending: list[_Request] = []
        self._flush: asyncio.Handle | None = None

    async def read(
        self, customer_ids: list[str], state: ServingState, *, explain: bool = False
    ) -> Read:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Read] = loop.create_future()
        self._pending.append(_Request(customer_ids, state, explain, future))
        if self._flush is None:  # behind the handlers that are ready in this turn
            self._flush = loop.call_soon(self._start)
        return await future

    def _start(self) -> None:
        self._flush = None
        pending, self._pending = self._pending, []
        group: list[_Request] = []
        size = 0
        for request in pending:
            if group and size + len(request.ids) > self.max_ids:
                self._spawn(group)
                group, size = [], 0
            group.append(request)
            size += len(request.ids)
        self._spawn(group)

    def _spawn(self, group: list[_Request]) -> None:
        now = getattr(self.reader, "read_now", None)  # a local store that can say "not now"
        ids = [c for request in group for c in request.ids]
        if now is not None and len(ids) <= LOOP_READ_IDS:
            batch = now(ids)
            if batch is not None:  # read here, on the loop: no thread hop there and back
                try:
                    rows = _cut(group, batch)
                except ShortRead as exc:
                    self._done(group, None, exc)
                else:
                    self._done(group, rows, None)
                return
        job = functools.partial(self._job, group, ids)
        try:
            self.workers.start(job, timed=True, done=functools.partial(self._done, group))
        except Exception as exc:  # the queue is full
            self._done(group, None, exc)

    def _done(
        self, group: list[_Request], rows: list[OnlineBatch] | None, error: BaseException | None
    ) -> None:
        """On the event loop, as the read ends: each request its rows, scored here when few."""
        reads = _scored(group, rows) if error is None and rows is not None else None
        for i, request in enumerate(group):
            if request.future.done():  # its request went away
                continue
            if isinstance(error, asyncio.CancelledError):  # the pool closed: as a task would be
                request.future.cancel()
            elif error is not None:
                request.future.set_exception(error)
            elif reads is not None:
                request.future.set_result(reads[i])

    def _job(self, group: list[_Request], ids: list[str]) -> list[OnlineBatch]:
        """On a worker thread: the group's read (`ids`, its requests' in order), cut into each
        request's rows."""
        return _cut(group, self.reader.read(ids))


def _cut(group: list[_Request], batch: OnlineBatch) -> list[OnlineBatch]:
    """A group's read cut into each request's rows (ShortRead: not one row an id)."""
    ids = sum(len(request.ids) for request in group)
    if len(batch.customer_ids) != ids:
        raise ShortRead(f"feature source returned {len(batch.customer_ids)} rows for {ids} ids")
    rows: list[OnlineBatch] = []
    offset = 0
    for request in group:
        rows.append(slice_batch(batch, offset, offset + len(request.ids)))
        offset += len(request.ids)
    return rows


def _scored(group: list[_Request], rows: list[OnlineBatch]) -> list[Read]:
    """Each request's rows, and the scores of the unexplained ones of each serving state under
    `OFFLOAD_ROWS` rows (one model call per state; the rest is the `Coalescer`'s)."""
    reads = [Read(r) for r in rows]
    states: dict[int, list[int]] = {}
    for i, request in enumerate(group):
        if not request.explain:
            states.setdefault(id(request.state), []).append(i)
    for members in states.values():
        if sum(len(group[i].ids) for i in members) >= OFFLOAD_ROWS:
            continue  # a job of its own: it would hold the event loop
        state = group[members[0]].state
        try:
            scored = score_batch(state, merge_batches([rows[i] for i in members]))
        except Exception as exc:
            for i in members:
                reads[i] = Read(rows[i], error=exc)
            continue
        start = 0
        for i in members:
            reads[i] = Read(rows[i], scored=(scored, start))
            start += len(group[i].ids)
    return reads


class Coalescer:
    """Scores the requests that arrive together in one model call (exact: rows are independent).

    What the read leaves (`ReadCoalescer`): explained requests and many rows. A model
    call has a fixed cost per tree (XGBoost's predictor lays each tree out per call), so
    requests share it: a request enqueues its batch and awaits; a drain task, scheduled behind
    the handlers that are ready in the same event-loop turn, scores everything queued as one
    batch per serving state (and per `explain`). With `workers`, an explained batch (TreeSHAP:
    ~0.3 ms a row) or one of `OFFLOAD_ROWS` rows or more is scored on a worker thread.
    """

    def __init__(self, workers: WorkerPool | None = None) -> None:
        self._workers = workers
        self._pending: list[
            tuple[ServingState, bool, OnlineBatch, asyncio.Future[tuple[Scored, int]]]
        ] = []
        self._task: asyncio.Task[None] | None = None

    async def score(
        self, state: ServingState, batch: OnlineBatch, *, explain: bool = False
    ) -> tuple[Scored, int]:
        """The scored batch holding this request's rows, and the offset of its first row."""
        future: asyncio.Future[tuple[Scored, int]] = asyncio.get_running_loop().create_future()
        self._pending.append((state, explain, batch, future))
        if self._task is None:
            self._task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let the handlers ready in this turn enqueue first
        try:
            while self._pending:
                items, self._pending = self._pending, []
                groups: dict[
                    tuple[int, bool], list[tuple[OnlineBatch, asyncio.Future[tuple[Scored, int]]]]
                ] = {}
                states: dict[int, ServingState] = {}
                for state, explain, batch, future in items:
                    groups.setdefault((id(state), explain), []).append((batch, future))
                    states[id(state)] = state
                for (key, explain), group in groups.items():
                    try:
                        scored = await self._score(states[key], [b for b, _ in group], explain)
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

    async def _score(
        self, state: ServingState, batches: list[OnlineBatch], explain: bool
    ) -> Scored:
        merged = merge_batches(batches)
        job = functools.partial(score_batch, state, merged, explain_rows=explain)
        if self._workers is None or not (explain or len(merged.customer_ids) >= OFFLOAD_ROWS):
            return job()
        return await self._workers.run(job, timed=False)
