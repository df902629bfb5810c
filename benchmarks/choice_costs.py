"""Seconds the recipe's evidence-based choices cost at one demo snapshot's size (12,000 rows):
the blend and level (clv.training.blend), the churn calibration
(clv.evaluation.calibration), the banded interval scales (clv.model.intervals) and the champion's
paired bootstrap (clv.evaluation.metrics).

`python -m benchmarks.choice_costs` prints one JSON line with the date and the load average;
the arrays are seeded synthetic values of the shapes training passes (no world is read).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np

ROWS = 12_000


def measure(rows: int = ROWS) -> dict[str, object]:
    from clv.evaluation.calibration import choose_calibration
    from clv.evaluation.metrics import paired_bootstrap
    from clv.model.intervals import banded_interval_scale, interval_scale
    from clv.training.blend import choose_blend

    rng = np.random.default_rng(0)
    value = rng.gamma(0.8, 60.0, rows)
    y = (rng.poisson(value / 10.0) * 10.0).astype(np.float64)
    base = np.log(np.clip(value * rng.lognormal(0.0, 0.6, rows), 1e-3, None))
    trees = np.log(np.clip(value * rng.lognormal(0.0, 0.2, rows), 1e-3, None))
    margin = rng.normal(0.0, 2.0, rows)
    churn = (rng.random(rows) < 1.0 / (1.0 + np.exp(-margin))).astype(np.float64)
    lo, mid, hi, point = value * 0.3, value, value * 2.0, np.exp(trees)
    steps: dict[str, Callable[[], object]] = {
        "choose_blend": lambda: choose_blend(y, base, trees),
        "choose_calibration": lambda: choose_calibration(margin, churn, seed=0),
        "interval_scale_one_band": lambda: interval_scale(y, lo, mid, hi, point),
        "banded_interval_scale": lambda: banded_interval_scale(y, lo, mid, hi, point),
        "paired_bootstrap": lambda: paired_bootstrap(
            y, point, np.exp(base), samples=1000, level=0.95, seed=0
        ),
    }
    out: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "rows": rows,
    }
    for name, fn in steps.items():
        t = time.perf_counter()
        fn()
        out[f"{name}_seconds"] = round(time.perf_counter() - t, 3)
    return out


if __name__ == "__main__":
    print(json.dumps(measure()))
