"""Live serving statistics per alias: Prometheus text for `/metrics`, a JSON summary for the CLI.

Counters and a latency histogram per (alias, version) are cumulative, as Prometheus expects.
For the canary judgement the server also keeps, per alias, a window since its current version
started serving: request and error counts, the last latencies (for the p95) and a sample of
CLV predictions (for the PSI). `snapshot()` is what `clv.serving.supervise` writes to
`.clv/serving/live_stats.json` and `clv.registry.status.status` reads.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LATENCY_WINDOW = 4096
PREDICTION_WINDOW = 5000


@dataclass
class _Series:
    requests: int = 0
    errors: int = 0
    customers: int = 0
    cold_start: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    seconds_sum: float = 0.0


@dataclass
class _Window:
    version: str
    requests: int = 0
    errors: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    predictions: deque[float] = field(default_factory=lambda: deque(maxlen=PREDICTION_WINDOW))


class LiveMetrics:
    """Thread-safe counters; every method is cheap enough for the request path."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], _Series] = {}
        self._windows: dict[str, _Window] = {}
        self.unrouted_errors = 0
        self.canary_share = 0.0
        self.shadow = False
        self.versions: dict[str, str] = {}

    def set_routing(self, versions: dict[str, str], *, share: float, shadow: bool) -> None:
        with self._lock:
            self.versions = dict(versions)
            self.canary_share = share
            self.shadow = shadow
            for alias, version in versions.items():
                window = self._windows.get(alias)
                if window is None or window.version != version:
                    self._windows[alias] = _Window(version)
            for alias in [a for a in self._windows if a not in versions]:
                del self._windows[alias]

    def observe(
        self,
        alias: str,
        version: str,
        *,
        seconds: float,
        customers: int,
        error: bool = False,
        cold_start: int = 0,
        predictions: np.ndarray | None = None,
    ) -> None:
        """One request (or its part) scored by `alias`."""
        slot = _bucket(seconds)
        with self._lock:
            series = self._series.get((alias, version))
            if series is None:
                series = self._series[(alias, version)] = _Series()
            series.requests += 1
            series.errors += int(error)
            series.customers += customers
            series.cold_start += cold_start
            series.buckets[slot] += 1
            series.seconds_sum += seconds
            window = self._windows.get(alias)
            if window is not None and window.version == version:
                window.requests += 1
                window.errors += int(error)
                window.latencies.append(seconds)
                if predictions is not None and predictions.size:
                    window.predictions.extend(predictions.tolist())

    def error_without_model(self) -> None:
        with self._lock:
            self.unrouted_errors += 1

    def snapshot(self) -> dict[str, object]:
        """The per-alias window summary (JSON-ready).

        Only copies under the lock (the request path takes it too); the p95 and the rounding
        run after it is released."""
        with self._lock:
            windows = [
                (alias, w.version, w.requests, w.errors, list(w.latencies), list(w.predictions))
                for alias, w in self._windows.items()
            ]
            routing = {
                **{a: v for a, v in self.versions.items()},
                "share": self.canary_share,
                "shadow": self.shadow,
            }
        aliases: dict[str, object] = {}
        for alias, version, requests, errors, latencies, predictions in windows:
            lat = np.asarray(latencies, dtype=np.float64)
            p95 = float(np.percentile(lat, 95)) * 1000.0 if lat.size else 0.0
            aliases[alias] = {
                "version": version,
                "requests": requests,
                "errors": errors,
                "latency_p95_ms": round(p95, 4),
                "predictions": [round(p, 4) for p in predictions],
            }
        return {"aliases": aliases, "routing": routing}

    def prometheus(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        with self._lock:
            series = sorted(self._series.items())
            lines = _counter("clv_requests_total", series, lambda s: s.requests)
            lines += _counter("clv_request_errors_total", series, lambda s: s.errors)
            lines.append(
                f'clv_request_errors_total{{alias="none",version=""}} {self.unrouted_errors}'
            )
            lines += _counter("clv_scored_customers_total", series, lambda s: s.customers)
            lines += _counter("clv_cold_start_total", series, lambda s: s.cold_start)
            lines += [
                "# HELP clv_request_duration_seconds Score request latency by alias.",
                "# TYPE clv_request_duration_seconds histogram",
            ]
            for (alias, version), s in series:
                cumulative = 0
                for bound, count in zip((*BUCKETS, math.inf), s.buckets, strict=True):
                    cumulative += count
                    le = "+Inf" if math.isinf(bound) else repr(bound)
                    labels = _labels(alias, version, le=le)
                    lines.append(f"clv_request_duration_seconds_bucket{labels} {cumulative}")
                lines.append(
                    f"clv_request_duration_seconds_sum{_labels(alias, version)} {s.seconds_sum!r}"
                )
                lines.append(
                    f"clv_request_duration_seconds_count{_labels(alias, version)} {s.requests}"
                )
            lines += [
                "# HELP clv_canary_share Share of customers routed to the canary.",
                "# TYPE clv_canary_share gauge",
                f"clv_canary_share {self.canary_share!r}",
                "# HELP clv_canary_shadow 1 when the canary runs in shadow mode.",
                "# TYPE clv_canary_shadow gauge",
                f"clv_canary_shadow {int(self.shadow)}",
                "# HELP clv_model_info The version each alias serves.",
                "# TYPE clv_model_info gauge",
            ]
            for alias, version in sorted(self.versions.items()):
                lines.append(f"clv_model_info{_labels(alias, version)} 1")
        return "\n".join(lines) + "\n"


_COUNTER_HELP = {
    "clv_requests_total": "Score requests by the alias and version that scored them.",
    "clv_request_errors_total": "Failed scoring by alias (canary falls back).",
    "clv_scored_customers_total": "Customers scored by alias.",
    "clv_cold_start_total": "Unknown customers given the cold-start prior.",
}


def _counter(
    name: str, series: list[tuple[tuple[str, str], _Series]], value: Callable[[_Series], int]
) -> list[str]:
    """A counter's HELP and TYPE lines, then its `value` for each (alias, version)."""
    return [
        f"# HELP {name} {_COUNTER_HELP[name]}",
        f"# TYPE {name} counter",
        *(f"{name}{_labels(alias, version)} {value(s)}" for (alias, version), s in series),
    ]


def _bucket(seconds: float) -> int:
    for i, bound in enumerate(BUCKETS):
        if seconds <= bound:
            return i
    return len(BUCKETS)


def _labels(alias: str, version: str, *, le: str | None = None) -> str:
    extra = f',le="{le}"' if le is not None else ""
    return f'{{alias="{_escape(alias)}",version="{_escape(version)}"{extra}}}'


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
