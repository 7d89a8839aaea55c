"""The held-out evaluation of the embedded search policy: offline-web questions from a world that no training
question comes from (seed 1000: its own entities, names and pages, served by its own tool server), 1–3 hops, the
same agent budget and tool settings as the policy's training. The retrain pipeline's local gate and
`benchmarks/bench_learning.py` both use these settings."""

from __future__ import annotations

from fathom.web.stack import EMBEDDED_RESULT_CHARS

#: World of the held-out questions (training worlds: seed 0 for the warm start, RAPO and DuetQA).
HELD_OUT_WORLD_SEED = 1000
#: Questions in flight: the gate's 20 in one decode batch of the local model (LocalClient batches up to 32). With 16
#: in flight the last 4 ran as a tail of small batches: the warm-started policy's 20 questions took 455 s, in one
#: batch 307 s (same answers: greedy).
HELD_OUT_CONCURRENCY = 20


def heldout_eval_config(n: int, *, policy: str = "local:smollm2", local_dtype: str = "fp32") -> dict:
    """EvalConfig fields (without `datasets`/`out`) of the held-out offline-web evaluation of `n` questions.
    `local_dtype`: the precision of an in-process policy (`AgentSettings.local_dtype`; the retrain run's gate uses
    auto: bf16 where native, 1.5x faster; `benchmarks/bench_learning.py` keeps fp32, whose answers do not depend on
    batching)."""
    return {"offline_n": n, "limit": n, "web_seed": HELD_OUT_WORLD_SEED, "offline_hops": [1, 2, 3],
            "query_llm": "none", "concurrency": HELD_OUT_CONCURRENCY,
            "agent": {"policy": policy, "max_turns": 8, "max_tokens_per_turn": 128, "max_total_tokens": 4096,
                      "temperature": 0.0, "max_result_chars": EMBEDDED_RESULT_CHARS, "local_dtype": local_dtype}}
