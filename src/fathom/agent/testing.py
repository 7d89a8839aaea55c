"""Test and benchmark doubles at the protocol boundaries of the agent (no mocks of our own code):

* :class:`ScriptedLLM`: an ``LLMClient`` that replays canned turns (or raises ``LLMError``) and records every call;
* :func:`stub_tools_app`: a FastAPI app speaking the tool server's ``/v1`` contract with canned, deterministic
  results and a request log (to check concurrency);
* :func:`stub_model_app`: an instant OpenAI-compatible ``/v1/completions`` endpoint (tool call, then answer);
* :func:`serve_app`: run any ASGI app with real uvicorn on loopback in a thread, yielding its base URL.
"""


import asyncio
import contextlib
import time
from typing import Any

from fathom.errors import LLMError
from fathom.llm.base import Completion, LLMClient


class ScriptedLLM(LLMClient):
    """Replays ``turns`` in order. An item may be a string (a completion that stopped), a ``Completion`` (full
    control, e.g. ``finish_reason="length"``) or an exception instance (raised). Token counts are whitespace words,
    so budgets in tests are easy to reason about."""

    def __init__(self, turns: list[Any], *, model: str = "scripted", context_length: int | None = None):
        self.turns = list(turns)
        self.model = model
        self._ctx = context_length
        self.calls: list[dict[str, Any]] = []

    @property
    def context_length(self) -> int | None:
        return self._ctx

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    async def complete(self, prompt, *, max_tokens, temperature=0.0, top_p=1.0, stop=None, seed=None,
                       repetition_penalty=None) -> Completion:
        self.calls.append({"prompt": prompt, "max_tokens": max_tokens, "temperature": temperature, "stop": stop,
                           "seed": seed, "repetition_penalty": repetition_penalty})
        if not self.turns:
            raise LLMError("ScriptedLLM: script exhausted")
        item = self.turns.pop(0)
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, Completion):
            return item
        return Completion(text=item, prompt_tokens=self.count_tokens(prompt),
                          completion_tokens=min(self.count_tokens(item), max_tokens), finish_reason="stop")

    async def chat(self, messages, *, max_tokens, temperature=0.0, top_p=1.0, stop=None, seed=None) -> Completion:
        return await self.complete("\n".join(m["content"] for m in messages), max_tokens=max_tokens,
                                   temperature=temperature, top_p=top_p, stop=stop, seed=seed)


def stub_tools_app(*, delay_s: float = 0.0, n_hits: int = 3, site: str = "http://atlas.fathom.test"):
    """The ``/v1`` tool contract with canned results. ``app.state.log`` records (endpoint, start, end) times."""
    from fastapi import FastAPI

    from fathom.web.schemas import (
        QueryUrlRequest,
        QueryUrlResponse,
        SearchHit,
        SearchRequest,
        SearchResponse,
        ToolErrorInfo,
        VisitRequest,
        VisitResponse,
    )

    app = FastAPI()
    app.state.log = []

    async def _timed(name: str):
        start = time.perf_counter()
        if delay_s:
            await asyncio.sleep(delay_s)
        app.state.log.append((name, start, time.perf_counter()))

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.post("/v1/search")
    async def search(req: SearchRequest) -> SearchResponse:
        await _timed("search")
        slug = "-".join(req.query.lower().split())[:40] or "q"
        hits = [SearchHit(url=f"{site}/{slug}/{i}", title=f"{req.query} — page {i}",
                          snippet=f"Snippet {i} about {req.query}.") for i in range(1, min(n_hits, req.top_k) + 1)]
        return SearchResponse(query=req.query, hits=hits, backend="stub")

    @app.post("/v1/query_url")
    async def query_url(req: QueryUrlRequest) -> QueryUrlResponse:
        await _timed("query_url")
        if "blocked" in req.url:
            return QueryUrlResponse(url=req.url, goal=req.goal,
                                    error=ToolErrorInfo(code="blocked_url", message=f"{req.url} is not allowed"))
        return QueryUrlResponse(url=req.url, goal=req.goal, rationale="The page covers the goal.",
                                evidence=[f"{req.url} states the fact."], summary="The answer is 42.",
                                extraction="llm")

    @app.post("/v1/visit")
    async def visit(req: VisitRequest) -> VisitResponse:
        await _timed("visit")
        return VisitResponse(url=req.url, title="Stub page", text=f"Full text of {req.url}.")

    return app


TOOL_TURN = ('I should search for this.</think>\n<tool_call>\n{"name": "search_urls", "arguments": '
             '{"query": "stub question"}}\n</tool_call>')
ANSWER_TURN = "The search settles it.</think>\nThe answer is \\boxed{42}."


def stub_model_app(*, tool_turn: str = TOOL_TURN, answer_turn: str = ANSWER_TURN):
    """Instant OpenAI-compatible completions: a tool-call turn when the prompt holds no tool response yet, then the
    answer turn. Stateless, so any number of concurrent agents can share it."""
    from fathom.llm.scripted import ScriptedClient
    from fathom.llm.server import create_openai_app

    return create_openai_app(ScriptedClient(lambda prompt: answer_turn if "<tool_response>" in prompt else tool_turn,
                                            model="stub"))


def serve_app(app, host: str = "127.0.0.1", port: int = 0) -> "contextlib.AbstractContextManager[str]":
    """Serve an ASGI app with uvicorn on loopback in a daemon thread; yields ``http://host:port``."""
    from fathom.serving import serve_in_thread

    return serve_in_thread(app, host=host, port=port)
