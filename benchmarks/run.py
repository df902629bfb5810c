"""`make bench`: run the benchmarks and write one JSON result per benchmark.

    python -m benchmarks.run [NAME ...] [--quick]

Each benchmark is a function in `benchmarks/cases.py` registered in CASES; it returns a flat
mapping of measured figures. Results go to `benchmarks/results/<name>.json` with the date,
the machine and the package versions, so the README's table can cite them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from benchmarks.cases import CASES

RESULTS = Path(__file__).resolve().parent / "results"
PACKAGES = ("feast", "mlflow", "optuna", "xgboost", "evidently", "pandas", "duckdb")


def machine() -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {p: version(p) for p in PACKAGES},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default all: {list(CASES)})")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in CASES]
    if unknown:
        print(f"error: unknown benchmark(s) {unknown}; known: {list(CASES)}", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in args.names or list(CASES):
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        figures = CASES[name](quick=args.quick)
        record = {
            "benchmark": name,
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "quick": args.quick,
            "wall_seconds_total": round(time.perf_counter() - started, 2),
            "machine": machine(),
            "figures": figures,
        }
        out = RESULTS / f"{name}{'-quick' if args.quick else ''}.json"
        out.write_text(json.dumps(record, indent=2) + "\n")
        print(json.dumps(figures, indent=2), flush=True)
        print(f"-> {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
