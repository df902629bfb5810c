"""Reaching the shared services a profile names (databases, Redis), with errors a user can read.

A URI's password never appears in output: `redact` is applied to every URI we print.
"""

from __future__ import annotations

import re

from clv.core.errors import ClvError


class ServiceUnavailable(ClvError):
    """A configured service cannot be reached; the message names it, password hidden."""


SQL_SCHEMES = ("postgresql", "postgres", "mysql", "sqlite", "mssql", "oracle")
"""URI schemes that are SQLAlchemy databases (a registry, a tracking store, an Optuna study)."""


def uri_scheme(uri: str) -> str:
    """The scheme without its driver (`postgresql+psycopg://...` -> `postgresql`); "" for a
    plain path."""
    return uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""


def is_sql(uri: str) -> bool:
    """A SQLAlchemy database URL (SQLite included)."""
    return uri_scheme(uri) in SQL_SCHEMES


def redact(uri: str, *, mask: str = "***") -> str:
    """The URI with its password replaced by `mask`: a URL's user:password@, and a Redis
    connection string's password= option; other strings are returned as they are."""
    hidden = re.sub(r"(//[^:/@]+:)[^@/]*@", lambda m: f"{m.group(1)}{mask}@", uri)
    return re.sub(r"(password=)[^,]*", lambda m: f"{m.group(1)}{mask}", hidden)


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = [ln.strip() for ln in str(orig).splitlines() if ln.strip()]
    text = lines[0] if lines else type(orig).__name__
    # psycopg: 'connection failed: connection to server at "h", port p failed: Connection refused'
    if "failed:" in text:
        text = text.rsplit("failed:", 1)[-1].strip()
    return redact(text)


def check_database(uri: str, *, purpose: str, timeout_seconds: int = 5) -> None:
    """Connect once to a SQLAlchemy URL (not SQLite) and fail fast with one clear line."""
    if uri_scheme(uri) in ("", "sqlite"):
        return
    from sqlalchemy import create_engine, text

    args: dict[str, object] = {}
    if uri_scheme(uri) in ("postgresql", "postgres"):
        args["connect_timeout"] = timeout_seconds
    engine = create_engine(uri, connect_args=args, poolclass=None)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        raise ServiceUnavailable(
            f"cannot reach the {purpose} at {redact(uri)}: {_reason(exc)}"
        ) from None
    finally:
        engine.dispose()


def check_redis(connection: str, *, purpose: str = "Feast online store (Redis)") -> None:
    """PING a Redis `host:port[,options]` connection string."""
    import redis

    host_port = connection.split(",", 1)[0]
    host, _, port = host_port.rpartition(":")
    client = redis.Redis(host=host or "localhost", port=int(port or 6379), socket_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise ServiceUnavailable(f"cannot reach the {purpose} at {host_port}: {exc}") from None
    finally:
        client.close()
