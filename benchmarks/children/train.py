"""One `clv train` run (the real pipeline, features from Feast) under a memory budget, in a
fresh process (benchmarks.training's train_dask): wall time, peak RSS, the scale plan it was
given and its run's refit and Dask parameters (the Dask workers' peak RSS among them).

    python -m benchmarks.children.train WORKSPACE BUDGET_MB TRIALS
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TypedDict

from benchmarks.children import run_child

DASK_WORKER_MEMORY_MB = "1024"


class Trained(TypedDict):
    seconds: float
    peak_rss_mib: float
    estimate_mib: int
    buckets: int
    in_process: bool
    split: dict[str, object]
    test_gini: float
    test_rmse: float
    params: dict[str, str]
    """The run's `refit.*` and `dask.*` parameters."""


def in_child(workspace: Path, *, budget: str, trials: int) -> Trained:
    trained: Trained = json.loads(run_child(__name__, str(workspace), budget, str(trials)))
    return trained


def main(argv: list[str]) -> int:
    import mlflow

    from clv.core.compute import peak_rss_mib
    from clv.core.settings import load_settings
    from clv.features import feast_io
    from clv.training import distributed
    from clv.training.train import run

    workspace, budget, trials = argv[0], argv[1], int(argv[2])
    settings = load_settings(
        workspace,
        environ={
            "CLV_COMPUTE__MEMORY_BUDGET_MB": budget,
            "CLV_COMPUTE__DASK_WORKER_MEMORY_MB": DASK_WORKER_MEMORY_MB,
        },
    )
    scale = distributed.plan_scale(settings)
    t0 = time.perf_counter()
    result = run(settings, n_trials=trials, source=feast_io)
    seconds = time.perf_counter() - t0
    peak = peak_rss_mib()
    mlflow.set_tracking_uri(settings.tracking_uri)
    params = mlflow.get_run(result.run_id).data.params
    trained: Trained = {
        "seconds": round(seconds, 1),
        "peak_rss_mib": round(peak, 1),
        "estimate_mib": round(scale.estimate_bytes / 2**20),
        "buckets": scale.buckets,
        "in_process": scale.in_process,
        "split": result.split,
        "test_gini": round(result.model_metrics.gini, 4),
        "test_rmse": round(result.model_metrics.rmse, 2),
        "params": {k: v for k, v in params.items() if k.startswith(("refit.", "dask."))},
    }
    print(json.dumps(trained))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
