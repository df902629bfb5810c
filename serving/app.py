"""The scoring service: `POST /score`, `GET /healthz`, `GET /readyz`, `GET /metrics`.

`create_app` wires a model registry (default: MLflow aliases `champion` and `canary`) and an
online feature reader (default: `clv.features.online_read.online_source`, direct SQLite reads of
Feast's online tables) into a FastAPI app. Both are injectable.

Routing: a customer goes to the canary when `clv.registry.canary.route(id, share, salt)` says so
(a stable hash; batch scoring uses the same function). In shadow mode the canary scores its
share too, but the champion answers. A canary that fails falls back to the champion for those
customers (counted as a canary error), so a bad canary never fails a request.

Hot reload: a background task polls the registry every `serving.reload_seconds` (one
`get_registered_model` call) and, when an alias moved, loads the new version off the event
loop and swaps the whole routing state in one reference assignment: a request keeps the state
it started with. The same task writes live per-alias stats to `.clv/serving/live_stats.json`
every `serving.stats_seconds` and, with `serving.auto_rollback`, rolls back a canary that
breaches a guardrail (`clv.registry.canary.judge_canary`; the history row says why).

Identities: `/score` accepts any alias of a customer (`clv.serving.identities`: the workspace's
identities table as of now, read at start and re-read on the registry poll when it changed) and
answers for the customer it is: each score row carries that `customer_id` and the
`requested_id` as sent.

Auth: when the environment variable named by `serving.auth_token_env` (CLV_SERVING_TOKEN) is
set, `/score` needs `Authorization: Bearer <token>`; health, readiness and metrics stay open.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import gc
import hmac
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, ValidationError

from clv.core.settings import Settings
from clv.features.online_read import FeatureReader, OnlineBatch
from clv.registry.canary import route_many
from clv.serving.identities import AliasHolder
from clv.serving.metrics import LiveMetrics
from clv.serving.routing import CANARY, CHAMPION, MlflowRegistry, ModelRegistry, SingleModel
from clv.serving.scorer import (
    Champion,
    Explanation,
    LoadedModelLike,
    ModelSource,
    ReferenceSource,
    batch_matrix,
    explain,
    load_champion,
    registry_reference,
    score_matrix,
)

FeatureSource: TypeAlias = Callable[[Sequence[str]], "pd.DataFrame | OnlineBatch"]
JsonValue: TypeAlias = dict[str, "JsonValue"] | list["JsonValue"] | str | int | float | bool | None


class ScoreRequest(BaseModel):
    """Body of `POST /score`."""

    model_config = ConfigDict(extra="forbid")

    customer_ids: list[str]
    explain: bool = False


@dataclass(frozen=True)
class ServingState:
    """Everything one request needs, swapped as a whole on reload."""

    champion: Champion
    canary: Champion | None
    share: float
    shadow: bool
    salt: str

    @property
    def versions(self) -> dict[str, str]:
        out = {CHAMPION: self.champion.version}
        if self.canary is not None:
            out[CANARY] = self.canary.version
        return out


class ModelHolder:
    """The serving state; `reload()` re-reads the registry and swaps when an alias moved."""

    def __init__(
        self,
        registry: ModelRegistry,
        bind: Callable[[LoadedModelLike], Champion],
        *,
        salt: str,
        metrics: LiveMetrics,
    ) -> None:
        self._registry = registry
        self._bind = bind
        self._salt = salt
        self._metrics = metrics
        self._lock = threading.Lock()
        self.current: ServingState | None = None
        self.error: str | None = None
        self.canary_error: str | None = None

    def reload(self) -> bool:
        """Swap in what the registry says; keeps the old state when anything fails."""
        with self._lock:
            try:
                plan = self._registry.plan()
                if plan.champion is None:
                    raise LookupError("no champion yet: run `clv train`")
                cur = self.current
                canary_version = plan.canary if plan.canary != plan.champion else None
                if (
                    cur is not None
                    and cur.champion.version == plan.champion
                    and (cur.canary.version if cur.canary else None) == canary_version
                    and (cur.share, cur.shadow) == (plan.share, plan.shadow)
                    and self.canary_error is None
                ):
                    self.error = None
                    return False
                champion = self._model(plan.champion, CHAMPION)
            except Exception as exc:  # a registry outage must not take serving down
                self.error = f"{type(exc).__name__}: {_first_line(exc)}"
                return False
            canary: Champion | None = None
            self.canary_error = None
            if canary_version is not None:
                try:
                    canary = self._model(canary_version, CANARY)
                except Exception as exc:  # a canary that does not load: champion serves all
                    self.canary_error = (
                        f"canary v{canary_version}: {type(exc).__name__}: {_first_line(exc)}"
                    )
            state = ServingState(
                champion=champion,
                canary=canary,
                share=plan.share if canary is not None else 0.0,
                shadow=plan.shadow,
                salt=self._salt,
            )
            self.error = None
            self._metrics.set_routing(state.versions, share=state.share, shadow=state.shadow)
            self.current = state  # one reference assignment: readers see old or new
            return True

    def _model(self, version: str, alias: str) -> Champion:
        cur = self.current
        if cur is not None:  # reuse a bound model (e.g. the canary just promoted)
            for bound in (cur.champion, cur.canary):
                if bound is not None and bound.version == version:
                    return (
                        bound if bound.alias == alias else dataclasses.replace(bound, alias=alias)
                    )
        return self._bind(self._registry.load(version, alias))


class _CallableReader:
    """A plain function (ids -> frame or batch) as a FeatureReader."""

    def __init__(self, source: FeatureSource) -> None:
        self.source = source

    def read(self, customer_ids: Sequence[str]) -> OnlineBatch:
        got = self.source(customer_ids)
        if isinstance(got, OnlineBatch):
            return got
        names = [c for c in got.columns if c not in ("customer_id", "feature_timestamp")]
        strings = frozenset(
            n for n in names if got[n].dtype == object or str(got[n].dtype) == "string"
        )
        if "feature_timestamp" not in got.columns:
            got = got.assign(feature_timestamp=pd.NaT)
        return OnlineBatch.from_frame(got, feature_names=names, strings=strings)

    def ping(self) -> str | None:
        return None


def create_app(
    settings: Settings,
    *,
    model_source: ModelSource | None = None,
    registry: ModelRegistry | None = None,
    feature_source: FeatureSource | FeatureReader | None = None,
    reference_source: ReferenceSource | None = None,
    freeze_gc: bool = False,
) -> FastAPI:
    """The scoring app; sources default to the MLflow aliases and the Feast online store.

    `freeze_gc` (what `clv serve` passes): once the models are loaded, and after each hot
    reload, move the heap out of the cyclic GC's reach (`_freeze_heap`)."""
    if registry is None:
        registry = (
            SingleModel(model_source) if model_source is not None else MlflowRegistry(settings)
        )
    reader = _reader(settings, feature_source)
    if reference_source is None:
        reference_source = registry_reference(settings)
    metrics = LiveMetrics()
    aliases = AliasHolder(settings)
    holder = ModelHolder(
        registry,
        lambda loaded: load_champion(
            loaded, serving=settings.serving, reference_source=reference_source
        ),
        salt=settings.registry.route_salt,
        metrics=metrics,
    )
    max_batch = settings.serving.max_batch
    coalescer = Coalescer()
    token = os.environ.get(settings.serving.auth_token_env) or None
    expected_auth = f"Bearer {token}".encode() if token else None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(holder.reload)
        await asyncio.to_thread(aliases.refresh)
        await asyncio.to_thread(reader.ping)  # warm up: the first read builds its layout
        if freeze_gc:
            _freeze_heap(collect=True)
        task = asyncio.create_task(
            _background(settings, holder, registry, metrics, aliases, freeze_gc=freeze_gc)
        )
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(title="clv scoring", version="1", lifespan=lifespan)
    app.state.models = holder
    app.state.aliases = aliases
    app.state.metrics = metrics
    app.state.feature_reader = reader

    @app.get("/healthz")
    def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        state = holder.current
        if state is None:
            return _json({"ready": False, "reason": holder.error or "model not loaded"}, 503)
        problem = reader.ping()
        if problem is not None:
            return _json({"ready": False, "reason": problem}, 503)
        body: dict[str, JsonValue] = {
            "ready": True,
            "model_version": state.champion.version,
            "alias": CHAMPION,
        }
        if holder.canary_error is not None:
            body["canary_error"] = holder.canary_error
        if aliases.error is not None:  # the aliases loaded before (if any) still answer
            body["identities_error"] = aliases.error
        if state.canary is not None:
            body["canary"] = {
                "version": state.canary.version,
                "share": state.share,
                "shadow": state.shadow,
            }
        return _json(body)

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.prometheus(), media_type="text/plain; version=0.0.4")

    async def score(request: Request) -> Response:
        started = time.perf_counter()
        if expected_auth is not None:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected_auth):
                return _json(
                    {"detail": "missing or wrong bearer token"},
                    401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        try:
            body = ScoreRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            return _json({"detail": _validation_detail(exc)}, 422)
        requested = body.customer_ids
        if not 1 <= len(requested) <= max_batch:
            return _json(
                {"detail": f"customer_ids must hold 1 to {max_batch} ids (got {len(requested)})"},
                422,
            )
        ids = aliases.current.resolve(requested)
        state = holder.current
        if state is None:
            metrics.error_without_model()
            return _json({"detail": f"no model loaded ({holder.error or 'starting'})"}, 503)
        try:
            batch = reader.read(ids)
        except Exception as exc:
            metrics.error_without_model()
            return _json(
                {"detail": f"feature store unavailable: {type(exc).__name__}: {_first_line(exc)}"},
                503,
            )
        if len(batch.customer_ids) != len(ids):
            metrics.error_without_model()
            return _json(
                {"detail": f"feature source returned {len(batch.customer_ids)} rows"},
                502,
            )
        try:
            if body.explain:
                scored, offset = score_batch(state, batch, explain_rows=True), 0
            else:
                scored, offset = await coalescer.score(state, batch)
        except Exception as exc:
            metrics.error_without_model()
            return _json(
                {"detail": f"scoring failed: {type(exc).__name__}: {_first_line(exc)}"}, 500
            )
        stop = offset + len(ids)
        payload = scored.payload(offset, stop, requested=requested)
        observed = scored.observations(offset, stop)
        elapsed = time.perf_counter() - started
        for obs in observed:
            metrics.observe(
                obs.alias,
                obs.version,
                seconds=elapsed,
                customers=obs.customers,
                error=obs.error,
                cold_start=obs.cold_start,
                predictions=obs.predictions,
            )
        return _json(payload)

    # A plain Starlette route: the body is parsed and validated here (ScoreRequest), so
    # FastAPI's per-request dependency solving would only add cost to the hot path.
    app.add_route("/score", score, methods=["POST"])
    return app


@dataclass(frozen=True)
class Observation:
    """What one alias did for one request (recorded in the live metrics)."""

    alias: str
    version: str
    customers: int
    error: bool
    cold_start: int
    predictions: np.ndarray


@dataclass(frozen=True)
class Scored:
    """A scored batch: one answer row per id, and what the canary did (for the metrics)."""

    state: ServingState
    rows: list[dict[str, JsonValue]]
    to_canary: np.ndarray
    canary_clv: np.ndarray
    """The canary's CLV where it scored a known customer (NaN elsewhere), shadow included."""
    canary_failed: bool

    def payload(
        self, start: int = 0, stop: int | None = None, *, requested: Sequence[str] | None = None
    ) -> dict[str, JsonValue]:
        """The `/score` body for rows [start, stop); `requested`: the ids as sent (an alias
        where the row's customer_id is the customer it resolved to), default the same."""
        rows: list[JsonValue] = []
        for i, row in enumerate(self.rows[start:stop]):
            rid = requested[i] if requested is not None else row["customer_id"]
            rows.append({"customer_id": row["customer_id"], "requested_id": rid, **row})
        return {
            "scores": rows,
            "model_version": self.state.champion.version,
            "alias": CHAMPION,
        }

    def observations(self, start: int = 0, stop: int | None = None) -> list[Observation]:
        """What each alias did for rows [start, stop) (one request's share of a batch)."""
        rows = self.rows[start:stop]
        out: list[Observation] = []
        mask = self.to_canary[start:stop]
        canary = self.state.canary
        if canary is not None and mask.any():
            n = int(mask.sum())
            if self.canary_failed:
                out.append(Observation(CANARY, canary.version, n, True, 0, np.empty(0)))
            else:
                clv = self.canary_clv[start:stop][mask]
                known = clv[~np.isnan(clv)]
                out.append(Observation(CANARY, canary.version, n, False, n - known.size, known))
        champion = [r for r in rows if r["alias"] == CHAMPION]
        if champion:
            cold = sum(1 for r in champion if r["cold_start"])
            clv = np.array(
                [r["clv"] for r in champion if not r["cold_start"] and r["clv"] is not None],
                dtype=np.float64,
            )
            out.append(
                Observation(CHAMPION, self.state.champion.version, len(champion), False, cold, clv)
            )
        return out


def score_batch(state: ServingState, batch: OnlineBatch, *, explain_rows: bool = False) -> Scored:
    """Score a batch with the champion and, for its share, the canary (fallback: champion)."""
    n = len(batch.customer_ids)
    champion, canary = state.champion, state.canary
    to_canary = (
        route_many(batch.customer_ids, state.share, state.salt)
        if canary is not None
        else np.zeros(n, dtype=bool)
    )
    x = batch_matrix(champion, batch)
    answer_by = [champion] * n
    canary_preds: dict[str, np.ndarray] | None = None
    canary_clv = np.full(n, np.nan)
    canary_failed = False
    if canary is not None and to_canary.any():
        picked = np.flatnonzero(to_canary)
        try:
            cx = x if canary.model.feature_names == champion.model.feature_names else None
            cx = (cx if cx is not None else batch_matrix(canary, batch))[picked]
            canary_preds = score_matrix(canary, cx)
            clv = np.where(canary_preds["cold_start"], np.nan, canary_preds["clv"])
            canary_clv[picked] = clv
        except Exception:  # a failing canary never fails a request: the champion answers
            canary_preds = None
            canary_failed = True
        if canary_preds is not None and not state.shadow:
            for r in picked.tolist():
                answer_by[r] = canary
    answered = canary_preds is not None and not state.shadow
    champion_rows = np.flatnonzero(~to_canary) if answered else np.arange(n)
    champ_preds: dict[str, np.ndarray] = {}
    if len(champion_rows):
        champ_preds = score_matrix(champion, x if len(champion_rows) == n else x[champion_rows])
    # Assemble answers in request order.
    where: list[tuple[dict[str, np.ndarray], int]] = [({}, 0)] * n
    for k, i in enumerate(champion_rows.tolist()):
        where[i] = (champ_preds, k)
    if canary_preds is not None and answered:
        for k, i in enumerate(np.flatnonzero(to_canary).tolist()):
            where[i] = (canary_preds, k)
    explanations = _explanations(batch, answer_by) if explain_rows else None
    rows_out: list[dict[str, JsonValue]] = []
    for i in range(n):
        preds, k = where[i]
        model = answer_by[i]
        row: dict[str, JsonValue] = {
            "customer_id": batch.customer_ids[i],
            "clv": _finite(float(preds["clv"][k])),
            "clv_p10": _finite(float(preds["clv_p10"][k])),
            "clv_p90": _finite(float(preds["clv_p90"][k])),
            "churn_probability": _finite(float(preds["churn_probability"][k])),
            "segment": str(preds["segment"][k]),
            "model_version": model.version,
            "alias": model.alias,
            "feature_timestamp": _iso(batch.timestamps[i]),
            "cold_start": bool(preds["cold_start"][k]),
        }
        if explanations is not None:  # a cold start is the prior: no feature explains it
            row["explanation"] = None if row["cold_start"] else _explanation(explanations[i])
        rows_out.append(row)
    return Scored(state, rows_out, to_canary, canary_clv, canary_failed)


def score_routed(
    state: ServingState, batch: OnlineBatch, *, explain_rows: bool = False
) -> tuple[dict[str, JsonValue], list[Observation]]:
    """The `/score` body for a batch, and what each alias did."""
    scored = score_batch(state, batch, explain_rows=explain_rows)
    return scored.payload(), scored.observations()


def merge_batches(batches: Sequence[OnlineBatch]) -> OnlineBatch:
    """Concatenate batches read by one reader (same features), in order."""
    if len(batches) == 1:
        return batches[0]
    first = batches[0]
    return OnlineBatch(
        customer_ids=[c for b in batches for c in b.customer_ids],
        feature_names=first.feature_names,
        strings=first.strings,
        values={n: [v for b in batches for v in b.values[n]] for n in first.feature_names},
        timestamps=[t for b in batches for t in b.timestamps],
    )


class Coalescer:
    """Scores the requests that arrive together in one model call (exact: rows are independent).

    XGBoost's in-place prediction has a fixed cost per tree and call (about 0.75 us per tree
    here: 0.45 ms for one row of a 550-tree model, 0.75 ms for 64 rows). A request enqueues its
    batch and awaits; a drain task, scheduled behind the handlers that are ready in the same
    event-loop turn, scores everything queued as one batch per serving state. Alone, a request
    is scored at once; under load, requests share the per-call cost.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[ServingState, OnlineBatch, asyncio.Future[tuple[Scored, int]]]]
        self._pending = []
        self._task: asyncio.Task[None] | None = None

    async def score(self, state: ServingState, batch: OnlineBatch) -> tuple[Scored, int]:
        """The scored batch holding this request's rows, and the offset of its first row."""
        future: asyncio.Future[tuple[Scored, int]] = asyncio.get_running_loop().create_future()
        self._pending.append((state, batch, future))
        if self._task is None:
            self._task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let the handlers ready in this turn enqueue first
        try:
            while self._pending:
                items, self._pending = self._pending, []
                groups: dict[int, list[tuple[OnlineBatch, asyncio.Future[tuple[Scored, int]]]]]
                groups = {}
                states: dict[int, ServingState] = {}
                for state, batch, future in items:
                    groups.setdefault(id(state), []).append((batch, future))
                    states[id(state)] = state
                for key, group in groups.items():
                    try:
                        scored = score_batch(states[key], merge_batches([b for b, _ in group]))
                    except Exception as exc:
                        for _, future in group:
                            if not future.done():
                                future.set_exception(exc)
                        continue
                    offset = 0
                    for batch, future in group:
                        if not future.done():
                            future.set_result((scored, offset))
                        offset += len(batch.customer_ids)
                await asyncio.sleep(0)
        finally:
            self._task = None


def score_payload(
    champion: Champion, features: pd.DataFrame, *, explain_rows: bool = False
) -> dict[str, JsonValue]:
    """The `/score` body for a frame of online features, scored by one model (no routing)."""
    reader = _CallableReader(lambda ids: features)
    state = ServingState(champion=champion, canary=None, share=0.0, shadow=False, salt="")
    payload, _ = score_routed(
        state, reader.read(features["customer_id"].astype(str).tolist()), explain_rows=explain_rows
    )
    return payload


def _explanations(batch: OnlineBatch, answer_by: list[Champion]) -> list[Explanation]:
    frame = batch.frame()
    out: list[Explanation | None] = [None] * len(answer_by)
    for model in {id(m): m for m in answer_by}.values():
        rows = [i for i, m in enumerate(answer_by) if m is model]
        for i, e in zip(rows, explain(model.model, frame.iloc[rows]), strict=True):
            out[i] = e
    return [e for e in out if e is not None]


def _explanation(e: Explanation) -> dict[str, JsonValue]:
    return {
        "space": "margin (log CLV): bias + sum(top) + other = margin",
        "bias": _finite(e.bias),
        "top": [
            {"feature": c.feature, "value": c.value, "contribution": _finite(c.contribution)}
            for c in e.top
        ],
        "other": _finite(e.other),
        "margin": _finite(e.margin),
    }


def _finite(v: float) -> float | None:
    return v if v == v and abs(v) != float("inf") else None


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return _iso_of(seconds)


@functools.lru_cache(maxsize=4096)
def _iso_of(seconds: float) -> str:
    """A feature timestamp as ISO text; memoized: a materialization stamps many customers with
    the same few timestamps, and pandas takes ~15 us to format one."""
    return pd.Timestamp(seconds, unit="s", tz="UTC").isoformat()


def _json(
    payload: dict[str, JsonValue], status: int = 200, *, headers: dict[str, str] | None = None
) -> Response:
    body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _validation_detail(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return f"{where}: {first['msg']}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _reader(settings: Settings, source: FeatureSource | FeatureReader | None) -> FeatureReader:
    if source is None:
        from clv.features.online_read import online_source

        return online_source(settings)
    if hasattr(source, "read") and hasattr(source, "ping"):
        return source
    return _CallableReader(source)


async def _background(
    settings: Settings,
    holder: ModelHolder,
    registry: ModelRegistry,
    metrics: LiveMetrics,
    aliases: AliasHolder,
    *,
    freeze_gc: bool = False,
) -> None:
    """Poll the registry (and the identities), write live stats, judge the canary; never
    raises.

    Each tick runs wholly in a worker thread (`_tick`): the registry poll, the stats snapshot
    and file write, and the canary judgement never run on the event loop."""
    reload_every = settings.serving.reload_seconds
    stats_every = settings.serving.stats_seconds
    tick = min(stats_every, reload_every) if reload_every > 0 else stats_every
    next_reload = time.monotonic() + reload_every
    judged: set[str] = set()
    while True:
        await asyncio.sleep(tick)
        now = time.monotonic()
        poll = reload_every > 0 and now >= next_reload
        if poll:
            next_reload = now + reload_every
        await asyncio.to_thread(
            _tick,
            settings,
            holder,
            registry,
            metrics,
            judged,
            poll=poll,
            freeze_gc=freeze_gc,
            aliases=aliases,
        )


def _tick(
    settings: Settings,
    holder: ModelHolder,
    registry: ModelRegistry,
    metrics: LiveMetrics,
    judged: set[str],
    *,
    poll: bool,
    freeze_gc: bool = False,
    aliases: AliasHolder | None = None,
) -> None:
    """One background tick (off the event loop); a registry or disk hiccup is recorded, not
    raised."""
    try:
        if poll and holder.reload() and freeze_gc:
            _freeze_heap()
        if poll and aliases is not None:
            aliases.refresh()
        snapshot = metrics.snapshot()
        write_live_stats(settings, snapshot)
        state = holder.current
        if (
            settings.serving.auto_rollback
            and state is not None
            and state.canary is not None
            and state.canary.version not in judged
        ):
            verdict = _judge(settings, snapshot)
            if verdict is not None:
                judged.add(state.canary.version)
                registry.rollback_canary(state.canary.version, f"auto: {verdict}")
                if holder.reload() and freeze_gc:
                    _freeze_heap()
    except Exception as exc:  # the loop must survive a registry or disk hiccup
        holder.error = holder.error or f"background: {type(exc).__name__}: {_first_line(exc)}"


def _freeze_heap(*, collect: bool = False) -> None:
    """Move every object alive now (the loaded models, MLflow, Feast, pandas: ~400k objects)
    out of the cyclic GC's reach: a full collection over them pauses the event loop for
    ~200 ms (measured), which was the server's p99. `collect` first (at startup only)."""
    if collect:
        gc.collect()
    gc.freeze()


def _judge(settings: Settings, snapshot: dict[str, object]) -> str | None:
    """The rollback reason when the live canary breaches a guardrail, else None."""
    from clv.registry.canary import judge_canary
    from clv.registry.promotion import guardrails, parse_live_stats

    live = parse_live_stats({**snapshot, "written_at": time.time()})
    if live.champion is None or live.canary is None:
        return None
    verdict = judge_canary(live.champion, live.canary, guardrails=guardrails(settings))
    return verdict.reason if verdict.action == "rollback" else None


def write_live_stats(settings: Settings, snapshot: dict[str, object]) -> None:
    """Atomically replace `.clv/serving/live_stats.json` with the current snapshot."""
    from clv.registry.promotion import live_stats_path

    path = live_stats_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {**snapshot, "written_at": time.time(), "pid": os.getpid()}
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)
