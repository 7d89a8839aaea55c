"""The agent loop's own CPU per turn, measured directly, and a concurrency sweep up to 1,000 trajectories.

1. CPU per turn of `run_agent` with an instant in-process policy and instant in-process tools (no HTTP at all):
   `time.process_time()` around trajectories run one after another, so every CPU second counted is the loop's
   (prompt assembly, parsing, validation, token counting, records) plus the stubs' trivial calls. The same stub
   calls made directly without the loop are the second arm (their cost is included in the first, so the first is an
   upper bound of the loop's CPU). Each trajectory is 2 model turns + 1 tool call. Target: < 0.2 ms per turn.
2. Concurrency sweep: C trajectories in flight at once (the stub policy answers after a 5 ms sleep, so all C are
   really concurrent), each level in a fresh process: turns/s, CPU per turn and the peak RSS (VmHWM) of that
   process against the goal of 1,000 concurrent trajectories in < 200 MB.

    python benchmarks/bench_agent_loop.py [--quick] [--trajectories N] [--inject-slowdown 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H

QUESTION = "What is the stub answer?"
HITS = "\n---\n\n".join(f"### {i}. T{i}\n**URL**: http://x.test/{i}\n\n**Snippet**: s\n" for i in range(3))


def _stubs(delay_s: float = 0.0):
    from fathom.agent import FunctionTools, preset_schemas
    from fathom.agent.testing import ANSWER_TURN, TOOL_TURN
    from fathom.llm.base import Completion, LLMClient

    class Instant(LLMClient):
        model = "instant"

        def count_tokens(self, text: str) -> int:
            return len(text) // 4

        async def complete(self, prompt, **kw) -> Completion:
            if delay_s:
                await asyncio.sleep(delay_s)
            text = ANSWER_TURN if "<tool_response>" in prompt else TOOL_TURN
            return Completion(text=text, prompt_tokens=len(prompt) // 4, completion_tokens=len(text) // 4)

        async def chat(self, messages, **kw) -> Completion:  # pragma: no cover - unused
            raise NotImplementedError

    async def search_urls(query: str, top_k: int = 10) -> str:
        return HITS

    async def query_url(url: str, goal: str) -> str:
        return "x"

    tools = FunctionTools(preset_schemas("fathom"), {"search_urls": search_urls, "query_url": query_url})
    return Instant(), tools


def _run_agent(factor: float):
    from fathom.agent import run_agent

    return H.slow_down(run_agent, factor)


def loop_cpu(n: int, factor: float) -> dict:
    """n trajectories one after another; CPU ms per turn of this process."""
    from fathom.agent import AgentConfig

    run_agent = _run_agent(factor)
    policy, tools = _stubs()
    cfg = AgentConfig(max_turns=4)

    async def go():
        turns = 0
        cpu0 = time.process_time()
        for _ in range(n):
            t = await run_agent(QUESTION, policy, tools, cfg)
            assert t.status == "answered", t.summary()
            turns += len(t.turns)
        return turns, time.process_time() - cpu0

    turns, cpu = asyncio.run(go())
    return {"cpu_ms_per_turn": 1000 * cpu / turns, "turns": turns}


def stubs_cpu(n: int) -> dict:
    """The same stub calls without the loop (2 completions + 1 search per trajectory)."""
    from fathom.agent import build_prompt, preset_schemas
    from fathom.agent.testing import TOOL_TURN

    policy, tools = _stubs()
    p1 = build_prompt(QUESTION, preset_schemas("fathom"))
    p2 = p1 + TOOL_TURN + "<tool_response>"

    async def go():
        cpu0 = time.process_time()
        for _ in range(n):
            await policy.complete(p1, max_tokens=10)
            await tools.call("search_urls", {"query": "q"})
            await policy.complete(p2, max_tokens=10)
        return time.process_time() - cpu0

    cpu = asyncio.run(go())
    return {"cpu_ms_per_turn": 1000 * cpu / (2 * n), "turns": 2 * n}


def sweep_child(concurrency: int, factor: float) -> None:
    """One sweep level in this (fresh) process: prints one JSON line."""
    from fathom.agent import AgentConfig

    run_agent = _run_agent(factor)
    policy, tools = _stubs(delay_s=0.005)
    cfg = AgentConfig(max_turns=4)

    async def go():
        await run_agent(QUESTION, policy, tools, cfg)  # warm-up: imports, template cache
        rss0 = H.proc_rss_peak_mb(os.getpid())
        cpu0, wall0 = time.process_time(), time.perf_counter()
        trajs = await asyncio.gather(*(run_agent(QUESTION, policy, tools, cfg) for _ in range(concurrency)))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        assert all(t.status == "answered" for t in trajs)
        turns = sum(len(t.turns) for t in trajs)
        return {"concurrency": concurrency, "turns_per_s": turns / wall, "cpu_ms_per_turn": 1000 * cpu / turns,
                "rss_before_mb": rss0, "peak_rss_mb": H.proc_rss_peak_mb(os.getpid())}

    print(json.dumps(asyncio.run(go())))


def sweep_level(concurrency: int, factor: float) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{H.ROOT / 'src'}{os.pathsep}"
           f"{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run([sys.executable, __file__, "--sweep-child", str(concurrency), "--inject-slowdown",
                          str(factor)], env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    H.add_common_args(ap, rounds=5, quick_rounds=3)
    ap.add_argument("--trajectories", type=int, default=None, help="trajectories per CPU measurement (2000; 500 "
                    "with --quick)")
    ap.add_argument("--sweep", default=None, help="comma-separated concurrency levels (1,10,100,1000)")
    ap.add_argument("--sweep-child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sweep_child is not None:
        sweep_child(args.sweep_child, args.inject_slowdown)
        return
    n = args.trajectories or (500 if args.quick else 2000)
    levels = [int(x) for x in (args.sweep or ("1,100,1000" if args.quick else "1,10,100,1000")).split(",")]
    rounds = H.rounds_of(args)
    H.banner(f"agent loop: CPU per turn (in-process instant policy + tools, {n} trajectories of 2 turns + 1 tool "
             f"call per measurement) and a concurrency sweep {levels}", args)
    loop_cpu(50, 1.0)  # warm-up
    res = H.interleaved([("run_agent", lambda: loop_cpu(n, args.inject_slowdown)),
                         ("stub calls only", lambda: stubs_cpu(n))], rounds)
    print("-- concurrency sweep (one fresh process per level and round)")
    sweep: dict[int, list[dict]] = {c: [] for c in levels}
    for r in range(rounds):
        for c in (levels if r % 2 == 0 else levels[::-1]):
            sweep[c].append(sweep_level(c, args.inject_slowdown))
            print(f"   round {r + 1}/{rounds} concurrency {c:>5}: {json.dumps(sweep[c][-1])}", flush=True)

    loop = H.column(res["run_agent"], "cpu_ms_per_turn")
    stubs = H.column(res["stub calls only"], "cpu_ms_per_turn")
    print(f"\n{'':34} {'CPU ms per turn (median [min–max])':>36}")
    print(f"{'run_agent, instant in-process I/O':34} {H.spread(loop).fmt(4):>36}")
    print(f"{'the stub calls alone':34} {H.spread(stubs).fmt(4):>36}")
    print(f"{'difference (per round)':34} {H.spread([a - b for a, b in zip(loop, stubs)]).fmt(4):>36}")
    ok = H.spread(loop).median < 0.2
    print(f"target < 0.2 ms CPU per turn beyond HTTP (measured directly, stubs included): {'met' if ok else 'NOT met'}")
    print(f"\n{'concurrency':>11} {'turns/s':>24} {'CPU ms/turn':>24} {'RSS after warm-up MB':>22} {'peak RSS MB':>22}")
    for c, rows in sweep.items():
        print(f"{c:>11} {H.spread(H.column(rows, 'turns_per_s')).fmt(0):>24} "
              f"{H.spread(H.column(rows, 'cpu_ms_per_turn')).fmt(3):>24} "
              f"{H.spread(H.column(rows, 'rss_before_mb')).fmt(0):>22} "
              f"{H.spread(H.column(rows, 'peak_rss_mb')).fmt(0):>22}")
    if 1000 in sweep:
        peak = H.spread(H.column(sweep[1000], "peak_rss_mb")).median
        print(f"target 1,000 concurrent trajectories < 200 MB peak RSS: {'met' if peak < 200 else 'NOT met'} "
              f"({peak:.0f} MB; goal < 1 GB)")
    H.headline("run_agent CPU ms per turn (in-process)", loop, "lower", "ms", "< 0.2")


if __name__ == "__main__":
    main()
