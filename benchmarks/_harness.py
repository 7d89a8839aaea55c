"""Shared machinery of the benchmark scripts: interleaved rounds, medians with min–max, the machine's load average,
the sensitivity control (``--inject-slowdown``), CPU seconds of a process from ``/proc`` and a ``wrk`` driver.

Every script

- runs its arms in interleaved rounds (A B, B A, A B, ... — the order flips every round so that a drifting load
  hits both arms alike) and prints the median and the min–max of each figure and of the per-round ratio;
- prints the load average before and after (``load_line``);
- accepts ``--quick`` (a couple of minutes at most) and ``--inject-slowdown F``, which wraps the code under test so
  that it does F times its CPU work (``slow_down``: after each call, or each step of a coroutine, it burns
  (F - 1) × the thread CPU time the call took). A benchmark whose headline figure does not move under
  ``--inject-slowdown 2`` cannot see a regression;
- ends with one ``HEADLINE {json}`` line (``headline``): the figure the sensitivity test in
  ``tests/benchmarks`` compares with and without the slowdown.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import math
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SLOWDOWN_ENV = "FATHOM_BENCH_SLOWDOWN"


# ---------------------------------------------------------------------------------------------- arguments, load
def add_common_args(ap: argparse.ArgumentParser, *, rounds: int = 5, quick_rounds: int = 3) -> None:
    ap.add_argument("--quick", action="store_true", help="small sizes: a couple of minutes at most")
    ap.add_argument("--rounds", type=int, default=None,
                    help=f"interleaved rounds per arm (default {rounds}, {quick_rounds} with --quick)")
    ap.add_argument("--inject-slowdown", type=float, default=1.0, metavar="F",
                    help="sensitivity control: the code under test does F times its CPU work (e.g. 2)")
    ap.set_defaults(_rounds_default=(rounds, quick_rounds))


def rounds_of(args: argparse.Namespace) -> int:
    full, quick = args._rounds_default
    return args.rounds or (quick if args.quick else full)


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:  # not Linux
        return " ".join(f"{x:.2f}" for x in os.getloadavg())


def load_line(when: str) -> str:
    line = f"load average {when}: {loadavg()}  ({os.cpu_count()} CPUs)"
    print(line, flush=True)
    return line


def banner(title: str, args: argparse.Namespace) -> None:
    print(f"== {title}")
    extra = f"  inject-slowdown x{args.inject_slowdown:g}" if args.inject_slowdown != 1 else ""
    print(f"   {'quick' if args.quick else 'full'} mode, {rounds_of(args)} interleaved rounds{extra}")
    load_line("before")


# ---------------------------------------------------------------------------------------------- statistics
@dataclass
class Spread:
    median: float
    lo: float
    hi: float
    n: int

    def fmt(self, digits: int = 2, unit: str = "") -> str:
        f = f"{{:,.{digits}f}}"
        return f"{f.format(self.median)}{unit} [{f.format(self.lo)}–{f.format(self.hi)}]"

    @property
    def width(self) -> float:
        return self.hi - self.lo


def spread(xs: Sequence[float]) -> Spread:
    xs = [float(x) for x in xs]
    return Spread(statistics.median(xs), min(xs), max(xs), len(xs))


def pct(xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


def interleaved(arms: Sequence[tuple[str, Callable[[], dict]]], rounds: int, *, log: bool = True
                ) -> dict[str, list[dict]]:
    """Run each arm once per round, the order flipping every round; returns the per-round figures of each arm."""
    out: dict[str, list[dict]] = {name: [] for name, _ in arms}
    for r in range(rounds):
        for name, fn in (arms if r % 2 == 0 else list(reversed(arms))):
            res = fn()
            out[name].append(res)
            if log:
                shown = ", ".join(f"{k} {v:.4g}" for k, v in res.items() if isinstance(v, (int, float)))
                print(f"   round {r + 1}/{rounds} {name:<14} {shown}", flush=True)
    return out


def column(rows: list[dict], key: str) -> list[float]:
    return [r[key] for r in rows]


def ratios(a: list[dict], b: list[dict], key: str) -> list[float]:
    """Per-round a[key] / b[key]."""
    return [x[key] / y[key] for x, y in zip(a, b)]


def headline(name: str, values: Sequence[float], better: str, unit: str = "", target: str = "") -> dict:
    """The one figure the sensitivity test watches; ``better`` is 'higher' or 'lower'."""
    s = spread(values)
    rec = {"name": name, "median": s.median, "min": s.lo, "max": s.hi, "n": s.n, "better": better, "unit": unit,
           "target": target}
    load_line("after")
    print("HEADLINE " + json.dumps(rec), flush=True)
    return rec


# ---------------------------------------------------------------------------------------------- sensitivity control
def burn(seconds: float) -> None:
    """Spin on this thread's CPU for `seconds` of CPU time."""
    if seconds <= 0:
        return
    end = time.thread_time() + seconds
    x = 0
    while time.thread_time() < end:
        for i in range(20):
            x += i * i


@types.coroutine
def _drive(coro, extra: float):
    """Drive `coro` as its awaiting Task would, timing the thread CPU of each of its steps; burn `extra` × that."""
    value, exc = None, None
    while True:
        t0 = time.thread_time()
        try:
            yielded = coro.throw(exc) if exc is not None else coro.send(value)
        except StopIteration as stop:
            burn(extra * (time.thread_time() - t0))
            return stop.value
        burn(extra * (time.thread_time() - t0))
        try:
            value, exc = (yield yielded), None
        except BaseException as e:  # noqa: BLE001 - re-thrown into the coroutine
            value, exc = None, e


def slow_down(fn: Callable, factor: float) -> Callable:
    """`fn` doing `factor` times its CPU work (sync functions, coroutine functions and ASGI apps alike).

    Only the CPU time of the call itself counts (for a coroutine, of its own steps, not of other tasks that run
    while it waits), so the added work is proportional to the work of the code under test at any concurrency."""
    if factor == 1:
        return fn
    extra = factor - 1
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def awrapper(*a, **kw):
            return await _drive(fn(*a, **kw).__await__(), extra)

        return awrapper
    if callable(fn) and inspect.iscoroutinefunction(type(fn).__call__):  # an ASGI app: keep its 3 arguments
        async def asgi(scope, receive, send):
            return await _drive(fn(scope, receive, send).__await__(), extra)

        return asgi

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        t0 = time.thread_time()
        try:
            return fn(*a, **kw)
        finally:
            burn(extra * (time.thread_time() - t0))

    return wrapper


def patch_slowdown(owner: Any, attr: str, factor: float) -> None:
    """Replace `owner.attr` (a function, method or classmethod) with its slowed-down version, for the process."""
    if factor == 1:
        return
    raw = inspect.getattr_static(owner, attr)
    if isinstance(raw, classmethod):
        setattr(owner, attr, classmethod(slow_down(raw.__func__, factor)))
    elif isinstance(raw, staticmethod):
        setattr(owner, attr, staticmethod(slow_down(raw.__func__, factor)))
    else:
        setattr(owner, attr, slow_down(raw, factor))


# ---------------------------------------------------------------------------------------------- processes, /proc
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` (all its threads) from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15 of the man page)


def proc_rss_peak_mb(pid: int) -> float:
    """VmHWM (peak resident set) of process `pid` in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(code: str, *args: str, port: int | None = None, env: dict | None = None,
                 health: str | None = None, timeout_s: float = 60.0) -> tuple[subprocess.Popen, str]:
    """`python -c code PORT *args` in its own process (stdout discarded); waits until the port accepts (and
    `health` answers 200 when given). Returns the process and its base URL."""
    port = port or free_port()
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}"
                f"{os.environ.get('PYTHONPATH', '')}", **(env or {})}
    proc = subprocess.Popen([sys.executable, "-c", code, str(port), *args], cwd=ROOT, env=full_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server died: {proc.stderr.read().decode()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                pass
            if health is None:
                return proc, url
            import httpx

            if httpx.get(url + health, timeout=2).status_code == 200:
                return proc, url
        except Exception:  # noqa: BLE001, S110 - not accepting yet (OSError, httpx errors while starting)
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not start")


def stop(procs: Sequence[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


# ---------------------------------------------------------------------------------------------- wrk
WRK_LUA = r"""
wrk.method = "%(method)s"
wrk.headers["Content-Type"] = "application/json"
wrk.body = %(body)s

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, ' ..
    '"max_us": %%d, "connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(s: str) -> str:
    return "[==[" + s + "]==]"


def wrk(url: str, *, body: dict | None = None, method: str = "POST", connections: int = 64, threads: int = 1,
        seconds: float = 5.0, server_pid: int | None = None) -> dict:
    """Drive `url` with wrk (keep-alive, `connections` open connections) for `seconds`.

    Returns req/s, p50/p99 (ms), errors (connect/read/write/timeouts and non-2xx), wrk's own CPU seconds per
    request (from its rusage) and, given `server_pid`, the server's CPU seconds per request (from /proc)."""
    if not have_wrk():
        raise RuntimeError("wrk is not installed (Debian: apt-get install -y wrk)")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_LUA % {"method": method, "body": _lua_string(json.dumps(body)) if body is not None else "nil"})
        script = f.name
    try:
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu0 = proc_cpu_seconds(server_pid) if server_pid else 0.0
        proc = subprocess.Popen(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s",
                                 "--timeout", "10s", "-s", script, url], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        out, err = proc.communicate()  # reaps wrk: its CPU lands in RUSAGE_CHILDREN (servers are not reaped yet)
        cpu1 = proc_cpu_seconds(server_pid) if server_pid else 0.0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        os.unlink(script)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed: {err[-2000:]}")
    line = next((ln for ln in out.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"no summary from wrk: {out[-2000:]}")
    s = json.loads(line[8:])
    n = max(1, s["requests"])
    errors = s["connect"] + s["read"] + s["write"] + s["status"] + s["timeout"]
    return {"rps": s["requests"] / (s["duration_us"] / 1e6), "p50_ms": s["p50_us"] / 1000,
            "p99_ms": s["p99_us"] / 1000, "requests": s["requests"], "errors": errors,
            "server_cpu_ms_per_req": 1000 * (cpu1 - cpu0) / n if server_pid else float("nan"),
            "client_cpu_ms_per_req": 1000 * (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / n}
