"""Reaching the shared services a profile names (databases, an MLflow server, Redis), with
errors a user can read, within `services.connect_timeout_seconds`.

A check either returns (the service answered) or raises ServiceUnavailable with one line:
`cannot reach the <purpose> at <uri>: <reason>`. A service that refuses the connection fails at
once; one that does not answer (a blackholed address, a server that never replies) fails when
the timeout runs out, whatever the driver does: the attempt runs in a daemon thread that is
abandoned at the deadline. A URI's password never appears in output: `redact` is applied to
every URI we print.
"""

from __future__ import annotations

import functools
import math
import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from clv.core.errors import ClvError, ConfigError

if TYPE_CHECKING:
    from clv.core.settings import Settings


class ServiceUnavailable(ClvError):
    """A configured service cannot be reached; the message names it, password hidden."""


SQL_SCHEMES = ("postgresql", "postgres", "mysql", "sqlite", "mssql", "oracle")
"""URI schemes that are SQLAlchemy databases (a registry, a tracking store, an Optuna study)."""

HTTP_SCHEMES = ("http", "https")
"""URI schemes of a tracking server (`mlflow server`) rather than a database."""

DEFAULT_CONNECT_TIMEOUT = 10.0
"""Seconds; the default of `services.connect_timeout_seconds`."""


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


def connect_args(uri: str, *, timeout_seconds: float) -> dict[str, object]:
    """DBAPI options that bound one connection attempt to about `timeout_seconds`, for the
    engines clv creates itself: `connect_timeout` (whole seconds; libpq's minimum is 2) for
    Postgres through psycopg and for MySQL; {} for SQLite and other drivers."""
    scheme, _, driver = uri.split("://", 1)[0].lower().partition("+")
    seconds = max(1, math.ceil(timeout_seconds))
    if scheme in ("postgresql", "postgres") and driver in ("", "psycopg", "psycopg2"):
        return {"connect_timeout": max(2, seconds)}
    if scheme == "mysql" and driver in ("", "pymysql", "mysqldb"):
        return {"connect_timeout": seconds}
    return {}


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = [ln.strip() for ln in str(orig).splitlines() if ln.strip()]
    text = lines[0] if lines else type(orig).__name__
    # psycopg: 'connection failed: connection to server at "h", port p failed: Connection refused'
    if "failed:" in text:
        text = text.rsplit("failed:", 1)[-1].strip()
    # socket: '[Errno 111] Connection refused'; redis: 'Error 111 connecting to h:p. Connection
    # refused.'; the address is in the message already
    text = re.sub(r"^\[Errno -?\d+\]\s*|^Error -?\d+ connecting to \S+?\.\s+", "", text)
    return redact(text.rstrip("."))


def _within(seconds: float, attempt: Callable[[], None]) -> BaseException | None:
    """Run `attempt` in a daemon thread: None when it returned in time, else its exception, or
    a TimeoutError when it had not finished after `seconds` (the thread is left behind: a
    driver stuck in a connect must not hold the command). The clients inside are given a
    second more, so that the message of a silent service is always this one."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            attempt()
        except BaseException as exc:  # reported to the caller, not raised in the thread
            outcome.append(exc)
        else:
            outcome.append(None)

    worker = threading.Thread(target=run, name="clv-service-check", daemon=True)
    worker.start()
    worker.join(seconds)
    if not outcome:
        return TimeoutError(f"no answer within {seconds:g} s")
    return outcome[0]


def _unavailable(purpose: str, where: str, exc: BaseException) -> ServiceUnavailable:
    return ServiceUnavailable(f"cannot reach the {purpose} at {redact(where)}: {_reason(exc)}")


def check_database(
    uri: str, *, purpose: str, timeout_seconds: float = DEFAULT_CONNECT_TIMEOUT
) -> None:
    """Connect once to a SQLAlchemy URL (not SQLite) and run `SELECT 1`, within the timeout."""
    if uri_scheme(uri) in ("", "sqlite"):
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import NoSuchModuleError
    from sqlalchemy.pool import NullPool

    driver_args = connect_args(uri, timeout_seconds=timeout_seconds + 1)  # ends it, later
    try:
        engine = create_engine(uri, connect_args=driver_args, poolclass=NullPool)
    except (ImportError, NoSuchModuleError) as exc:
        raise ConfigError(f"{purpose} {redact(uri)}: no database driver: {exc}") from None

    def select_one() -> None:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        finally:
            engine.dispose()

    failure = _within(timeout_seconds, select_one)
    if failure is not None:
        raise _unavailable(purpose, uri, failure) from None


def check_http(uri: str, *, purpose: str, timeout_seconds: float = DEFAULT_CONNECT_TIMEOUT) -> None:
    """GET `<uri>/health` of a tracking server: any HTTP answer (even 401 or 404) or a TLS
    handshake problem means the server is there; no answer within the timeout does not."""
    import http.client
    import ssl

    parts = urlsplit(uri)
    secure = parts.scheme.lower() == "https"
    factory = http.client.HTTPSConnection if secure else http.client.HTTPConnection
    port = parts.port or (443 if secure else 80)

    def get_health() -> None:
        conn = factory(parts.hostname or "localhost", port, timeout=timeout_seconds + 1)
        try:
            conn.request("GET", parts.path.rstrip("/") + "/health")
            conn.getresponse().read()
        except ssl.SSLError:
            return  # it answered; certificates are MLflow's to judge (MLFLOW_TRACKING_INSECURE_TLS)
        finally:
            conn.close()

    failure = _within(timeout_seconds, get_health)
    if failure is not None:
        raise _unavailable(purpose, uri, failure) from None


def check_redis(
    connection: str,
    *,
    purpose: str = "Feast online store (Redis)",
    timeout_seconds: float = DEFAULT_CONNECT_TIMEOUT,
) -> None:
    """PING a Redis `host:port[,options]` connection string (password=, username=, ssl=, db=
    are used); an authentication error is an answer, no connection within the timeout is not."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    host_port, *options = connection.split(",")
    host, _, port = host_port.rpartition(":")
    opts = dict(o.split("=", 1) for o in options if "=" in o)
    client = redis.Redis(
        host=host or "localhost",
        port=int(port or 6379),
        password=opts.get("password"),
        username=opts.get("username"),
        db=int(opts.get("db", 0)),
        ssl=opts.get("ssl", "").lower() == "true",
        socket_timeout=timeout_seconds + 1,  # the deadline below comes first
        socket_connect_timeout=timeout_seconds + 1,
        retry=Retry(NoBackoff(), 0),
    )

    def ping() -> None:
        try:
            client.ping()
        except (redis.AuthenticationError, redis.ResponseError):
            return  # it answered
        finally:
            client.close()

    failure = _within(timeout_seconds, ping)
    if failure is not None:
        raise _unavailable(purpose, host_port, failure) from None


def check_service(
    uri: str, *, purpose: str, timeout_seconds: float = DEFAULT_CONNECT_TIMEOUT
) -> None:
    """Check a tracking or storage URI by its kind: a database (SQLite needs no check), a
    tracking server over HTTP(S); anything else (a local path, `file:`) is not a service."""
    if is_sql(uri):
        check_database(uri, purpose=purpose, timeout_seconds=timeout_seconds)
    elif uri_scheme(uri) in HTTP_SCHEMES:
        check_http(uri, purpose=purpose, timeout_seconds=timeout_seconds)


@functools.lru_cache(maxsize=32)
def require_service(uri: str, *, purpose: str, timeout_seconds: float) -> None:
    """`check_service`, once per process and URI while it answers (a failure is not cached): the
    adapters call this every time they connect, the server on every registry poll."""
    check_service(uri, purpose=purpose, timeout_seconds=timeout_seconds)


def tracking_purpose(uri: str) -> str:
    """How errors name the tracking store: a database, or a server over HTTP(S)."""
    kind = "server" if uri_scheme(uri) in HTTP_SCHEMES else "database"
    return f"MLflow tracking {kind}"


def require_tracking(settings: Settings) -> None:
    """The workspace's MLflow tracking store (runs, registry, alias history) answers."""
    require_service(
        settings.tracking_uri,
        purpose=tracking_purpose(settings.tracking_uri),
        timeout_seconds=settings.services.connect_timeout_seconds,
    )


def require_optuna_storage(settings: Settings) -> None:
    """The workspace's Optuna storage answers."""
    require_service(
        settings.optuna_storage,
        purpose="Optuna storage",
        timeout_seconds=settings.services.connect_timeout_seconds,
    )


def require_feast_registry(settings: Settings) -> None:
    """The Feast registry answers, when it is a database (Feast's SQL registry)."""
    registry = settings.feast.registry
    if registry is not None and is_sql(registry):
        require_service(
            registry,
            purpose="Feast registry database",
            timeout_seconds=settings.services.connect_timeout_seconds,
        )


def require_online_store(settings: Settings) -> None:
    """The Feast online store answers, when it is Redis (checked each time: not cached)."""
    if settings.feast.online_store == "redis":
        check_redis(
            settings.feast.redis_connection,
            timeout_seconds=settings.services.connect_timeout_seconds,
        )
