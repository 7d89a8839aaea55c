"""RAPO overhead and CPU throughput, side by side in one run.

* RAPO step time ÷ plain GRPO step time on the same batch and seed (target ≤ 1.03: RAPO adds no rollouts). Both
  trainers start from the same weights, the same schedule seed and the same torch seed, so they generate the same
  rollouts; the only difference is the three RAPO switches.
* Tokens/s of rollout generation (policy tokens generated per second) and of the training step (transcript
  tokens per second through forward + backward) on the embedded model, CPU.

    python benchmarks/bench_rapo.py [--quick] [--model tiny|embedded]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class _Timer:
    def __init__(self, trainer):
        self.trainer, self.gen, self.step = trainer, [], []
        inner = trainer._generate_and_score_completions

        def timed(inputs):
            t0 = time.perf_counter()
            out = inner(inputs)
            self.gen.append(time.perf_counter() - t0)
            self.gen_tokens = int(out["completion_mask"].sum())
            self.policy_tokens = int((out["completion_mask"] * out.get("tool_mask", out["completion_mask"])).sum())
            self.total_tokens = int(out["prompt_mask"].sum() + out["completion_mask"].sum())
            return out

        trainer._generate_and_score_completions = timed


def _run(model_dir: Path, out: Path, template: str, steps: int, rapo: bool, judge):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    from fathom.rl.config import rapo_config
    from fathom.rl.rollout import RolloutEngine, StubTools
    from fathom.rl.trainer import RAPOTrainer

    args = rapo_config("cpu-smoke", str(out), max_steps=steps, max_tokens_per_turn=16, max_total_tokens=1024,
                       per_device_train_batch_size=4,
                       prompt_template=template, report_to=[], save_steps=10_000, logging_steps=10_000, seed=0,
                       rapo_prune=rapo,
                       rapo_scale_advantages=rapo, rapo_replay=rapo)
    tok = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    rows = [{"id": f"q{i}", "prompt": f"What is {i} plus one?", "answer": str(i + 1)} for i in range(8)]
    engine = RolloutEngine(lambda: StubTools(), args.rollout_config())
    trainer = RAPOTrainer(model, args, rows, engine, processing_class=tok, judge=judge)
    timer = _Timer(trainer)
    times: list[float] = []

    class StepClock(TrainerCallback):
        # process CPU time (all threads): robust to other jobs sharing the machine, unlike wall time
        def on_step_begin(self, *a, **k):
            self.t0 = time.process_time()

        def on_step_end(self, *a, **k):
            times.append(time.process_time() - self.t0)

    trainer.add_callback(StepClock())
    try:
        trainer.train()
    finally:
        engine.close()
    return times, timer


RAPO_TIME = {"s": 0.0}


def _instrument_rapo() -> None:
    """Accumulate the wall time of the RAPO-only code paths (replay planning + buffer writes + Eq. 6)."""
    from fathom.rl import rapo

    def wrap(owner, name):
        fn = getattr(owner, name)

        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                RAPO_TIME["s"] += time.perf_counter() - t0

        setattr(owner, name, timed)

    wrap(rapo, "plan_replay")
    wrap(rapo, "scale_advantages")
    wrap(rapo.ReplayBuffer, "offer")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="fewer steps, tiny random model (< 2 min)")
    p.add_argument("--model", choices=["tiny", "embedded"], default=None)
    p.add_argument("--steps", type=int, default=None)
    a = p.parse_args()
    model_kind = a.model or "tiny"
    steps = a.steps or (4 if a.quick else 6)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "train"))
    from rapo_testkit import template_file, tiny_model_dir

    from fathom.llm.embedded import prepare_embedded
    from fathom.rl.rewards import AnswerJudge

    class HalfJudge(AnswerJudge):  # every other rollout correct: groups with spread, successes for the buffer
        async def judge_many(self, items):
            return [i % 2 == 0 for i, _ in enumerate(list(items))]

    emb = prepare_embedded()
    _instrument_rapo()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = tiny_model_dir(tmp, emb) if model_kind == "tiny" else emb
        template = str(template_file(tmp)) if model_kind == "tiny" else "fathom"
        res = {}
        for name, flag in (("grpo", False), ("rapo", True), ("grpo2", False), ("rapo2", True)):
            if a.quick and name.endswith("2"):  # --quick: one run each; otherwise interleaved twice
                continue
            import gc

            gc.collect()
            times, timer = _run(model_dir, tmp / name, template, steps, flag, HalfJudge(None))
            res.setdefault(name.rstrip("2"), []).append((times, timer))
    def med(name, skip_first=True):
        vals = [t for times, _ in res[name] for t in (times[1:] if skip_first and len(times) > 1 else times)]
        return statistics.median(vals)

    g, r = med("grpo"), med("rapo")
    for name in ("grpo", "rapo"):
        print(f"{name} step times (s): " + " | ".join(" ".join(f"{t:.2f}" for t in times) for times, _ in res[name]))
    total_rapo_steps = sum(len(times) for times, _ in res["rapo"])
    rapo_only = RAPO_TIME["s"] / max(total_rapo_steps, 1)
    t_gen = statistics.median([x for _, tm in res["grpo"] for x in tm.gen])
    timer = res["grpo"][0][1]
    print(f"RAPO-only bookkeeping (replay plan + buffer writes + Eq. 6): {rapo_only * 1000:.2f} ms/step = "
          f"{rapo_only / g:.5f} of a GRPO step -> overhead ratio 1 + {rapo_only / g:.5f}")
    n = sum(len(times) - 1 for times, _ in res["grpo"])
    print(f"model={model_kind} steps={steps} x {len(res['grpo'])} run(s) per mode (median of {n} steps after the first)")
    print(f"plain GRPO step: {g:8.2f} CPU-s   RAPO step: {r:8.2f} CPU-s   ratio (RAPO/GRPO) = {r / g:.3f}  (target <= 1.03)")
    print(f"rollout generation: {timer.policy_tokens / t_gen:8.1f} policy tokens/s "
          f"({timer.policy_tokens} tokens in {t_gen:.2f} s, batch of {timer.trainer.args.generation_batch_size})")
    t_train = max(g - t_gen, 1e-9)
    print(f"training step:      {timer.total_tokens / t_train:8.1f} transcript tokens/s "
          f"({timer.total_tokens} tokens, fwd+bwd+optimizer {t_train:.2f} s)")


if __name__ == "__main__":
    main()
