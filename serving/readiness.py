"""The online store's half of `/readyz`: the reader's own check, bounded and shared.

`StoreCheck.problem()` runs `FeatureReader.ping()` (for SQLite: missing, locked, corrupt or
stale, see `clv.features.online_read.SqliteOnlineReader.ping`) on a thread of its own, never
on the event loop and never queued behind the requests' reads (`clv.serving.workers`), and
gives up after `serving.read_timeout_seconds`. Probes that arrive while a check runs wait for
that check: a hung store holds one thread, however often it is probed.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from clv.features.online_read import FeatureReader
from clv.serving.state import describe


class StoreCheck:
    """`problem()`: None when the online store answers its check, else why not."""

    def __init__(self, reader: FeatureReader, *, timeout_seconds: float) -> None:
        self.reader = reader
        self.timeout_seconds = timeout_seconds
        self._executor: ThreadPoolExecutor | None = None
        self._running: Future[str | None] | None = None
        self._lock = threading.Lock()

    def _start(self) -> Future[str | None]:
        with self._lock:
            if self._running is None or self._running.done():
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(1, thread_name_prefix="clv-store-check")
                self._running = self._executor.submit(self.reader.ping)
            return self._running

    async def problem(self) -> str | None:
        running = asyncio.wrap_future(self._start())
        running.add_done_callback(_retrieved)  # a check that fails after we gave up: no log
        try:  # shielded: one probe giving up leaves the check to the others
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that arrives as the check completes, and the supervisor's loop (which awaits this
            # every serving.stats_seconds) would then outlive the server's shutdown
            async with asyncio.timeout(self.timeout_seconds):
                return await asyncio.shield(running)
        except TimeoutError:
            return (
                f"online store check gave no answer within {self.timeout_seconds:g} s "
                "(serving.read_timeout_seconds): the store hangs or is locked"
            )
        except Exception as exc:
            return f"online store check failed: {describe(exc)}"

    def close(self) -> None:
        with self._lock:
            executor, self._executor, self._running = self._executor, None, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


def _retrieved(future: asyncio.Future[str | None]) -> None:
    if not future.cancelled():
        future.exception()
