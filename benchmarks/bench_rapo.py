"""RAPO step cost against plain GRPO, with every RAPO part acting, in CPU seconds.

The core (``bench_core``) trains the tiny random Llama of the training tests (embedded tokenizer) with a *scripted*
turn generator, so which rollout is correct is decided per prompt, visit and sample index, not by chance:

* ``easy-*`` prompts: every rollout correct → zero-spread ("Bad") groups, solve rate 1.0, so Eq. 5 prunes them at
  the first epoch end (the timed run spans several epochs);
* ``mixed-*`` prompts: on even visits samples 0, 2, … are correct (spread; successes enter the replay buffer), on odd
  visits every rollout fails → the replay buffer inserts the buffered success into the all-failed group;
* ``hard-*`` prompts: every rollout fails, never buffered → zero-spread groups, so every batch has Good and Bad
  groups and the Eq. 6 factor is > 1.

Every rollout has the same shape (a ``search_urls`` call against the stub tools, then a ``\\boxed{}`` answer of the
same length), so RAPO (all three switches on) and plain GRPO (``rapo_prune = rapo_scale_advantages = rapo_replay =
False``) do the same work per step; the two arms start from the same weights and seeds. The arms run interleaved
(GRPO, RAPO, GRPO, RAPO, ...); a run's figure is its mean process CPU time per step (``time.process_time``: all
threads of this process, robust to other jobs on the machine) after the first (warm-up) step. The script checks,
from the trainer's metrics, curriculum and replay objects, that replay inserted, Eq. 6 scaled (> 1) and Eq. 5
pruned in every RAPO run (and that none of them acted in GRPO), and exits 1 otherwise.

The runs go through ``_harness`` (interleaved rounds, the order flipping every round; medians with min–max; load
average before and after). The headline is the per-round ratio RAPO / GRPO CPU seconds per step.
``--inject-slowdown F`` makes the RAPO arm's trainer step (``training_step``: rollouts, scoring, RAPO's parts,
forward and backward) do F times its CPU work, so the ratio must rise.

``--model embedded`` adds the old throughput section: rollout tokens/s and training tokens/s of the embedded
SmolLM2 on CPU with real sampling (one GRPO run).

    python benchmarks/bench_rapo.py [--quick] [--rounds N] [--steps N] [--inject-slowdown F] [--model tiny|embedded]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import _harness as H  # noqa: E402
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

G = 4  # rollouts per prompt
PROMPTS_PER_STEP = 2  # groups per step (Eq. 6 needs ≥ 2)
KINDS = {"easy": 1, "mixed": 2, "hard": 1}  # 4 prompts → the first epoch ends after 2 steps
THINK_WORDS = 1  # reasoning words per scripted turn (sets the transcript length)
BENCH_TEMPLATE = "Tools: {func_schemas}. Answer in \\boxed{{}}."  # short: the LM head over 49k tokens dominates
SCHEMAS = [{"name": "search_urls", "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                                                  "required": ["query"]}}]


def _testkit():
    sys.path.insert(0, str(ROOT / "tests" / "train"))
    import rapo_testkit

    return rapo_testkit


# ---------------------------------------------------------------------------------------------------------------
# Controlled rollouts


def prompt_rows() -> list[dict]:
    rows = []
    for kind, n in KINDS.items():
        for i in range(n):
            pid = f"{kind}-{i}"
            rows.append({"id": pid, "prompt": f"Question {pid}: which code word belongs to {pid}?",
                         "answer": f"alpha {pid}"})
    return rows


def correct(pid: str, visit: int, sample: int) -> bool:
    """The outcome plan: whether sample ``sample`` of the ``visit``-th group of prompt ``pid`` answers correctly."""
    kind = pid.split("-")[0]
    if kind == "easy":
        return True
    if kind == "mixed":
        return visit % 2 == 0 and sample % 2 == 0
    return False


def _scripted_engine_cls():
    from fathom.rl.rollout import RolloutEngine

    class ScriptedEngine(RolloutEngine):
        """A rollout engine whose policy turns are scripted: turn 1 calls ``search_urls``, turn 2 answers the gold
        answer or a wrong one of the same length, following :func:`correct`. Visits are counted per prompt."""

        def __init__(self, rows, group_size, *a, **k):
            super().__init__(*a, **k)
            self.G = group_size
            self.by_question = {r["prompt"]: r for r in rows}
            self.visits: dict[str, int] = {}

        def rollout_func(self, prompts, trainer):
            questions = [p if isinstance(p, str) else p[-1]["content"] for p in prompts]
            tok = trainer.processing_class
            seen: dict[str, int] = {}
            plan = []
            for q in questions:
                row = self.by_question[q]
                k = seen.get(q, 0)
                seen[q] = k + 1
                ok = correct(row["id"], self.visits.get(row["id"], 0) + k // self.G, k % self.G)
                plan.append((row, ok))
            for q, n in seen.items():
                pid = self.by_question[q]["id"]
                self.visits[pid] = self.visits.get(pid, 0) + n // self.G
            think = " ".join(["step"] * THINK_WORDS)
            turns = [
                [f" {think} </think>\n<tool_call>\n{{\"name\": \"search_urls\", \"arguments\": {{\"query\": "
                 f"\"{row['id']}\"}}}}\n</tool_call>" for row, _ in plan],
                [f" {think} </think> \\boxed{{{('alpha ' if ok else 'omega ') + row['id']}}}" for row, ok in plan],
            ]
            state = {"round": 0}
            eos = tok.convert_tokens_to_ids("<|im_end|>")

            def gen(contexts, max_new):
                r = state["round"]
                state["round"] += 1
                if len(contexts) != len(plan) or r >= len(turns):
                    raise RuntimeError(f"scripted rollouts out of step (round {r}, {len(contexts)} live)")
                rows = [tok(t, add_special_tokens=False).input_ids + [eos] for t in turns[r]]
                return [ids[:m] for ids, m in zip(rows, max_new)], None

            rollouts = self.generate(questions, tok, gen)
            return {"prompt_ids": [r.prompt_ids for r in rollouts],
                    "completion_ids": [r.completion_ids for r in rollouts],
                    "logprobs": None, "env_mask": [r.env_mask for r in rollouts], "rollouts": rollouts}

    return ScriptedEngine


# ---------------------------------------------------------------------------------------------------------------
# One timed run


def _one_run(model_dir: Path, template: Path, out: Path, steps: int, rapo: bool, group_size: int = G,
             slowdown: float = 1.0) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    from fathom.rl.config import rapo_config
    from fathom.rl.rollout import StubTools
    from fathom.rl.trainer import RAPOTrainer

    args = rapo_config("cpu-smoke", str(out), max_steps=steps, num_generations=group_size,
                       per_device_train_batch_size=group_size * PROMPTS_PER_STEP, gradient_accumulation_steps=1,
                       steps_per_generation=1, max_tool_steps=2, max_tokens_per_turn=96, max_total_tokens=1024,
                       max_completion_length=256, max_tool_result_chars=16, prompt_template=str(template), report_to=[],
                       save_strategy="no", logging_steps=10**6, seed=0, rapo_seed=0, plots=False, rapo_epochs=100.0,
                       rapo_prune=rapo, rapo_scale_advantages=rapo, rapo_replay=rapo)
    rows = prompt_rows()
    tok = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    engine = _scripted_engine_cls()(rows, group_size, lambda: StubTools(), args.rollout_config(), schemas=SCHEMAS)
    rec: dict[str, Any] = {"cpu": [], "adv_scale": [], "replayed": [], "pruned": [], "zero_spread": [],
                           "response_tokens": [], "epoch": []}

    class Clock(TrainerCallback):
        def __init__(self, trainer):
            self.trainer = trainer

        def on_step_begin(self, *a, **k):
            self.t0 = time.process_time()

        def on_step_end(self, *a, **k):
            rec["cpu"].append(time.process_time() - self.t0)
            m = self.trainer._metrics["train"]  # read before TRL logs (and clears) them
            rec["adv_scale"].append(m["rapo/adv_scale"][-1])
            rec["replayed"].append(m["rapo/replay_insertions"][-1])
            rec["pruned"].append(m["rapo/pruned"][-1])
            rec["zero_spread"].append(m["rapo/zero_spread_frac"][-1])
            rec["response_tokens"].append(m["rapo/response_tokens"][-1])
            rec["epoch"].append(m["rapo/epoch"][-1])

    trainer = RAPOTrainer(model, args, rows, engine, processing_class=tok)
    trainer.add_callback(Clock(trainer))
    if slowdown != 1:  # the sensitivity control: this run's trainer step does `slowdown` times its CPU work
        trainer.training_step = H.slow_down(trainer.training_step, slowdown)
    try:
        trainer.train()
    finally:
        engine.close()
    rec["replay_insertions"] = trainer.replay.insertions
    rec["replay_buffer"] = len(trainer.replay)
    rec["pruned_ids"] = list(trainer.curriculum.pruned)
    rec["epochs_ended"] = len(trainer.curriculum.history)
    rec["steps"] = trainer.state.global_step
    timed = rec["cpu"][1:] if len(rec["cpu"]) > 1 else rec["cpu"]
    rec["cpu_per_step"] = sum(timed) / len(timed)
    del trainer, model
    gc.collect()
    return rec


def rapo_checks(rapo_runs: list[dict], grpo_runs: list[dict]) -> dict[str, bool]:
    """Facts that must hold for the timing to mean anything: every RAPO part acted in every RAPO run, none in GRPO."""
    return {
        "replay insertions > 0 in every RAPO run": all(r["replay_insertions"] > 0 for r in rapo_runs),
        "Eq. 6 advantage scale > 1 on some step of every RAPO run": all(max(r["adv_scale"]) > 1.0 for r in rapo_runs),
        "Eq. 5 pruned > 0 after an epoch end in every RAPO run": all(
            r["epochs_ended"] > 0 and len(r["pruned_ids"]) > 0 and max(r["pruned"]) > 0 for r in rapo_runs),
        "pruned prompts are exactly the always-solved ones": all(
            sorted(r["pruned_ids"]) == sorted(p for p in (x["id"] for x in prompt_rows()) if p.startswith("easy"))
            for r in rapo_runs),
        "plain GRPO: no replay, scale 1, nothing pruned": all(
            r["replay_insertions"] == 0 and max(r["adv_scale"]) == 1.0 and not r["pruned_ids"] for r in grpo_runs),
        "every run finished its steps": all(r["steps"] == len(r["cpu"]) for r in rapo_runs + grpo_runs),
    }


def bench_core(*, runs: int = 3, steps: int = 4, group_size: int = G, workdir: Path | None = None,
               torch_threads: int = 1, slowdown: float = 1.0, log=print) -> dict[str, Any]:
    """Interleaved GRPO/RAPO runs on the tiny model (the order flips every round); returns per-run records, the
    per-round ratios and the checks. `slowdown` applies to the RAPO arm only (the sensitivity control)."""
    import torch

    from fathom.llm.embedded import prepare_embedded

    if steps < 3:
        raise ValueError("steps must be ≥ 3: the first epoch ends after 2 steps; replay and pruning act in step 3")
    torch.set_num_threads(torch_threads)
    kit = _testkit()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(workdir) if workdir else Path(tmp)
        model_dir = kit.tiny_model_dir(root, prepare_embedded())
        template = root / "bench_template.txt"
        template.write_text(BENCH_TEMPLATE)
        done = {"grpo": 0, "rapo": 0}

        def arm(name: str):
            def run() -> dict:
                i = done[name]
                done[name] += 1
                t0 = time.perf_counter()
                rec = _one_run(model_dir, template, root / f"{name}{i}", steps, name == "rapo", group_size,
                               slowdown if name == "rapo" else 1.0)
                log(f"  run {i + 1}/{runs} {name}: {rec['cpu_per_step']:.3f} CPU-s/step "
                    f"(steps {' '.join(f'{t:.2f}' for t in rec['cpu'])}; wall {time.perf_counter() - t0:.1f} s)")
                return rec
            return run

        res = H.interleaved([("grpo", arm("grpo")), ("rapo", arm("rapo"))], runs, log=False)
    ratios = H.ratios(res["rapo"], res["grpo"], "cpu_per_step")
    return {"grpo": res["grpo"], "rapo": res["rapo"], "ratios": ratios,
            "checks": rapo_checks(res["rapo"], res["grpo"]), "steps": steps, "runs": runs, "G": group_size}


def _summary(xs: list[float]) -> str:
    return f"median {H.spread(xs).fmt(3)}  (n={len(xs)})"


def report(result: dict[str, Any], log=print) -> bool:
    g, r = result["grpo"], result["rapo"]
    log(f"\nRAPO vs plain GRPO, tiny model, prompts {KINDS}, {PROMPTS_PER_STEP} groups x G={result['G']} "
        f"per step, {result['steps']} steps x {result['runs']} interleaved runs per arm (first step of a run excluded)")
    log(f"plain GRPO CPU-s/step: {_summary([x['cpu_per_step'] for x in g])}")
    log(f"RAPO       CPU-s/step: {_summary([x['cpu_per_step'] for x in r])}")
    log(f"ratio RAPO/GRPO:       {_summary(result['ratios'])}")
    tok_g = statistics.mean(t for x in g for t in x["response_tokens"])
    tok_r = statistics.mean(t for x in r for t in x["response_tokens"])
    log(f"policy tokens per rollout: GRPO {tok_g:.1f}, RAPO {tok_r:.1f} (same work per step)")
    r0 = r[0]
    log(f"RAPO run 1 per step: adv scale {r0['adv_scale']}, replayed {r0['replayed']}, "
        f"pruned {r0['pruned']}, zero-spread frac {[round(z, 2) for z in r0['zero_spread']]}, epoch {r0['epoch']}")
    log(f"RAPO run 1 totals: replay insertions {r0['replay_insertions']}, buffer {r0['replay_buffer']} prompts, "
        f"epochs ended {r0['epochs_ended']}, pruned {r0['pruned_ids']}")
    ok = True
    for name, passed in result["checks"].items():
        log(f"CHECK {'PASS' if passed else 'FAIL'}: {name}")
        ok &= passed
    return ok


# ---------------------------------------------------------------------------------------------------------------
# Optional: embedded-model throughput (real sampling)


def embedded_throughput(steps: int, log=print) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    from fathom.llm.embedded import prepare_embedded
    from fathom.rl.config import rapo_config
    from fathom.rl.rewards import AnswerJudge
    from fathom.rl.rollout import RolloutEngine, StubTools
    from fathom.rl.trainer import RAPOTrainer

    class HalfJudge(AnswerJudge):
        async def judge_many(self, items):
            return [i % 2 == 0 for i, _ in enumerate(list(items))]

    model_dir = prepare_embedded()
    with tempfile.TemporaryDirectory() as tmp:
        args = rapo_config("cpu-smoke", tmp, max_steps=steps, max_tokens_per_turn=16, max_total_tokens=1024,
                           per_device_train_batch_size=4, report_to=[], save_strategy="no", logging_steps=10**6,
                           seed=0, plots=False)
        tok = AutoTokenizer.from_pretrained(model_dir)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        rows = [{"id": f"q{i}", "prompt": f"What is {i} plus one?", "answer": str(i + 1)} for i in range(8)]
        engine = RolloutEngine(lambda: StubTools(), args.rollout_config())
        trainer = RAPOTrainer(model, args, rows, engine, processing_class=tok, judge=HalfJudge(None))
        gen_t, step_t, toks = [], [], {}
        inner = trainer._generate_and_score_completions

        def timed(inputs):
            t0 = time.process_time()
            out = inner(inputs)
            gen_t.append(time.process_time() - t0)
            cm = out["completion_mask"]
            toks["policy"] = int((cm * out.get("tool_mask", cm)).sum())
            toks["total"] = int(out["prompt_mask"].sum() + cm.sum())
            return out

        trainer._generate_and_score_completions = timed

        class Clock(TrainerCallback):
            def on_step_begin(self, *a, **k):
                self.t0 = time.process_time()

            def on_step_end(self, *a, **k):
                step_t.append(time.process_time() - self.t0)

        trainer.add_callback(Clock())
        try:
            trainer.train()
        finally:
            engine.close()
    g, s = statistics.median(gen_t[1:] or gen_t), statistics.median(step_t[1:] or step_t)
    log(f"\nembedded model ({model_dir.name}), {steps} GRPO steps, batch {args.generation_batch_size} rollouts, CPU-s:")
    log(f"rollout generation: {toks['policy'] / g:8.1f} policy tokens/s ({toks['policy']} tokens in {g:.2f} CPU-s)")
    t_train = max(s - g, 1e-9)
    log(f"training step:      {toks['total'] / t_train:8.1f} transcript tokens/s ({toks['total']} tokens, "
        f"fwd+bwd+optimizer {t_train:.2f} CPU-s)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    H.add_common_args(p, rounds=5, quick_rounds=3)
    p.add_argument("--runs", type=int, default=None, help="alias of --rounds (runs per arm)")
    p.add_argument("--steps", type=int, default=None, help="steps per run (default 6, --quick 4; ≥ 3)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--model", choices=["tiny", "embedded"], default="tiny",
                   help="embedded: also measure the embedded model's rollout/training tokens/s")
    a = p.parse_args()
    a.rounds = a.rounds or a.runs
    runs = H.rounds_of(a)
    steps = a.steps or (4 if a.quick else 6)
    t0 = time.perf_counter()
    H.banner(f"RAPO vs plain GRPO CPU seconds per step, tiny model, {steps} steps per run", a)
    result = bench_core(runs=runs, steps=steps, torch_threads=a.threads, slowdown=a.inject_slowdown)
    ok = report(result)
    if a.model == "embedded":
        embedded_throughput(3 if a.quick else 5)
    print(f"wall {time.perf_counter() - t0:.0f} s")
    if not ok:
        print("FAILED: a RAPO part did not act, so the timing does not measure RAPO", file=sys.stderr)
        sys.exit(1)
    H.headline("RAPO / plain GRPO CPU seconds per step", result["ratios"], "lower")


if __name__ == "__main__":
    main()
