"""The scoring service over HTTP: `POST /score`, `GET /healthz`, `GET /readyz`, `GET /metrics`.

`create_app` wires a model registry (default: MLflow aliases `champion` and `canary`) and an
online feature reader (default: `clv.features.online_read.online_source`, direct SQLite or
Redis reads of Feast's online tables) into a FastAPI app. Both are injectable. What serves is
`clv.serving.state`, reloaded by `clv.serving.supervise`; a request is scored by
`clv.serving.routed` (champion and canary), together with the requests that arrived with it
(`clv.serving.coalesce`: one read on a worker thread; a few unexplained rows are scored as it
ends).

Identities: `/score` accepts any alias of a customer (`clv.serving.identities`: the workspace's
identities table as of now, read at start and re-read on the registry poll when it changed) and
answers for the customer it is: each score row carries that `customer_id` and the
`requested_id` as sent.

Store faults: nothing blocking runs on the event loop. Online-store reads, explain and big
batches run on a few worker threads with a bounded queue (`clv.serving.workers`); a read slower
than `serving.read_timeout_seconds`, or a job over `serving.worker_queue`, answers 503 with a
JSON `detail` and `Retry-After`. `/healthz` (liveness) touches nothing but the event loop;
`/readyz` asks the store itself (`clv.serving.readiness`: missing, locked, corrupt, stale).

Auth: when the environment variable named by `serving.auth_token_env` (CLV_SERVING_TOKEN) is
set, `/score` needs `Authorization: Bearer <token>`; health, readiness and metrics stay open.
Set but empty (or blank) is a startup error, never open access.

Limits: a body over `serving.max_body_bytes` is a 413 (refused from its Content-Length, or as
soon as the streamed body passes the limit, never parsed), an id over `serving.max_id_length`
characters a 422; neither error echoes the input.
"""

from __future__ import annotations

import functools
import hmac
import json
import os
import time
from collections.abc import Awaitable, Callable

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from clv.core.contracts import CHAMPION
from clv.core.errors import ClvError
from clv.core.live_stats import read_batch_scoring
from clv.core.settings import ServingSettings, Settings
from clv.features.online_read import FeatureReader
from clv.serving.coalesce import Coalescer, ReadCoalescer, ShortRead
from clv.serving.identities import AliasHolder
from clv.serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from clv.serving.metrics import LiveMetrics
from clv.serving.reader import FeatureSource, feature_reader
from clv.serving.readiness import StoreCheck
from clv.serving.routed import JsonValue, Observation, Scored
from clv.serving.routing import MlflowRegistry, ModelRegistry, SingleModel
from clv.serving.scorer import ModelSource, ReferenceSource, load_champion, registry_reference
from clv.serving.state import ModelHolder, describe
from clv.serving.supervise import lifespan
from clv.serving.workers import EXPLAINED_ROW_WEIGHT, OFFLOAD_ROWS, Busy, Unavailable, WorkerPool


class ScoreRequest(BaseModel):
    """Body of `POST /score`."""

    model_config = ConfigDict(extra="forbid")

    customer_ids: list[str]
    explain: bool = False


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
    reload, move the heap out of the cyclic GC's reach (`clv.serving.supervise.freeze_heap`)."""
    if registry is None:
        registry = (
            SingleModel(model_source) if model_source is not None else MlflowRegistry(settings)
        )
    reader = feature_reader(settings, feature_source)
    if reference_source is None:
        reference_source = registry_reference(settings)
    metrics = LiveMetrics(batch_scoring=lambda: read_batch_scoring(settings))
    aliases = AliasHolder(settings)
    workers = WorkerPool.from_settings(settings.serving)
    store_check = StoreCheck(reader, timeout_seconds=settings.serving.read_timeout_seconds)
    holder = ModelHolder(
        registry,
        lambda loaded: load_champion(
            loaded, serving=settings.serving, reference_source=reference_source
        ),
        salt=settings.registry.route_salt,
        metrics=metrics,
    )
    app = ScoringApp(
        title="clv scoring",
        version="1",
        lifespan=lifespan(
            settings,
            holder,
            metrics,
            aliases,
            reader,
            store_check,
            freeze_gc=freeze_gc,
            on_stop=(workers.close, store_check.close),
        ),
    )
    app.state.models = holder
    app.state.aliases = aliases
    app.state.metrics = metrics
    app.state.feature_reader = reader

    @app.get("/healthz")
    async def healthz() -> Response:  # on the event loop: no thread, no store, no lock
        return _json({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        return await _readiness(holder, store_check, aliases)

    @app.get("/metrics")
    def prometheus() -> Response:  # a plain def: FastAPI runs it on a thread, off the loop
        return Response(metrics.prometheus(), media_type=METRICS_CONTENT_TYPE)

    token = bearer_token(settings)
    endpoint = ScoreEndpoint(
        holder,
        reader,
        aliases,
        metrics,
        workers,
        limits=settings.serving,
        expected_auth=f"Bearer {token}".encode() if token is not None else None,
    )
    # A plain Starlette route: the body is parsed and validated here (ScoreRequest), so
    # FastAPI's per-request dependency solving would only add cost to the hot path; a POST
    # takes it without the middleware and router too (ScoringApp).
    app.add_route("/score", endpoint.score, methods=["POST"])
    app.score = endpoint.score
    return app


class ScoringApp(FastAPI):
    """FastAPI, with `POST /score` (`score`, once set) answered straight from the ASGI call:
    FastAPI's per-request telemetry check, middleware and router cost ~30 us a request, and
    what they do is not needed there (the endpoint answers every error itself; FastAPI's own
    OpenTelemetry, when configured, does not see /score). Starlette's `ServerErrorMiddleware`,
    as the app's, still turns an unhandled error into a 500. Every other request, and /score
    under a root path, takes the whole stack."""

    score: Callable[[Request], Awaitable[Response]] | None = None
    _direct: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.score is not None
            and scope["type"] == "http"
            and scope["path"] == "/score"
            and scope["method"] == "POST"
            and not scope.get("root_path")
            and not self.root_path
        ):
            if self._direct is None:
                handler = next(
                    (h for k, h in self.exception_handlers.items() if k in (500, Exception)), None
                )
                self._direct = ServerErrorMiddleware(
                    _Endpoint(self.score), handler=handler, debug=self.debug
                )
            scope["app"] = self  # as Starlette sets it
            await self._direct(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class _Endpoint:
    """An endpoint of a request as an ASGI app."""

    def __init__(self, endpoint: Callable[[Request], Awaitable[Response]]) -> None:
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.endpoint(Request(scope, receive, send))
        await response(scope, receive, send)


def bearer_token(settings: Settings) -> str | None:
    """The token `/score` requires: None when its variable is unset (open access); a variable
    set but empty or blank is an error, so that a broken secret never opens the server."""
    name = settings.serving.auth_token_env
    token = os.environ.get(name) if name else None
    if token is not None and not token.strip():
        raise ClvError(
            f"{name} is set but empty: set the bearer token /score requires, "
            f"or unset {name} to serve without auth"
        )
    return token


async def _readiness(holder: ModelHolder, store: StoreCheck, aliases: AliasHolder) -> Response:
    """`/readyz`: 200 with what serves, or 503 with why nothing can."""
    state = holder.current
    if state is None:
        return _json({"ready": False, "reason": holder.error or "model not loaded"}, 503)
    problem = await store.problem()
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


class ScoreEndpoint:
    """`POST /score`: auth, body, identities, online features (on a worker thread), scoring."""

    def __init__(
        self,
        holder: ModelHolder,
        reader: FeatureReader,
        aliases: AliasHolder,
        metrics: LiveMetrics,
        workers: WorkerPool,
        *,
        limits: ServingSettings,
        expected_auth: bytes | None,
    ) -> None:
        self.holder = holder
        self.reader = reader
        self.aliases = aliases
        self.metrics = metrics
        self.max_batch = limits.max_batch
        self.max_body_bytes = limits.max_body_bytes
        self.max_id_length = limits.max_id_length
        self.expected_auth = expected_auth
        self.workers = workers
        self.reads = ReadCoalescer(reader, workers, max_ids=limits.max_batch)
        self.coalescer = Coalescer(workers)

    async def score(self, request: Request) -> Response:
        response = await self._score(request)
        self.metrics.respond(response.status_code)
        return response

    async def _score(self, request: Request) -> Response:
        started = time.perf_counter()
        if self.expected_auth is not None:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, self.expected_auth):
                return _json(
                    {"detail": "missing or wrong bearer token"},
                    401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        raw = await _bounded_body(request, self.max_body_bytes)
        if raw is None:
            return _json(
                {"detail": f"request body over serving.max_body_bytes ({self.max_body_bytes})"},
                413,
            )
        try:
            body = ScoreRequest.model_validate_json(raw)
        except ValidationError as exc:
            return _json({"detail": _validation_detail(exc)}, 422)
        requested = body.customer_ids
        if not 1 <= len(requested) <= self.max_batch:
            return _json(
                {
                    "detail": f"customer_ids must hold 1 to {self.max_batch} ids "
                    f"(got {len(requested)})"
                },
                422,
            )
        too_long = next((i for i, c in enumerate(requested) if len(c) > self.max_id_length), None)
        if too_long is not None:  # the id itself is not echoed
            return _json(
                {
                    "detail": f"customer_ids.{too_long}: {len(requested[too_long])} characters, "
                    f"over serving.max_id_length ({self.max_id_length})"
                },
                422,
            )
        ids = self.aliases.current.resolve(requested)
        state = self.holder.current
        if state is None:
            self.metrics.error_without_model()
            return _json({"detail": f"no model loaded ({self.holder.error or 'starting'})"}, 503)
        try:  # a blocking store read (SQLite, Redis): on a worker thread, bounded in time
            read = await self.reads.read(ids, state, explain=body.explain)
        except ShortRead as exc:
            self.metrics.error_without_model()
            return _json({"detail": str(exc)}, 502)
        except Exception as exc:
            self.metrics.error_without_model()
            return self._unavailable(exc)
        try:
            if read.error is not None:  # scored as the read ended, and failed
                raise read.error
            scored, offset = (
                read.scored
                if read.scored is not None
                else await self.coalescer.score(state, read.batch, explain=body.explain)
            )
            job = functools.partial(_rendered, scored, offset, requested)
            weight = len(requested) * (EXPLAINED_ROW_WEIGHT if body.explain else 1)
            big = weight >= OFFLOAD_ROWS
            raw, observed, stored = await self.workers.run(job, timed=False) if big else job()
        except Busy as exc:
            self.metrics.error_without_model()
            return self._unavailable(exc)
        except Exception as exc:
            self.metrics.error_without_model()
            return _json({"detail": f"scoring failed: {describe(exc)}"}, 500)
        self._observe(observed, seconds=time.perf_counter() - started)
        self.metrics.observe_features(stored)
        return Response(raw, media_type="application/json")

    def _unavailable(self, exc: Exception) -> Response:
        """503 with why, and when to try again: a busy server or a failing store is a
        moment's trouble for a client, not its error."""
        what = "server busy" if isinstance(exc, Busy) else "feature store unavailable"
        reason = str(exc) if isinstance(exc, Unavailable) else describe(exc)
        retry = exc.retry_after if isinstance(exc, Unavailable) else self.workers.retry_after
        return _json({"detail": f"{what}: {reason}"}, 503, headers={"Retry-After": str(retry)})

    def _observe(self, observed: list[Observation], *, seconds: float) -> None:
        """Record what each alias did for this request."""
        for obs in observed:
            self.metrics.observe(
                obs.alias,
                obs.version,
                seconds=seconds,
                customers=obs.customers,
                error=obs.error,
                cold_start=obs.cold_start,
                predictions=obs.predictions,
                tier=obs.tier,
            )


async def _bounded_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None once it is known to exceed `limit` bytes (from its
    Content-Length, else while it streams in): a body that large is never held whole."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _rendered(
    scored: Scored, offset: int, requested: list[str]
) -> tuple[bytes, list[Observation], np.ndarray]:
    """The `/score` body for one request's rows of a scored batch, what each alias did, and
    the timestamps of the stored features it served."""
    stop = offset + len(requested)
    payload = scored.payload(offset, stop, requested=requested)
    return (
        _dumps(payload),
        scored.observations(offset, stop),
        scored.stored_feature_seconds(offset, stop),
    )


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
"""Compact JSON, built once (`json.dumps` with options builds an encoder per call)."""
ONE_CALL_ITEMS = 16
"""An answer whose lists hold at most this many elements is encoded in one call."""


def _dumps(payload: dict[str, JsonValue]) -> bytes:
    """`payload` as compact JSON: a small answer in one encoder call, a big one a list element
    at a time (the same bytes), since a 1,000-row explained answer in one call holds the GIL
    ~60 ms, stalling the event loop even from a worker thread; element by element it lets go."""
    if all(not isinstance(v, list) or len(v) <= ONE_CALL_ITEMS for v in payload.values()):
        return _ENCODER.encode(payload).encode()
    parts = []
    for key, value in payload.items():
        if isinstance(value, list):
            items = b",".join(_compact(v) for v in value)
            parts.append(_compact(key) + b":[" + items + b"]")
        else:
            parts.append(_compact(key) + b":" + _compact(value))
    return b"{" + b",".join(parts) + b"}"


def _compact(value: JsonValue) -> bytes:
    return _ENCODER.encode(value).encode()


def _json(
    payload: dict[str, JsonValue], status: int = 200, *, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        _dumps(payload), status_code=status, media_type="application/json", headers=headers
    )


def _validation_detail(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return f"{where}: {first['msg']}"
