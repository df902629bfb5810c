"""The offline store's one writer: a workspace lock, staged table files, a journal, renames.

Ingest parses files without the lock; it takes `store_writer` to read the stored tables, write
their next versions beside them and commit them. Under the lock there is one writer per
workspace, so N concurrent ingests store exactly the union of their rows (each reads the store
its predecessor committed). A commit writes every staged file to disk (fsync), then a journal
naming the renames, then renames; the journal goes last. A crash before the journal leaves the
previous state (its staged files are removed by the next writer); a crash after it is rolled
forward by the next writer, before it reads anything. Readers never see a half-written table:
each file is replaced by a rename.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from clv.core.contracts import TableName
from clv.core.errors import DataError
from clv.core.processes import process_state
from clv.core.settings import Settings
from clv.core.store import table_path

LOCK_FILE = ".ingest.lock"
JOURNAL_FILE = ".commit.json"
STAGED_SUFFIX = ".staged"
"""Staged files: `.<name>.<hex>.staged` beside the file they become (same file system)."""
POLL_SECONDS = 0.2


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _holder(lock: Path) -> str:
    """Who holds the lock, as its holder wrote it (empty while it is being written)."""
    try:
        info = json.loads(lock.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another ingest"
    where = f"pid {info.get('pid')} on {info.get('host')}, since {info.get('since')}"
    return f"the ingest of {info.get('what', '?')} ({where})"


class StoreWriter:
    """The store as this writer sees it: the committed tables and the ones it staged."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._staged: dict[Path, Path] = {}
        """final path -> staged file (tables and quarantine files), in staging order."""
        self._pending_cleanup: list[Path] = []
        """Staged versions a later file of the same table superseded (read, then replaced)."""

    def current(self, table: TableName) -> Path | None:
        """The table as the next reader will see it: staged by this writer, else stored."""
        final = table_path(self._settings, table)
        staged = self._staged.get(final)
        if staged is not None:
            return staged
        return final if final.exists() else None

    def stage(self, table: TableName) -> Path:
        """A path to write the table's next version to (committed by `commit`)."""
        final = table_path(self._settings, table)
        previous = self._staged.get(final)
        if previous is not None:  # a second file of the same table: it read the first one
            self._pending_cleanup.append(previous)
        return self.stage_file(final)

    def stage_file(self, final: Path) -> Path:
        """A path beside `final` to write to; `commit` renames it to `final`."""
        final.parent.mkdir(parents=True, exist_ok=True)
        path = final.with_name(f".{final.name}.{uuid.uuid4().hex}{STAGED_SUFFIX}")
        self._staged[final] = path
        return path

    def commit(self) -> None:
        """Make every staged file the stored one: fsync, journal, renames, no journal."""
        if not self._staged:
            return
        renames = [(str(src), str(dst)) for dst, src in self._staged.items()]
        for src, _ in renames:
            _fsync(Path(src))
        offline = self._settings.offline_dir
        journal = offline / JOURNAL_FILE
        tmp = journal.with_name(f"{JOURNAL_FILE}.{uuid.uuid4().hex}")
        tmp.write_text(json.dumps({"renames": renames}))
        _fsync(tmp)
        tmp.replace(journal)
        _fsync(offline)
        self._staged.clear()  # the journal owns them now: a failure below is rolled forward
        roll_forward(self._settings)
        for path in self._pending_cleanup:
            path.unlink(missing_ok=True)
        self._pending_cleanup.clear()

    def discard(self) -> None:
        """Remove what was staged and not committed."""
        for path in [*self._staged.values(), *self._pending_cleanup]:
            path.unlink(missing_ok=True)
        self._staged.clear()
        self._pending_cleanup.clear()


def roll_forward(settings: Settings) -> int:
    """Finish a commit whose journal is on disk (a crashed writer's, or this writer's): the
    renames whose staged file is still there. Returns how many it made. Under the lock only."""
    offline = settings.offline_dir
    journal = offline / JOURNAL_FILE
    if not journal.exists():
        return 0
    try:
        renames = json.loads(journal.read_text())["renames"]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(
            f"{journal}: an unreadable commit journal ({exc}); the store may be half "
            "committed: check the tables, then remove the journal"
        ) from None
    done = 0
    for src, dst in renames:
        if Path(src).exists():
            Path(dst).parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
            done += 1
    for parent in {Path(dst).parent for _, dst in renames}:
        _fsync(parent)
    journal.unlink()
    _fsync(offline)
    return done


def staging_dir(settings: Settings) -> Path:
    """A new folder for one run's staged files, named by its process (see `_remove_stale`)."""
    path = settings.state_dir / "staging" / f"{os.getpid()}-{uuid.uuid4().hex}"
    path.mkdir(parents=True)
    return path


def _remove_stale(settings: Settings) -> None:
    """What dead writers left (under the lock only): staged files no journal names, and the
    staging folders of processes that no longer run."""
    for folder in (settings.offline_dir, settings.quarantine_dir):
        for path in folder.glob(f".*{STAGED_SUFFIX}"):
            path.unlink(missing_ok=True)
    for path in settings.offline_dir.glob(f"{JOURNAL_FILE}.*"):
        path.unlink(missing_ok=True)
    staging = settings.state_dir / "staging"
    for folder in staging.glob("*-*") if staging.exists() else ():
        pid = folder.name.split("-", 1)[0]
        if pid.isdigit() and process_state(int(pid)) is None:
            shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def store_writer(
    settings: Settings,
    *,
    what: str,
    timeout_seconds: float,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[StoreWriter]:
    """Hold the workspace's ingest lock (waiting up to `timeout_seconds`, saying so through
    `on_wait` once), finish or clean up what a crashed writer left, and yield the writer.
    What the body stages is discarded unless it calls `commit`."""
    offline = settings.offline_dir
    offline.mkdir(parents=True, exist_ok=True)
    lock = offline / LOCK_FILE
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, lock, timeout_seconds, on_wait)
        since = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        holder = {"what": what, "pid": os.getpid(), "host": socket.gethostname(), "since": since}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        roll_forward(settings)
        _remove_stale(settings)
        writer = StoreWriter(settings)
        try:
            yield writer
        finally:
            writer.discard()
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock


def _acquire(
    fd: int, lock: Path, timeout_seconds: float, on_wait: Callable[[str], None] | None
) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    holder = _holder(lock)
    if on_wait is not None:
        on_wait(f"waiting for {holder} to finish ({lock})")
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise DataError(
                    f"gave up after {timeout_seconds:g} s waiting for {_holder(lock)} "
                    f"(ingest.lock_timeout_seconds); nothing was stored"
                ) from None
            time.sleep(POLL_SECONDS)
