"""Serve any `LLMClient` as an OpenAI-compatible endpoint (`/v1/completions`, `/v1/chat/completions`,
`/v1/models`, `/health`). Used for stub models in tests and benchmarks, and as the local serving fallback."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from fathom.llm.base import LLMClient


class _Sampling(BaseModel):
    model: str = ""
    max_tokens: int = Field(default=256, ge=1)
    temperature: float = 0.0
    top_p: float = 1.0
    stop: str | list[str] | None = None
    seed: int | None = None

    def stops(self) -> list[str] | None:
        return [self.stop] if isinstance(self.stop, str) else self.stop


class CompletionRequest(_Sampling):
    prompt: str
    repetition_penalty: float | None = None


class ChatRequest(_Sampling):
    messages: list[dict[str, Any]]


def create_openai_app(client: LLMClient, *, served_names: set[str] | None = None,
                      served_name: str | None = None) -> FastAPI:
    """`served_names`: when set, a request naming another model gets 404 (as vLLM does)."""
    name = served_name or client.model
    app = FastAPI(title=f"OpenAI-compatible server for {name}")

    def check_model(requested: str) -> None:
        if served_names and requested and requested not in served_names:
            raise HTTPException(404, f"model {requested!r} is not served here (serving {name!r})")

    def _envelope(kind: str, choice: dict, c) -> dict:
        return {
            "id": f"{kind}-{uuid.uuid4().hex[:12]}", "object": kind, "created": int(time.time()),
            "model": name, "choices": [choice],
            "usage": {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
                      "total_tokens": c.prompt_tokens + c.completion_tokens},
        }

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": name}

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "fathom"}]}

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest) -> dict:
        check_model(req.model)
        c = await client.complete(req.prompt, max_tokens=req.max_tokens, temperature=req.temperature,
                                  top_p=req.top_p, stop=req.stops(), seed=req.seed,
                                  repetition_penalty=req.repetition_penalty)
        return _envelope("text_completion", {"index": 0, "text": c.text, "finish_reason": c.finish_reason}, c)

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest) -> dict:
        check_model(req.model)
        messages = [{"role": m["role"], "content": str(m.get("content") or "")} for m in req.messages]
        c = await client.chat(messages, max_tokens=req.max_tokens, temperature=req.temperature, top_p=req.top_p,
                              stop=req.stops(), seed=req.seed)
        choice = {"index": 0, "message": {"role": "assistant", "content": c.text}, "finish_reason": c.finish_reason}
        return _envelope("chat.completion", choice, c)

    return app
