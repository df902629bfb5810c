from __future__ import annotations

import http.server
import socket
import threading
import time

import pytest

from clv.core.processes import free_port
from clv.core.services import (
    ServiceUnavailable,
    check_database,
    check_redis,
    check_service,
    redact,
)


def test_redact_hides_only_the_password() -> None:
    uri = "postgresql+psycopg://clv:s3cr:et@db.example:5432/mlflow"
    assert redact(uri) == "postgresql+psycopg://clv:***@db.example:5432/mlflow"
    assert redact("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    assert redact("postgresql://clv@h/db") == "postgresql://clv@h/db"


def test_unreachable_database_is_one_line_naming_the_uri_without_password() -> None:
    uri = f"postgresql+psycopg://clv:hunter2@127.0.0.1:{free_port()}/mlflow"
    with pytest.raises(ServiceUnavailable) as info:
        check_database(uri, purpose="MLflow tracking database")
    message = str(info.value)
    assert "hunter2" not in message
    assert "clv:***@127.0.0.1" in message and "MLflow tracking database" in message
    assert "refused" in message.lower()
    assert "\n" not in message


def test_sqlite_needs_no_check(tmp_path: object) -> None:
    check_database("sqlite:////nonexistent/dir/x.db", purpose="anything")  # no server to reach


def test_unreachable_redis_names_the_address() -> None:
    port = free_port()
    with pytest.raises(ServiceUnavailable, match=f"127.0.0.1:{port}"):
        check_redis(f"127.0.0.1:{port}")


def test_a_database_that_never_answers_fails_at_the_timeout_naming_it(silent_port: int) -> None:
    uri = f"postgresql+psycopg://clv:hunter2@127.0.0.1:{silent_port}/mlflow"
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as info:
        check_database(uri, purpose="MLflow tracking database", timeout_seconds=1.0)
    seconds = time.monotonic() - started
    assert str(info.value) == (
        f"cannot reach the MLflow tracking database at "
        f"postgresql+psycopg://clv:***@127.0.0.1:{silent_port}/mlflow: no answer within 1 s"
    )
    assert seconds < 1.8, f"gave up after {seconds:.1f} s (libpq's own minimum is 2 s)"


def test_a_tracking_server_is_reached_over_http_refused_silent_or_answering(
    silent_port: int,
) -> None:
    refused = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServiceUnavailable, match=r"tracking server at .*: Connection refused$"):
        check_service(refused, purpose="MLflow tracking server", timeout_seconds=1.0)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match="no answer within 1 s"):
        check_service(f"http://127.0.0.1:{silent_port}", purpose="x", timeout_seconds=1.0)
    assert time.monotonic() - started < 1.8

    class NoHealth(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # a proxy without /health: 404 is still an answer
            self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NoHealth)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        check_service(f"http://127.0.0.1:{server.server_port}/", purpose="x", timeout_seconds=1.0)
    finally:
        server.shutdown()
        server.server_close()


def test_redis_that_never_answers_fails_at_the_timeout(silent_port: int) -> None:
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match=f"127.0.0.1:{silent_port}: ") as info:
        check_redis(f"127.0.0.1:{silent_port},password=hunter2", timeout_seconds=1.0)
    assert time.monotonic() - started < 1.8
    assert "hunter2" not in str(info.value)


def test_redis_that_asks_for_a_password_has_answered() -> None:
    """NOAUTH is Redis answering: the check is about reaching it, not about the password."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def noauth() -> None:
            conn, _ = listener.accept()
            with conn:
                while conn.recv(4096):
                    conn.sendall(b"-NOAUTH Authentication required.\r\n")

        threading.Thread(target=noauth, daemon=True).start()
        check_redis(f"127.0.0.1:{listener.getsockname()[1]}", timeout_seconds=2.0)
