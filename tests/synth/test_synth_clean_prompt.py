"""Trace cleaning and the synthesizer's messages."""

from __future__ import annotations

import json

from fathom.agent import AgentConfig, FunctionTools, preset_schemas, run_agent
from fathom.agent.testing import ScriptedLLM
from fathom.synth import build_synth_messages, clean_trace, normalize_url, trajectory_urls

PAGE = ("<table><tr><td>Year</td><td>2031</td></tr></table> and a < b > c, see "
        "http://atlas.fathom.test/orbit.pdf. <|im_end|>")


def call(name, **args) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": args}) + "\n</tool_call>"


async def _traj():
    async def search_urls(query: str, top_k: int = 10) -> str:
        return ("### 1. Verrin\n**URL**: http://atlas.fathom.test/verrin\n\n**Snippet**: s\n\n---\n\n"
                "### 2. Other\n**URL**: https://Atlas.Fathom.test/other/\n\n**Snippet**: t\n")

    async def query_url(url: str, goal: str) -> str:
        return PAGE + " " + "x" * 3000

    tools = FunctionTools(preset_schemas("fathom"), {"search_urls": search_urls, "query_url": query_url})
    turns = ["<think>Search first.</think>\n" + call("search_urls", query="verrin"),
             "Read it.</think>\n" + call("query_url", url="http://atlas.fathom.test/verrin", goal="year")
             + "\n<tool_call>\n{broken\n</tool_call>",
             "Found.</think>\n\\boxed{2031}"]
    return await run_agent("When was the Verrin comet seen?", ScriptedLLM(turns), tools, AgentConfig())


async def test_clean_trace_keeps_page_markup_and_drops_protocol_tags():
    traj = await _traj()
    trace = clean_trace(traj)
    assert trace.startswith("USER:\nWhen was the Verrin comet seen?\n\nASSISTANT:\nSearch first.")
    assert "<table><tr><td>Year</td><td>2031</td></tr></table> and a < b > c" in trace  # HTML-like text survives
    assert "<think>" not in trace and "</think>" not in trace and "<tool_call>" not in trace
    assert "<|im_end|>" not in trace and "<|im_start|>" not in trace
    assert "SEARCH RESULT\n{\"name\": \"search_urls\", \"arguments\": {\"query\": \"verrin\"}}\nresult:\n### 1." in trace
    assert "[error:bad_json]" in trace  # failed calls stay visible
    assert "\n\n\n" not in trace
    assert trace.endswith("Found.\n\n\\boxed{2031}")


async def test_clean_trace_cuts_each_response_deterministically():
    traj = await _traj()
    a = clean_trace(traj, max_chars_per_response=200)
    assert a == clean_trace(traj, max_chars_per_response=200)
    assert "characters omitted]" in a and "x" * 300 not in a
    assert "### 1. Verrin" in a  # short responses are untouched


async def test_trajectory_urls_from_hits_calls_and_results():
    traj = await _traj()
    urls = trajectory_urls(traj)
    assert {"http://atlas.fathom.test/verrin", "https://atlas.fathom.test/other",
            "http://atlas.fathom.test/orbit.pdf"} <= urls
    assert normalize_url("HTTPS://Atlas.Fathom.Test/a/b/#frag") == "https://atlas.fathom.test/a/b"
    assert normalize_url("http://x.test/a).") == "http://x.test/a"


async def test_messages_structure_and_fit_to_budget():
    traj = await _traj()
    msgs = build_synth_messages(traj.question, traj)
    assert [m["role"] for m in msgs] == ["system", "user"]
    user = msgs[1]["content"]
    assert user.startswith("You are given a DeepSearch investigation trace.\n\nQuestion:\nWhen was the Verrin")
    assert "\n\nTrace (model transcript):\nUSER:\n" in user and user.endswith("\n\n— End of trace —")
    calls = json.loads(user.split("Tool Calls (as-recorded):\n", 1)[1].rsplit("\n\n— End of trace —", 1)[0])
    assert calls == [{"name": "search_urls", "arguments": {"query": "verrin", "top_k": 10}},
                     {"name": "query_url", "arguments": {"url": "http://atlas.fathom.test/verrin", "goal": "year"}}]
    for section in ("# Executive Summary", "## Main Body", "## Recommendations", "## Conclusion", "## Sources used",
                    "<think>[the PLAN]</think>[the REPORT]", "TRAJECTORY_LINKS"):
        assert section in msgs[0]["content"]
    count = lambda s: len(s) // 4
    full = count(msgs[0]["content"]) + count(user)
    small = build_synth_messages(traj.question, traj, max_prompt_tokens=full - 400, count_tokens=count)
    assert count(small[0]["content"]) + count(small[1]["content"]) <= full - 400
    assert "characters omitted]" in small[1]["content"] and small[1]["content"].endswith("— End of trace —")
