"""The alias history adapter: an append-only table `clv_alias_history` in the tracking database.

Same SQLAlchemy code on SQLite (the embedded default) and Postgres (production). Alias changes
are serialized by a lease on a lock row (`clv_alias_lock`, one row per model): acquiring it is
one compare-and-set `UPDATE ... WHERE holder IS NULL OR expires < now`, atomic on both
databases. A lease rather than a held `BEGIN IMMEDIATE` transaction because with SQLite the
history and MLflow's own tables share one file: a writer holding the database lock would block
MLflow's alias write forever. A holder that dies loses its lease after `LEASE_SECONDS`.

A change is written in two steps around the MLflow call (see `clv.registry.moves`): a
`pending` row, then `done` (or the row is deleted when the alias call fails). A `pending` row
left by a crash is reconciled by the next holder against the alias's actual version.
"""

from __future__ import annotations

import functools
import getpass
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from clv.core.errors import ClvError, ConfigError
from clv.core.services import (
    DEFAULT_CONNECT_TIMEOUT,
    connect_args,
    is_sql,
    redact,
    require_service,
    tracking_purpose,
    uri_scheme,
)

LEASE_SECONDS = 30.0
PENDING, DONE, FAILED = "pending", "done", "failed"

_meta = sa.MetaData()
history_table = sa.Table(
    "clv_alias_history",
    _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("model", sa.String(200), nullable=False, index=True),
    sa.Column("alias", sa.String(50), nullable=False),
    sa.Column("action", sa.String(50), nullable=False),
    sa.Column("from_version", sa.String(20), nullable=True),
    sa.Column("to_version", sa.String(20), nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("gates", sa.Text, nullable=True),
    sa.Column("forced", sa.Boolean, nullable=False, default=False),
    sa.Column("status", sa.String(20), nullable=False),
)
lock_table = sa.Table(
    "clv_alias_lock",
    _meta,
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=True),
    sa.Column("expires", sa.Float, nullable=False, default=0.0),
)


class LockTimeoutError(ClvError):
    """Another alias change held the lock for longer than the timeout."""


class HistoryDatabaseError(ClvError):
    """The tracking database failed for a reason other than contention (read-only, missing,
    corrupt...): reported as itself, at once."""


CONTENTION_SQLSTATES = ("55P03", "40001", "40P01")
"""Postgres lock_not_available, serialization_failure, deadlock_detected."""


def is_contention(exc: DBAPIError) -> bool:
    """A lock or busy error (another writer: retry), as opposed to any other database error."""
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)
    if code in CONTENTION_SQLSTATES:
        return True
    text = str(orig if orig is not None else exc).lower()
    return "database is locked" in text or "database table is locked" in text or "busy" in text


def database_error(uri: str, exc: DBAPIError) -> HistoryDatabaseError:
    """A one-line error naming the database and its own reason."""
    orig = getattr(exc, "orig", None)
    lines = [ln.strip() for ln in str(orig if orig is not None else exc).splitlines() if ln]
    reason = lines[0] if lines else type(exc).__name__
    return HistoryDatabaseError(f"alias history database {redact(uri)}: {reason}")


@dataclass(frozen=True)
class HistoryRow:
    """One alias change: when, who, which alias, from which version to which, why."""

    id: int
    at: str
    actor: str
    model: str
    alias: str
    action: str
    from_version: str | None
    to_version: str | None
    reason: str
    gates: dict[str, object] | None
    forced: bool
    status: str

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def default_actor() -> str:
    """`user@host` of this process (CLV_ACTOR overrides, e.g. for a CI job's name)."""
    chosen = os.environ.get("CLV_ACTOR")
    if chosen:
        return chosen
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@functools.lru_cache(maxsize=8)
def _engine(uri: str, connect_timeout: float) -> sa.Engine:
    scheme = uri_scheme(uri)
    if not is_sql(uri):
        raise ConfigError(
            f"mlflow.tracking_uri {uri.split('://', 1)[0]}://... is not a database: "
            "the alias history needs a SQL tracking store"
        )
    require_service(uri, purpose=tracking_purpose(uri), timeout_seconds=connect_timeout)
    args = (
        {"timeout": 30.0}
        if scheme == "sqlite"
        else connect_args(uri, timeout_seconds=connect_timeout)
    )
    engine = sa.create_engine(uri, connect_args=args, pool_pre_ping=scheme != "sqlite")
    _meta.create_all(engine, checkfirst=True)
    return engine


class History:
    """The history table and lock of one tracking database."""

    def __init__(
        self,
        uri: str,
        *,
        lock_timeout: float = 30.0,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        self.uri = uri
        self.lock_timeout = lock_timeout
        self.connect_timeout = connect_timeout  # no answer this long: ServiceUnavailable

    @property
    def engine(self) -> sa.Engine:
        try:
            return _engine(self.uri, self.connect_timeout)
        except OperationalError:
            _engine.cache_clear()  # tables created concurrently: try once more
            try:
                return _engine(self.uri, self.connect_timeout)
            except OperationalError as exc:
                raise database_error(self.uri, exc) from exc

    # ------------------------------------------------------------------ lock

    @contextmanager
    def lease(self, model: str) -> Iterator[str]:
        """Hold the model's alias lock for the block; raises LockTimeoutError after the timeout."""
        token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        deadline = time.monotonic() + self.lock_timeout
        try:
            self._ensure_lock_row(model)
        except OperationalError as exc:
            raise database_error(self.uri, exc) from exc
        while not self._try_acquire(model, token):
            if time.monotonic() > deadline:
                raise LockTimeoutError(
                    f"another alias change on model {model!r} holds the lock; retry in a moment"
                )
            time.sleep(0.02 + (uuid.uuid4().int % 30) / 1000.0)
        try:
            yield token
        finally:
            with self.engine.begin() as conn:
                conn.execute(
                    lock_table.update()
                    .where(lock_table.c.model == model, lock_table.c.holder == token)
                    .values(holder=None, expires=0.0)
                )

    def _ensure_lock_row(self, model: str) -> None:
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(lock_table.c.model).where(lock_table.c.model == model)
            ).first()
        if found is not None:
            return
        try:
            with self.engine.begin() as conn:
                conn.execute(lock_table.insert().values(model=model, holder=None, expires=0.0))
        except IntegrityError:
            pass  # created by a concurrent caller

    def _try_acquire(self, model: str, token: str) -> bool:
        now = time.time()
        try:
            with self.engine.begin() as conn:
                result = conn.execute(
                    lock_table.update()
                    .where(
                        lock_table.c.model == model,
                        sa.or_(lock_table.c.holder.is_(None), lock_table.c.expires < now),
                    )
                    .values(holder=token, expires=now + LEASE_SECONDS)
                )
                return bool(result.rowcount == 1)
        except OperationalError as exc:
            if is_contention(exc):  # SQLite "database is locked" under contention: try again
                return False
            raise database_error(self.uri, exc) from exc

    # ------------------------------------------------------------------ rows

    def begin(
        self,
        *,
        model: str,
        alias: str,
        action: str,
        from_version: str | None,
        to_version: str | None,
        reason: str,
        actor: str,
        gates: Mapping[str, object] | None = None,
        forced: bool = False,
    ) -> int:
        """Write a `pending` row for a change about to happen; its id."""
        with self.engine.begin() as conn:
            result = conn.execute(
                history_table.insert().values(
                    at=datetime.now(UTC).isoformat(timespec="milliseconds"),
                    actor=actor,
                    model=model,
                    alias=alias,
                    action=action,
                    from_version=from_version,
                    to_version=to_version,
                    reason=reason,
                    gates=json.dumps(gates) if gates is not None else None,
                    forced=forced,
                    status=PENDING,
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def finish(self, row_id: int, *, status: str = DONE) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                history_table.update().where(history_table.c.id == row_id).values(status=status)
            )

    def discard(self, row_id: int) -> None:
        """Remove a pending row whose change did not happen (the alias call failed)."""
        with self.engine.begin() as conn:
            conn.execute(
                history_table.delete().where(
                    history_table.c.id == row_id, history_table.c.status == PENDING
                )
            )

    def pending(self, model: str) -> list[HistoryRow]:
        return [r for r in self.rows(model, limit=None) if r.status == PENDING]

    def rows(self, model: str, *, limit: int | None = 50) -> list[HistoryRow]:
        """Rows of a model, newest first."""
        query = (
            sa.select(history_table)
            .where(history_table.c.model == model)
            .order_by(history_table.c.id.desc())
        )
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            found = conn.execute(query).mappings().all()
        return [
            HistoryRow(
                id=int(r["id"]),
                at=str(r["at"]),
                actor=str(r["actor"]),
                model=str(r["model"]),
                alias=str(r["alias"]),
                action=str(r["action"]),
                from_version=r["from_version"],
                to_version=r["to_version"],
                reason=str(r["reason"]),
                gates=json.loads(r["gates"]) if r["gates"] else None,
                forced=bool(r["forced"]),
                status=str(r["status"]),
            )
            for r in found
        ]
