"""The server's worker threads: the blocking work of requests, off the event loop.

Online-store reads (SQLite, Redis), explain and big batches run on `serving.worker_threads`
threads. At most `serving.worker_queue` jobs are held at once, running or waiting: one more is
refused at once (`Busy`), never queued without bound. A job given a timeout that passes is
abandoned (`TimedOut`): the request answers at once, while the thread finishes the job and its
slot stays taken until then, so a hung store fills the bound rather than the machine. Both are
`Unavailable`: the server answers 503 with `Retry-After`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from clv.core.settings import ServingSettings

T = TypeVar("T")

OFFLOAD_ROWS = 256
"""Scoring or answering this many rows or more goes to a worker thread: 1,000 rows of a small
model take ~15 ms to score and ~17 ms to encode as JSON, enough to delay `/healthz`."""
EXPLAINED_ROW_WEIGHT = 4
"""An explained row's answer is ~3.5 times a plain one's (60 ms to encode 1,000 rows)."""


class Unavailable(Exception):
    """A job refused or abandoned; `retry_after`: the seconds a client should wait."""

    def __init__(self, reason: str, *, retry_after: int) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Busy(Unavailable):
    """Every slot of the queue is taken."""


class TimedOut(Unavailable):
    """The job did not finish within its timeout."""


class WorkerPool:
    """A few threads with a bounded queue; `run` awaits one job with an optional timeout."""

    def __init__(self, *, threads: int, queue: int, timeout_seconds: float) -> None:
        self.threads = threads
        self.queue = max(queue, 1)
        self.timeout_seconds = timeout_seconds
        self.retry_after = max(1, math.ceil(timeout_seconds))
        self._slots = threading.BoundedSemaphore(self.queue)
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, serving: ServingSettings) -> WorkerPool:
        return cls(
            threads=serving.worker_threads,
            queue=serving.worker_queue,
            timeout_seconds=serving.read_timeout_seconds,
        )

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="clv-worker")
            return self._executor

    async def run(self, job: Callable[[], T], *, timed: bool) -> T:
        """`job()` on a worker thread; `timed`: give up after `serving.read_timeout_seconds`
        (a store read), else wait for it (scoring, which always finishes)."""
        waiting = asyncio.wrap_future(self._submit(job))
        if not timed:
            return await waiting
        try:
            return await asyncio.wait_for(waiting, self.timeout_seconds)
        except TimeoutError:  # a job still queued is cancelled; a running one finishes alone
            raise self._timed_out() from None

    def start(
        self,
        job: Callable[[], T],
        *,
        timed: bool,
        done: Callable[[T | None, BaseException | None], None],
    ) -> None:
        """`run` without a task to await it: `done(result, error)` is called once on the
        running event loop, when the job ends (a `CancelledError` if `close` dropped it) or
        (`timed`) with `TimedOut` when the read timeout passes first; raises `Busy` at once.
        The request path's hop: one callback from the thread, where `run` takes a task, a
        wrapped future and `wait_for`."""
        loop = asyncio.get_running_loop()
        future = self._submit(job)
        settled = False
        timer: asyncio.TimerHandle | None = None

        def settle(result: T | None, error: BaseException | None) -> None:  # on the loop
            nonlocal settled
            if settled:
                return
            settled = True
            if timer is not None:
                timer.cancel()
            done(result, error)

        def finished(ended: Future[T]) -> None:  # on the worker thread (or a canceller's)
            result: T | None = None
            error: BaseException | None
            if ended.cancelled():  # by the timeout (settled already) or by `close`
                error = asyncio.CancelledError()
            else:
                error = ended.exception()
                result = None if error else ended.result()
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
                loop.call_soon_threadsafe(settle, result, error)

        def expire() -> None:  # a job still queued is cancelled; a running one finishes alone
            future.cancel()
            settle(None, self._timed_out())

        future.add_done_callback(finished)
        if timed:
            timer = loop.call_later(self.timeout_seconds, expire)

    def _submit(self, job: Callable[[], T]) -> Future[T]:
        """`job` queued for a thread, holding a slot of the queue until it ends (Busy if none)."""
        if not self._slots.acquire(blocking=False):
            raise Busy(
                f"{self.queue} jobs already running or waiting (serving.worker_queue)",
                retry_after=self.retry_after,
            )
        try:
            future: Future[T] = self._pool().submit(job)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        return future

    def _timed_out(self) -> TimedOut:
        return TimedOut(
            f"no answer within {self.timeout_seconds:g} s (serving.read_timeout_seconds)",
            retry_after=self.retry_after,
        )

    def close(self) -> None:
        """Stop taking jobs and drop the queued ones; running jobs end by themselves."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
