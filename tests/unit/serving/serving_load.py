"""Load for the store-fault test, run as its own process (so that its client work never holds
the test process's GIL while that process times `/healthz`): a burst of concurrent `/score`
and `/readyz` requests, then one of each after the other until DEADLINE (on the system's
monotonic clock). Prints every answer as one JSON list.

    python serving_load.py URL DEADLINE IDS SCORE_BURST READY_BURST
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import httpx

Answer = dict[str, object]


async def _timed(http: httpx.AsyncClient, method: str, path: str, body: object = None) -> Answer:
    started = time.monotonic()
    response = await http.request(method, path, json=body)
    return {
        "path": path,
        "seconds": time.monotonic() - started,
        "status": response.status_code,
        "body": response.json(),
        "retry_after": response.headers.get("retry-after"),
    }


async def burst(
    url: str, *, deadline: float, ids: list[str], score_burst: int, ready_burst: int
) -> list[Answer]:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
        score = {"customer_ids": ids}
        answers = list(
            await asyncio.gather(
                *(_timed(http, "POST", "/score", score) for _ in range(score_burst)),
                *(_timed(http, "GET", "/readyz") for _ in range(ready_burst)),
            )
        )
        while time.monotonic() < deadline:
            answers.append(await _timed(http, "POST", "/score", score))
            answers.append(await _timed(http, "GET", "/readyz"))
    return answers


if __name__ == "__main__":
    url, deadline, ids, score_burst, ready_burst = sys.argv[1:6]
    answers = asyncio.run(
        burst(
            url,
            deadline=float(deadline),
            ids=ids.split(","),
            score_burst=int(score_burst),
            ready_burst=int(ready_burst),
        )
    )
    json.dump(answers, sys.stdout)
