"""Hardening figures (issue 9): generated model outputs through the parser and the turn step, 1 MB turn extraction,
and a bad-input suite against the running tool server.

    python benchmarks/bench_fuzz.py                       # 3 rounds of 100,000 outputs and 2,000 agent runs
    python benchmarks/bench_fuzz.py --quick               # 3 rounds of 20,000 outputs and 500 agent runs
    python benchmarks/bench_fuzz.py --inject-slowdown 2   # parsing, extraction and run_agent do twice their work

Parsing and agent runs repeat over rounds (median and [min–max] of each figure across rounds); the load average is
printed before and after.

Targets: 0 escaped exceptions over >= 100,000 outputs, p99 parse time < 1 ms (CPU time of the call); a 1 MB turn
extracted in < 100 ms;
0 untyped 500s over >= 150 malformed requests. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "answer"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _harness as H
from fuzz import model_turn

from fathom.agent import AgentConfig, FunctionTools, preset_schemas, run_agent
from fathom.agent.parse import parse_tool_calls
from fathom.agent.testing import ScriptedLLM
from fathom.answer import extract_answer, extract_boxed
from fathom.rl.rewards import check_format

SCHEMAS = preset_schemas("fathom")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def spread(xs: list[float]) -> str:
    return (f"median {statistics.median(xs):.3f}  p25 {pct(xs, .25):.3f}  p75 {pct(xs, .75):.3f}  "
            f"min {min(xs):.3f}  max {max(xs):.3f}")


# ----------------------------------------------------------------------------------------------------------- 1
def fuzz_outputs(n: int, seed: int = 0, verbose: bool = True) -> dict:
    rng = random.Random(seed)
    parse_ms, step_ms, escaped, blocks, errors = [], [], 0, 0, 0
    for _ in range(n):
        text = model_turn(rng)
        # CPU time of this thread: the parser's cost; wall time would also count the scheduler's preemptions on a
        # shared machine (one 10 ms time slice in 1 % of the calls is the p99)
        t0 = time.thread_time()
        try:
            calls = parse_tool_calls(text, SCHEMAS)
            t1 = time.thread_time()
            check_format([text], SCHEMAS)  # the turn step's pure part: format verdict + answer
            extract_boxed(text)
            t2 = time.thread_time()
        except Exception as exc:  # noqa: BLE001 - counted: the target is zero
            escaped += 1
            print(f"  ESCAPED {type(exc).__name__}: {exc!s:.100}")
            continue
        parse_ms.append((t1 - t0) * 1000)
        step_ms.append((t2 - t0) * 1000)
        blocks += len(calls)
        errors += sum(1 for c in calls if hasattr(c, "code"))
    if verbose:
        print(f"[1] {n:,} generated model outputs ({blocks:,} <tool_call> blocks, {errors:,} typed parse errors)")
        print(f"    escaped exceptions: {escaped}")
        print(f"    parse_tool_calls ms: {spread(parse_ms)}  p99 {pct(parse_ms, .99):.3f}  (target p99 < 1 ms)")
        print(f"    turn step ms (parse + format check + boxed): {spread(step_ms)}  p99 {pct(step_ms, .99):.3f}")
    return {"parse_p50_ms": statistics.median(parse_ms), "parse_p99_ms": pct(parse_ms, .99),
            "step_p99_ms": pct(step_ms, .99), "escaped": escaped}


async def _search(query: str, top_k: int = 10) -> str:
    return f"### 1. hit\n**URL**: http://a.test/\n\n**Snippet**: {query[:30]}"


async def _query(url: str, goal: str) -> str:
    return "Summary: nothing"


def fuzz_agent(n: int, seed: int = 1, verbose: bool = True) -> dict:
    rng = random.Random(seed)
    tools = FunctionTools(SCHEMAS, {"search_urls": _search, "query_url": _query})
    cfg = AgentConfig(max_turns=4, max_total_tokens=400_000, max_tokens_per_turn=200_000)
    escaped, statuses, ms = 0, {}, []

    async def run_all():
        nonlocal escaped
        for _ in range(n):
            script = [model_turn(rng) for _ in range(rng.randint(1, 3))] + ["ok</think>\\boxed{x}"]
            t0 = time.perf_counter()
            try:
                traj = await run_agent("Q?", ScriptedLLM(script), tools, cfg)
            except Exception as exc:  # noqa: BLE001
                escaped += 1
                print(f"  ESCAPED {type(exc).__name__}: {exc!s:.100}")
                continue
            ms.append((time.perf_counter() - t0) * 1000)
            statuses[traj.status] = statuses.get(traj.status, 0) + 1

    asyncio.run(run_all())
    if verbose:
        print(f"[2] {n:,} full agent runs (run_agent, 1-3 fuzzed turns each): escaped exceptions {escaped}; "
              f"statuses {dict(sorted(statuses.items()))}")
        print(f"    ms per run: {spread(ms)}")
    return {"run_p50_ms": statistics.median(ms), "escaped": escaped}


# ----------------------------------------------------------------------------------------------------------- 3
SHAPES = {
    "prose + final box": lambda n: ("The evidence points to {x} here; " * (n // 33 + 1))[:n] + "\\boxed{42}",
    "unclosed \\boxed{ spam": lambda n: "\\boxed{" * (n // 7),
    "empty \\boxed{} spam": lambda n: "\\boxed{}" * (n // 8),
    "one box, 1 MB of {}": lambda n: "\\boxed{" + "{}" * (n // 2),
    "'answer' + spaces": lambda n: ("answer" + " " * 5000) * (n // 5006),
    "<answer> spam": lambda n: "<answer>" * (n // 8),
    "<tool_call> spam": lambda n: "<tool_call>" * (n // 11),
}


def extraction_1mb(runs: int = 7) -> None:
    print(f"[3] 1 MB turn: extract_boxed + extract_answer (+ parse_tool_calls), {runs} runs each, ms")
    worst = 0.0
    for name, make in SHAPES.items():
        text = make(1_000_000)
        ext, par = [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            extract_boxed(text)
            extract_answer(text)
            t1 = time.perf_counter()
            parse_tool_calls(text, SCHEMAS)
            par.append((time.perf_counter() - t1) * 1000)
            ext.append((t1 - t0) * 1000)
        worst = max(worst, statistics.median(ext))
        print(f"    {name:24s} extraction {spread(ext)} | tool-call parse median {statistics.median(par):.1f}")
    print(f"    worst median extraction: {worst:.1f} ms (target < 100 ms)")


# ----------------------------------------------------------------------------------------------------------- 4
def bad_requests() -> list[tuple[str, str, bytes | None, dict]]:
    """(method, path, body, headers) of malformed requests."""
    J = {"content-type": "application/json"}
    big9 = "9" * 5000
    reqs: list[tuple[str, str, bytes | None, dict]] = []
    endpoints = {
        "/v1/search": {"query": "volcano", "top_k": 3},
        "/v1/query_url": {"url": "http://site.test/page.html", "goal": "first ascent"},
        "/v1/visit": {"url": "http://site.test/page.html", "max_chars": 1000},
        "/execute": {"env": "from search_api import search_urls", "call": "search_urls('x')", "timeout": 5},
    }
    raw_bodies = [b"", b"not json", b"\xff\xfe\x00", b"null", b"[]", b"1", b'"x"', b"{", b'{"a": 1,}',
                  b"[" * 50_000 + b"]" * 50_000, b'{"x": NaN}', b'{"x": Infinity}', b'{"x": -Infinity}',
                  ('{"x": ' + big9 + "}").encode(), b'{"x": "\\ud800"}', b"\x00" * 100]
    for path, good in endpoints.items():
        for body in raw_bodies:
            reqs.append(("POST", path, body, J))
        for field, value in good.items():
            for bad in (None, 12, 1.5, True, [], {}, "", "x" * 1_000_000, "\ud800", float("nan"), 10**400, -1):
                if isinstance(value, str) and isinstance(bad, str) and bad == "":
                    pass
                body = dict(good)
                body[field] = bad
                try:
                    data = json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")
                except (ValueError, OverflowError):
                    continue
                reqs.append(("POST", path, data, J))
        reqs.append(("POST", path, json.dumps({k: v for k, v in list(good.items())[1:]}).encode(), J))  # missing
        reqs.append(("GET", path, None, {}))  # wrong method
        reqs.append(("POST", path, json.dumps(good).encode(), {"content-type": "text/plain"}))
    for url in ("http://site.test:99999/", "http://[::1", "http://a.test:port/", "file:///etc/passwd",
                "javascript:alert(1)", "http://user:pw@site.test/", "http:///nohost", "http://10.0.0.1/",
                "http://169.254.169.254/latest/meta-data/", "http://[::ffff:127.0.0.1]/", "ftp://site.test/x",
                "http://site.test/\r\nX: y", " ", "http://" + "a" * 300 + ".test/"):
        reqs.append(("POST", "/v1/visit", json.dumps({"url": url}).encode(), J))
        reqs.append(("POST", "/v1/query_url", json.dumps({"url": url, "goal": "g"}).encode(), J))
    for call in ("__import__('os').system('id')", "search_urls(" + "[" * 300 + "]" * 300 + ")", "search_urls(q=1)",
                 "query_url('http://10.0.0.1/', 'x')", "web_visit('file:///etc/passwd')", "search_urls('x', top_k=1e999)",
                 "exec('1')", "search_urls", "search_urls('a')+1", "(lambda: 1)()", "search_urls(*['x'])"):
        reqs.append(("POST", "/execute", json.dumps({"env": "", "call": call}).encode(), J))
    reqs.append(("POST", "/v1/search", b'{"query": "' + b"x" * 2_000_000 + b'"}', J))  # over the body limit
    reqs.append(("GET", "/nowhere", None, {}))
    reqs.append(("DELETE", "/v1/search", None, {}))
    return reqs


def bad_input_suite() -> None:
    import httpx

    from fathom.web.backends import SearchBackend
    from fathom.web.schemas import SearchHit
    from fathom.web.server import ToolService, create_app, serve_in_thread
    from fathom.web.settings import ToolServerSettings

    class Backend(SearchBackend):
        provider = "bench:list"

        async def search(self, query, top_k, *, gl=None, hl=None):
            return [SearchHit(url="http://site.test/page.html", title="Mount Veyra", snippet=query[:50])][:top_k]

    async def no_dns(host, port):
        return ["203.0.113.7"]  # TEST-NET: refused by the guard; nothing leaves the machine

    import tempfile

    reqs = bad_requests()
    with tempfile.TemporaryDirectory() as tmp:
        settings = ToolServerSettings(cache_dir=Path(tmp), query_llm="none", fetch_timeout_s=2.0, request_timeout_s=5)
        svc = ToolService(settings, backend=Backend())
        svc.guard.resolver = no_dns
        with serve_in_thread(create_app(settings, service=svc)) as url:
            by_status: dict[int, int] = {}
            untyped, ms = 0, []
            with httpx.Client(base_url=url, timeout=30) as h:
                for method, path, body, headers in reqs:
                    t0 = time.perf_counter()
                    r = h.request(method, path, content=body, headers=headers)
                    ms.append((time.perf_counter() - t0) * 1000)
                    by_status[r.status_code] = by_status.get(r.status_code, 0) + 1
                    typed = False
                    try:
                        b = r.json()
                        typed = (r.status_code == 200 and isinstance(b, dict)) or (
                            isinstance(b.get("error"), dict) and b["error"].get("code") not in (None, "internal"))
                    except ValueError:
                        pass
                    if r.status_code >= 500 or not typed:
                        untyped += 1
                        print(f"  UNTYPED {r.status_code} {method} {path} {(body or b'')[:60]!r}: {r.text[:120]}")
    print(f"[4] bad-input suite: {len(reqs)} malformed requests against the running tool server (loopback)")
    print(f"    status codes: {dict(sorted(by_status.items()))}  (200 = a typed tool error in the body)")
    print(f"    untyped or 5xx answers: {untyped} (target 0)")
    print(f"    ms per request: {spread(ms)}")


def main() -> None:
    global parse_tool_calls, extract_boxed, extract_answer, check_format, run_agent
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    H.add_common_args(ap, rounds=3, quick_rounds=3)
    ap.add_argument("--outputs", type=int, default=None, help="outputs per round (100,000; 20,000 with --quick)")
    ap.add_argument("--agent-runs", type=int, default=None, help="agent runs per round (2,000; 500 with --quick)")
    ap.add_argument("--skip-extraction", action="store_true", help="skip the 1 MB extraction and bad-input parts")
    a = ap.parse_args()
    f = a.inject_slowdown
    parse_tool_calls, extract_boxed, extract_answer, check_format = (
        H.slow_down(fn, f) for fn in (parse_tool_calls, extract_boxed, extract_answer, check_format))
    run_agent = H.slow_down(run_agent, f)
    n_out = a.outputs or (20_000 if a.quick else 100_000)
    n_agent = a.agent_runs or (500 if a.quick else 2_000)
    rounds = H.rounds_of(a)
    H.banner(f"fuzz: {n_out:,} generated outputs and {n_agent:,} agent runs per round", a)
    res = H.interleaved([("outputs", lambda: fuzz_outputs(n_out, verbose=False)),
                         ("agent runs", lambda: fuzz_agent(n_agent, verbose=False))], rounds)
    o, r = res["outputs"], res["agent runs"]
    print(f"[1] {n_out:,} generated model outputs per round, {rounds} rounds (median [min–max] over rounds)")
    print(f"    escaped exceptions: {sum(x['escaped'] for x in o)} (target 0)")
    print(f"    parse_tool_calls p50 ms: {H.spread(H.column(o, 'parse_p50_ms')).fmt(4)}")
    print(f"    parse_tool_calls p99 ms: {H.spread(H.column(o, 'parse_p99_ms')).fmt(4)}  (target < 1 ms)")
    print(f"    turn step p99 ms (parse + format check + boxed): {H.spread(H.column(o, 'step_p99_ms')).fmt(4)}")
    print(f"[2] {n_agent:,} full agent runs per round: escaped exceptions {sum(x['escaped'] for x in r)}; "
          f"ms per run p50 {H.spread(H.column(r, 'run_p50_ms')).fmt(3)}")
    if not a.skip_extraction:
        extraction_1mb(3 if a.quick else 7)
        bad_input_suite()
    H.headline("parse_tool_calls p99 ms", H.column(o, "parse_p99_ms"), "lower", "ms", "< 1")


if __name__ == "__main__":
    main()
