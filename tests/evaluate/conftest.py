"""Loopback fixtures of the evaluation tests: an OpenAI-compatible stub (judge / policy roles) served by a real
uvicorn server on 127.0.0.1, and an instant stub agent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from fastapi import FastAPI, Request

from fathom.evaluate.agents import AgentOutput
from fathom.web.server import serve_in_thread


@dataclass
class StubLLM:
    """Replies with ``reply(text_of_last_message) -> str``; records every request body."""

    reply: Callable[[str], str] = lambda text: "GRADE: CORRECT"
    requests: list[dict] = field(default_factory=list)
    url: str = ""
    fail_first: int = 0

    @property
    def role(self) -> str:
        return f"{self.url}/v1#stub-model"


def openai_stub_app(state: StubLLM) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        state.requests.append(body)
        if state.fail_first > 0:
            state.fail_first -= 1
            from fastapi.responses import JSONResponse

            return JSONResponse({"error": "overloaded"}, status_code=503)
        text = state.reply(body["messages"][-1]["content"])
        return {"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7}}

    @app.post("/v1/completions")
    async def complete(request: Request):
        body = await request.json()
        state.requests.append(body)
        return {"choices": [{"text": state.reply(body["prompt"]), "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7}}

    return app


@pytest.fixture()
def llm_stub():
    state = StubLLM()
    with serve_in_thread(openai_stub_app(state)) as url:
        state.url = url
        yield state


class InstantAgent:
    """Answers from a dict (question -> answer); raises for questions containing 'BOOM'."""

    name = "instant"

    def __init__(self, answers: dict[str, str] | None = None, default: str = "no idea at all", delay: float = 0.0):
        self.answers = answers or {}
        self.default = default
        self.delay = delay
        self.calls: list[str] = []

    async def answer(self, question: str) -> AgentOutput:
        self.calls.append(question)
        if self.delay:
            await asyncio.sleep(self.delay)
        if "BOOM" in question:
            raise RuntimeError("agent crashed")
        return AgentOutput(answer=self.answers.get(question, self.default), turns=2, tool_calls=len(question) % 3,
                           prompt_tokens=100, completion_tokens=10, latency_s=0.001)

    async def aclose(self) -> None:
        pass


@pytest.fixture()
def instant_agent():
    return InstantAgent
