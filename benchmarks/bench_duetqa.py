"""DuetQA throughput and dedup speed.

1. Items/s through the full funnel (generate -> check -> obfuscate -> verify -> finalise) with instant stub
   endpoints on loopback (real HTTP, real agent loop): the orchestration overhead. Baseline in the same run: the
   same items with one item in flight (no concurrency).
2. Items/s with the embedded model (SmolLM2 for every role, the offline stack), tiny n.
3. Dedup speed on N synthetic questions: vectorised MinHash + banded LSH (ours) vs normalised-exact dedup (the
   baseline) vs per-item `datasketch.MinHash` + `MinHashLSH` (measured on a subset, extrapolated).

    python benchmarks/bench_duetqa.py --quick      # < 2 min on an idle 2-core box
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path


def bench_stub(n: int, in_flight: int) -> tuple[float, float]:
    from fathom.selfplay.config import DuetQAConfig
    from fathom.selfplay.dedup import default_benchmarks_dir, leakage_index
    from fathom.selfplay.runner import run_duetqa
    from fathom.selfplay.stub import DuetQAStub, serve_stub

    leakage_index(default_benchmarks_dir())  # warm the per-process cache: measure the funnel, not the index build
    out = Path(tempfile.mkdtemp(prefix="bench-duetqa-"))
    try:
        with serve_stub(DuetQAStub(easy_every=3)) as (role, tools):
            cfg = DuetQAConfig(n=n, m1=role, m2=role, m3=role, judge=role, max_in_flight=in_flight,
                               role_concurrency=max(4, in_flight))
            t0 = time.perf_counter()
            res = run_duetqa(cfg, out, tools_url=tools, show_progress=False)
            dt = time.perf_counter() - t0
        assert res.n_done == n
        return n / dt, dt
    finally:
        shutil.rmtree(out, ignore_errors=True)


def bench_embedded(n: int) -> tuple[float, float, dict]:
    from fathom.selfplay.config import AgentBudget, DuetQAConfig
    from fathom.selfplay.runner import run_duetqa

    out = Path(tempfile.mkdtemp(prefix="bench-duetqa-emb-"))
    try:
        cfg = DuetQAConfig(n=n, agent=AgentBudget(max_turns=1, max_tokens_per_turn=48), compose_max_tokens=96,
                           obfuscate_max_tokens=48, no_search_max_tokens=24, max_in_flight=1)
        t0 = time.perf_counter()
        res = run_duetqa(cfg, out, show_progress=False)
        dt = time.perf_counter() - t0
        return n / dt, dt, res.funnel
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


def bench_dedup(n: int, sub: int) -> dict:
    from fathom.selfplay.dedup import dedup, exact_dedup

    items = synthetic_questions(n)
    t0 = time.perf_counter()
    kept_e, _ = exact_dedup(items)
    t_exact = time.perf_counter() - t0
    t0 = time.perf_counter()
    kept_m, dropped = dedup(items, threshold=0.8)
    t_mh = time.perf_counter() - t0
    near = sum(1 for r, _ in dropped.values() if r == "near_duplicate")
    # datasketch per-item objects on a subset
    from datasketch import MinHash, MinHashLSH

    from fathom.selfplay.text import shingles

    t0 = time.perf_counter()
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    for key, text in items[:sub]:
        m = MinHash(num_perm=128)
        m.update_batch([s.encode() for s in shingles(text)])
        if not lsh.query(m):
            lsh.insert(key, m)
    t_ds = (time.perf_counter() - t0) * n / sub
    return {"n": n, "exact_s": t_exact, "exact_kept": len(kept_e), "minhash_s": t_mh, "minhash_kept": len(kept_m),
            "near_found": near, "datasketch_s_extrapolated": t_ds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small counts (< 2 min)")
    ap.add_argument("--skip-embedded", action="store_true")
    args = ap.parse_args()
    n_stub = 16 if args.quick else 200
    n_dedup = 100_000
    sub = 2_000 if args.quick else 10_000

    print("== DuetQA funnel on instant stub endpoints (orchestration overhead) ==")
    ips1, dt1 = bench_stub(n_stub, 1)
    ips8, dt8 = bench_stub(n_stub, 8)
    print(f"{'items':>6} {'in flight':>10} {'wall s':>8} {'items/s':>8}")
    print(f"{n_stub:>6} {1:>10} {dt1:>8.2f} {ips1:>8.2f}   (baseline: sequential)")
    print(f"{n_stub:>6} {8:>10} {dt8:>8.2f} {ips8:>8.2f}   (x{ips8 / ips1:.1f})")

    if not args.skip_embedded:
        print("\n== DuetQA funnel on the embedded model (SmolLM2, offline stack) ==")
        n_emb = 1 if args.quick else 4
        ips, dt, funnel = bench_embedded(n_emb)
        print(f"items {n_emb}  wall {dt:.1f}s  items/s {ips:.3f}  funnel {funnel}")

    print(f"\n== Dedup of {n_dedup:,} questions ==")
    d = bench_dedup(n_dedup, sub)
    print(f"{'method':<38} {'seconds':>8} {'kept':>8}")
    print(f"{'exact (normalised text), baseline':<38} {d['exact_s']:>8.2f} {d['exact_kept']:>8}")
    print(f"{'exact + MinHash LSH (ours, vectorised)':<38} {d['minhash_s']:>8.2f} {d['minhash_kept']:>8}"
          f"   near-dups found {d['near_found']}")
    print(f"{'datasketch per-item MinHash+LSH':<38} {d['datasketch_s_extrapolated']:>8.2f} {'-':>8}"
          f"   (extrapolated from {sub:,})")


if __name__ == "__main__":
    main()
