"""The canary's live traffic, from where the judge can see it, and the verdict on it.

Two sources give the same numbers (`clv.core.telemetry`: per alias and version, requests,
errors and the cumulative latency and prediction buckets since that version started serving):
- with `registry.prometheus_url`, every replica's series summed by PromQL (`query_prometheus`):
  the judge sees the traffic of all replicas behind the load balancer;
- without it, the live-stats file the one local `clv serve` writes (`read_live_stats`).

`judge_live` calls the pure `clv.registry.canary.judge_canary` when those stats describe the
current canary.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

from clv.core import telemetry as t
from clv.core.contracts import CANARY, CHAMPION
from clv.core.live_stats import read_live_stats_doc
from clv.core.services import ServiceUnavailable, redact
from clv.core.settings import Settings
from clv.registry import mlflow_io
from clv.registry.canary import AliasStats, CanaryGuardrails, CanaryVerdict, judge_canary, psi

STATS_MAX_AGE_SECONDS = 120.0
LIVE_FILE = "live-stats file"


@dataclass(frozen=True)
class LiveStats:
    """Per-alias traffic of the served versions, as one source reports it."""

    written_at: float
    champion: AliasStats | None
    canary: AliasStats | None
    share: float
    shadow: bool
    source: str = LIVE_FILE
    """The live-stats file, or "prometheus <url>"."""
    replicas: int | None = None
    """Replicas that report the current canary (Prometheus only)."""

    @property
    def age_seconds(self) -> float:
        return time.time() - self.written_at

    @property
    def prediction_psi(self) -> float | None:
        """PSI of the canary's CLV predictions against the champion's (None without both)."""
        if self.champion is None or self.canary is None:
            return None
        value = psi(self.champion, self.canary)
        return value if math.isfinite(value) else None


def parse_live_stats(doc: Mapping[str, object]) -> LiveStats:
    aliases = doc.get("aliases")
    routing = doc.get("routing")
    if not isinstance(aliases, dict) or not isinstance(routing, dict):
        raise ValueError("live stats lack aliases/routing")

    def stats(alias: str) -> AliasStats | None:
        item = aliases.get(alias)
        if not isinstance(item, dict):
            return None
        return AliasStats(
            version=str(item["version"]),
            requests=int(item["requests"]),
            errors=int(item["errors"]),
            latency=_pairs(item.get("latency_buckets", [])),
            predictions=_pairs(item.get("prediction_buckets", [])),
        )

    written = doc.get("written_at", 0.0)
    return LiveStats(
        written_at=float(written) if isinstance(written, int | float) else 0.0,
        champion=stats(CHAMPION),
        canary=stats(CANARY),
        share=float(routing.get("share", 0.0)),
        shadow=bool(routing.get("shadow", False)),
    )


def _pairs(rows: object) -> t.Buckets:
    if not isinstance(rows, list):
        raise ValueError("buckets must be a list of [le, count]")
    return tuple((float(le), float(count)) for le, count in rows)


def read_live_stats(settings: Settings) -> LiveStats | None:
    doc = read_live_stats_doc(settings)
    try:
        return parse_live_stats(doc) if doc is not None else None
    except (ValueError, KeyError, TypeError):
        return None


def query_prometheus(settings: Settings, state: mlflow_io.RegistryState) -> LiveStats:
    """The served versions' traffic summed over every replica Prometheus scrapes
    (`registry.prometheus_selector`); raises ServiceUnavailable when it does not answer."""
    url = settings.registry.prometheus_url
    assert url is not None
    sel = settings.registry.prometheus_selector.strip().strip("{}")
    which = f'{sel + "," if sel else ""}alias=~"{CHAMPION}|{CANARY}"'
    timeout = settings.services.connect_timeout_seconds
    by_version = "alias, version"

    def ask(query: str) -> list[dict[str, object]]:
        return instant_query(url, query, timeout=timeout)

    requests = _totals(ask(f"sum by ({by_version}) ({t.REQUESTS}{{{which}}})"))
    errors = _totals(ask(f"sum by ({by_version}) ({t.ERRORS}{{{which}}})"))
    latency = _histograms(ask(f"sum by ({by_version}, le) ({t.LATENCY}_bucket{{{which}}})"))
    predicted = _histograms(ask(f"sum by ({by_version}, le) ({t.PREDICTIONS}_bucket{{{which}}})"))
    canary = state.aliases.get(CANARY)
    replicas = None
    if canary is not None:
        info = f'{sel + "," if sel else ""}alias="{CANARY}",version="{canary}"'
        counted = _totals(ask(f"count({t.MODEL_INFO}{{{info}}})"), labels=())
        replicas = int(counted.get((), 0.0))

    def stats(alias: str) -> AliasStats | None:
        version = state.aliases.get(alias)
        key = (alias, version or "")
        if version is None or key not in requests:
            return None
        return AliasStats(
            version=version,
            requests=int(requests[key]),
            errors=int(errors.get(key, 0.0)),
            latency=latency.get(key, ()),
            predictions=predicted.get(key, ()),
        )

    return LiveStats(
        written_at=time.time(),
        champion=stats(CHAMPION),
        canary=stats(CANARY),
        share=state.canary_share if canary is not None else 0.0,
        shadow=state.canary_shadow,
        source=f"prometheus {redact(url)}",
        replicas=replicas,
    )


def instant_query(url: str, query: str, *, timeout: float) -> list[dict[str, object]]:
    """The result vector of a PromQL instant query (`/api/v1/query`)."""
    endpoint = f"{url.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    where = f"Prometheus at {redact(url)}"
    try:
        with urllib.request.urlopen(endpoint, timeout=timeout) as response:
            doc = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        raise ServiceUnavailable(f"{where} refused the query {query!r}: {detail}") from exc
    except (OSError, ValueError) as exc:
        raise ServiceUnavailable(f"cannot reach {where}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("status") != "success":
        raise ServiceUnavailable(f"{where} answered {str(doc)[:300]}")
    data = doc.get("data")
    result = data.get("result") if isinstance(data, dict) else None
    return result if isinstance(result, list) else []


def _totals(
    vector: list[dict[str, object]], *, labels: tuple[str, ...] = ("alias", "version")
) -> dict[tuple[str, ...], float]:
    out: dict[tuple[str, ...], float] = {}
    for sample in vector:
        metric, value = sample.get("metric"), sample.get("value")
        if isinstance(metric, dict) and isinstance(value, list) and len(value) == 2:
            out[tuple(str(metric.get(k, "")) for k in labels)] = float(value[1])
    return out


def _histograms(vector: list[dict[str, object]]) -> dict[tuple[str, ...], t.Buckets]:
    """Per (alias, version): the cumulative buckets, ascending."""
    rows = _totals(vector, labels=("alias", "version", "le"))
    grouped: dict[tuple[str, ...], list[tuple[float, float]]] = {}
    for (alias, version, le), count in rows.items():
        grouped.setdefault((alias, version), []).append((float(le), count))
    return {k: tuple(sorted(v)) for k, v in grouped.items()}


def guardrails(settings: Settings) -> CanaryGuardrails:
    r = settings.registry
    return CanaryGuardrails(
        max_error_rate=r.canary_max_error_rate,
        max_latency_ratio=r.canary_max_latency_ratio,
        max_psi=r.canary_max_psi,
        min_requests=r.canary_min_requests,
    )


def live_stats(settings: Settings, state: mlflow_io.RegistryState) -> LiveStats | None:
    """The traffic from the configured source (Prometheus, else the local live-stats file)."""
    if settings.registry.prometheus_url:
        return query_prometheus(settings, state)
    return read_live_stats(settings)


def judge_live(
    settings: Settings, state: mlflow_io.RegistryState, live: LiveStats | None
) -> tuple[CanaryVerdict | None, tuple[str, ...]]:
    """The canary verdict from live stats that describe the current canary (else None)."""
    canary = state.aliases.get(CANARY)
    if canary is None:
        return None, ()
    if live is None:
        return None, ("no live stats: is `clv serve` running on this workspace?",)
    if live.source == LIVE_FILE and live.age_seconds > STATS_MAX_AGE_SECONDS:
        return None, (f"live stats are {live.age_seconds:.0f} s old: the server is not running",)
    if live.canary is None or live.canary.version != canary or live.champion is None:
        if live.source == LIVE_FILE:
            return None, (f"the server has not picked up canary v{canary} yet",)
        return None, (f"no replica in {live.source} serves canary v{canary} yet",)
    return judge_canary(live.champion, live.canary, guardrails=guardrails(settings)), ()
