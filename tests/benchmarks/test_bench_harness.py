"""The shared benchmark machinery: the slowdown really multiplies CPU work (sync, coroutine, ASGI), spreads and
interleaving are what they say, /proc readings are sane."""

from __future__ import annotations

import asyncio
import os
import statistics
import time

from benchutil import H  # benchmarks/_harness.py


def _work(n: int = 20_000) -> int:
    s = 0
    for i in range(n):
        s += i * i
    return s


def _cpu_ratio(fn, slow, calls: int = 60) -> float:
    """CPU of `slow` over CPU of `fn`, calls alternating (contention on a shared machine hits both alike)."""
    fn(), slow()
    base = slowed = 0.0
    for _ in range(calls):
        t0 = time.thread_time()
        fn()
        t1 = time.thread_time()
        slow()
        base, slowed = base + (t1 - t0), slowed + (time.thread_time() - t1)
    return slowed / base


def test_slow_down_sync_doubles_cpu():
    ratio = _cpu_ratio(_work, H.slow_down(_work, 2.0))
    assert 1.6 < ratio < 2.6, ratio
    assert H.slow_down(_work, 1.0) is _work
    assert H.slow_down(_work, 2.0)(10) == _work(10)


def test_slow_down_coroutine_counts_only_its_own_steps():
    async def job(x):
        _work(100_000)
        await asyncio.sleep(0.05)  # the other task runs here (all of it after its first step): not to be burnt again
        _work(100_000)
        return x

    async def other():  # 5x the job's work: a slowdown that doubled it too would be far off the bound below
        for _ in range(5):
            _work(200_000)
            await asyncio.sleep(0)

    async def measure(fn, *a):
        t0 = time.thread_time()
        res = await fn(*a)
        return res, time.thread_time() - t0

    async def main():
        slow_job = H.slow_down(job, 2.0)
        base, alone, other_cpu, shared = [], [], [], []
        for _ in range(5):  # alternating: contention on a shared machine hits all alike; medians drop outliers
            base.append((await measure(job, 7))[1])
            alone.append((await measure(slow_job, 7))[1])
            other_cpu.append((await measure(other))[1])
            t0 = time.thread_time()
            _, (res, _) = await asyncio.gather(other(), measure(slow_job, 7))
            shared.append(time.thread_time() - t0)
        return res, *map(statistics.median, (base, alone, other_cpu, shared))

    res, base, alone, other_cpu, shared = asyncio.run(main())
    assert res == 7
    assert 1.5 < alone / base < 2.8, (base, alone)
    # both tasks' CPU together: the slowed job's own plus the other's once (doubled, it would be alone + 2 x other)
    assert shared < alone + other_cpu * 1.4, (alone, shared, other_cpu)


def test_slow_down_keeps_an_asgi_signature():
    seen = []

    class App:
        async def __call__(self, scope, receive, send):
            seen.append(scope["type"])

    wrapped = H.slow_down(App(), 2.0)
    asyncio.run(wrapped({"type": "http"}, None, None))
    assert seen == ["http"]
    import inspect

    assert list(inspect.signature(wrapped).parameters) == ["scope", "receive", "send"]


def test_patch_slowdown_classmethod_and_method():
    class K:
        @classmethod
        def make(cls, n):
            return cls, _work(n)

        def run(self, n):
            return _work(n)

    H.patch_slowdown(K, "make", 2.0)
    H.patch_slowdown(K, "run", 2.0)
    assert K.make(10) == (K, _work(10)) and K().run(10) == _work(10)


def test_spread_ratios_and_interleaving():
    s = H.spread([3.0, 1.0, 2.0, 10.0])
    assert (s.median, s.lo, s.hi, s.n, s.width) == (2.5, 1.0, 10.0, 4, 9.0)
    assert s.fmt(1, " ms") == "2.5 ms [1.0–10.0]"
    order = []
    res = H.interleaved([("A", lambda: order.append("A") or {"x": 2.0}), ("B", lambda: order.append("B") or {"x": 1.0})],
                        4, log=False)
    assert order == ["A", "B", "B", "A", "A", "B", "B", "A"]
    assert H.ratios(res["A"], res["B"], "x") == [2.0] * 4
    assert H.pct([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 50) == 5 and H.pct([1, 2, 3], 99) == 3


def test_proc_readings_of_this_process():
    t0 = H.proc_cpu_seconds(os.getpid())
    _work(2_000_000)
    assert H.proc_cpu_seconds(os.getpid()) > t0
    assert 5 < H.proc_rss_peak_mb(os.getpid()) < 10_000
    assert len(H.loadavg().split()) == 3
