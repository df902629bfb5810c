"""One `build_features` under a memory budget and a bucket count, in a fresh process
(benchmarks.features' feature_build_chunked): its chunks, seconds and peak RSS, and a checksum
of the rows it wrote (the row count, the sum of the key hashes, integer sums of a few feature
columns, non-null counts, the distinct created timestamps), to compare builds by.

    python -m benchmarks.children.build_checksum WORKSPACE BUDGET_MB BUCKETS|auto
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TypedDict

from benchmarks.children import run_child

CHECKSUM = (
    "SELECT count(*), sum(hash(customer_id, event_timestamp)), sum(frequency),"
    " sum(round(spend_365d * 100)::HUGEINT), sum(round(T * 1000)::HUGEINT),"
    " sum(round(gap_mean_days * 1000)::HUGEINT), count(recency),"
    " count(DISTINCT created_timestamp) FROM read_parquet(?)"
)


class Built(TypedDict):
    seconds: float
    chunks: int
    estimate_mib: int
    peak_rss_mib: float
    rows: int
    customers: int
    checksum: list[str]


def in_child(workspace: Path, *, budget: str, buckets: str) -> Built:
    built: Built = json.loads(run_child(__name__, str(workspace), budget, buckets))
    return built


def main(argv: list[str]) -> int:
    import duckdb

    from clv.core.compute import peak_rss_mib
    from clv.core.settings import load_settings
    from clv.features.build import build_features

    workspace, budget, buckets = argv
    settings = load_settings(workspace, environ={"CLV_COMPUTE__MEMORY_BUDGET_MB": budget})
    result = build_features(settings, buckets=None if buckets == "auto" else int(buckets))
    peak = peak_rss_mib()
    con = duckdb.connect()
    row = con.execute(CHECKSUM, [str(result.path)]).fetchone()
    assert row is not None
    built: Built = {
        "seconds": round(result.seconds, 2),
        "chunks": result.chunks,
        "estimate_mib": round(result.estimate.mb),
        "peak_rss_mib": round(peak, 1),
        "rows": result.rows,
        "customers": result.customers,
        "checksum": [str(v) for v in row],
    }
    print(json.dumps(built))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
