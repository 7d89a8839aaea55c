"""Tool-server throughput on cached calls vs a bare FastAPI endpoint returning the same payload.

Both servers run as separate uvicorn processes with the same settings (1 worker, no access log) on loopback; one
client process drives each with N concurrent clients (httpx, keep-alive) for a fixed time.

    .venv/bin/python benchmarks/bench_tool_server.py            # 10 s per measurement
    .venv/bin/python benchmarks/bench_tool_server.py --quick    # 3 s per measurement, < 1 min overall

Target (issue 2): the tool server's cached /v1/query_url and /v1/search reach >= 50 % of the bare throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
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
import sys, uvicorn
kind, port = sys.argv[1], int(sys.argv[2])
if kind == "tools":
    from fathom.web.server import create_app
    from fathom.web.settings import ToolServerSettings
    app = create_app(ToolServerSettings())
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
elif kind == "bare":
    import runpy
    mod = runpy.run_path(sys.argv[3])
    uvicorn.run(mod["app"], host="127.0.0.1", port=port, log_level="warning", access_log=False)
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(kind: str, port: int, *args: str, env: dict | None = None) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", SERVE, kind, str(port), *args], cwd=ROOT,
                            env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} server died: {proc.stderr.read().decode()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{kind} server did not start")


async def load(url: str, path: str, body: dict, concurrency: int, seconds: float) -> dict:
    lat: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        for _ in range(3):  # warm connections
            await client.post(path, json=body)
        stop = time.perf_counter() + seconds

        async def worker():
            nonlocal errors
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                r = await client.post(path, json=body)
                if r.status_code != 200 or r.json().get("error"):
                    errors += 1
                lat.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    lat.sort()
    return {"rps": len(lat) / elapsed, "p50": lat[len(lat) // 2] * 1000, "p99": lat[int(len(lat) * 0.99)] * 1000,
            "n": len(lat), "errors": errors}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 s per measurement")
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()
    seconds = args.seconds or (3.0 if args.quick else 10.0)

    from fathom.web.index import CorpusIndex

    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="bench-tools-") as tmp:
        tmp = Path(tmp)
        (tmp / "page.html").write_text(PAGE)
        docs = [{"id": f"d{i}", "url": f"http://bench.test/wiki/{i}", "title": f"Volcano {i}",
                 "text": f"Volcano {i} on the island of Kestrel rose {i * 7} metres. " * 15} for i in range(200)]
        docs.append({"id": "veyra", "url": "http://bench.test/page.html", "title": "Mount Veyra", "text": PAGE})
        CorpusIndex.build(docs).save(tmp / "index")
        try:
            site_port, tools_port, bare_port = free_port(), free_port(), free_port()
            procs.append(start("site", site_port, str(tmp / "page.html")))
            env = {"FATHOM_TOOLS_SEARCH_BACKEND": "local", "FATHOM_TOOLS_INDEX_DIR": str(tmp / "index"),
                   "FATHOM_TOOLS_QUERY_LLM": "none", "FATHOM_TOOLS_CACHE_DIR": str(tmp / "cache"),
                   "FATHOM_TOOLS_HOST_OVERRIDES": json.dumps({"bench.test": f"127.0.0.1:{site_port}"})}
            procs.append(start("tools", tools_port, env=env))
            tools = f"http://127.0.0.1:{tools_port}"
            search_body = {"query": "first ascent of Mount Veyra", "top_k": 10}
            query_body = {"url": "http://bench.test/page.html", "goal": GOAL}
            payloads = {"search": httpx.post(tools + "/v1/search", json=search_body, timeout=60).json(),
                        "query_url": httpx.post(tools + "/v1/query_url", json=query_body, timeout=60).json()}
            assert payloads["query_url"]["error"] is None, payloads["query_url"]
            assert httpx.post(tools + "/v1/query_url", json=query_body).json()["cache_hit"]
            (tmp / "payloads.json").write_text(json.dumps(payloads))
            (tmp / "bare_app.py").write_text(BARE_APP.replace("PAYLOADS", repr(str(tmp / "payloads.json"))))
            procs.append(start("bare", bare_port, str(tmp / "bare_app.py")))
            bare = f"http://127.0.0.1:{bare_port}"

            rows = []
            for name, path, body in (("search", "/v1/search", search_body),
                                     ("query_url", "/v1/query_url", query_body)):
                b = asyncio.run(load(bare, path, body, args.concurrency, seconds))
                t = asyncio.run(load(tools, path, body, args.concurrency, seconds))
                rows.append((name, b, t))
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()

    print(f"\ntool server vs bare FastAPI, cached calls, {args.concurrency} concurrent clients, {seconds:g} s each "
          f"(loopback, 1 uvicorn worker each)\n")
    print(f"{'call':<10} {'server':<12} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}  {'vs bare':>8}")
    ok = True
    for name, b, t in rows:
        ratio = t["rps"] / b["rps"]
        ok &= ratio >= 0.5
        print(f"{name:<10} {'bare':<12} {b['rps']:>9.0f} {b['p50']:>8.1f} {b['p99']:>8.1f} {b['errors']:>7}")
        print(f"{'':<10} {'tool server':<12} {t['rps']:>9.0f} {t['p50']:>8.1f} {t['p99']:>8.1f} {t['errors']:>7}"
              f"  {ratio:>7.0%}")
    print(f"\ntarget >= 50% of bare throughput: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
