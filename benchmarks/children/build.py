"""One `build_features` of a workspace, in a fresh process (benchmarks.features'
feature_build_scaling): the build's seconds and rows, and the process's peak RSS.

    python -m benchmarks.children.build WORKSPACE
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TypedDict

from benchmarks.children import run_child


class Built(TypedDict):
    seconds: float
    rows: int
    customers: int
    snapshots: int
    peak_rss_mib: float


def in_child(workspace: Path) -> Built:
    built: Built = json.loads(run_child(__name__, str(workspace)))
    return built


def main(argv: list[str]) -> int:
    from clv.core.compute import peak_rss_mib
    from clv.core.settings import load_settings
    from clv.features.build import build_features

    (workspace,) = argv
    settings = load_settings(workspace, environ={})
    result = build_features(settings)
    peak = peak_rss_mib()
    built: Built = {
        "seconds": round(result.seconds, 2),
        "rows": result.rows,
        "customers": result.customers,
        "snapshots": len(result.snapshots),
        "peak_rss_mib": round(peak, 1),
    }
    print(json.dumps(built))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
