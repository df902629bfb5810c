"""Debian's `promtool` (package `prometheus`), run from the repository root."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MISSING = "install Debian's prometheus package (.ci/run does)"


class Promtool:
    """Runs `promtool` from the repository root (or `cwd`); the finished process."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, *args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.path, *map(str, args)],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def find_promtool() -> Promtool | None:
    path = shutil.which("promtool")
    return Promtool(path) if path is not None else None
