"""Tool-server throughput on cached calls vs a bare FastAPI endpoint returning the same payload.

Both servers run as separate uvicorn processes with the same settings (1 worker, no access log) on loopback. The load
comes from `wrk` (Debian package `wrk`; keep-alive, 64 connections, a Lua script for the POST body) in its own
process: it costs 11–18 microseconds of CPU per request (printed), 8–15 % of the servers' (0.09–0.16 ms since the
tool server's cached calls skip FastAPI's per-request machinery), so the figures are the servers' and not the
client's. Bare and tool-server measurements alternate in rounds; each figure is printed as the median
and the [min–max] over rounds, with the server's CPU milliseconds per request (from /proc/<pid>/stat) and wrk's own.
Every tool-server request must be a cache hit (checked on the server's /metrics).

    python benchmarks/bench_tool_server.py                       # 5 rounds x 10 s per arm and call
    python benchmarks/bench_tool_server.py --quick               # 3 rounds x 3 s (about 1 min)
    python benchmarks/bench_tool_server.py --inject-slowdown 2   # the tool server's app does twice its CPU work
    FATHOM_TOOLS_GC_FREEZE=false python benchmarks/bench_tool_server.py   # without gc.freeze() after start-up

The headline is the ratio of CPU per request (bare / tool server): req/s is what a benchmark on a shared machine loses
first, CPU per request is what the code costs.

Targets (issue 13): cached search and query_url >= 80 % of bare throughput, p99 < 50 ms at 64 connections.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H

GOAL = "When was the first ascent of Mount Veyra and who made it?"
PAGE = """<!doctype html><html><head><title>Mount Veyra</title></head><body><article><h1>Mount Veyra</h1>
<p>Mount Veyra is a dormant volcano on the island of Kestrel. It rises 2,417 metres above sea level and last
erupted in 1893, when ash fell on the harbour town of Orlen for eleven days.</p>
<p>The first recorded ascent of Mount Veyra was made on 14 March 2026 by the climber Ada Lindqvist, who reached
the summit crater after a nine-hour climb from the northern ridge.</p>
<p>The mountain is home to the Veyra pika, a small mammal found nowhere else.</p></article></body></html>"""

BARE_APP = r'''
import json
from fastapi import FastAPI, Request
payloads = json.load(open(PAYLOADS))
app = FastAPI()

@app.post("/v1/search")
async def search(request: Request):
    await request.json()
    return payloads["search"]

@app.post("/v1/query_url")
async def query_url(request: Request):
    await request.json()
    return payloads["query_url"]
'''

SERVE = r'''
import os, sys, uvicorn
port, kind = int(sys.argv[1]), sys.argv[2]
if kind == "tools":
    from fathom.web.server import create_app
    from fathom.web.settings import ToolServerSettings
    app = create_app(ToolServerSettings())
    factor = float(os.environ.get("FATHOM_BENCH_SLOWDOWN", "1"))
    if factor != 1:
        sys.path.insert(0, sys.argv[3])
        from _harness import slow_down
        app = slow_down(app, factor)  # the whole ASGI app: routing, validation, the service, serialisation
elif kind == "bare":
    import runpy
    app = runpy.run_path(sys.argv[3])["app"]
elif kind == "site":
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse
    page = open(sys.argv[3]).read()
    app = FastAPI()

    @app.get("/page.html")
    async def p():
        return HTMLResponse(page)
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
'''


def cache_counts(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics", timeout=10).text
    out: dict[str, float] = {}
    for kind, result, value in re.findall(r'fathom_tools_cache_total\{kind="(\w+)",result="(\w+)"\} ([0-9.e+]+)', text):
        out[f"{kind}:{result}"] = float(value)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    H.add_common_args(ap, rounds=5, quick_rounds=3)
    ap.add_argument("--seconds", type=float, default=None, help="seconds per measurement (10; 3 with --quick)")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--calls", default="search,query_url", help="calls to measure (search,query_url)")
    args = ap.parse_args()
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    rounds = H.rounds_of(args)
    if not H.have_wrk():
        sys.exit("wrk is not installed: apt-get install -y wrk (bash scripts/setup.sh tries to)")
    H.banner(f"tool server vs bare FastAPI, cached calls, wrk {args.connections} connections, {seconds:g} s per "
             "measurement", args)

    from fathom.web.index import CorpusIndex

    procs = []
    with tempfile.TemporaryDirectory(prefix="bench-tools-") as tmp:
        tmp = Path(tmp)
        (tmp / "page.html").write_text(PAGE)
        docs = [{"id": f"d{i}", "url": f"http://bench.test/wiki/{i}", "title": f"Volcano {i}",
                 "text": f"Volcano {i} on the island of Kestrel rose {i * 7} metres. " * 15} for i in range(200)]
        docs.append({"id": "veyra", "url": "http://bench.test/page.html", "title": "Mount Veyra", "text": PAGE})
        CorpusIndex.build(docs).save(tmp / "index")
        try:
            site_p, site = H.start_server(SERVE, "site", str(tmp / "page.html"))
            procs.append(site_p)
            env = {"FATHOM_TOOLS_SEARCH_BACKEND": "local", "FATHOM_TOOLS_INDEX_DIR": str(tmp / "index"),
                   "FATHOM_TOOLS_QUERY_LLM": "none", "FATHOM_TOOLS_CACHE_DIR": str(tmp / "cache"),
                   "FATHOM_TOOLS_HOST_OVERRIDES": json.dumps({"bench.test": site.removeprefix("http://")}),
                   H.SLOWDOWN_ENV: str(args.inject_slowdown)}
            tools_p, tools = H.start_server(SERVE, "tools", str(H.ROOT / "benchmarks"), env=env, health="/healthz")
            procs.append(tools_p)
            search_body = {"query": "first ascent of Mount Veyra", "top_k": 10}
            query_body = {"url": "http://bench.test/page.html", "goal": GOAL}
            payloads = {"search": httpx.post(tools + "/v1/search", json=search_body, timeout=60).json(),
                        "query_url": httpx.post(tools + "/v1/query_url", json=query_body, timeout=60).json()}
            assert payloads["query_url"]["error"] is None, payloads["query_url"]
            assert payloads["search"]["hits"], payloads["search"]
            assert httpx.post(tools + "/v1/query_url", json=query_body).json()["cache_hit"]
            assert httpx.post(tools + "/v1/search", json=search_body).json()["cache_hit"]
            (tmp / "payloads.json").write_text(json.dumps(payloads))
            (tmp / "bare_app.py").write_text(BARE_APP.replace("PAYLOADS", repr(str(tmp / "payloads.json"))))
            bare_p, bare = H.start_server(SERVE, "bare", str(tmp / "bare_app.py"))
            procs.append(bare_p)

            def arm(url: str, pid: int, path: str, body: dict, kind: str | None):
                def run() -> dict:
                    before = cache_counts(url) if kind else {}
                    r = H.wrk(url + path, body=body, connections=args.connections, seconds=seconds, server_pid=pid)
                    if kind:  # every request a cache hit (requests still in flight when wrk stops add a few hits)
                        after = cache_counts(url)
                        hits = after.get(f"{kind}:hit", 0) - before.get(f"{kind}:hit", 0)
                        misses = after.get(f"{kind}:miss", 0) - before.get(f"{kind}:miss", 0)
                        assert misses == 0 and hits >= r["requests"], (hits, misses, r)
                    assert r["errors"] == 0, r
                    return r
                return run

            results = {}
            calls = (("search", "/v1/search", search_body, "search"),
                     ("query_url", "/v1/query_url", query_body, "extraction"))
            for name, path, body, kind in (c for c in calls if c[0] in args.calls.split(",")):
                print(f"-- {name}")
                arm(bare, bare_p.pid, path, body, None)()  # warm-up
                arm(tools, tools_p.pid, path, body, kind)()
                results[name] = H.interleaved([("bare", arm(bare, bare_p.pid, path, body, None)),
                                               ("tool server", arm(tools, tools_p.pid, path, body, kind))], rounds)
        finally:
            H.stop(procs)

    print(f"\n{'call':<10} {'server':<12} {'req/s':>22} {'p50 ms':>20} {'p99 ms':>20} {'server CPU ms/req':>22} "
          f"{'wrk CPU ms/req':>15}")
    ratio_by_call, cpu_ratio = {}, {}
    for name, res in results.items():
        for arm_name in ("bare", "tool server"):
            rows = res[arm_name]
            print(f"{name:<10} {arm_name:<12} {H.spread(H.column(rows, 'rps')).fmt(0):>22} "
                  f"{H.spread(H.column(rows, 'p50_ms')).fmt(1):>20} {H.spread(H.column(rows, 'p99_ms')).fmt(1):>20} "
                  f"{H.spread(H.column(rows, 'server_cpu_ms_per_req')).fmt(3):>22} "
                  f"{H.spread(H.column(rows, 'client_cpu_ms_per_req')).fmt(3):>15}")
        ratio_by_call[name] = H.ratios(res["tool server"], res["bare"], "rps")
        print(f"{'':<10} {'ratio':<12} {H.spread([100 * x for x in ratio_by_call[name]]).fmt(0, ' %'):>22}  "
              "tool server / bare req/s, per round")
        cpu_ratio[name] = H.ratios(res["bare"], res["tool server"], "server_cpu_ms_per_req")
        print(f"{'':<10} {'CPU ratio':<12} {H.spread([100 * x for x in cpu_ratio[name]]).fmt(0, ' %'):>22}  "
              "bare / tool server CPU per request, per round (what req/s would be with a core to itself)")
    wrk_share = max(r["client_cpu_ms_per_req"] / r["server_cpu_ms_per_req"]
                    for res in results.values() for rows in res.values() for r in rows)
    print(f"\nwrk CPU per request / server CPU per request: at most {wrk_share:.1%} (target <= 10 %: "
          f"{'met' if wrk_share <= 0.1 else 'NOT met'})")
    for name, rs in ratio_by_call.items():
        p99 = H.spread(H.column(results[name]["tool server"], "p99_ms")).median
        ok = H.spread(rs).median >= 0.8 and p99 < 50
        print(f"target {name}: >= 80 % of bare req/s and p99 < 50 ms: {'met' if ok else 'NOT met'}")
    # the headline is the CPU ratio: on a shared machine a niced server loses whole seconds to other work, which
    # moves req/s (and the req/s ratio) far more than CPU per request
    first = next(iter(cpu_ratio))
    H.headline(f"bare / tool server CPU per request, cached {first}", cpu_ratio[first], "higher", target=">= 0.8")


if __name__ == "__main__":
    main()
