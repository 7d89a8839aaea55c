"""The shared benchmark machinery: the slowdown really multiplies CPU work (sync, coroutine, ASGI), spreads and
interleaving are what they say, /proc readings are sane."""

from __future__ import annotations

import asyncio
import os
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
        await asyncio.sleep(0.001)  # another task runs here: its CPU must not be burnt again
        _work(100_000)
        return x

    async def other():
        for _ in range(5):
            _work(40_000)
            await asyncio.sleep(0)

    async def measure(fn):
        t0 = time.thread_time()
        res = await fn(7)
        return res, time.thread_time() - t0

    async def main():
        slow_job = H.slow_down(job, 2.0)
        base = alone = 0.0
        for _ in range(5):  # alternating: contention on a shared machine hits both alike
            base += (await measure(job))[1]
            alone += (await measure(slow_job))[1]
        res, _ = await measure(slow_job)
        _, (_, shared) = await asyncio.gather(other(), measure(slow_job))
        return res, base, alone, shared

    res, base, alone, shared = asyncio.run(main())
    assert res == 7
    assert 1.5 < alone / base < 2.8, (base, alone)
    t0 = time.thread_time()
    asyncio.run(other())
    other_cpu = time.thread_time() - t0
    assert shared < alone / 5 + other_cpu * 1.5, (alone, shared, other_cpu)  # the other task's work is not doubled


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
