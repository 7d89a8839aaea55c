"""Evaluation harness costs, each figure next to its baseline in the same run, over interleaved rounds.

1. Grading the whole SimpleQA file: seconds for its 4,326 rows, loading included (`load_dataset` + the SimpleQA
   grader, `em`, on one perturbed prediction per row); baseline: the same load + the reference's grading step
   (NFKD + lower + strip string equality). The other deterministic graders are printed as rows/s.
2. Judge calls against an instant OpenAI-compatible stub judge in its own process, concurrency 64: the client
   process's CPU milliseconds per call (`time.process_time`: the code under test is the client) and calls/s of
   `LLMJudge` + `OpenAIClient`; baseline: raw httpx POSTs of the same calls.
3. Harness overhead per example: `run_eval` with an instant stub agent (row building, grading, appending
   results.jsonl, metrics; reports off) vs a bare asyncio loop calling the same agent.

    python benchmarks/bench_eval.py [--quick] [--inject-slowdown 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as H

from fathom.evaluate import datasets
from fathom.evaluate.agents import AgentOutput, AgentSettings
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


def ref_equal(p: str, g: str) -> bool:
    n = lambda s: unicodedata.normalize("NFKD", s).lower().strip()
    return n(p) == n(g)


def grade_file(grader: str, preds: dict[str, str]) -> dict:
    """Load the SimpleQA file and grade one prediction per row: seconds, loading included."""
    t0 = time.perf_counter()
    ds = datasets.load_dataset("simpleqa")
    t_load = time.perf_counter() - t0
    fn = ref_equal if grader == "reference" else DETERMINISTIC[grader]
    if grader == "reference":
        correct = sum(fn(preds[e.id], e.answer) for e in ds.examples)
    else:
        correct = sum(fn(preds[e.id], e.answer).correct for e in ds.examples)
    total = time.perf_counter() - t0
    return {"seconds": total, "load_s": t_load, "rows": len(ds.examples), "correct": correct,
            "rows_per_s": len(ds.examples) / (total - t_load)}


def predictions() -> dict[str, str]:
    rng = random.Random(0)
    return {e.id: perturb(e.answer, rng) for e in datasets.load_dataset("simpleqa").examples}


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


async def _judge_raw(url: str, n: int) -> dict:
    import httpx

    async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=128)) as http:
        sem = asyncio.Semaphore(64)

        async def raw(i: int) -> None:
            async with sem:
                r = await http.post("/v1/chat/completions", json={"model": "m", "messages": []})
                r.json()

        await asyncio.gather(*(raw(i) for i in range(64)))
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(raw(i) for i in range(n)))
        return {"calls_per_s": n / (time.perf_counter() - t0), "cpu_ms_per_call": 1000 * (time.process_time() - cpu0) / n}


async def _judge_ours(url: str, n: int) -> dict:
    from fathom.config import RoleConfig
    from fathom.llm import make_client

    client = make_client(RoleConfig(model="stub", base_url=f"{url}/v1", concurrency=64))
    judge = LLMJudge(client, concurrency=64)
    await asyncio.gather(*(judge.grade("q", "a", "warm") for _ in range(64)))
    cpu0, t0 = time.process_time(), time.perf_counter()
    grades = await asyncio.gather(*(judge.grade(f"question {i}", "gold", f"pred {i}") for i in range(n)))
    res = {"calls_per_s": n / (time.perf_counter() - t0), "cpu_ms_per_call": 1000 * (time.process_time() - cpu0) / n}
    await client.aclose()
    assert all(g.correct for g in grades)
    return res


class InstantAgent:
    name = "instant"

    async def answer(self, question: str) -> AgentOutput:
        return AgentOutput(answer="Michio Sugeno", turns=1, tool_calls=2)

    async def aclose(self) -> None:
        pass


def overhead_bare(n: int) -> dict:
    ds = datasets.load_dataset("simpleqa", limit=n)
    agent = InstantAgent()

    async def bare() -> None:
        sem = asyncio.Semaphore(16)

        async def one(q: str) -> None:
            async with sem:
                await agent.answer(q)

        await asyncio.gather(*(one(e.question) for e in ds.examples))

    t0 = time.perf_counter()
    asyncio.run(bare())
    return {"us_per_example": 1e6 * (time.perf_counter() - t0) / n}


def overhead_run_eval(n: int) -> dict:
    from fathom.evaluate import runner

    agent = InstantAgent()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = runner.EvalConfig(datasets=["simpleqa"], out=Path(tmp) / "run", limit=n, concurrency=16,
                                progress=False, report=False, agent=AgentSettings(agent="no-search"))
        t0 = time.perf_counter()
        res = runner.run_eval(cfg, agent=agent)
        dt = time.perf_counter() - t0
        size = (Path(tmp) / "run" / "results.jsonl").stat().st_size
    assert res.new_rows == n
    return {"us_per_example": 1e6 * dt / n, "bytes_per_row": size / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    H.add_common_args(ap, rounds=5, quick_rounds=3)
    ap.add_argument("--judge-calls", type=int, default=None, help="judge calls per run (4,000; 500 with --quick)")
    ap.add_argument("--examples", type=int, default=None, help="run_eval examples per run (4,326; 1,000 with --quick)")
    ap.add_argument("--grading-only", action="store_true", help="only part 1 (the SimpleQA file)")
    args = ap.parse_args()
    rounds = H.rounds_of(args)
    from fathom.evaluate import runner

    f = args.inject_slowdown
    H.patch_slowdown(datasets, "load_dataset", f)
    for name in list(DETERMINISTIC):
        DETERMINISTIC[name] = H.slow_down(DETERMINISTIC[name], f)
    H.patch_slowdown(LLMJudge, "grade", f)
    H.patch_slowdown(runner, "run_eval", f)
    n_judge = args.judge_calls or (500 if args.quick else 4000)
    n_over = args.examples or (1000 if args.quick else 4326)
    H.banner("evaluation: SimpleQA file graded (loading included), judge calls, run_eval overhead", args)

    preds = predictions()
    print("[1] grading the SimpleQA file")
    grading = H.interleaved([("reference", lambda: grade_file("reference", preds)),
                             ("em", lambda: grade_file("em", preds))], rounds)
    others = H.interleaved([(g, (lambda g=g: grade_file(g, preds))) for g in ("f1", "auto", "mc", "number")], 1,
                           log=False)
    if not args.grading_only:
        print(f"[2] judge calls, instant stub judge in its own process, concurrency 64, {n_judge} calls per run")
        with stub_judge_process() as url:
            judge = H.interleaved([("raw httpx", lambda: asyncio.run(_judge_raw(url, n_judge))),
                                   ("LLMJudge", lambda: asyncio.run(_judge_ours(url, n_judge)))], rounds)
        print(f"[3] harness overhead, instant stub agent, {n_over} SimpleQA examples, concurrency 16")
        over = H.interleaved([("bare loop", lambda: overhead_bare(n_over)),
                              ("run_eval", lambda: overhead_run_eval(n_over))], rounds)

    rows = grading["em"][0]["rows"]
    print(f"\n[1] SimpleQA file, {rows:,} rows, one prediction each: seconds including loading (median [min–max])")
    for name, label in (("reference", "baseline: load + NFKD/lower/strip equality"), ("em", "load + em grader")):
        r = grading[name]
        print(f"    {label:<44} {H.spread(H.column(r, 'seconds')).fmt(3, ' s'):>26}   of which loading "
              f"{H.spread(H.column(r, 'load_s')).fmt(3, ' s')}   ({r[0]['correct']} correct)")
    print(f"    em / baseline seconds: {H.spread(H.ratios(grading['em'], grading['reference'], 'seconds')).fmt(2, 'x')}")
    for name, [r] in others.items():
        print(f"    grader {name:<7}: {r['seconds']:.3f} s for the file ({r['rows_per_s']:,.0f} rows/s grading alone, "
              f"1 run)")
    if not args.grading_only:
        print("\n[2] judge calls                      calls/s               client CPU ms per call")
        for name, r in judge.items():
            print(f"    {name:<26} {H.spread(H.column(r, 'calls_per_s')).fmt(0):>24} "
                  f"{H.spread(H.column(r, 'cpu_ms_per_call')).fmt(3):>28}")
        print(f"    LLMJudge / raw client CPU per call: "
              f"{H.spread(H.ratios(judge['LLMJudge'], judge['raw httpx'], 'cpu_ms_per_call')).fmt(2, 'x')}")
        print("\n[3] harness overhead                 us per example")
        for name, r in over.items():
            print(f"    {name:<26} {H.spread(H.column(r, 'us_per_example')).fmt(1):>24}")
        print(f"    results.jsonl {over['run_eval'][0]['bytes_per_row']:.0f} B/row; run_eval - bare per round: "
              f"{H.spread([a['us_per_example'] - b['us_per_example'] for a, b in zip(over['run_eval'], over['bare loop'])]).fmt(1, ' us')}")
    H.headline("seconds to grade the SimpleQA file (4,326 rows, loading included)",
               H.column(grading["em"], "seconds"), "lower", "s")


if __name__ == "__main__":
    main()
