"""Does the embedded agent learn? Base model vs warm start vs warm start + RAPO, on held-out offline-web questions.

Held-out means a different world: the questions come from the offline web of seed 1000 (its own entities, names
and pages), served by its own tool server; every training question (warm start, RAPO) comes from the world of
seed 0. All three arms run the same agent loop (`fathom.agent.run_agent`), greedy, with the same budget and the
same tool server settings, through the evaluation harness (resumable: a rerun reuses finished rows).

Printed as one table: accuracy with its 95 % bootstrap interval, tool calls per question, the share of
trajectories with at least one tool call, the format-valid rate (`fathom.rl.rewards.check_format`) and the paired
deltas (warm − base, RAPO − warm) with 95 % bootstrap intervals; then the RAPO run's share of steps with a non-zero
gradient and its reward parts, and the time of each phase.

    python benchmarks/bench_learning.py                 # 200 held-out questions (1–3 hops), ~1 h on 2 cores
    python benchmarks/bench_learning.py --n 40 --quick  # a smaller check
    # reuse the policy of a retrain run (its RAPO stage folders, in order) instead of training one here:
    python benchmarks/bench_learning.py --rapo-run ROOT/<run>/rapo-stage1/model.work ROOT/<run>/rapo-stage2/model.work
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")



def eval_config(policy: str, out: Path, n: int, concurrency: int) -> dict:
    """The held-out evaluation every arm gets (the retrain pipeline's local gate uses the same settings; greedy, so
    the number of questions in flight changes the speed, not the answers)."""
    from fathom.evaluate.heldout import heldout_eval_config

    return {**heldout_eval_config(n, policy=policy), "out": str(out), "concurrency": concurrency}


def run_arm(policy: str, out: Path, n: int, concurrency: int = 16) -> list[dict]:
    from fathom.evaluate.runner import EvalConfig, read_results, run_eval

    cfg = EvalConfig.model_validate({**eval_config(policy, out, n, concurrency), "datasets": ["offline-web"],
                                     "progress": True})
    run_eval(cfg)
    return sorted(read_results(out / "results.jsonl"), key=lambda r: r["id"])


def format_ok(row: dict) -> bool:
    from fathom.agent.format import model_turn_texts, preset_schemas
    from fathom.rl.rewards import check_format

    return check_format(model_turn_texts(row.get("transcript") or ""), preset_schemas("fathom")).ok


def bootstrap(values: np.ndarray, n: int = 4000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n, len(values)))
    means = values[idx].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def summarise(rows: list[dict]) -> dict:
    correct = np.array([float(r["correct"]) for r in rows])
    calls = np.array([r["tool_calls"] for r in rows], dtype=float)
    lo, hi = bootstrap(correct)
    return {"n": len(rows), "acc": correct.mean(), "lo": lo, "hi": hi, "calls": calls.mean(),
            "any_call": float((calls >= 1).mean()), "format": float(np.mean([format_ok(r) for r in rows])),
            "correct": correct}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="Held-out questions (split evenly over 1, 2, 3 hops).")
    ap.add_argument("--work", type=Path, default=Path(".cache/bench-learning"), help="Work folder (resumable).")
    ap.add_argument("--rapo-prompts", type=int, default=8, help="Training prompts of the RAPO run (world seed 0).")
    ap.add_argument("--quick", action="store_true", help="RAPO on 4 prompts (fewer steps).")
    ap.add_argument("--concurrency", type=int, default=16, help="Questions in flight (one decode batch).")
    ap.add_argument("--rapo-run", type=Path, nargs="+", default=None,
                    help="RAPO output folders (metrics.jsonl, summary.json, final/) of an earlier run, in training "
                         "order — e.g. a retrain run's rapo-stage1 and rapo-stage2 `model.work` — instead of "
                         "training RAPO here; the last one's final/ is the 'warm start + RAPO' arm.")
    a = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    from fathom.evaluate.heldout import HELD_OUT_WORLD_SEED
    from fathom.llm.embedded import prepare_embedded
    from fathom.rl.data import offline_rows, write_jsonl
    from fathom.rl.stage import SearchTrainSpec, train_search
    from fathom.rl.warmstart import WarmStartSpec, load_preset, train_warmstart

    work = a.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    times: dict[str, float] = {}

    t0 = time.perf_counter()
    prepare_embedded()
    ws = train_warmstart(WarmStartSpec(out_dir=work / "warmstart", config=load_preset("cpu")))
    times["warm start" + (" (cached)" if ws.get("cached_from") else "")] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if a.rapo_run:
        runs = [d.resolve() for d in a.rapo_run]
        missing = [str(d) for d in runs if not (d / "final" / ".complete").exists()]
        if missing:
            ap.error(f"--rapo-run: no finished RAPO run (final/.complete) in {', '.join(missing)}")
        rapo = json.loads((runs[-1] / "summary.json").read_text())
    else:
        n_prompts = 4 if a.quick else a.rapo_prompts
        rows = []
        for h, k in ((1, n_prompts // 2), (2, n_prompts - n_prompts // 2)):
            rows += offline_rows(k, hops=h, seed=7)
        write_jsonl(rows, work / "rapo-prompts.jsonl")
        rapo = train_search(SearchTrainSpec(out_dir=work / "rapo", preset="cpu", stage=1, model=ws["final"],
                                            data=work / "rapo-prompts.jsonl", resume=True))
        runs = [work / "rapo"]
        times["RAPO stage 1"] = time.perf_counter() - t0

    arms = {"base (SmolLM2-135M)": "local:smollm2", "warm start": f"local:{ws['final']}",
            "warm start + RAPO": f"local:{rapo['final']}"}
    results = {}
    for name, policy in arms.items():
        t0 = time.perf_counter()
        slug = name.split(" (")[0].replace(" + ", "-").replace(" ", "-")
        results[name] = summarise(run_arm(policy, work / f"eval-{slug}", a.n, a.concurrency))
        times[f"eval {name}"] = time.perf_counter() - t0

    print(f"\nHeld-out offline web (world seed {HELD_OUT_WORLD_SEED}, {a.n} questions, 1-3 hops); training questions "
          "come from world seed 0.")
    print(f"{'arm':<22} {'accuracy [95% CI]':>24} {'tool calls/q':>13} {'>=1 call':>9} {'format ok':>10}")
    for name, s in results.items():
        print(f"{name:<22} {s['acc']:>8.1%} [{s['lo']:.1%}, {s['hi']:.1%}]".ljust(48)
              + f"{s['calls']:>13.2f} {s['any_call']:>9.0%} {s['format']:>10.0%}")
    names = list(results)
    for x, y in ((names[1], names[0]), (names[2], names[1])):
        d = results[x]["correct"] - results[y]["correct"]
        lo, hi = bootstrap(d)
        print(f"delta {x} - {y}: {d.mean():+.1%} [{lo:+.1%}, {hi:+.1%}] (paired, n={len(d)})")

    steps = []
    for k, run in enumerate(runs):
        steps += [{**m, "run": k + 1} for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
                  if "grad_norm" in m]
    nonzero = [m for m in steps if m["grad_norm"] > 0]
    print(f"\nRAPO ({', '.join(str(r) for r in runs)}): {len(steps)} steps, non-zero gradient in {len(nonzero)} "
          f"({len(nonzero) / max(len(steps), 1):.0%}); last run: pruned {rapo.get('pruned')}, replay insertions "
          f"{rapo.get('replay_insertions')}, epochs {rapo.get('epochs')}")
    keys = ("reward", "rapo/solve_rate", "rapo/zero_spread_frac", "rapo/adv_scale", "tools/calls_per_traj")
    for m in steps:
        print("  run {} step {:>2}: ".format(m["run"], m["step"]) + "  ".join(f"{k.split('/')[-1]}={m[k]:.3g}" for k in keys if k in m))
    print("\nphase times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))
    print(f"load average before {load0[0]:.2f}, after {os.getloadavg()[0]:.2f} (2 cores)")


if __name__ == "__main__":
    main()
