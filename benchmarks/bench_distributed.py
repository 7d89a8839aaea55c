"""RAPO step time on 1 vs 2 CPU workers (torchrun, gloo) on the same global batch, with the equality check.

Each run is `torchrun --nproc_per_node N -m fathom.rl.dist_check` on the tiny random Llama of the training tests
(embedded tokenizer): `--prompts` prompts × G = 2 scripted rollouts per step (the same global batch for every world
size), `--steps` steps; a run's figure is its median wall time per step after the first (warm-up) step, measured
from the trainer's step begin to step end (rollouts, scoring, forward/backward, all-reduce, AdamW). Runs are
interleaved (1, 2, 1, 2, ...) so that load drifts on the machine hit both arms alike; the summary gives the median and
min–max over rounds, the 2-worker/1-worker time ratio (< 1: faster on 2 workers), and rollouts/s per worker. The
last round's runs are compared: loss and every updated weight (1 worker vs 2 workers).

    python benchmarks/bench_distributed.py [--rounds 3] [--steps 3] [--prompts 4]

On a machine with 2 cores each worker gets one (OMP_NUM_THREADS=1); other jobs on the machine inflate every figure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "train"))


def _fmt(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f} s (min–max {min(xs):.2f}–{max(xs):.2f})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--prompts", type=int, default=4)
    a = p.parse_args(argv)
    from rapo_testkit import template_file, tiny_model_dir

    from fathom.llm.embedded import prepare_embedded
    from fathom.rl.dist_check import compare, run_world

    work = Path(tempfile.mkdtemp(prefix="bench-dist-"))
    model = tiny_model_dir(work, prepare_embedded())
    template = template_file(work)
    rollouts = a.prompts * 2
    per_step: dict[int, list[float]] = {1: [], 2: []}
    print(f"RAPO steps on a fixed global batch of {a.prompts} prompts × G = 2 = {rollouts} rollouts; "
          f"{a.steps} steps per run (first = warm-up), {a.rounds} interleaved rounds")
    print(f"{'round':>5} {'workers':>7} {'s/step (median of run)':>24} {'steps timed':>12} {'loss':>10}")
    for r in range(a.rounds):
        for n in (1, 2):
            res = run_world(n, model=model, out=work / f"r{r}-w{n}", template=template, steps=a.steps,
                            prompts=a.prompts, timeout_s=1800)
            timed = res["step_seconds"][1:] or res["step_seconds"]
            t = statistics.median(timed)
            per_step[n].append(t)
            print(f"{r + 1:>5} {n:>7} {t:>24.2f} {len(timed):>12} {res['losses'][-1]:>10.6f}")
    t1, t2 = per_step[1], per_step[2]
    ratios = [b / x for x, b in zip(t1, t2)]
    print()
    print(f"time per step, 1 worker : {_fmt(t1)}")
    print(f"time per step, 2 workers: {_fmt(t2)}")
    print(f"ratio 2 workers / 1 worker (per round): median {statistics.median(ratios):.2f} "
          f"(min–max {min(ratios):.2f}–{max(ratios):.2f}); speed-up {1 / statistics.median(ratios):.2f}×")
    for n, ts in per_step.items():
        sps = [rollouts / t / n for t in ts]
        print(f"rollouts/s per worker, {n} worker{'s' if n > 1 else ' '}: median {statistics.median(sps):.2f} "
              f"(min–max {min(sps):.2f}–{max(sps):.2f})")
    last = a.rounds - 1
    diff = compare(work / f"r{last}-w1", work / f"r{last}-w2", initial=model)
    ok = diff["same_batch"] and diff["max_loss_diff"] <= 1e-6 and diff["max_weight_diff"] <= 1e-6
    print(f"equality (round {last + 1}): same global batch {diff['same_batch']}, max |loss diff| "
          f"{diff['max_loss_diff']:.2e}, max |weight diff| {diff['max_weight_diff']:.2e} (tolerance 1e-6 = 1% of lr; "
          f"largest weight change {diff['max_weight_change']:.2e}) → {'OK' if ok else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
