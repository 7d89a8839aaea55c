"""Async client of the tool server's typed JSON contract (see `fathom.web.schemas`)."""

from __future__ import annotations

import asyncio
import random
from typing import TypeVar

import httpx
from pydantic import BaseModel

from fathom.errors import ToolError
from fathom.web.schemas import (
    QueryUrlRequest,
    QueryUrlResponse,
    SearchRequest,
    SearchResponse,
    VisitRequest,
    VisitResponse,
)

R = TypeVar("R", bound=BaseModel)


class ToolClient:
    """One pooled HTTP client per process. Transport failures are retried with backoff; tool-level failures
    (blocked URL, fetch failed...) come back in the response's ``error`` field and are not retried here."""

    def __init__(self, base_url: str, *, timeout_s: float = 120.0, retries: int = 2, max_connections: int = 64,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
        )

    async def _post(self, path: str, req: BaseModel, out: type[R]) -> R:
        attempt = 0
        while True:
            try:
                resp = await self._http.post(path, json=req.model_dump())
                if resp.status_code == 200:
                    return out.model_validate(resp.json())
                if resp.status_code < 500:
                    raise ToolError("bad_request", f"{path}: HTTP {resp.status_code}: {resp.text[:300]}")
                err = ToolError("internal", f"{path}: HTTP {resp.status_code}", retryable=True)
            except httpx.TimeoutException as exc:
                err = ToolError("timeout", f"{path}: {exc!r}", retryable=True)
            except httpx.TransportError as exc:
                err = ToolError("internal", f"{path}: tool server unreachable: {exc!r}", retryable=True)
            if attempt >= self.retries:
                raise err
            await asyncio.sleep(min(4.0, 0.2 * 2**attempt) * (1 + 0.25 * random.random()))
            attempt += 1

    async def search(self, query: str, top_k: int = 10) -> SearchResponse:
        return await self._post("/v1/search", SearchRequest(query=query, top_k=top_k), SearchResponse)

    async def query_url(self, url: str, goal: str) -> QueryUrlResponse:
        return await self._post("/v1/query_url", QueryUrlRequest(url=url, goal=goal), QueryUrlResponse)

    async def visit(self, url: str, max_chars: int = 40_000) -> VisitResponse:
        return await self._post("/v1/visit", VisitRequest(url=url, max_chars=max_chars), VisitResponse)

    async def health(self) -> dict:
        resp = await self._http.get("/healthz")
        resp.raise_for_status()
        return resp.json()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "ToolClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
