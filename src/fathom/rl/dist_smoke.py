"""One RAPO step under torchrun/accelerate, to prove the distributed path (CPU gloo in tests, NCCL on GPUs).

    torchrun --nproc_per_node 2 -m fathom.rl.dist_smoke --model DIR --out DIR [--template PATH]

Uses the stub tool backend (no server) and writes OUT/dist_result.json from rank 0: the global batch, each rank's
share of it, and the loss.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--template", default="fathom")
    p.add_argument("--steps", type=int, default=1)
    a = p.parse_args(argv)
    if os.environ.get("FATHOM_HANG_DUMP_S"):  # debugging aid: dump every thread's stack if the step hangs
        import faulthandler

        faulthandler.dump_traceback_later(float(os.environ["FATHOM_HANG_DUMP_S"]), exit=True)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import torch
    from accelerate.utils import gather_object
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fathom.rl.config import rapo_config
    from fathom.rl.rollout import RolloutEngine, StubTools
    from fathom.rl.trainer import RAPOTrainer

    torch.set_num_threads(1)
    args = rapo_config("cpu-smoke", a.out, max_steps=a.steps, max_tokens_per_turn=8, max_total_tokens=512,
                       prompt_template=a.template, report_to=[], save_steps=a.steps, ddp_backend="gloo", seed=0,
                       per_device_train_batch_size=4)
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model)
    rows = [{"id": f"q{i}", "prompt": f"What is {i} plus one?", "answer": str(i + 1)} for i in range(6)]
    engine = RolloutEngine(lambda: StubTools(), args.rollout_config())
    trainer = RAPOTrainer(model, args, rows, engine, processing_class=tok)
    local_ids: list[str] = []
    inner = trainer._generate_and_score_completions

    def spy(inputs):
        out = inner(inputs)
        local_ids.extend(str(r["id"]) for r in trainer._rapo_rows)
        return out

    trainer._generate_and_score_completions = spy  # type: ignore[method-assign]
    try:
        trainer.train()
    finally:
        engine.close()
    shares = gather_object([local_ids])
    if trainer.accelerator.is_main_process:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        (Path(a.out) / "dist_result.json").write_text(json.dumps({
            "world_size": trainer.accelerator.num_processes, "batch": trainer.last_batch_pids, "shares": shares,
            "steps": trainer.state.global_step, "loss": trainer.state.log_history[-1].get("train_loss")}))
    # Tear the process group down before interpreter exit: a gloo group left alive aborts the process
    # ("terminate called without an active exception") when its threads are destroyed at exit.
    trainer.accelerator.wait_for_everyone()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    if os.environ.get("FATHOM_HANG_DUMP_S"):
        import faulthandler

        faulthandler.cancel_dump_traceback_later()


if __name__ == "__main__":
    main()
