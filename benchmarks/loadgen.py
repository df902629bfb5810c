"""A small HTTP/1.1 load generator for the serving benchmarks (loopback only, bounded).

Raw asyncio keep-alive connections: far lighter than an HTTP client library, so one core of
load drives the one-worker server under test. Two modes:

- `open_loop(rate, seconds)`: requests are *scheduled* at a constant rate; latency counts from
  the scheduled time, so a stalled server shows up as latency (no coordinated omission).
- `closed_loop(connections, seconds)`: each connection sends its next request when the last
  one answers; throughput = answers / seconds (the peak).

- `sustainable_rate(...)`: the highest open-loop rate, probed downwards from the closed-loop
  peak, that the server keeps up with (answers >= 98% of the offered rate, no errors, p99
  under a bound): the honest "peak" to run a long load at a fraction of.

The loops run on uvloop when it is installed (it is in clv's environment: uvicorn's
`standard` extra): the generator's own per-request cost then stays well below the server's,
so the latency measured is the server's. Every loop stops at its deadline and after
`max_requests`; only 127.0.0.1 is allowed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

HOST = "127.0.0.1"
T = TypeVar("T")
Body = Callable[[int], bytes]
Watch = Callable[[int, bytes], None]


@dataclass
class LoadResult:
    """What one load run sent and got back: request counts, wall time, the latency of every
    answered request (seconds) and each error (exception name, or status and start of body)."""

    sent: int = 0
    ok: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    def figures(self, prefix: str) -> dict[str, object]:
        lat = np.asarray(self.latencies, dtype=np.float64) * 1000.0
        pct = (
            {f"{prefix}_p{q}_ms": round(float(np.percentile(lat, q)), 3) for q in (50, 90, 99)}
            if lat.size
            else {}
        )
        return {
            f"{prefix}_requests": self.sent,
            f"{prefix}_ok": self.ok,
            f"{prefix}_errors": self.errors,
            f"{prefix}_seconds": round(self.seconds, 2),
            f"{prefix}_throughput_rps": round(self.ok / self.seconds, 1) if self.seconds else 0.0,
            **pct,
            **({f"{prefix}_error_samples": self.error_samples[:5]} if self.error_samples else {}),
        }


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> _Conn:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:].strip())
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    def close(self) -> None:
        self.writer.close()


def post(path: str, port: int, body: bytes, *, headers: dict[str, str] | None = None) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


async def _closed(
    port: int, path: str, body: Body, connections: int, seconds: float, max_requests: int
) -> LoadResult:
    result = LoadResult()
    deadline = time.perf_counter() + seconds
    counter = iter(range(max_requests))

    async def worker() -> None:
        conn = await _Conn.open(port)
        try:
            for i in counter:
                if time.perf_counter() >= deadline:
                    break
                t0 = time.perf_counter()
                result.sent += 1
                try:
                    status, text = await conn.request(post(path, port, body(i)))
                except (OSError, asyncio.IncompleteReadError) as exc:
                    result.errors += 1
                    result.error_samples.append(type(exc).__name__)
                    conn.close()
                    conn = await _Conn.open(port)
                    continue
                result.latencies.append(time.perf_counter() - t0)
                if status == 200:
                    result.ok += 1
                else:
                    result.errors += 1
                    result.error_samples.append(f"{status} {text[:120]!r}")
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    result.seconds = time.perf_counter() - started
    return result


async def _open(
    port: int,
    path: str,
    body: Body,
    rate: float,
    seconds: float,
    watch: Watch | None,
    max_connections: int,
    max_in_flight: int,
) -> LoadResult:
    result = LoadResult()
    idle: deque[_Conn] = deque()  # FIFO: every pooled connection stays warm
    opened = 0
    n = int(rate * seconds)
    start = time.perf_counter() + 0.05
    tasks: set[asyncio.Task[None]] = set()
    in_flight = asyncio.Semaphore(max_in_flight)

    async def one(i: int, scheduled: float) -> None:
        async with in_flight:  # waiting here still counts: latency runs from `scheduled`
            await send(i, scheduled)

    async def send(i: int, scheduled: float) -> None:
        nonlocal opened
        conn = idle.popleft() if idle else None
        raw = post(path, port, body(i))
        try:
            if conn is None:
                opened += 1
                conn = await _Conn.open(port)
                status, text = await conn.request(raw)
            else:
                try:
                    status, text = await conn.request(raw)
                except (OSError, asyncio.IncompleteReadError):
                    # the server closed an idle keep-alive connection before reading: the
                    # request never arrived; resend once on a fresh connection, as clients do
                    conn.close()
                    opened += 1
                    conn = await _Conn.open(port)
                    status, text = await conn.request(raw)
        except (OSError, asyncio.IncompleteReadError) as exc:
            result.errors += 1
            result.error_samples.append(type(exc).__name__)
            if conn is not None:
                conn.close()
            return
        result.latencies.append(time.perf_counter() - scheduled)
        if status == 200:
            result.ok += 1
            if watch is not None:
                watch(i, text)
        else:
            result.errors += 1
            result.error_samples.append(f"{status} {text[:120]!r}")
        if len(idle) < max_connections:
            idle.append(conn)
        else:
            conn.close()

    for i in range(n):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        result.sent += 1
        task = asyncio.create_task(one(i, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=60)
    result.errors += sum(1 for t in tasks if not t.done())  # never answered
    result.seconds = time.perf_counter() - start
    for conn in idle:
        conn.close()
    return result


Ports = int | Sequence[int]
"""One server, or several replicas: each gets its own loop on a thread of its own (its share
of the rate, or `connections` of its own) and the results are merged."""


def closed_loop(
    port: Ports,
    path: str,
    body: Body,
    *,
    connections: int,
    seconds: float,
    max_requests: int = 2_000_000,
) -> LoadResult:
    if not isinstance(port, int):
        return _each(
            port,
            lambda p: closed_loop(
                p, path, body, connections=connections, seconds=seconds, max_requests=max_requests
            ),
        )
    return _run(_closed(port, path, body, connections, seconds, max_requests))


def open_loop(
    port: Ports,
    path: str,
    body: Body,
    *,
    rate: float,
    seconds: float,
    watch: Watch | None = None,
    max_connections: int = 64,
    max_in_flight: int = 256,
) -> LoadResult:
    if not isinstance(port, int):
        share = rate / len(port)
        return _each(
            port,
            lambda p: open_loop(
                p,
                path,
                body,
                rate=share,
                seconds=seconds,
                watch=watch,
                max_connections=max_connections,
                max_in_flight=max_in_flight,
            ),
        )
    return _run(_open(port, path, body, rate, seconds, watch, max_connections, max_in_flight))


def _each(ports: Sequence[int], run: Callable[[int], LoadResult]) -> LoadResult:
    """`run` on every port at once (a thread each), merged: counts added, the longest wall
    time, every latency and error sample."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(ports)) as pool:
        results = list(pool.map(run, ports))
    return LoadResult(
        sent=sum(r.sent for r in results),
        ok=sum(r.ok for r in results),
        errors=sum(r.errors for r in results),
        seconds=max(r.seconds for r in results),
        latencies=[x for r in results for x in r.latencies],
        error_samples=[x for r in results for x in r.error_samples],
    )


@dataclass(frozen=True)
class Probe:
    rate: float
    result: LoadResult
    kept_up: bool


def sustainable_rate(
    port: Ports,
    path: str,
    body: Body,
    *,
    peak: float,
    seconds: float = 6.0,
    p99_bound_ms: float = 50.0,
    fractions: tuple[float, ...] = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4),
) -> tuple[float, list[Probe]]:
    """The highest rate among `peak` x `fractions` (tried in that order) that the server keeps
    up with under open-loop load: >= 98% of the offered rate answered, no errors, p99 within
    `p99_bound_ms`. Returns (that rate, or the last tried when none kept up; every probe)."""
    probes: list[Probe] = []
    for fraction in fractions:
        rate = peak * fraction
        result = open_loop(port, path, body, rate=rate, seconds=seconds)
        lat = np.asarray(result.latencies, dtype=np.float64)
        p99 = float(np.percentile(lat, 99)) * 1000.0 if lat.size else float("inf")
        achieved = result.ok / result.seconds if result.seconds else 0.0
        kept_up = result.errors == 0 and achieved >= 0.98 * rate and p99 <= p99_bound_ms
        probes.append(Probe(rate, result, kept_up))
        if kept_up:
            return rate, probes
    return probes[-1].rate, probes


def _run(coro: Coroutine[object, object, T]) -> T:
    """Run on uvloop when installed (a lighter client), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
