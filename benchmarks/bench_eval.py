"""Evaluation harness throughput, each figure next to its baseline in the same run.

1. Offline grading: all 4,326 SimpleQA rows graded with the deterministic graders (gold answers and perturbed
   predictions), rows/s; baseline: the reference's grading step (NFKD + lower + strip string equality).
2. Judge calls/s against an instant OpenAI-compatible stub judge on loopback at concurrency 64 (real HTTP through
   `LLMJudge` + `OpenAIClient`); baseline: the same number of raw httpx POSTs at the same concurrency.
3. Harness overhead per example: `run_eval` with an instant stub agent (row building, grading, appending
   results.jsonl, metrics; reports off) vs a bare asyncio loop calling the same agent.

    .venv/bin/python benchmarks/bench_eval.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from fathom.evaluate.agents import AgentOutput, AgentSettings
from fathom.evaluate.datasets import load_dataset
from fathom.evaluate.graders import DETERMINISTIC, LLMJudge


def perturb(ans: str, rng: random.Random) -> str:
    r = rng.random()
    if r < 0.25:
        return ans
    if r < 0.5:
        return f"The answer is {ans.upper()}."
    if r < 0.75:
        return ans[: max(1, len(ans) // 2)]
    return "I don't know"


def bench_grading(quick: bool) -> None:
    ds = load_dataset("simpleqa")
    rng = random.Random(0)
    items = [(e.answer, e.answer) for e in ds.examples] + [(perturb(e.answer, rng), e.answer) for e in ds.examples]
    print(f"\n[1] offline grading: {len(ds.examples)} SimpleQA rows x (gold + perturbed) = {len(items)} predictions")

    def ref(p: str, g: str) -> bool:
        n = lambda s: unicodedata.normalize("NFKD", s).lower().strip()
        return n(p) == n(g)

    t0 = time.perf_counter()
    ref_ok = sum(ref(p, g) for p, g in items)
    base = len(items) / (time.perf_counter() - t0)
    print(f"    baseline reference string equality : {base:12,.0f} rows/s  ({ref_ok} equal)")
    for name in ("em", "f1", "auto", "mc", "number"):
        fn = DETERMINISTIC[name]
        t0 = time.perf_counter()
        correct = sum(fn(p, g).correct for p, g in items)
        rate = len(items) / (time.perf_counter() - t0)
        print(f"    grader {name:<6}                      : {rate:12,.0f} rows/s  ({correct} correct)")


STUB_JUDGE = """
from fastapi import FastAPI

app = FastAPI()
REPLY = {"choices": [{"message": {"role": "assistant", "content": "Same.\\nGRADE: CORRECT"},
                      "finish_reason": "stop"}], "usage": {"prompt_tokens": 50, "completion_tokens": 4}}


@app.post("/v1/chat/completions")
async def chat() -> dict:
    return REPLY
"""


@contextlib.contextmanager
def stub_judge_process() -> Iterator[str]:
    """The instant judge in its own process (in-process, the server thread and the client loop would ping-pong
    the GIL with its 5 ms switch interval and the figure would measure that)."""
    import socket

    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "stub_judge.py").write_text(STUB_JUDGE)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--app-dir", tmp, "stub_judge:app", "--host",
                                 "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"])
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.post(f"{url}/v1/chat/completions", json={}, timeout=2)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("stub judge did not start") from None
                    time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=10)


async def bench_judge(url: str, quick: bool) -> None:
    import httpx

    from fathom.config import RoleConfig
    from fathom.llm import make_client

    n = 1000 if quick else 4000
    print(f"\n[2] judge calls against an instant stub judge (loopback, own process), concurrency 64, {n} calls")
    async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=128)) as http:
        sem = asyncio.Semaphore(64)

        async def raw(i: int) -> None:
            async with sem:
                r = await http.post("/v1/chat/completions", json={"model": "m", "messages": []})
                r.json()

        await asyncio.gather(*(raw(i) for i in range(64)))
        t0 = time.perf_counter()
        await asyncio.gather(*(raw(i) for i in range(n)))
        base = n / (time.perf_counter() - t0)
    client = make_client(RoleConfig(model="stub", base_url=f"{url}/v1", concurrency=64))
    judge = LLMJudge(client, concurrency=64)
    await asyncio.gather(*(judge.grade("q", "a", "warm") for _ in range(64)))
    t0 = time.perf_counter()
    grades = await asyncio.gather(*(judge.grade(f"question {i}", "gold", f"pred {i}") for i in range(n)))
    rate = n / (time.perf_counter() - t0)
    await client.aclose()
    assert all(g.correct for g in grades)
    print(f"    baseline raw httpx POST            : {base:10,.0f} calls/s")
    print(f"    LLMJudge (OpenAIClient + parsing)  : {rate:10,.0f} calls/s  ({rate / base:.0%} of raw)")


class InstantAgent:
    name = "instant"

    async def answer(self, question: str) -> AgentOutput:
        return AgentOutput(answer="Michio Sugeno", turns=1, tool_calls=2)

    async def aclose(self) -> None:
        pass


def bench_overhead(quick: bool) -> None:
    from fathom.evaluate.runner import EvalConfig, run_eval

    n = 1000 if quick else 4326
    ds = load_dataset("simpleqa", limit=n)
    print(f"\n[3] harness overhead per example, instant stub agent, {n} SimpleQA examples, concurrency 16")
    agent = InstantAgent()

    async def bare() -> None:
        sem = asyncio.Semaphore(16)

        async def one(q: str) -> None:
            async with sem:
                await agent.answer(q)

        await asyncio.gather(*(one(e.question) for e in ds.examples))

    t0 = time.perf_counter()
    asyncio.run(bare())
    bare_s = (time.perf_counter() - t0) / n
    with tempfile.TemporaryDirectory() as tmp:
        cfg = EvalConfig(datasets=["simpleqa"], out=Path(tmp) / "run", limit=n, concurrency=16, progress=False,
                         report=False, agent=AgentSettings(agent="no-search"))
        t0 = time.perf_counter()
        res = run_eval(cfg, agent=agent)
        harness_s = (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        again = run_eval(cfg, agent=agent)
        rerun_s = time.perf_counter() - t0
        size = (Path(tmp) / "run" / "results.jsonl").stat().st_size
    assert res.new_rows == n and again.nothing_to_do
    print(f"    baseline bare asyncio loop         : {1e6 * bare_s:10.1f} us/example")
    print(f"    run_eval (grade + row + append)    : {1e6 * harness_s:10.1f} us/example  "
          f"(+{1e6 * (harness_s - bare_s):.1f} us; results.jsonl {size / n:.0f} B/row; load + grade + metrics)")
    print(f"    rerun of the finished run          : {rerun_s:10.3f} s total (nothing to do)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller judge and overhead runs (< 1 min)")
    args = ap.parse_args()
    print(json.dumps({"quick": args.quick}))
    bench_grading(args.quick)
    with stub_judge_process() as url:
        asyncio.run(bench_judge(url, args.quick))
    bench_overhead(args.quick)


if __name__ == "__main__":
    main()
