"""The socket `clv serve` listens on: bound before anything says where it serves, so the
address announced is the one bound (port 0: the free port the system chose) and a port in use
is one clear error, not a log line of uvicorn's after "serving on ..."."""

from __future__ import annotations

import errno
import socket

from fastapi import FastAPI

from clv.core.errors import ClvError

MAX_PORT = 65_535


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on `host:port` (0 <= port <= 65535; 0 = any free port)."""
    if not 0 <= port <= MAX_PORT:
        raise ClvError(f"port {port} is out of range: use 1-{MAX_PORT}, or 0 for any free port")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn chooses
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise ClvError(f"cannot listen on {host}:{port}: {reason}") from None
    sock.set_inheritable(True)
    return sock


def bound_url(sock: socket.socket) -> tuple[str, int, str]:
    """The host, port and URL `sock` is really bound to."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return host, int(port), f"http://{shown}:{port}"


def run(app: FastAPI, sock: socket.socket) -> None:
    """Serve `app` with uvicorn on the already bound `sock` until stopped."""
    import uvicorn

    config = uvicorn.Config(app, workers=1, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
