"""HttpTools over real loopback HTTP: the tool server if it is there, else the /v1 stub app (uvicorn on loopback)."""

from __future__ import annotations

import json

import pytest

from fathom.agent import AgentConfig, HttpTools, run_agent
from fathom.agent.testing import ScriptedLLM, serve_app, stub_tools_app
from fathom.web.client import ToolClient


@pytest.fixture(scope="module")
def stub():
    app = stub_tools_app(delay_s=0.3)
    with serve_app(app) as url:
        yield url, app


def call(name, **args) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": args}) + "\n</tool_call>"


async def test_fathom_preset_over_http_runs_calls_concurrently(stub):
    url, app = stub
    app.state.log.clear()
    turn1 = "go</think>\n" + call("search_urls", query="verrin comet", top_k=2) + "\n" + call(
        "query_url", url="http://atlas.fathom.test/verrin", goal="first comet") + "\n" + call(
        "query_url", url="http://blocked.example/x", goal="g")
    policy = ScriptedLLM([turn1, "ok</think>\n\\boxed{42}"])
    async with ToolClient(url) as client:
        traj = await run_agent("Q", policy, HttpTools(client, "fathom"), AgentConfig())
    assert traj.status == "answered" and traj.answer == "42"
    search, query, blocked = traj.tool_calls
    assert search.result.startswith("### 1. verrin comet — page 1\n**URL**: http://atlas.fathom.test/verrin-comet/1")
    assert "\n---\n\n### 2." in search.result and "### 3." not in search.result
    assert query.result.startswith("The useful information in http://atlas.fathom.test/verrin for goal")
    assert blocked.error == "blocked_url" and blocked.result.startswith("[error:blocked_url] ")
    # the three requests overlapped on the server
    spans = sorted((s, e) for _, s, e in app.state.log)
    assert len(spans) == 3 and spans[2][0] < spans[0][1]
    assert traj.turns[0].tool_latency_s < 0.8


async def test_legacy_preset_and_argument_clamping(stub):
    url, _ = stub
    async with ToolClient(url) as client:
        tools = HttpTools(client, "legacy")
        assert [s["name"] for s in tools.schemas] == ["web_search", "web_visit"]
        res = await tools.call("web_visit", {"url": "http://atlas.fathom.test/p"})
        assert res.error is None and res.text == "# Stub page\n\nFull text of http://atlas.fathom.test/p."
        res = await tools.call("web_search", {"query": "x"})
        assert res.text.count("### ") == 3
        res = await tools.call("search_urls", {"query": "x"})
        assert res.error == "unknown_tool"
        fathom = HttpTools(client, "fathom")
        res = await fathom.call("search_urls", {"query": "x", "top_k": 500})  # clamped, not a crash
        assert res.error is None


async def test_unreachable_tool_server_is_an_error_observation():
    async with ToolClient("http://127.0.0.1:9", retries=0, timeout_s=2) as client:
        res = await HttpTools(client).call("search_urls", {"query": "x"})
    assert res.error == "internal" and res.text.startswith("[error:internal] ")


async def test_agent_against_the_real_offline_stack(tmp_path, monkeypatch):
    """The real tool server (offline web + BM25 index, deterministic reader) behind HttpTools."""
    stack_mod = pytest.importorskip("fathom.web.stack")
    monkeypatch.setenv("FATHOM_HOME", str(tmp_path / "home"))
    with stack_mod.offline_stack(seed=5, n_pages=24, query_llm="none", cache_dir=tmp_path / "cache") as stack:
        qa = stack.web.questions(1, hops=2, seed=0)[0]
        hop = qa.hops[-1]
        turn1 = "search and read</think>\n" + call("search_urls", query=hop["fact"], top_k=5) + "\n" + call(
            "query_url", url=hop["url"], goal=hop["fact"]) + "\n" + call(
            "query_url", url=stack.site_url + "/", goal="g")
        policy = ScriptedLLM([turn1, "done</think>\\boxed{x}"])
        async with ToolClient(stack.tools_url) as client:
            traj = await run_agent(qa.question, policy, HttpTools(client, "fathom"), AgentConfig())
    search, read, blocked = traj.tool_calls
    assert search.error is None and search.result.startswith("### 1. ") and f"**URL**: {hop['url']}" in search.result
    assert read.error is None and read.result.startswith(f"The useful information in {hop['url']} for goal")
    assert str(hop["object"]) in read.result
    assert blocked.error == "blocked_url" and blocked.result.startswith("[error:blocked_url] ")
    prompt2 = policy.calls[1]["prompt"]
    assert prompt2.count("<tool_response>") == 3 and "result: \n### 1. " in prompt2
