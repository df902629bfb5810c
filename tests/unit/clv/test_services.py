from __future__ import annotations

import pytest

from clv.core.processes import free_port
from clv.core.services import ServiceUnavailable, check_database, check_redis, redact


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
