"""Did a version's registration complete? Training's last registry write is the version tag
`clv.status=complete` (clv.training.mlflow_io.training_run); a version without it was left by a
training run that stopped, or is still being tagged by one that is alive.

The judgement (`judge_registration`) is pure; `owner_alive` reads the process table. A run
records its process as `host:pid:start` (RUN_OWNER_TAG): on that host a dead or reused pid means
the registration will never complete; from another host the only evidence is time
(`registry.incomplete_grace_seconds` after the version was created).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from clv.core.processes import process_state
from clv.core.tags import STATUS_COMPLETE, STATUS_INCOMPLETE, STATUS_REASON_TAG, STATUS_TAG

RegistrationState = Literal["complete", "in_progress", "incomplete"]
ENDED_BADLY = ("FAILED", "KILLED")


@dataclass(frozen=True)
class Registration:
    """A version's registration state, and why."""

    state: RegistrationState
    reason: str


def judge_registration(
    tags: Mapping[str, str],
    *,
    run_status: str | None,
    owner: str | None,
    owner_alive: bool | None,
    age_seconds: float,
    grace_seconds: float,
) -> Registration:
    """Complete, still in progress, or incomplete, from the version's tags and its run.

    `run_status` None means the run is gone; `owner_alive` None means the training process
    cannot be checked from here. A FINISHED run without the tag registered its version before
    training wrote completion tags (its evaluation tags came first): complete.
    """
    status = tags.get(STATUS_TAG)
    if status == STATUS_COMPLETE:
        return Registration("complete", "registration completed")
    if status == STATUS_INCOMPLETE:
        return Registration("incomplete", tags.get(STATUS_REASON_TAG, "marked incomplete"))
    if run_status == "FINISHED":
        return Registration("complete", "its training run finished")
    if run_status in ENDED_BADLY:
        return Registration(
            "incomplete", f"its training run ended {run_status} before the registration completed"
        )
    if owner_alive is True:
        return Registration("in_progress", f"its training process {owner} is still running")
    if owner_alive is False:
        return Registration(
            "incomplete",
            f"its training process {owner} is gone: it stopped before the registration completed",
        )
    if age_seconds > grace_seconds:
        return Registration(
            "incomplete",
            f"registration not completed {age_seconds:.0f} s after the version was created "
            f"(registry.incomplete_grace_seconds {grace_seconds:.0f})",
        )
    return Registration(
        "in_progress", f"created {age_seconds:.0f} s ago: its training run may still be tagging it"
    )


def owner_alive(owner: str | None, *, host: str) -> bool | None:
    """Whether the process `owner` (`host:pid:start`) still runs; None when it ran on another
    host or the owner is unknown. A zombie, or a pid now held by a later process, is dead."""
    if not owner:
        return None
    try:
        their_host, pid_text, start = owner.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return None
    if their_host != host or pid <= 0:
        return None
    state = process_state(pid)
    if state is not None:
        letter, now_start = state
        return letter not in ("Z", "X") and start in ("-", now_start)
    if os.path.isdir("/proc"):
        return False
    try:  # no /proc: only existence can be checked
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
