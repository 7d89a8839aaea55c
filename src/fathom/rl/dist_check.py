"""RAPO steps on a fixed global batch under N processes (CPU gloo here, NCCL on GPUs): the distributed path checked
against one process.

    torchrun --nproc_per_node N -m fathom.rl.dist_check --model DIR --out DIR [--template PATH] [--steps K]

The rollouts are scripted, so every world size sees the same global batch: `--prompts` prompts × G generations, the
first generation of each group answers right, the others wrong (reward spread in every group). Each rank generates
and scores its slice (RAPOTrainer's own split), TRL computes the loss, DDP averages the gradients, AdamW steps.
Replay is off (its draws are per rank by design); pruning acts only at an epoch end. Rank 0 writes
``OUT/result.json`` (world size, global batch, loss per step, wall and CPU seconds per step of rank 0, rollouts per
step) and
``OUT/weights.pt`` (the updated parameters).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

ANSWER = " It is {0}. </think> \\boxed{{{0}}}"
WRONG = " Hmm, maybe it is {0}, or not. </think> \\boxed{{{0}}}"  # longer: token-weighted (DAPO) loss ≠ 0


def scripted_generator(tok, G: int):
    """Turn generator of the fixed batch: the rollout at position k of a group answers right iff k % G == 0."""
    eos = tok.eos_token_id

    def gen(contexts, max_new):
        rows = []
        for k, (ctx, m) in enumerate(zip(contexts, max_new)):
            n = int(re.findall(r"What is (\d+) plus one", tok.decode(ctx))[-1])
            text = ANSWER.format(n + 1) if k % G == 0 else WRONG.format(n + 2)
            rows.append((tok(text, add_special_tokens=False).input_ids + [eos])[:m])
        return rows, None

    return gen


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m fathom.rl.dist_check")
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--template", default="fathom")
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--prompts", type=int, default=4, help="prompts per global batch")
    p.add_argument("--generations", type=int, default=2, help="G")
    p.add_argument("--lr", type=float, default=1e-4)
    a = p.parse_args(argv)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    from fathom.rl.config import rapo_config
    from fathom.rl.rollout import RolloutEngine, StubTools
    from fathom.rl.trainer import RAPOTrainer

    torch.set_num_threads(1)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rollouts = a.prompts * a.generations
    if rollouts % world:
        raise SystemExit(f"{rollouts} rollouts do not split over {world} processes")
    args = rapo_config("cpu-smoke", a.out, max_steps=a.steps, num_generations=a.generations,
                       per_device_train_batch_size=rollouts // world, gradient_accumulation_steps=1,
                       steps_per_generation=1, learning_rate=a.lr, max_tokens_per_turn=32, max_total_tokens=512,
                       prompt_template=a.template, report_to=[], save_strategy="no", ddp_backend="gloo", seed=0,
                       rapo_replay=False, rapo_epochs=1000.0, logging_steps=1)
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model)
    rows = [{"id": f"q{i}", "prompt": f"What is {i} plus one?", "answer": str(i + 1)} for i in range(a.prompts)]
    engine = RolloutEngine(lambda: StubTools(), args.rollout_config())
    gen = scripted_generator(tok, a.generations)

    def rollout_func(prompts, trainer):
        rs = engine.generate([q if isinstance(q, str) else q[-1]["content"] for q in prompts], tok, gen)
        return {"prompt_ids": [r.prompt_ids for r in rs], "completion_ids": [r.completion_ids for r in rs],
                "logprobs": None, "env_mask": [r.env_mask for r in rs], "rollouts": rs}

    trainer = RAPOTrainer(model, args, rows, engine, processing_class=tok)
    trainer.rollout_func = rollout_func
    times: list[float] = []
    cpu_times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter() - self.t0)
            cpu_times.append(time.process_time() - self.c0)

    trainer.add_callback(Clock())
    try:
        trainer.train()
    finally:
        engine.close()
    if trainer.accelerator.is_main_process:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in trainer.accelerator.unwrap_model(trainer.model)
                 .state_dict().items()}
        torch.save(state, out / "weights.pt")
        losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
        (out / "result.json").write_text(json.dumps({
            "world_size": trainer.accelerator.num_processes, "batch": trainer.last_batch_pids,
            "steps": trainer.state.global_step, "losses": losses, "step_seconds": times,
            "step_cpu_seconds": cpu_times,
            "rollouts_per_step": rollouts, "lr": a.lr}))
    trainer.accelerator.wait_for_everyone()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()  # before exit: a live gloo group aborts the interpreter


def run_world(nproc: int, *, model: str | Path, out: str | Path, template: str | Path = "fathom", steps: int = 1,
              prompts: int = 4, generations: int = 2, lr: float = 1e-4, timeout_s: float = 600.0,
              module: str = "fathom.rl.dist_check") -> dict:
    """Run :func:`main` under `torchrun --standalone --nproc_per_node nproc` on CPU (gloo); returns result.json.
    A hung run is killed with its workers (its process group) and reported with its stderr. `module` is the
    worker's entry point (a module on PYTHONPATH that ends in :func:`main`, e.g. a benchmark's wrapper)."""
    import signal
    import subprocess
    import sys

    src = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "TRL_EXPERIMENTAL_SILENCE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", module, "--model", str(model), "--out", str(out), "--template", str(template),
           "--steps", str(steps), "--prompts", str(prompts), "--generations", str(generations), "--lr", str(lr)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        raise RuntimeError(f"torchrun ({nproc} processes) timed out:\n{err[-4000:]}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun ({nproc} processes) failed ({proc.returncode}):\n{err[-4000:]}")
    return json.loads((Path(out) / "result.json").read_text())


def compare(a: str | Path, b: str | Path, initial: str | Path | None = None) -> dict:
    """Largest differences between two runs' losses and updated weights (and, given the initial model folder, the
    largest weight change of run `a`)."""
    import torch

    ra, rb = (json.loads((Path(x) / "result.json").read_text()) for x in (a, b))
    wa, wb = (torch.load(Path(x) / "weights.pt") for x in (a, b))
    out = {"loss_a": ra["losses"], "loss_b": rb["losses"],
           "max_loss_diff": max(abs(x - y) for x, y in zip(ra["losses"], rb["losses"], strict=True)),
           "max_weight_diff": max(float((wa[k] - wb[k]).abs().max()) for k in wa), "same_batch": ra["batch"] == rb["batch"]}
    if initial is not None:
        from safetensors.torch import load_file

        init = load_file(str(Path(initial) / "model.safetensors"))
        out["max_weight_change"] = max(float((wa[k] - init[k]).abs().max()) for k in wa if k in init)
    return out


if __name__ == "__main__":
    main()
