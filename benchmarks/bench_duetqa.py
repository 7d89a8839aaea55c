"""DuetQA orchestration cost and dedup speed.

1. The full funnel (generate -> check -> obfuscate -> verify -> finalise) against instant stub endpoints (a stub
   OpenAI-compatible model and the stub tool server, each in its own uvicorn process on loopback: real HTTP, real
   agent loop). The benchmark's process then holds only the funnel, so its CPU seconds per item
   (`time.process_time`) are the orchestration's own cost; items/s is printed at 1 and at 8 items in flight. There
   is no baseline to divide by (no other implementation of the funnel exists), so no ratio is printed.
2. Dedup of N synthetic questions (5 % exact and 5 % near duplicates): normalised exact-match dedup (the baseline),
   our exact + vectorised MinHash/banded LSH, and per-item `datasketch.MinHash` + `MinHashLSH` on a stated subset
   (its own measured items/s; it is never extrapolated).
3. Optional (`--embedded`): the funnel on the embedded model (SmolLM2 for every role, the offline stack), tiny n,
   with the funnel counts; a run that produced no item is reported as such, not as a throughput.

    python benchmarks/bench_duetqa.py --quick                # about 1 min
    python benchmarks/bench_duetqa.py --inject-slowdown 2    # run_duetqa and dedup do twice their work
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H

STUBS = r'''
import sys, uvicorn
port, kind = int(sys.argv[1]), sys.argv[2]
if kind == "model":
    from fathom.llm.scripted import ScriptedClient
    from fathom.llm.server import create_openai_app
    from fathom.selfplay.stub import DuetQAStub
    app = create_openai_app(ScriptedClient(DuetQAStub(easy_every=3), model="stub"))
else:
    from fathom.agent.testing import stub_tools_app
    app = stub_tools_app()
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
'''


def bench_stub(role: str, tools: str, n: int, in_flight: int) -> dict:
    from fathom.selfplay import runner
    from fathom.selfplay.config import DuetQAConfig

    out = Path(tempfile.mkdtemp(prefix="bench-duetqa-"))
    try:
        cfg = DuetQAConfig(n=n, m1=role, m2=role, m3=role, judge=role, max_in_flight=in_flight,
                           role_concurrency=max(4, in_flight))
        cpu0, t0 = time.process_time(), time.perf_counter()
        res = runner.run_duetqa(cfg, out, tools_url=tools, show_progress=False)
        dt, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        assert res.n_done == n, res
        return {"items_per_s": n / dt, "cpu_ms_per_item": 1000 * cpu / n, "wall_s": dt}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def bench_embedded(n: int) -> tuple[float, int, dict]:
    from fathom.selfplay.config import AgentBudget, DuetQAConfig
    from fathom.selfplay.runner import run_duetqa

    out = Path(tempfile.mkdtemp(prefix="bench-duetqa-emb-"))
    try:
        cfg = DuetQAConfig(n=n, agent=AgentBudget(max_turns=1, max_tokens_per_turn=48), compose_max_tokens=96,
                           obfuscate_max_tokens=48, no_search_max_tokens=24, max_in_flight=1)
        t0 = time.perf_counter()
        res = run_duetqa(cfg, out, show_progress=False)
        return time.perf_counter() - t0, res.kept, res.funnel
    finally:
        shutil.rmtree(out, ignore_errors=True)


def synthetic_questions(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(5000)]
    base = []
    out = []
    for i in range(n):
        r = rng.random()
        if base and r < 0.05:  # exact duplicate (case/punctuation changes)
            out.append((f"q{i}", rng.choice(base).upper() + "?"))
        elif base and r < 0.10:  # near duplicate: one word changed
            words = rng.choice(base).split()
            words[rng.randrange(len(words))] = rng.choice(vocab)
            out.append((f"q{i}", " ".join(words)))
        else:
            q = "which " + " ".join(rng.choice(vocab) for _ in range(rng.randint(12, 24)))
            base.append(q)
            out.append((f"q{i}", q))
    return out


def dedup_exact(items) -> dict:
    from fathom.selfplay import dedup as d

    t0 = time.perf_counter()
    kept, _ = d.exact_dedup(items)
    return {"items_per_s": len(items) / (time.perf_counter() - t0), "kept": len(kept)}


def dedup_ours(items) -> dict:
    from fathom.selfplay import dedup as d

    t0 = time.perf_counter()
    kept, dropped = d.dedup(items, threshold=0.8)
    dt = time.perf_counter() - t0
    return {"items_per_s": len(items) / dt, "kept": len(kept),
            "near": sum(1 for r, _ in dropped.values() if r == "near_duplicate")}


def dedup_datasketch(items) -> dict:
    from datasketch import MinHash, MinHashLSH

    from fathom.selfplay.text import shingles

    t0 = time.perf_counter()
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    kept = 0
    for key, text in items:
        m = MinHash(num_perm=128)
        m.update_batch([s.encode() for s in shingles(text)])
        if not lsh.query(m):
            lsh.insert(key, m)
            kept += 1
    return {"items_per_s": len(items) / (time.perf_counter() - t0), "kept": kept}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    H.add_common_args(ap, rounds=5, quick_rounds=3)
    ap.add_argument("--items", type=int, default=None, help="funnel items per measurement (100; 16 with --quick)")
    ap.add_argument("--dedup", type=int, default=None, help="questions to dedup (100,000; 30,000 with --quick)")
    ap.add_argument("--datasketch", type=int, default=None, help="datasketch subset (10,000; 2,000 with --quick)")
    ap.add_argument("--embedded", action="store_true", help="also run the funnel on the embedded model")
    args = ap.parse_args()
    n_stub = args.items or (16 if args.quick else 100)
    n_dedup = args.dedup or (30_000 if args.quick else 100_000)
    sub = args.datasketch or (2_000 if args.quick else 10_000)
    rounds = H.rounds_of(args)

    from fathom.selfplay import dedup as dedup_mod
    from fathom.selfplay import runner
    from fathom.selfplay.dedup import default_benchmarks_dir, leakage_index

    H.patch_slowdown(runner, "run_duetqa", args.inject_slowdown)
    H.patch_slowdown(dedup_mod, "dedup", args.inject_slowdown)
    H.banner(f"DuetQA: funnel on instant stubs ({n_stub} items), dedup of {n_dedup:,} questions", args)
    leakage_index(default_benchmarks_dir())  # warm the per-process cache: measure the funnel, not the index build

    procs = []
    try:
        model_p, model_url = H.start_server(STUBS, "model", health="/health")
        procs.append(model_p)
        tools_p, tools_url = H.start_server(STUBS, "tools", health="/healthz")
        procs.append(tools_p)
        role = f"{model_url}/v1#stub"
        bench_stub(role, tools_url, 4, 4)  # warm-up
        print("-- funnel")
        funnel = H.interleaved([("1 in flight", lambda: bench_stub(role, tools_url, n_stub, 1)),
                                ("8 in flight", lambda: bench_stub(role, tools_url, n_stub, 8))], rounds)
    finally:
        H.stop(procs)

    print("-- dedup")
    items = synthetic_questions(n_dedup)
    dd = H.interleaved([("exact", lambda: dedup_exact(items)), ("ours", lambda: dedup_ours(items)),
                        ("datasketch", lambda: dedup_datasketch(items[:sub]))], rounds)

    print(f"\nfunnel on instant stubs (stubs in their own processes), {n_stub} items per run")
    print(f"{'in flight':>10} {'items/s':>24} {'funnel CPU ms/item':>24}")
    for name, rows in funnel.items():
        print(f"{name.split()[0]:>10} {H.spread(H.column(rows, 'items_per_s')).fmt(2):>24} "
              f"{H.spread(H.column(rows, 'cpu_ms_per_item')).fmt(1):>24}")
    print("\ndedup, items/s (median [min–max]); kept")
    print(f"{'exact (normalised text), baseline':<40} {H.spread(H.column(dd['exact'], 'items_per_s')).fmt(0):>30} "
          f"{dd['exact'][0]['kept']:>8}   on {n_dedup:,}")
    print(f"{'exact + MinHash LSH (ours, vectorised)':<40} {H.spread(H.column(dd['ours'], 'items_per_s')).fmt(0):>30} "
          f"{dd['ours'][0]['kept']:>8}   on {n_dedup:,}, near-dups found {dd['ours'][0]['near']}")
    print(f"{'datasketch per-item MinHash + LSH':<40} "
          f"{H.spread(H.column(dd['datasketch'], 'items_per_s')).fmt(0):>30} {dd['datasketch'][0]['kept']:>8}"
          f"   on the first {sub:,} only")
    ratio = H.spread(H.ratios(dd["ours"], dd["datasketch"], "items_per_s"))
    print(f"ours / datasketch items/s: {ratio.fmt(1, 'x')} (datasketch on a {sub:,} subset, ours on {n_dedup:,})")

    if args.embedded:
        print("\n== DuetQA funnel on the embedded model (SmolLM2, offline stack) ==")
        n_emb = 1 if args.quick else 4
        dt, kept, f = bench_embedded(n_emb)
        if kept == 0:
            print(f"items asked {n_emb}, wall {dt:.1f} s, funnel {f}: kept no item, so no throughput figure")
        else:
            print(f"items asked {n_emb}, kept {kept}, wall {dt:.1f} s ({kept / dt:.3f} kept items/s), funnel {f}")
    H.headline("funnel CPU ms per item, 8 in flight", H.column(funnel["8 in flight"], "cpu_ms_per_item"), "lower",
               "ms")


if __name__ == "__main__":
    main()
