"""Tools the agent can call: a protocol, the HTTP tools over the tool server, and in-process function tools.

A tool call never raises into the loop: every failure comes back as a :class:`ToolResult` whose text is a short
``[error:<code>] message`` line (the model sees it and can react) and whose ``error`` is the code.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

from pydantic import ValidationError

from fathom.agent.format import preset_schemas
from fathom.agent.trajectory import ToolResult
from fathom.errors import ToolError
from fathom.web.render import render_error, render_query_url, render_search, render_visit


@runtime_checkable
class Tools(Protocol):
    schemas: list[dict]

    async def call(self, name: str, arguments: dict) -> ToolResult: ...


def error_result(code: str, message: str, latency_s: float = 0.0) -> ToolResult:
    message = " ".join(str(message).split())
    return ToolResult(text=f"[error:{code}] {message}", error=code, latency_s=latency_s)


class HttpTools:
    """The tool server's typed endpoints behind the released model's tool names.

    Preset ``fathom``: ``search_urls(query, top_k=10)`` -> ``/v1/search``, ``query_url(url, goal)`` ->
    ``/v1/query_url``. Preset ``legacy``: ``web_search(query)`` -> ``/v1/search`` (10 hits), ``web_visit(url)`` ->
    ``/v1/visit``. Results are rendered with :mod:`fathom.web.render`.
    """

    def __init__(self, client: Any, preset: str = "fathom", *, visit_max_chars: int = 40_000):
        self.client = client
        self.preset = preset
        self.schemas = preset_schemas(preset)
        self.visit_max_chars = visit_max_chars
        self._names = {s["name"] for s in self.schemas}

    async def _dispatch(self, name: str, a: dict) -> tuple[str, str | None]:
        if name in ("search_urls", "web_search"):
            top_k = max(1, min(50, int(a.get("top_k", 10)))) if name == "search_urls" else 10
            resp = await self.client.search(str(a["query"])[:2000], top_k)
            return render_search(resp), resp.error.code if resp.error else None
        if name == "query_url":
            resp = await self.client.query_url(str(a["url"]), str(a["goal"])[:4000])
            return render_query_url(resp), resp.error.code if resp.error else None
        if name == "web_visit":
            resp = await self.client.visit(str(a["url"]), self.visit_max_chars)
            return render_visit(resp), resp.error.code if resp.error else None
        raise KeyError(name)

    async def call(self, name: str, arguments: dict) -> ToolResult:
        t0 = time.perf_counter()
        if name not in self._names:
            return error_result("unknown_tool", f"no function named {name!r} in preset {self.preset!r}")
        try:
            text, code = await self._dispatch(name, arguments)
        except ToolError as exc:
            return error_result(exc.code, exc.message, time.perf_counter() - t0)
        except (ValidationError, KeyError, TypeError, ValueError) as exc:
            return error_result("bad_request", f"{name}: invalid arguments: {exc}", time.perf_counter() - t0)
        return ToolResult(text=text, error=code, latency_s=time.perf_counter() - t0)

    async def aclose(self) -> None:
        await self.client.aclose()


ToolFn = Callable[..., Awaitable[str]]


class FunctionTools:
    """Tools backed by async Python functions returning text (tests, simulations, self-play stubs)."""

    def __init__(self, schemas: list[dict], functions: dict[str, ToolFn]):
        missing = {s["name"] for s in schemas} - set(functions)
        if missing:
            raise ValueError(f"no function for tool(s) {sorted(missing)}")
        self.schemas = schemas
        self.functions = functions

    async def call(self, name: str, arguments: dict) -> ToolResult:
        t0 = time.perf_counter()
        fn = self.functions.get(name)
        if fn is None:
            return error_result("unknown_tool", f"no function named {name!r}")
        try:
            text = await fn(**arguments)
        except ToolError as exc:
            return error_result(exc.code, exc.message, time.perf_counter() - t0)
        except TypeError as exc:
            return error_result("bad_request", f"{name}: {exc}", time.perf_counter() - t0)
        return ToolResult(text=str(text), latency_s=time.perf_counter() - t0)


__all__ = ["FunctionTools", "HttpTools", "ToolResult", "Tools", "error_result", "render_error"]
