"""Agent loop overhead: `run_agent` (OpenAIClient + HttpTools) against raw httpx requests to the same stubs.

An instant OpenAI-compatible stub model (`/v1/completions`: a turn with one tool call, then an answer turn) and the
stub tool server (`/v1/search`) run in separate processes on loopback, so `time.process_time()` of this process
counts only the client side. Each trajectory is 2 model turns + 1 tool call. The raw baseline sends the very same
requests (same prompts, same bodies) with one httpx.AsyncClient and decodes the JSON responses; the difference in
CPU per turn is what the loop costs beyond its HTTP calls (prompt assembly, parsing, validation, token counting,
records). Target: < 1 ms of CPU per turn.

    .venv/bin/python benchmarks/bench_agent_loop.py [--quick] [--trajectories N] [--concurrency C]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time

import httpx

SERVER_CODE = """
import sys, uvicorn
from fathom.agent.testing import stub_model_app, stub_tools_app
app = stub_model_app() if sys.argv[1] == "model" else stub_tools_app()
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(kind: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER_CODE, kind, str(port)],
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url + ("/health" if kind == "model" else "/healthz"), timeout=1).raise_for_status()
            return proc, url
        except httpx.HTTPError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"stub {kind} server did not start")
            time.sleep(0.1)


QUESTION = "What is the stub answer?"


async def _agent_run(model_url: str, tools_url: str, n: int, concurrency: int) -> dict:
    from fathom.agent import AgentConfig, HttpTools, run_agent
    from fathom.config import RoleConfig
    from fathom.llm.openai import OpenAIClient
    from fathom.web.client import ToolClient

    policy = OpenAIClient(RoleConfig(model="stub", base_url=model_url + "/v1", concurrency=max(8, concurrency)))
    client = ToolClient(tools_url)
    tools = HttpTools(client, "fathom")
    cfg = AgentConfig(max_turns=4)
    sem = asyncio.Semaphore(concurrency)

    async def one():
        async with sem:
            t = await run_agent(QUESTION, policy, tools, cfg)
            assert t.status == "answered" and t.answer == "42", t.summary()
            return len(t.turns)

    await asyncio.gather(*(one() for _ in range(min(n, 10))))  # warm-up (connections, imports)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    turns = sum(await asyncio.gather(*(one() for _ in range(n))))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    await policy.aclose()
    await client.aclose()
    return {"turns": turns, "wall_s": wall, "cpu_s": cpu, "requests": n * 3}


async def _raw_run(model_url: str, tools_url: str, n: int, concurrency: int) -> dict:
    """The same three requests per trajectory, sent with bare httpx (bodies prepared outside the timing)."""
    from fathom.agent import build_prompt, preset_schemas
    from fathom.agent.format import format_tool_response_turn
    from fathom.agent.testing import TOOL_TURN

    p1 = build_prompt(QUESTION, preset_schemas("fathom"))
    raw = json.dumps({"name": "search_urls", "arguments": {"query": "stub question"}})
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as http:
        search = (await http.post(tools_url + "/v1/search", json={"query": "stub question", "top_k": 10})).json()
        hits = "\n---\n\n".join(f"### {i}. {h['title']}\n**URL**: {h['url']}\n\n**Snippet**: {h['snippet']}\n"
                                for i, h in enumerate(search["hits"], 1))
        p2 = p1 + TOOL_TURN + format_tool_response_turn([(raw, hits)])
        body1 = {"model": "stub", "prompt": p1, "max_tokens": 8192, "temperature": 0.6, "top_p": 1.0,
                 "stop": ["<|im_end|>", "<|endoftext|>"], "repetition_penalty": 1.05}
        body2 = {**body1, "prompt": p2}
        body_s = {"query": "stub question", "top_k": 10}
        sem = asyncio.Semaphore(concurrency)

        async def one():
            async with sem:
                (await http.post(model_url + "/v1/completions", json=body1)).json()
                (await http.post(tools_url + "/v1/search", json=body_s)).json()
                (await http.post(model_url + "/v1/completions", json=body2)).json()
                return 2

        await asyncio.gather(*(one() for _ in range(min(n, 10))))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        turns = sum(await asyncio.gather(*(one() for _ in range(n))))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"turns": turns, "wall_s": wall, "cpu_s": cpu, "requests": n * 3}


async def _inprocess_run(n: int) -> dict:
    """The loop alone: an instant in-process policy and tools (no HTTP at all) — its intrinsic CPU per turn."""
    from fathom.agent import AgentConfig, FunctionTools, preset_schemas, run_agent
    from fathom.agent.testing import ANSWER_TURN, TOOL_TURN
    from fathom.llm.base import Completion, LLMClient

    class Instant(LLMClient):
        model = "instant"

        def count_tokens(self, text: str) -> int:
            return len(text) // 4

        async def complete(self, prompt, **kw) -> Completion:
            text = ANSWER_TURN if "<tool_response>" in prompt else TOOL_TURN
            return Completion(text=text, prompt_tokens=len(prompt) // 4, completion_tokens=len(text) // 4)

        async def chat(self, messages, **kw) -> Completion:  # pragma: no cover - unused
            raise NotImplementedError

    async def search_urls(query: str, top_k: int = 10) -> str:
        return "\n---\n\n".join(f"### {i}. T{i}\n**URL**: http://x.test/{i}\n\n**Snippet**: s\n" for i in range(3))

    async def query_url(url: str, goal: str) -> str:
        return "x"

    tools = FunctionTools(preset_schemas("fathom"), {"search_urls": search_urls, "query_url": query_url})
    policy, cfg = Instant(), AgentConfig(max_turns=4)
    for _ in range(20):
        await run_agent(QUESTION, policy, tools, cfg)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    turns = 0
    for _ in range(n):
        turns += len((await run_agent(QUESTION, policy, tools, cfg)).turns)
    return {"turns": turns, "wall_s": time.perf_counter() - wall0, "cpu_s": time.process_time() - cpu0,
            "requests": 0}


def _median(runs: list[dict]) -> dict:
    """The run with the median CPU per turn."""
    return sorted(runs, key=lambda r: r["cpu_s"] / r["turns"])[len(runs) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="Fewer trajectories (runs in well under a minute).")
    ap.add_argument("--trajectories", type=int, default=None, help="Trajectories per measurement.")
    ap.add_argument("--concurrency", type=int, default=16, help="Agents in flight in the concurrent measurement.")
    ap.add_argument("--rounds", type=int, default=3, help="Interleaved raw/agent rounds (median reported).")
    args = ap.parse_args()
    n = args.trajectories or (60 if args.quick else 300)

    procs = []
    try:
        mp, model_url = _start("model")
        procs.append(mp)
        tp, tools_url = _start("tools")
        procs.append(tp)
        rows = []
        for conc in (1, args.concurrency):
            raws, agents = [], []
            for _ in range(args.rounds):  # interleaved A/B rounds; the median round is reported
                raws.append(asyncio.run(_raw_run(model_url, tools_url, n, conc)))
                agents.append(asyncio.run(_agent_run(model_url, tools_url, n, conc)))
            rows.append((conc, _median(raws), _median(agents)))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)

    inproc = asyncio.run(_inprocess_run(n * 5))
    print(f"\nagent loop vs raw httpx — median of {args.rounds} interleaved rounds of {n} trajectories x (2 model turns + 1 tool call), stubs in other processes")
    print(f"{'concurrency':>11} | {'':14} | {'turns/s':>9} | {'req/s':>8} | {'CPU ms/turn':>11} | {'wall ms/turn':>12}")
    print("-" * 80)
    for conc, raw, agent in rows:
        for name, r in (("raw httpx", raw), ("run_agent", agent)):
            print(f"{conc:>11} | {name:14} | {r['turns'] / r['wall_s']:9.1f} | {r['requests'] / r['wall_s']:8.1f} | "
                  f"{1000 * r['cpu_s'] / r['turns']:11.3f} | {1000 * r['wall_s'] / r['turns']:12.3f}")
        over = 1000 * (agent["cpu_s"] - raw["cpu_s"]) / agent["turns"]
        ratio = (agent["turns"] / agent["wall_s"]) / (raw["turns"] / raw["wall_s"])
        verdict = "OK" if over < 1.0 else "ABOVE TARGET"
        print(f"{conc:>11} | {'loop overhead':14} | {ratio:8.0%} of raw turns/s | CPU beyond HTTP: {over:.3f} ms/turn "
              f"(target < 1 ms: {verdict})")
        print("-" * 80)
    print(f"{'-':>11} | {'loop alone':14} | {inproc['turns'] / inproc['wall_s']:9.1f} | {'-':>8} | "
          f"{1000 * inproc['cpu_s'] / inproc['turns']:11.3f} | {1000 * inproc['wall_s'] / inproc['turns']:12.3f}"
          "   (in-process instant policy + tools, no HTTP)")


if __name__ == "__main__":
    main()
