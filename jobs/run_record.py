"""The retrain job's safety: one run at a time (a lock) and a record of where it stopped.

- one run at a time: an exclusive non-blocking `flock` on `<ws>/.clv/retrain.lock`; a second
  run fails at once with a one-line message (exit code 4);
- a run record `<ws>/.clv/retrain/<UTC stamp>.json` is rewritten atomically after every step
  (steps, timings, outcome), so a killed run leaves a record saying where it stopped;
- the next run, holding the lock, marks such a record (still "running", another pid)
  `abandoned`, with the dead pid and when it was found (`abandon_stale`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from clv.core.errors import ClvError
from clv.core.settings import Settings

LOCK_FILE = "retrain.lock"
RECORD_DIR = "retrain"
LOCKED_EXIT = 4
Outcome = Literal[
    "running",
    "no_retrain",
    "data_quality",
    "canary_started",
    "awaiting_approval",
    "gates_failed",
    "failed",
    "abandoned",
]


class RetrainLockedError(ClvError):
    """Another `clv retrain` holds the lock."""


@dataclass
class RunRecord:
    """What the job did, step by step; rewritten after each step."""

    path: Path
    started_at: str
    forced: bool
    outcome: Outcome = "running"
    steps: list[dict[str, object]] = field(default_factory=list)
    result: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """Every field but the path (the record's own place), and the writing process."""
        kept = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "path"}
        return {**kept, "pid": os.getpid()}

    def save(self) -> None:
        _write(self.path, self.as_dict())

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[dict[str, object]]:
        """Time one step; its detail dict is filled by the caller; failures are recorded."""
        detail: dict[str, object] = {}
        entry: dict[str, object] = {"step": name, "status": "running", "detail": detail}
        self.steps.append(entry)
        self.save()
        started = time.perf_counter()
        try:
            yield detail
        except BaseException as exc:
            entry["status"] = "failed"
            entry["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            entry["seconds"] = round(time.perf_counter() - started, 2)
            self.outcome = "failed"
            self.save()
            raise
        entry["status"] = "done"
        entry["seconds"] = round(time.perf_counter() - started, 2)
        self.save()


@contextlib.contextmanager
def retrain_lock(settings: Settings) -> Iterator[Path]:
    """Hold `<ws>/.clv/retrain.lock` (flock, non-blocking) for the body; the OS frees it on
    exit, kill included."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    path = settings.state_dir / LOCK_FILE
    handle = path.open("a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RetrainLockedError(
                f"another `clv retrain` is running ({holder}); lock {path}",
                exit_code=LOCKED_EXIT,
            ) from exc
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {datetime.now(UTC).isoformat(timespec='seconds')}")
        handle.flush()
        yield path
    finally:
        handle.close()


def _write(path: Path, doc: dict[str, object]) -> None:
    """Write a record atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    tmp.replace(path)


def abandon_stale(settings: Settings) -> list[Path]:
    """Mark every record still "running" by another process `abandoned` (with its pid, when,
    and its running step); call it holding `retrain_lock`: a run that still ran would hold the
    lock, so such a record's process is gone. The records marked."""
    marked: list[Path] = []
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for path in sorted((settings.state_dir / RECORD_DIR).glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(doc, dict) or doc.get("outcome") != "running":
            continue
        pid = doc.get("pid")
        if pid == os.getpid():
            continue
        for step in doc.get("steps") or []:
            if isinstance(step, dict) and step.get("status") == "running":
                step["status"] = "abandoned"
        doc["outcome"] = "abandoned"
        doc["abandoned"] = {
            "pid": pid,
            "at": now,
            "reason": f"process {pid} stopped without finishing: it no longer holds {LOCK_FILE}",
        }
        _write(path, doc)
        marked.append(path)
    return marked


def new_record(settings: Settings, *, forced: bool) -> RunRecord:
    """A run record named by the UTC time it starts (never another's), saved at once."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = settings.state_dir / RECORD_DIR / f"{stamp}.json"
    n = 1
    while path.exists():  # a record of the same second (e.g. one just marked abandoned)
        path, n = path.with_name(f"{stamp}_{n}.json"), n + 1  # sorts after
    record = RunRecord(
        path=path,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        forced=forced,
    )
    record.save()
    return record
