"""Run a command under this small process and report the command's wall time, peak RSS and
CPU seconds alone (benchmarks.ingest_big): `getrusage(RUSAGE_CHILDREN)` of its one child. A
child carries over the peak of the process it was forked from, so this one's own peak (VmHWM,
reported too) is the measurement's floor: it imports the standard library only, and its
result type exists for the type checker alone (`typing` stays unimported at run time).

    python -m benchmarks.children.rusage STDOUT_FILE STDERR_FILE COMMAND ...
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

from benchmarks.children import run_child

TYPE_CHECKING = False  # mypy reads this name as typing.TYPE_CHECKING; `typing` is not imported
if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path
    from typing import TypedDict

    class Measured(TypedDict):
        returncode: int
        wall_seconds: float
        peak_rss_kib: int
        user_seconds: float
        system_seconds: float
        helper_peak_kib: int | None
        """This process's own peak (the floor), None where /proc is not there."""


def in_child(
    cmd: list[str], *, stdout: Path, stderr: Path, env: Mapping[str, str] | None = None
) -> Measured:
    measured: Measured = json.loads(run_child(__name__, str(stdout), str(stderr), *cmd, env=env))
    return measured


def main(argv: list[str]) -> int:
    out, err, *cmd = argv
    with open(out, "wb") as o, open(err, "wb") as e:
        t0 = time.perf_counter()
        code = subprocess.call(cmd, stdout=o, stderr=e)
        wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = None
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    own = int(line.split()[1])
    except OSError:
        pass
    measured: Measured = {
        "returncode": code,
        "wall_seconds": wall,
        "peak_rss_kib": usage.ru_maxrss,
        "user_seconds": usage.ru_utime,
        "system_seconds": usage.ru_stime,
        "helper_peak_kib": own,
    }
    print(json.dumps(measured))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
