"""Child programs: the steps a benchmark runs in a fresh process, so that their wall time and
peak RSS are their own. Each is a module here, run as `python -m benchmarks.children.NAME
ARGS` (from the repo root, as `benchmarks.run` is), that prints its figures as the last line
of its stdout; its `in_child` runs it and returns them, typed.

Kept to the standard library at import: `rusage` measures the floor of its own memory.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping


def run_child(module: str, *args: str, env: Mapping[str, str] | None = None) -> str:
    """Run `python -m module args` to the end (an error if it fails): its last line of stdout."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    return proc.stdout.strip().splitlines()[-1]
