"""`make bench`: run the benchmarks and write one JSON result per benchmark.

    python -m benchmarks.run [NAME ...] [--quick]

Each benchmark runs in its own process (so peak memory is its own) and is a function of one
area's module (benchmarks.ingest, .features, .serving, ...) registered in CASES below; it
returns a flat mapping of measured figures (benchmarks.case).
Results go to `benchmarks/results/<name>.json` with the date, the machine and the package
versions, so the README's table can cite them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from benchmarks.case import Case
from benchmarks.contractual import contractual_quality
from benchmarks.features import feature_build_chunked, feature_build_scaling, materialize_online
from benchmarks.ingest import generate_and_ingest, ingest_1m
from benchmarks.ingest_big import ingest_big
from benchmarks.monitoring import monitor_1m, monitor_demo
from benchmarks.public_paths import public_paths
from benchmarks.quality import model_quality
from benchmarks.serving import batch_1m, load_canary, online_store_latency, serve_latency
from benchmarks.training import train_dask, train_study, tuning_workers

CASES: dict[str, Case] = {  # in the order `make bench` runs them
    "generate_and_ingest": generate_and_ingest,
    "feature_build_scaling": feature_build_scaling,
    "feature_build_chunked": feature_build_chunked,
    "materialize_online": materialize_online,
    "ingest_1m": ingest_1m,
    "ingest_big": ingest_big,
    "serve_latency": serve_latency,
    "batch_1m": batch_1m,
    "load_canary": load_canary,
    "tuning_workers": tuning_workers,
    "train_study": train_study,
    "monitor_1m": monitor_1m,
    "monitor_demo": monitor_demo,
    "online_store_latency": online_store_latency,
    "public_paths": public_paths,
    "train_dask": train_dask,
    "model_quality": model_quality,
    "contractual_quality": contractual_quality,
}

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
    parser.add_argument("names", nargs="*", help=f"benchmarks (default all: {list(CASES)})")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:  # one case in this process; its figures are the last line of stdout
        figures = CASES[args.names[0]](quick=args.quick)
        print(json.dumps(figures), flush=True)
        return 0
    unknown = [n for n in args.names if n not in CASES]
    if unknown:
        print(f"error: unknown benchmark(s) {unknown}; known: {list(CASES)}", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in args.names or list(CASES):
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        cmd = [sys.executable, "-m", "benchmarks.run", "--child", name]
        proc = subprocess.run(
            [*cmd, "--quick"] if args.quick else cmd, stdout=subprocess.PIPE, text=True
        )
        if proc.returncode != 0:
            print(f"error: benchmark {name} failed (exit {proc.returncode})", file=sys.stderr)
            return 1
        figures = json.loads(proc.stdout.strip().splitlines()[-1])
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
