"""The search tool server: typed JSON endpoints over search, fetch + extract, and query-LLM reading.

    POST /v1/search, /v1/query_url, /v1/visit     (fathom.web.schemas)
    POST /execute                                 (the reference's legacy contract, parsed by fathom.web.legacy)
    GET  /healthz, /metrics

`ToolService` is the HTTP-free core (tests and in-process callers can use it directly); `create_app` wraps it in
FastAPI (a well-formed tool call is answered by `fathom.web.requests.FastRoutes` before FastAPI's routing: the same
bytes at a fraction of the CPU); `serve_in_thread` runs the app under a real uvicorn server on loopback.

Limits: every tool call has a hard deadline (``request_timeout_s``, enforced with ``asyncio.timeout``, so the work is
cancelled, not abandoned); real work (fetch, search backend, reading) runs under one server-wide semaphore of
``max_concurrency`` slots; cache hits do not take a slot. Identical concurrent page fetches and readings are
coalesced (single flight). Text extraction runs in a small bounded thread pool: it is CPU work on size-capped input,
so it always finishes quickly even when the request that wanted it was cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import ValidationError

from fathom.errors import ToolError
from fathom.serving import serve_in_thread as serve_app_in_thread
from fathom.web import legacy
from fathom.web.backends import SearchBackend, make_backend
from fathom.web.cache import DiskCache, extraction_key, page_key, search_key
from fathom.web.fetch import (
    PERMANENT_CODES,
    FetchContext,
    FetcherRegistry,
    Page,
    chain_id,
    default_registry,
    make_http_client,
)
from fathom.web.guard import UrlGuard
from fathom.web.reader import PROMPT_VERSION, PageReader, Reading
from fathom.web.requests import ErrorBody, FastRoutes, RequestGuard, install_error_handlers
from fathom.web.schemas import (
    ExecuteRequest,
    ExecuteResponse,
    QueryUrlRequest,
    QueryUrlResponse,
    SearchRequest,
    SearchResponse,
    ToolErrorInfo,
    VisitRequest,
    VisitResponse,
)
from fathom.web.settings import ToolServerSettings

log = logging.getLogger(__name__)
T = TypeVar("T")
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("fathom_tools_deadline", default=None)
# Failures worth a short negative cache entry (guard verdicts are cheap and depend on settings: not cached).
NEGATIVE_CODES = (PERMANENT_CODES | {"http_status"}) - {"invalid_url", "blocked_url"}


class _Children:
    """A labelled metric whose children are looked up once per label values: prometheus_client's ``labels()``
    validates and takes a lock on every call, which the cached-call hot path pays three times per request."""

    def __init__(self, metric) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def labels(self, *values: str):
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child


class Metrics:
    """Prometheus metrics in a registry of their own (several apps can live in one process, e.g. in tests)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = _Children(Counter("fathom_tools_requests_total", "Tool calls by endpoint and outcome (ok or "
                                          "error code).", ["endpoint", "outcome"], registry=r))
        self.latency = _Children(Histogram("fathom_tools_request_seconds", "Tool call latency by endpoint.",
                                           ["endpoint"], buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                                                                  10, 30, 60, 120), registry=r))
        self.cache = _Children(Counter("fathom_tools_cache_total", "Cache lookups by kind and result (hit, negative, "
                                       "miss).", ["kind", "result"], registry=r))
        self.fetch_errors = Counter("fathom_tools_fetch_errors_total", "Page fetch failures by error code.", ["code"],
                                    registry=r)
        self.readings = Counter("fathom_tools_readings_total", "Page readings by extraction mode (llm, fallback).",
                                ["extraction"], registry=r)
        self.in_flight = Gauge("fathom_tools_in_flight", "Tool calls being served.", registry=r)
        self.busy_slots = Gauge("fathom_tools_busy_slots", "Concurrency slots doing real work.", registry=r)


@dataclass
class _Flight:
    task: asyncio.Future
    waiters: int = 0


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3])[:300]
    return f"{type(exc).__name__}: {exc}"[:300].encode("utf-8", "replace").decode("utf-8")


def _err(exc: ToolError) -> ToolErrorInfo:
    code = exc.code if exc.code in ToolErrorInfo.model_fields["code"].annotation.__args__ else "internal"
    return ToolErrorInfo(code=code, message=exc.message, retryable=exc.retryable)


class ToolService:
    """The tools, independent of HTTP. Construct (validates settings), `await start()`, use, `await aclose()`."""

    def __init__(self, settings: ToolServerSettings, *, backend: SearchBackend | None = None,
                 registry: FetcherRegistry | None = None, metrics: Metrics | None = None):
        settings.check()  # clear start-up errors: missing keys (naming the variable), missing index
        self.settings = settings
        self.backend = backend or make_backend(settings)
        self.registry = registry or default_registry(settings)
        self.metrics = metrics or Metrics()
        self.cache = DiskCache(settings.resolved_cache_dir(), enabled=settings.cache_enabled,
                               memory_items=settings.cache_memory_items)
        self.guard = UrlGuard(settings.allow_hosts, settings.host_overrides)
        self.reader: PageReader | None = None
        self._ctx: FetchContext | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._slots: asyncio.Semaphore | None = None
        self._flights: dict[Any, _Flight] = {}

    # ---- lifecycle ---------------------------------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        self._slots = asyncio.Semaphore(s.max_concurrency)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fathom-extract")
        self._ctx = FetchContext(settings=s, guard=self.guard, http=make_http_client(s), extract_pool=self._pool)
        client = None
        role = s.query_role
        if role is not None:
            from fathom.llm import make_client

            client = await asyncio.to_thread(make_client, role)
        self.reader = PageReader(client, page_chars=s.page_chars, max_tokens=s.query_llm_max_tokens,
                                 timeout_s=s.query_llm_timeout_s, attempts=s.query_llm_attempts,
                                 fallback_passages=s.fallback_passages)

    async def aclose(self) -> None:
        for flight in list(self._flights.values()):
            flight.task.cancel()
        if self._ctx is not None:
            await self._ctx.http.aclose()
        if self.reader is not None and self.reader.client is not None:
            await self.reader.client.aclose()
        await self.backend.aclose()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    async def __aenter__(self) -> "ToolService":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    # ---- helpers -----------------------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _slot(self):
        assert self._slots is not None, "ToolService.start() was not awaited"
        async with self._slots:
            self.metrics.busy_slots.inc()
            try:
                yield
            finally:
                self.metrics.busy_slots.dec()

    async def _single_flight(self, key: Any, make: Callable[[], Awaitable[T]]) -> T:
        """Run `make()` once for concurrent callers with the same key. The shared task has its own bounded
        timeouts; a caller that is cancelled stops waiting, and the last one to leave cancels the work."""
        flight = self._flights.get(key)
        if flight is None:
            flight = _Flight(asyncio.ensure_future(make()))
            self._flights[key] = flight
            flight.task.add_done_callback(lambda _t, k=key, f=flight: self._flights.pop(k, None)
                                          if self._flights.get(k) is f else None)
        flight.waiters += 1
        try:
            return await asyncio.shield(flight.task)
        except asyncio.CancelledError:
            if not flight.task.done() and flight.waiters <= 1:
                flight.task.cancel()
            raise
        finally:
            flight.waiters -= 1

    async def _timed(self, endpoint: str, work: Callable[[], Awaitable[Any]], timeout_s: float | None = None):
        """Run `work` under the hard deadline; returns (result | None, ToolErrorInfo | None, latency_ms)."""
        m = self.metrics
        m.in_flight.inc()
        t0 = time.perf_counter()
        result, error = None, None
        budget = timeout_s or self.settings.request_timeout_s
        token = _DEADLINE.set(asyncio.get_running_loop().time() + budget)
        try:
            async with asyncio.timeout(budget):
                result = await work()
        except ToolError as exc:
            error = _err(exc)
        except TimeoutError:
            error = ToolErrorInfo(code="timeout", retryable=True,
                                  message=f"{endpoint} exceeded {timeout_s or self.settings.request_timeout_s:g}s")
        except Exception as exc:  # noqa: BLE001 - never a 500 for a tool failure
            log.exception("%s failed", endpoint)
            error = ToolErrorInfo(code="internal", message=f"{type(exc).__name__}: {exc}"[:500])
        finally:
            _DEADLINE.reset(token)
            m.in_flight.dec()
        dt = time.perf_counter() - t0
        m.latency.labels(endpoint).observe(dt)
        m.requests.labels(endpoint, error.code if error else "ok").inc()
        return result, error, dt * 1000

    # ---- pages ---------------------------------------------------------------------------------------------------
    async def get_page(self, url: str) -> tuple[Page, bool]:
        """The extracted page (cached), and whether it came from the cache. Raises ToolError.

        The URL guard runs first, before any cache key is computed or looked up: a malformed URL is
        ``invalid_url``, and a page cached while its host was allowed is not served once it is not."""
        url = url.strip()
        await self.guard.check(url)
        key = page_key(url, chain_id(self.registry, url))
        entry = self.cache.get("page", key)
        if entry is not None:
            self.metrics.cache.labels("page", "negative" if entry.negative else "hit").inc()
            if entry.negative:
                e = entry.value
                raise ToolError(e["code"], e["message"] + " (cached)", retryable=e.get("retryable", False))
            return Page.model_validate(entry.value), True
        self.metrics.cache.labels("page", "miss").inc()
        return await self._single_flight(("page", str(key)), lambda: self._fetch_page(url, key)), False

    async def _fetch_page(self, url: str, key: dict) -> Page:
        assert self._ctx is not None
        async with self._slot():
            try:
                page = await self.registry.fetch(url, self._ctx)
            except ToolError as exc:
                self.metrics.fetch_errors.labels(exc.code).inc()
                if exc.code in NEGATIVE_CODES and not exc.retryable:  # permanent: remember briefly
                    self.cache.put("page", key, {"code": exc.code, "message": exc.message, "retryable": False},
                                   ttl_s=self.settings.negative_ttl_s, negative=True)
                raise
        self.cache.put("page", key, page.model_dump(), ttl_s=self.settings.page_ttl_s)
        return page

    # ---- tools ---------------------------------------------------------------------------------------------------
    async def search(self, req: SearchRequest, *, timeout_s: float | None = None) -> SearchResponse:
        s = self.settings
        cache_hit = False

        async def work():
            nonlocal cache_hit
            key = search_key(self.backend.provider, req.query, req.top_k, s.serper_gl, s.serper_hl)
            entry = self.cache.get("search", key)
            if entry is not None:
                self.metrics.cache.labels("search", "hit").inc()
                cache_hit = True
                return entry.value
            self.metrics.cache.labels("search", "miss").inc()
            async with self._slot():
                hits = await self.backend.search(req.query, req.top_k)
            value = [h.model_dump() for h in hits]
            self.cache.put("search", key, value, ttl_s=s.search_ttl_s if value else s.negative_ttl_s,
                           negative=not value)
            return value

        hits, error, ms = await self._timed("search", work, timeout_s)
        return SearchResponse(query=req.query, hits=hits or [], backend=self.backend.provider.split(":")[0],
                              cache_hit=cache_hit, latency_ms=ms, error=error)

    async def query_url(self, req: QueryUrlRequest, *, timeout_s: float | None = None) -> QueryUrlResponse:
        s = self.settings
        state: dict[str, Any] = {"cache_hit": False, "fetcher": ""}

        async def work() -> Reading:
            assert self.reader is not None, "ToolService.start() was not awaited"
            url = req.url.strip()
            await self.guard.check(url)  # guard before cache (see get_page)
            key = extraction_key(url, req.goal, self.reader.model_name, PROMPT_VERSION)
            entry = self.cache.get("extraction", key)
            if entry is not None:
                self.metrics.cache.labels("extraction", "hit").inc()
                state.update(cache_hit=True, fetcher=entry.value.get("fetcher", ""))
                v = entry.value
                return Reading(rationale=v["rationale"], evidence=list(v["evidence"]), summary=v["summary"],
                               extraction=v["extraction"])
            self.metrics.cache.labels("extraction", "miss").inc()
            page, _ = await self.get_page(url)
            state["fetcher"] = page.fetcher
            reading = await self._single_flight(("read", str(key)), lambda: self._read(url, req.goal, page))
            self.metrics.readings.labels(reading.extraction).inc()
            transient = reading.extraction == "fallback" and ("failed" in reading.note or "timed out" in reading.note)
            self.cache.put("extraction", key,
                           {"rationale": reading.rationale, "evidence": reading.evidence, "summary": reading.summary,
                            "extraction": reading.extraction, "fetcher": page.fetcher},
                           ttl_s=s.negative_ttl_s if transient else s.extraction_ttl_s)
            return reading

        reading, error, ms = await self._timed("query_url", work, timeout_s)
        r = reading or Reading()
        return QueryUrlResponse(url=req.url, goal=req.goal, rationale=r.rationale, evidence=r.evidence,
                                summary=r.summary, fetcher=state["fetcher"],
                                extraction=r.extraction if reading else "none", cache_hit=state["cache_hit"],
                                latency_ms=ms, error=error)

    async def _read(self, url: str, goal: str, page: Page) -> Reading:
        """The reading, with the model's time cut so that the fallback still fits in the call's deadline."""
        assert self.reader is not None
        async with self._slot():
            deadline = _DEADLINE.get()
            budget = None
            if deadline is not None:
                remaining = deadline - asyncio.get_running_loop().time()
                budget = max(0.05, remaining - min(2.0, 0.1 * remaining))
            return await self.reader.read(url, goal, page.text, timeout_s=budget)

    async def visit(self, req: VisitRequest, *, timeout_s: float | None = None) -> VisitResponse:
        state = {"cache_hit": False}

        async def work() -> Page:
            page, state["cache_hit"] = await self.get_page(req.url)
            return page

        page, error, ms = await self._timed("visit", work, timeout_s)
        if page is None:
            return VisitResponse(url=req.url, latency_ms=ms, error=error)
        return VisitResponse(url=page.url, title=page.title, text=page.text[: req.max_chars],
                             truncated=len(page.text) > req.max_chars, fetcher=page.fetcher,
                             cache_hit=state["cache_hit"], latency_ms=ms)

    async def execute(self, req: ExecuteRequest) -> ExecuteResponse:
        """The legacy contract: parse `call` safely, run the tool, return the reference's text rendering."""
        timeout = min(float(req.timeout), self.settings.request_timeout_s) if req.timeout > 0 else None
        try:
            call = legacy.parse_call(req.call, req.env, max_chars=self.settings.legacy_max_call_chars)
            a = call.args
            if call.tool in ("search_urls", "web_search"):
                tool_req: Any = SearchRequest(query=a["query"][:2000] or " ", top_k=a.get("top_k", 10))
            elif call.tool == "query_url":
                tool_req = QueryUrlRequest(url=a["url"][:4000] or " ", goal=a["goal"][:4000] or " ")
            else:
                tool_req = VisitRequest(url=a["url"][:4000] or " ", max_chars=self.settings.visit_max_chars)
        except (ToolError, ValidationError, TypeError, KeyError, ValueError, RecursionError, MemoryError) as exc:
            err = _err(exc) if isinstance(exc, ToolError) else ToolErrorInfo(
                code="bad_request", message=f"invalid call arguments: {_one_line(exc)}")
            self.metrics.requests.labels("execute", err.code).inc()
            text = legacy.render_error_text(err)
            return ExecuteResponse(result=text, error=text)
        if isinstance(tool_req, SearchRequest):
            resp = await self.search(tool_req, timeout_s=timeout)
        elif isinstance(tool_req, QueryUrlRequest):
            resp = await self.query_url(tool_req, timeout_s=timeout)
        else:
            resp = await self.visit(tool_req, timeout_s=timeout)
        self.metrics.requests.labels("execute", resp.error.code if resp.error else "ok").inc()
        text = legacy.render_response(resp)
        return ExecuteResponse(result=text, error=text if resp.error else None)


def create_app(settings: ToolServerSettings | None = None, *, service: ToolService | None = None) -> FastAPI:
    """The FastAPI app. Configuration errors (missing key, missing index) raise here, before serving."""
    settings = settings or ToolServerSettings()
    svc = service or ToolService(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        try:
            await svc.start()
        except BaseException as exc:
            app.state.startup_error = exc
            raise
        if svc.settings.gc_freeze:  # start-up's objects live as long as the server: keep collections off them
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            if svc.settings.gc_freeze:
                gc.unfreeze()
            await svc.aclose()

    app = FastAPI(title="fathom tool server", version="1", lifespan=lifespan)
    app.state.service = svc
    app.state.startup_error = None
    # the tool calls' hot path (FastRoutes, inside RequestGuard: the last added middleware is the outermost); the
    # FastAPI routes below answer whatever it passes on and define the OpenAPI schema
    app.add_middleware(FastRoutes, routes={"/v1/search": (SearchRequest, svc.search),
                                           "/v1/query_url": (QueryUrlRequest, svc.query_url),
                                           "/v1/visit": (VisitRequest, svc.visit),
                                           "/execute": (ExecuteRequest, svc.execute)})
    app.add_middleware(RequestGuard, max_body_bytes=svc.settings.max_body_bytes)
    install_error_handlers(app)
    errors: dict[int | str, dict[str, Any]] = {
        413: {"model": ErrorBody, "description": "Request body over the server's limit."},
        422: {"model": ErrorBody, "description": "Malformed request (not JSON, or does not validate)."},
    }

    @app.post("/v1/search", response_model=SearchResponse, responses=errors)
    async def search(req: SearchRequest) -> SearchResponse:
        return await svc.search(req)

    @app.post("/v1/query_url", response_model=QueryUrlResponse, responses=errors)
    async def query_url(req: QueryUrlRequest) -> QueryUrlResponse:
        return await svc.query_url(req)

    @app.post("/v1/visit", response_model=VisitResponse, responses=errors)
    async def visit(req: VisitRequest) -> VisitResponse:
        return await svc.visit(req)

    @app.post("/execute", response_model=ExecuteResponse, responses=errors)
    async def execute(req: ExecuteRequest) -> ExecuteResponse:
        return await svc.execute(req)

    @app.get("/healthz", responses={503: {"description": "Starting (not ready yet)."}})
    async def healthz() -> JSONResponse:
        ready = svc.reader is not None
        return JSONResponse({
            "status": "ok" if ready else "starting",
            "search_backend": svc.backend.provider,
            "query_llm": svc.reader.model_name if svc.reader else None,
            "fetchers": sorted(svc.registry.fetchers),
            "cache": str(svc.cache.root) if svc.cache.enabled else None,
        }, status_code=200 if ready else 503)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> Response:
        return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def serve_in_thread(app_or_settings: FastAPI | ToolServerSettings, host: str = "127.0.0.1", port: int = 0,
                    *, ready_timeout_s: float = 180.0):
    """`fathom.serving.serve_in_thread` for any ASGI app, or for a tool server built from its settings."""
    app = create_app(app_or_settings) if isinstance(app_or_settings, ToolServerSettings) else app_or_settings
    return serve_app_in_thread(app, host, port, ready_timeout_s=ready_timeout_s)
