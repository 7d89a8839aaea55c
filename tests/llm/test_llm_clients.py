"""LLM clients: the OpenAI-compatible HTTP client against real loopback servers, and the in-process model."""

from __future__ import annotations

import asyncio
import time

import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from fathom.config import RoleConfig
from fathom.errors import ConfigError, LLMError
from fathom.llm import make_client
from fathom.llm.openai import OpenAIClient
from fathom.llm.scripted import ScriptedClient
from fathom.llm.server import create_openai_app
from fathom.web.server import serve_in_thread


@pytest.fixture(scope="module")
def echo_server():
    """An OpenAI-compatible server over a scripted model that echoes the last prompt line."""
    client = ScriptedClient(lambda prompt: "echo:" + prompt.strip().splitlines()[-1])
    with serve_in_thread(create_openai_app(client)) as url:
        yield url


def _role(url: str, **kw) -> RoleConfig:
    return RoleConfig(model="stub", base_url=f"{url}/v1", **kw)


async def test_completions_send_raw_prompt_bytes(echo_server):
    async with OpenAIClient(_role(echo_server)) as client:
        out = await client.complete("<|im_start|>user\nhello<|im_end|>\n<think> x", max_tokens=16)
    assert out.text == "echo:<think> x"
    assert out.prompt_tokens > 0 and out.completion_tokens > 0 and out.finish_reason == "stop"


async def test_chat_and_stop_strings(echo_server):
    async with OpenAIClient(_role(echo_server)) as client:
        out = await client.chat([{"role": "user", "content": "say STOP now"}], max_tokens=32)
        assert out.text == "echo:<|im_start|>assistant"
        out = await client.complete("a b\nline STOP tail", max_tokens=32, stop=["STOP"])
        assert out.text == "echo:line "


def _flaky_app(failures: int, status: int = 503):
    app = FastAPI()
    state = {"n": 0}

    @app.post("/v1/completions")
    async def completions(body: dict):
        state["n"] += 1
        if state["n"] <= failures:
            return JSONResponse({"error": "busy"}, status_code=status)
        return {"choices": [{"text": "ok", "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}

    return app, state


async def test_retries_retryable_status_then_succeeds():
    app, state = _flaky_app(failures=2)
    with serve_in_thread(app) as url:
        async with OpenAIClient(_role(url, max_retries=3)) as client:
            out = await client.complete("x", max_tokens=4)
    assert out.text == "ok" and state["n"] == 3


async def test_gives_up_after_retries_with_typed_error():
    app, state = _flaky_app(failures=10)
    with serve_in_thread(app) as url:
        async with OpenAIClient(_role(url, max_retries=1)) as client:
            with pytest.raises(LLMError) as info:
                await client.complete("x", max_tokens=4)
    assert info.value.status == 503 and state["n"] == 2


async def test_client_errors_are_not_retried():
    app, state = _flaky_app(failures=10, status=400)
    with serve_in_thread(app) as url:
        async with OpenAIClient(_role(url, max_retries=3)) as client:
            with pytest.raises(LLMError, match="HTTP 400"):
                await client.complete("x", max_tokens=4)
    assert state["n"] == 1


async def test_timeout_is_enforced_and_concurrency_limited():
    app = FastAPI()
    active = {"now": 0, "peak": 0}

    @app.post("/v1/completions")
    async def slow(body: dict):
        delay = float(body["prompt"])
        if delay >= 1:  # the request that times out client-side; not counted in the concurrency check
            await asyncio.sleep(delay)
            return {"choices": [{"text": "late"}]}
        active["now"] += 1
        active["peak"] = max(active["peak"], active["now"])
        await asyncio.sleep(delay)
        active["now"] -= 1
        return {"choices": [{"text": "done"}]}

    with serve_in_thread(app) as url:
        async with OpenAIClient(_role(url, timeout_s=0.3, max_retries=0)) as client:
            t0 = time.perf_counter()
            with pytest.raises(LLMError, match="Timeout"):
                await client.complete("2.0", max_tokens=4)
            assert time.perf_counter() - t0 < 1.5
        async with OpenAIClient(_role(url, concurrency=2)) as client:
            outs = await asyncio.gather(*(client.complete("0.1", max_tokens=4) for _ in range(6)))
    assert [o.text for o in outs] == ["done"] * 6
    assert active["peak"] == 2


def test_missing_key_is_a_startup_error_naming_the_variable(monkeypatch):
    monkeypatch.delenv("FATHOM_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match="FATHOM_TEST_KEY"):
        make_client("http://127.0.0.1:9/v1#m@FATHOM_TEST_KEY")


async def test_key_is_sent_as_bearer(monkeypatch):
    app = FastAPI()
    seen = {}

    @app.post("/v1/chat/completions")
    async def chat(body: dict, authorization: str | None = None):
        return {"choices": [{"message": {"content": "hi"}}]}

    from fastapi import Request

    @app.middleware("http")
    async def capture(request: Request, call_next):
        seen["auth"] = request.headers.get("authorization")
        return await call_next(request)

    monkeypatch.setenv("FATHOM_TEST_KEY", "k-123")
    with serve_in_thread(app) as url:
        async with make_client(f"{url}/v1#m@FATHOM_TEST_KEY") as client:
            assert (await client.chat([{"role": "user", "content": "x"}], max_tokens=2)).text == "hi"
    assert seen["auth"] == "Bearer k-123"


async def test_local_client_generates_and_counts(embedded_client):
    out = await embedded_client.chat([{"role": "user", "content": "What is the capital of France?"}], max_tokens=12)
    assert "Paris" in out.text
    assert out.prompt_tokens == embedded_client.count_tokens(embedded_client.render_chat(
        [{"role": "user", "content": "What is the capital of France?"}]))
    assert 0 < out.completion_tokens <= 12
    out = await embedded_client.complete("1, 2, 3, 4,", max_tokens=6, stop=[","])
    assert "," not in out.text and out.finish_reason == "stop"
    assert embedded_client.context_length == 8192


async def test_local_model_served_over_openai_protocol(embedded_client):
    """The same in-process model behind the OpenAI-compatible app: what `fathom deploy local` falls back to."""
    with serve_in_thread(create_openai_app(embedded_client)) as url:
        async with OpenAIClient(_role(url)) as client:
            out = await client.complete("<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n",
                                        max_tokens=8, temperature=0.0)
    assert out.text.strip() and out.completion_tokens <= 8


async def test_local_generation_stops_when_its_caller_is_cancelled(embedded_client):
    """A timed-out caller must not leave generation running in the worker thread (2000 tokens would take
    minutes on CPU; the thread must notice the cancel flag at its next token)."""
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1.0):  # counting has no natural end: only max_tokens or the cancel stops it
            await embedded_client.complete("1, 2, 3, 4, 5, 6, 7, 8,", max_tokens=2000)
    t0 = time.perf_counter()
    while embedded_client._lock.locked() and time.perf_counter() - t0 < 10:
        await asyncio.sleep(0.05)
    assert not embedded_client._lock.locked(), "generation kept running after its caller was cancelled"
    out = await embedded_client.complete("1, 2, 3,", max_tokens=2)
    assert out.completion_tokens <= 2


async def test_a_server_that_refuses_repetition_penalty_gets_requests_without_it():
    """`transformers serve` validates strictly: 422 "Unexpected fields in the request: {'repetition_penalty'}". The
    agent's default (1.05, a vLLM/SGLang extension) must not make every completion fail there (the local release's
    smoke agent did): the client drops the field for that endpoint and says so once."""
    app = FastAPI()
    bodies: list[dict] = []

    @app.post("/v1/completions")
    async def completions(body: dict):
        bodies.append(body)
        extra = set(body) - {"model", "prompt", "max_tokens", "temperature", "top_p", "stop", "seed"}
        if extra:
            return JSONResponse({"detail": f"Unexpected fields in the request: {extra}"}, status_code=422)
        return {"choices": [{"text": "ok", "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1}}

    with serve_in_thread(app) as url:
        async with OpenAIClient(_role(url, max_retries=0)) as client:
            first = await client.complete("x", max_tokens=4, repetition_penalty=1.05)
            second = await client.complete("y", max_tokens=4, repetition_penalty=1.05)
            with pytest.raises(LLMError, match="HTTP 422"):  # any other refused field still fails loudly
                await client._post("/completions", {"model": "stub", "prompt": "z", "max_tokens": 4, "logit_bias": {}})
    assert first.text == second.text == "ok"
    assert ["repetition_penalty" in b for b in bodies[:3]] == [True, False, False]
