"""RAPO step time on 1 vs 2 CPU workers (torchrun, gloo) on the same global batch, with the equality check.

Each run is `torchrun --nproc_per_node N` of `fathom.rl.dist_check` (through `benchmarks/_dist_worker.py`, which
applies the sensitivity control) on the tiny random Llama of the training tests (embedded tokenizer): `--prompts`
prompts × G = 2 scripted rollouts per step (the same global batch for every world size), `--steps` steps; a run's
figures are its medians, after the first (warm-up) step, of rank 0's wall time and CPU time per step, measured from
the trainer's step begin to step end (rollouts, scoring, forward/backward, all-reduce, AdamW). Runs are interleaved
(1 2, 2 1, 1 2, ...: `_harness.interleaved`) so that load drifts on the machine hit both arms alike; the summary gives
the median and min–max over rounds, the 2-worker/1-worker wall-time ratio (< 1: faster on 2 workers), and rollouts/s
per worker. The last round's runs are compared: loss and every updated weight (1 worker vs 2 workers).

The headline is rank 0's CPU seconds per step on 2 workers (wall time on a shared 2-core machine is mostly other
jobs' time); `--inject-slowdown F` makes every rank's trainer step do F times its CPU work.

    python benchmarks/bench_distributed.py [--quick] [--rounds 3] [--steps 3] [--prompts 4] [--inject-slowdown F]
    python benchmarks/bench_distributed.py --quick --two-only   # the headline arm only (its sensitivity test)

On a machine with 2 cores each worker gets one (OMP_NUM_THREADS=1); other jobs on the machine inflate every figure.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "train"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import _harness as H  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    H.add_common_args(p, rounds=3, quick_rounds=3)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--two-only", action="store_true",
                   help="only the 2-worker arm (the headline; no ratio, no equality check): the sensitivity test")
    a = p.parse_args(argv)
    from rapo_testkit import template_file, tiny_model_dir

    from fathom.llm.embedded import prepare_embedded
    from fathom.rl.dist_check import compare, run_world

    rounds = H.rounds_of(a)
    # the workers import benchmarks/_dist_worker.py and read the slowdown factor from the environment
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH", "")])
    os.environ[H.SLOWDOWN_ENV] = str(a.inject_slowdown)
    work = Path(tempfile.mkdtemp(prefix="bench-dist-"))
    model = tiny_model_dir(work, prepare_embedded())
    template = template_file(work)
    rollouts = a.prompts * 2
    H.banner(f"RAPO steps on 1 vs 2 CPU workers, a fixed global batch of {a.prompts} prompts × G = 2 = {rollouts} "
             f"rollouts; {a.steps} steps per run (first = warm-up)", a)
    done = {1: 0, 2: 0}

    def arm(n: int):
        def run() -> dict:
            r = done[n]
            done[n] += 1
            res = run_world(n, model=model, out=work / f"r{r}-w{n}", template=template, steps=a.steps,
                            prompts=a.prompts, timeout_s=1800, module="_dist_worker")
            wall = res["step_seconds"][1:] or res["step_seconds"]
            cpu = res["step_cpu_seconds"][1:] or res["step_cpu_seconds"]
            return {"s_per_step": H.spread(wall).median, "cpu_s_per_step": H.spread(cpu).median,
                    "loss": res["losses"][-1]}
        return run

    names = {1: "1 worker", 2: "2 workers"}
    res = H.interleaved([(names[n], arm(n)) for n in ((2,) if a.two_only else (1, 2))], rounds)
    print()
    for name, rows in res.items():
        print(f"{name:<9}: wall s per step {H.spread(H.column(rows, 's_per_step')).fmt(2)}, rank-0 CPU s per step "
              f"{H.spread(H.column(rows, 'cpu_s_per_step')).fmt(2)}")
    two, ok = res["2 workers"], True
    if a.two_only:
        print("--two-only: no 1-worker arm, ratio or equality check")
    else:
        one = res["1 worker"]
        ratios = H.ratios(two, one, "s_per_step")
        print(f"ratio 2 workers / 1 worker wall time per step (per round): {H.spread(ratios).fmt(2)}; "
              f"speed-up {1 / H.spread(ratios).median:.2f}×")
        for n, rows in ((1, one), (2, two)):
            sps = [rollouts / t / n for t in H.column(rows, "s_per_step")]
            print(f"rollouts/s per worker, {n} worker{'s' if n > 1 else ' '}: {H.spread(sps).fmt(2)}")
        last = rounds - 1
        diff = compare(work / f"r{last}-w1", work / f"r{last}-w2", initial=model)
        ok = diff["same_batch"] and diff["max_loss_diff"] <= 1e-6 and diff["max_weight_diff"] <= 1e-6
        print(f"equality (round {last + 1}): same global batch {diff['same_batch']}, max |loss diff| "
              f"{diff['max_loss_diff']:.2e}, max |weight diff| {diff['max_weight_diff']:.2e} (tolerance 1e-6 = 1% of "
              f"lr; largest weight change {diff['max_weight_change']:.2e}) → {'OK' if ok else 'MISMATCH'}")
    H.headline("rank-0 CPU seconds per RAPO step, 2 workers", H.column(two, "cpu_s_per_step"), "lower", unit="s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
