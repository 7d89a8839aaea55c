"""The tool server's HTTP contract (pydantic models shared by the server, the client and the tests).

    POST /v1/search     SearchRequest    -> SearchResponse
    POST /v1/query_url  QueryUrlRequest  -> QueryUrlResponse
    POST /v1/visit      VisitRequest     -> VisitResponse
    POST /execute       ExecuteRequest   -> ExecuteResponse   (the reference's legacy contract, parsed safely)
    GET  /healthz, GET /metrics

Errors are HTTP 200 with ``error`` set for tool-level failures the agent should see (blocked URL, fetch failed,
timeout, non-HTML, too large), and HTTP 4xx only for malformed requests: 422 for a body that is not valid JSON or
does not validate (NaN, lone surrogates, out-of-range numbers, nesting too deep), 413 for a body over the server's
``max_body_bytes``, 404/405 for unknown paths and methods. Every 4xx (and an unexpected 500) has one body
(``fathom.web.requests.ErrorBody``)::

    {"error": {"code": "bad_request", "message": "invalid request: body.top_k: ...", "retryable": false},
     "detail": [{"loc": ["body", "top_k"], "msg": "...", "type": "..."}]}
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field


def _utf8(value: str) -> str:
    """Refuse strings that cannot be encoded as UTF-8 (lone surrogates such as ``"\\ud800"``)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("the string holds a lone UTF-16 surrogate") from None
    return value


Text = Annotated[str, AfterValidator(_utf8)]

ErrorCode = Literal[
    "invalid_url", "blocked_url", "timeout", "fetch_failed", "http_status", "unsupported_content",
    "too_large", "empty_content", "search_failed", "bad_request", "not_found", "method_not_allowed", "internal",
]


class ToolErrorInfo(BaseModel):
    code: ErrorCode
    message: str
    retryable: bool = False


class SearchRequest(BaseModel):
    query: Text = Field(min_length=1, max_length=2000)
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
    url: Text = Field(min_length=1, max_length=4000)
    goal: Text = Field(min_length=1, max_length=4000)


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
    url: Text = Field(min_length=1, max_length=4000)
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
    env: Text = Field(default="", max_length=10_000)
    call: Text = Field(max_length=1_000_000)
    timeout: int = Field(default=60, ge=0, le=86_400, description="Seconds (0: the server's deadline).")


class ExecuteResponse(BaseModel):
    output: str = ""
    result: str = ""
    error: str | None = None
