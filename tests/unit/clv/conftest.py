"""Fixtures of the clv package tests: services that cannot be reached."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that is bound and listening but never accepts and never answers: the
    kernel completes a client's handshake (then, its backlog full, drops the next ones), and
    nothing ever replies, like a blackholed host. The client waits until its own timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        yield int(listener.getsockname()[1])
