"""The tool server's HTTP contract (pydantic models shared by the server, the client and the tests).

    POST /v1/search     SearchRequest    -> SearchResponse
    POST /v1/query_url  QueryUrlRequest  -> QueryUrlResponse
    POST /v1/visit      VisitRequest     -> VisitResponse
    POST /execute       ExecuteRequest   -> ExecuteResponse   (the reference's legacy contract, parsed safely)
    GET  /healthz, GET /metrics

Errors are HTTP 200 with ``error`` set for tool-level failures the agent should see (blocked URL, fetch failed,
timeout, non-HTML, too large), and HTTP 4xx only for malformed requests.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

ErrorCode = Literal[
    "invalid_url", "blocked_url", "timeout", "fetch_failed", "http_status", "unsupported_content",
    "too_large", "empty_content", "search_failed", "bad_request", "internal",
]


class ToolErrorInfo(BaseModel):
    code: ErrorCode
    message: str
    retryable: bool = False


class SearchRequest(BaseModel):
    query: str = Field(min_length=1, max_length=2000)
    top_k: int = Field(default=10, ge=1, le=50)


class SearchHit(BaseModel):
    url: str
    title: str = ""
    snippet: str = ""


class SearchResponse(BaseModel):
    query: str
    hits: list[SearchHit] = []
    backend: str = ""
    cache_hit: bool = False
    latency_ms: float = 0.0
    error: ToolErrorInfo | None = None


class QueryUrlRequest(BaseModel):
    url: str = Field(min_length=1, max_length=4000)
    goal: str = Field(min_length=1, max_length=4000)


class QueryUrlResponse(BaseModel):
    url: str
    goal: str
    rationale: str = ""
    evidence: list[str] = []
    summary: str = ""
    fetcher: str = ""
    extraction: Literal["llm", "fallback", "none"] = "none"
    cache_hit: bool = False
    latency_ms: float = 0.0
    error: ToolErrorInfo | None = None


class VisitRequest(BaseModel):
    url: str = Field(min_length=1, max_length=4000)
    max_chars: int = Field(default=40_000, ge=100, le=400_000)


class VisitResponse(BaseModel):
    url: str
    title: str = ""
    text: str = ""
    truncated: bool = False
    fetcher: str = ""
    cache_hit: bool = False
    latency_ms: float = 0.0
    error: ToolErrorInfo | None = None


class ExecuteRequest(BaseModel):
    env: str = ""
    call: str
    timeout: int = 60


class ExecuteResponse(BaseModel):
    output: str = ""
    result: str = ""
    error: str | None = None
