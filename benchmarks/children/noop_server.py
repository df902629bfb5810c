"""The machine's floor under the serving benchmark: uvicorn as `clv serve` runs it
(clv.serving.listen.run: one worker, no access log, uvicorn's default loop and HTTP parser)
answering every request with a fixed 200 and `{}`, reading nothing and scoring nothing. The same
load generator against it measures what this machine and client cost before any clv work.

    python -m benchmarks.children.noop_server PORT
"""

from __future__ import annotations

import sys

from starlette.types import Receive, Scope, Send

BODY = b"{}"
HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"2")]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """A fixed answer to every HTTP request (its body read first, as a real endpoint does)."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def main() -> None:
    import uvicorn

    from clv.serving.listen import bind

    sock = bind("127.0.0.1", int(sys.argv[1]))
    config = uvicorn.Config(app, workers=1, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
