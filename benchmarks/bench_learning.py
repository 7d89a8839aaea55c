"""Does the embedded agent learn? Base model vs warm start vs warm start + RAPO, on held-out offline-web questions.

Held-out means a different world: the questions come from the offline web of seed 1000 (its own entities, names
and pages), served by its own tool server; every training question (warm start, RAPO) comes from the world of
seed 0. All three arms run the same agent loop (`fathom.agent.run_agent`), greedy, with the same budget and the
same tool server settings, through the evaluation harness (resumable: a rerun reuses finished rows). Generation
is compute-bound on CPU (py-spy: ~85 % of the time in the model's matmuls and attention): serving an arm's policy
with vLLM for CPU instead (`fathom.deploy.local`, the harness's endpoint path) gave the same answers on 20 questions
(19 of 20 transcripts identical) in 273 s against 300 s in-process, so the arms run in-process.

Printed as one table: accuracy with its 95 % bootstrap interval, tool calls per question, the share of
trajectories with at least one tool call, the format-valid rate (`fathom.rl.rewards.check_format`) and the paired
deltas (warm − base, RAPO − warm) with 95 % bootstrap intervals; then the RAPO run's share of steps with a non-zero
gradient and its reward parts, and the time of each phase.

Timing (through `_harness`: load average before and after, medians with min–max, a HEADLINE line): the process CPU
seconds per newly evaluated question of each arm (the in-process local model, the agent loop and the grading; rows
reused from an earlier run are not timed). `--inject-slowdown F` makes the local model's generation do F times its
CPU work. `--quick` is the harness's check, not an accuracy measurement: no training, a tiny random Llama (the
embedded tokenizer) as the policy on one torch thread, a handful of questions (`--n`, default 3), evaluated afresh
in `--rounds` rounds after a warm-up round; the headline is its CPU seconds per question.

    python benchmarks/bench_learning.py                 # 200 held-out questions (1–3 hops); ~15 s per question
                                                        # and arm on 2 idle cores, ~2.5 h for the three arms
    python benchmarks/bench_learning.py --n 40          # a smaller check
    python benchmarks/bench_learning.py --quick         # timing only: tiny random policy, 3 questions x 3 rounds
    # reuse the policy of a retrain run (its RAPO stage folders, in order) instead of training one here:
    python benchmarks/bench_learning.py --rapo-run ROOT/<run>/rapo-stage1/model.work ROOT/<run>/rapo-stage2/model.work
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import _harness as H  # noqa: E402

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")



def eval_config(policy: str, out: Path, n: int, concurrency: int) -> dict:
    """The held-out evaluation every arm gets (the retrain pipeline's local gate uses the same settings; greedy, so
    the number of questions in flight changes the speed, not the answers)."""
    from fathom.evaluate.heldout import heldout_eval_config

    return {**heldout_eval_config(n, policy=policy), "out": str(out), "concurrency": concurrency}


def run_arm(policy: str, out: Path, n: int, concurrency: int = 16, timing: dict | None = None) -> list[dict]:
    """The arm's result rows; `timing` (when given) gets the process CPU seconds and wall seconds of the call and
    the number of rows it evaluated (rows of an earlier run are reused)."""
    from fathom.evaluate.runner import EvalConfig, read_results, run_eval

    cfg = EvalConfig.model_validate({**eval_config(policy, out, n, concurrency), "datasets": ["offline-web"],
                                     "progress": True})
    c0, t0 = time.process_time(), time.perf_counter()
    res = run_eval(cfg)
    if timing is not None:
        timing.update(cpu_s=time.process_time() - c0, wall_s=time.perf_counter() - t0, new_rows=res.new_rows)
    return sorted(read_results(out / "results.jsonl"), key=lambda r: r["id"])


def slow_down_local_model(factor: float) -> None:
    """The sensitivity control: the in-process local model's generation does `factor` times its CPU work."""
    from fathom.llm.local import LocalClient, _Batcher

    H.patch_slowdown(_Batcher, "_generate", factor)
    H.patch_slowdown(LocalClient, "_generate", factor)


def quick(a, work: Path) -> None:
    """The harness's check: a tiny random policy on a handful of questions, evaluated afresh every round."""
    sys.path.insert(0, str(ROOT / "tests" / "train"))
    from rapo_testkit import tiny_model_dir

    from fathom.llm.embedded import prepare_embedded

    import torch

    torch.set_num_threads(1)  # CPU seconds of a spinning second thread would be noise, not work
    policy = f"local:{tiny_model_dir(work, prepare_embedded())}"
    n_round = iter(range(10**6))

    def run() -> dict:
        t: dict = {}
        out = work / f"quick-eval-{next(n_round)}"
        shutil.rmtree(out, ignore_errors=True)  # evaluated afresh: a timing round, not a resumable result
        rows = run_arm(policy, out, a.n, a.concurrency, timing=t)
        return {"cpu_s_per_q": t["cpu_s"] / max(1, t["new_rows"]), "wall_s_per_q": t["wall_s"] / max(1, t["new_rows"]),
                "acc": float(np.mean([float(r["correct"]) for r in rows]))}

    run()  # warm-up (imports, first loads): not counted
    res = H.interleaved([("tiny policy", run)], H.rounds_of(a))["tiny policy"]
    print(f"\ntiny random policy, {a.n} held-out questions per round: CPU s per question "
          f"{H.spread(H.column(res, 'cpu_s_per_q')).fmt(3)}, wall s per question "
          f"{H.spread(H.column(res, 'wall_s_per_q')).fmt(3)}, accuracy {H.spread(H.column(res, 'acc')).fmt(2)}")
    H.headline("CPU seconds per evaluated question (tiny random policy)", H.column(res, "cpu_s_per_q"), "lower",
               unit="s")


def format_ok(row: dict) -> bool:
    from fathom.agent.format import model_turn_texts, preset_schemas
    from fathom.rl.rewards import check_format

    return check_format(model_turn_texts(row.get("transcript") or ""), preset_schemas("fathom")).ok


def bootstrap(values: np.ndarray, n: int = 4000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n, len(values)))
    means = values[idx].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def weight_change(before: Path, after: Path) -> dict:
    """How far training moved the weights: ‖after − before‖ / ‖before‖ over all tensors, the largest |Δ|, and how
    many tensors changed at all (a RAPO run that changes nothing shows 0 here, whatever its logged loss)."""
    from safetensors import safe_open

    diff2 = base2 = 0.0
    changed = total = 0
    max_abs = 0.0
    with (safe_open(str(before / "model.safetensors"), "pt") as fa,
          safe_open(str(after / "model.safetensors"), "pt") as fb):
        for key in fa.keys():
            a, b = fa.get_tensor(key).double(), fb.get_tensor(key).double()
            d = b - a
            largest = float(d.abs().max())
            total += 1
            changed += largest > 0
            diff2 += float((d * d).sum())
            base2 += float((a * a).sum())
            max_abs = max(max_abs, largest)
    return {"relative_l2": (diff2 / base2) ** 0.5 if base2 else 0.0, "max_abs": max_abs, "changed": changed,
            "tensors": total}


def behaviour_change(before: list[dict], after: list[dict]) -> dict:
    """On the questions both arms answered: how many greedy transcripts and predictions differ, and how many
    questions flipped from wrong to right and from right to wrong."""
    a = {r["id"]: r for r in before}
    b = {r["id"]: r for r in after}
    ids = sorted(set(a) & set(b))
    return {"n": len(ids),
            "transcripts": sum(a[i].get("transcript") != b[i].get("transcript") for i in ids),
            "predictions": sum(a[i].get("prediction") != b[i].get("prediction") for i in ids),
            "gained": sum(bool(b[i]["correct"]) and not a[i]["correct"] for i in ids),
            "lost": sum(bool(a[i]["correct"]) and not b[i]["correct"] for i in ids)}


def hops_of(row: dict) -> int:
    """Hop count of a held-out question, from its id (`ow-h<hops>-...`, `fathom.evaluate.offline_bench`)."""
    return int(row["id"].split("-")[1][1:])


def summarise(rows: list[dict]) -> dict:
    by_hop: dict[int, list[float]] = {}
    for r in rows:
        by_hop.setdefault(hops_of(r), []).append(float(r["correct"]))
    correct = np.array([float(r["correct"]) for r in rows])
    calls = np.array([r["tool_calls"] for r in rows], dtype=float)
    lo, hi = bootstrap(correct)
    return {"n": len(rows), "acc": correct.mean(), "lo": lo, "hi": hi, "calls": calls.mean(),
            "any_call": float((calls >= 1).mean()), "format": float(np.mean([format_ok(r) for r in rows])),
            "correct": correct, "by_hop": {h: (len(v), float(np.mean(v))) for h, v in sorted(by_hop.items())}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    H.add_common_args(ap, rounds=1, quick_rounds=3)
    ap.add_argument("--n", type=int, default=None, help="Held-out questions (split evenly over 1, 2, 3 hops; "
                    "default 200, 3 with --quick).")
    ap.add_argument("--work", type=Path, default=Path(".cache/bench-learning"), help="Work folder (resumable).")
    ap.add_argument("--rapo-prompts", type=int, default=12, help="Training prompts of the RAPO run (world seed 0, "
                    "half 1-hop, half 2-hop; 2 epochs of 2 prompts per step: 12 steps).")
    ap.add_argument("--rapo-quick", action="store_true", help="RAPO on 4 prompts (fewer steps); the old --quick.")
    ap.add_argument("--rapo-preset", default="cpu", help="RAPOConfig preset of the RAPO run: a preset name or a "
                    "YAML file of RAPOConfig fields (as `fathom train search --config`).")
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

    a.n = a.n or (3 if a.quick else 200)
    work = a.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    H.banner("held-out accuracy of base / warm start / warm start + RAPO" if not a.quick else
             f"held-out evaluation timing, tiny random policy, {a.n} questions", a)
    slow_down_local_model(a.inject_slowdown)
    if a.quick:
        quick(a, work)
        return
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
        n_prompts = 4 if a.rapo_quick else a.rapo_prompts
        rows = []
        for h, k in ((1, n_prompts // 2), (2, n_prompts - n_prompts // 2)):
            rows += offline_rows(k, hops=h, seed=7)
        write_jsonl(rows, work / "rapo-prompts.jsonl")
        rapo = train_search(SearchTrainSpec(out_dir=work / "rapo", preset=a.rapo_preset, stage=1, model=ws["final"],
                                            data=work / "rapo-prompts.jsonl", resume=True))
        runs = [work / "rapo"]
        times["RAPO stage 1"] = time.perf_counter() - t0

    arms = {"base (SmolLM2-135M)": "local:smollm2", "warm start": f"local:{ws['final']}",
            "warm start + RAPO": f"local:{rapo['final']}"}
    results, timing, rows = {}, {}, {}
    for name, policy in arms.items():
        t0 = time.perf_counter()
        slug = name.split(" (")[0].replace(" + ", "-").replace(" ", "-")
        timing[name] = {}
        rows[name] = run_arm(policy, work / f"eval-{slug}", a.n, a.concurrency, timing=timing[name])
        results[name] = summarise(rows[name])
        times[f"eval {name}"] = time.perf_counter() - t0

    print(f"\nHeld-out offline web (world seed {HELD_OUT_WORLD_SEED}, {a.n} questions, 1-3 hops); training questions "
          "come from world seed 0.")
    print(f"{'arm':<22} {'accuracy [95% CI]':>24} {'tool calls/q':>13} {'>=1 call':>9} {'format ok':>10}")
    for name, s in results.items():
        print(f"{name:<22} {s['acc']:>8.1%} [{s['lo']:.1%}, {s['hi']:.1%}]".ljust(48)
              + f"{s['calls']:>13.2f} {s['any_call']:>9.0%} {s['format']:>10.0%}")
    print("accuracy by hop count: " + "; ".join(
        f"{name} " + ", ".join(f"{h}-hop {acc:.1%} (n={k})" for h, (k, acc) in s["by_hop"].items())
        for name, s in results.items()))
    names = list(results)
    for x, y in ((names[1], names[0]), (names[2], names[1])):
        d = results[x]["correct"] - results[y]["correct"]
        lo, hi = bootstrap(d)
        print(f"delta {x} - {y}: {d.mean():+.1%} [{lo:+.1%}, {hi:+.1%}] (paired, n={len(d)})")

    w = weight_change(Path(ws["final"]), Path(rapo["final"]))
    bc = behaviour_change(rows["warm start"], rows["warm start + RAPO"])
    print(f"\nwhat RAPO changed: weights moved by {w['relative_l2']:.2e} (relative L2; largest |delta| "
          f"{w['max_abs']:.2e}; {w['changed']} of {w['tensors']} tensors changed); on {bc['n']} questions the greedy "
          f"transcript differs on {bc['transcripts']}, the answer on {bc['predictions']}; {bc['gained']} questions "
          f"gained, {bc['lost']} lost")

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
    per_q = {name: t["cpu_s"] / t["new_rows"] for name, t in timing.items() if t["new_rows"]}
    print("evaluation CPU s per newly evaluated question: " + (", ".join(
        f"{name} {v:.2f} ({timing[name]['new_rows']} questions)" for name, v in per_q.items()) or
        "none (every row reused from an earlier run)"))
    if per_q:
        H.headline("evaluation CPU seconds per question (arms that evaluated new rows)", list(per_q.values()),
                   "lower", unit="s")
    else:
        H.load_line("after")


if __name__ == "__main__":
    main()
